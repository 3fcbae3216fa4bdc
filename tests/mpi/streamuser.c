/* streamuser.c — a streaming query with a user's aggregate (EM_STREAM_USER, em_stream_combine): per (window, key)
 * the number of events, the least and the greatest value, and the latest value (by event time; of two at the same
 * time, the greater). tests/mpi/streamuser.sh compares the CSV with a python3 model.
 *
 *     streamuser LOG CHECKPOINT OUT.csv flush|noflush MAX_BATCH_EVENTS [NAME [ACC_SIZE]]
 *
 * 10 s windows sliding by 5 s, 10 s lateness, until the end of the log. A value that is not a decimal int64 is
 * refused by from_event (counted as bad). NAME (default "latest") and ACC_SIZE (default the accumulator's size)
 * are what the combine declares: the script changes them to see a checkpoint refused and bad options reported. */
#include "ember.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct acc {
    int64_t n, lo, hi;
    int64_t time, value; /* the latest event */
} acc;

static int from_event(void *a, int64_t time, const void *key, size_t klen, const void *val, size_t vlen, void *arg)
{
    (void)key, (void)klen, (void)arg;
    char b[32], *end;
    if (vlen == 0 || vlen >= sizeof b) return -1;
    memcpy(b, val, vlen);
    b[vlen] = 0;
    errno = 0;
    long long v = strtoll(b, &end, 10);
    if (*end || errno) return -1;
    *(acc *)a = (acc){1, v, v, time, v};
    return 0;
}

static void merge(void *a, const void *b, void *arg)
{
    acc *x = a;
    const acc *y = b;
    (void)arg;
    x->n += y->n;
    if (y->lo < x->lo) x->lo = y->lo;
    if (y->hi > x->hi) x->hi = y->hi;
    if (y->time > x->time || (y->time == x->time && y->value > x->value)) x->time = y->time, x->value = y->value;
}

/* "N events, latest V at T": the comma makes Ember quote the field */
static size_t format(const void *a, char *out, size_t cap, void *arg)
{
    const acc *x = a;
    (void)arg;
    int n = snprintf(out, cap, "%" PRId64 " in [%" PRId64 "..%" PRId64 "], latest %" PRId64 " at %" PRId64, x->n,
                     x->lo, x->hi, x->value, x->time);
    return n < 0 ? 0 : (size_t)n;
}

int main(int argc, char **argv)
{
    em_ctx *ctx;
    if (em_init(&argc, &argv, &ctx) < 0) return 1;
    if (argc < 6) {
        if (em_is_leader(ctx))
            fprintf(stderr, "usage: streamuser LOG CHECKPOINT OUT.csv flush|noflush MAX_BATCH_EVENTS [NAME [ACC_SIZE]]\n");
        return em_finalize(ctx, 2);
    }
    em_stream_combine c = {.name = argc > 6 ? argv[6] : "latest", .acc_size = argc > 7 ? strtoull(argv[7], NULL, 10)
                                                                                       : sizeof(acc),
                           .from_event = from_event, .merge = merge, .format = format};
    if (c.acc_size < sizeof(acc) && c.acc_size != 0) c.acc_size = sizeof(acc); /* never write past the buffer */
    em_stream_opts o = {.log_dir = argv[1], .checkpoint_dir = argv[2], .out_path = argv[3], .window_ms = 10000,
                        .slide_ms = 5000, .lateness_ms = 10000, .agg = EM_STREAM_USER, .combine = &c, .until_end = 1,
                        .flush = strcmp(argv[4], "flush") == 0, .max_batch_events = strtoull(argv[5], NULL, 10)};
    em_stream_stats st = {0};
    int rc = em_stream_run(ctx, &o, &st);
    if (rc < 0) {
        if (em_is_leader(ctx)) fprintf(stderr, "streamuser: %s: %s\n", em_strerror(rc), em_last_error());
        return em_finalize(ctx, 1);
    }
    if (em_is_leader(ctx))
        printf("streamuser: %" PRIu64 " batches, %" PRIu64 " events, %" PRIu64 " late, %" PRIu64 " bad, %" PRIu64
               " rows\n", st.batches, st.events, st.late, st.bad, st.rows);
    return em_finalize(ctx, 0);
}
