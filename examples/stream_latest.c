/*
 * stream_latest.c — a streaming query with your own aggregate: each sensor's latest reading per minute.
 *
 *     ember log create /tmp/readings --partitions 2
 *     ember log append /tmp/readings examples/data/readings.csv       (lines: time in ms,sensor,reading)
 *     ember run -np 2 build/examples/stream_latest /tmp/readings /tmp/readings.ck /tmp/latest.csv
 *
 * Count, sum, min, max and avg are built in (windowcount --agg). Anything else is an em_stream_combine: each
 * event becomes a fixed-size accumulator (from_event), two accumulators of a window and key become one (merge),
 * and the last one is printed as the row's value (format). Ember merges in any order, across tasks, ranks and
 * restarts, so merge must be associative and commutative: of two readings at the same time, keep the greater.
 * Accumulators are stored in the checkpoint as bytes: plain values, no pointers.
 */
#include <ember.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

struct latest { int64_t time; double reading; }; /* the accumulator */

static int from_event(void *acc, int64_t time, const void *key, size_t klen, const void *val, size_t vlen,
                      void *arg)
{
    char num[64], *end;
    (void)key, (void)klen, (void)arg;
    if (vlen == 0 || vlen >= sizeof num) return -1;
    snprintf(num, sizeof num, "%.*s", (int)vlen, (const char *)val); /* values are not NUL-terminated */
    double x = strtod(num, &end);
    if (*end) return -1; /* not a number: Ember skips the event and counts it as bad */
    *(struct latest *)acc = (struct latest){time, x};
    return 0;
}

static void merge(void *acc, const void *other, void *arg)
{
    struct latest *a = acc;
    const struct latest *b = other;
    (void)arg;
    if (b->time > a->time || (b->time == a->time && b->reading > a->reading)) *a = *b;
}

static size_t format(const void *acc, char *out, size_t cap, void *arg)
{
    (void)arg;
    return (size_t)snprintf(out, cap, "%g", ((const struct latest *)acc)->reading);
}

int main(int argc, char **argv)
{
    em_ctx *ctx;
    if (em_init(&argc, &argv, &ctx) < 0) return 1;
    if (argc != 4) {
        if (em_is_leader(ctx)) fprintf(stderr, "usage: stream_latest LOG CHECKPOINT_DIR OUT.csv\n");
        return em_finalize(ctx, 2);
    }
    em_stream_combine latest = {.name = "latest", .acc_size = sizeof(struct latest), .from_event = from_event,
                                .merge = merge, .format = format};
    em_stream_opts o = {.log_dir = argv[1], .checkpoint_dir = argv[2], .out_path = argv[3],
                        .window_ms = 60000, .slide_ms = 60000, .lateness_ms = 5000, /* tumbling minutes */
                        .agg = EM_STREAM_USER, .combine = &latest, .until_end = 1, .flush = 1};
    em_stream_stats st;
    int rc = em_stream_run(ctx, &o, &st);
    if (em_is_leader(ctx)) {
        if (rc < 0) fprintf(stderr, "stream_latest: %s\n", em_last_error());
        else printf("%" PRIu64 " events, %" PRIu64 " late, %" PRIu64 " bad: %" PRIu64 " rows in %s\n", st.events,
                    st.late, st.bad, st.rows, argv[3]);
    }
    return em_finalize(ctx, rc < 0);
}
