/* streamxf.c — a streaming query with a transform (em_stream_opts.transform), the path where a batch's events
 * become records, may change keys (so a key's events come from several log partitions) and are windowed after an
 * em_filter and an em_map. tests/mpi/streamxf.sh compares the CSV with a python3 model.
 *
 *     streamxf LOG CHECKPOINT OUT.csv flush|noflush [MAX_BATCH_EVENTS]
 *
 * The transform drops events whose value is "drop" and maps key "kN" to "gM" with M = N mod 5 (any other key is
 * kept); the query counts per 10 s tumbling window with 1 s lateness, until the end of the log, with or without
 * the flush of every open window at the end. */
#include "ember.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int keep(const em_rec *in, void *arg)
{
    (void)arg;
    em_field v;
    if (em_tup_get(in->val, in->vlen, 1, &v) < 0 || v.type != EM_F_STR) return -1;
    return !(v.len == 4 && memcmp(v.str, "drop", 4) == 0);
}

static int regroup(const em_rec *in, em_emitter *out, void *arg)
{
    (void)arg;
    const char *k = in->key;
    if (in->klen < 2 || k[0] != 'k') return em_emit(out, in->key, in->klen, in->val, in->vlen);
    long n = 0;
    for (uint32_t i = 1; i < in->klen && i < 12; i++) n = n * 10 + (k[i] - '0');
    char g[8];
    int gl = snprintf(g, sizeof g, "g%ld", n % 5);
    return em_emit(out, g, (uint32_t)gl, in->val, in->vlen);
}

static em_ds *transform(em_ds *events, void *arg)
{
    (void)arg;
    return em_map(em_filter(events, keep, NULL), regroup, NULL);
}

int main(int argc, char **argv)
{
    em_ctx *ctx;
    if (em_init(&argc, &argv, &ctx) < 0) return 1;
    if (argc < 5) {
        if (em_is_leader(ctx)) fprintf(stderr, "usage: streamxf LOG CHECKPOINT OUT.csv flush|noflush [MAX_BATCH_EVENTS]\n");
        return em_finalize(ctx, 2);
    }
    em_stream_opts o = {.log_dir = argv[1], .checkpoint_dir = argv[2], .out_path = argv[3], .window_ms = 10000,
                        .slide_ms = 10000, .lateness_ms = 1000, .agg = EM_STREAM_COUNT, .until_end = 1,
                        .flush = strcmp(argv[4], "flush") == 0, .transform = transform,
                        .max_batch_events = argc > 5 ? strtoull(argv[5], NULL, 10) : 0};
    em_stream_stats st = {0};
    int rc = em_stream_run(ctx, &o, &st);
    if (rc < 0) {
        if (em_is_leader(ctx)) fprintf(stderr, "streamxf: %s: %s\n", em_strerror(rc), em_last_error());
        return em_finalize(ctx, 1);
    }
    if (em_is_leader(ctx))
        printf("streamxf: %" PRIu64 " batches, %" PRIu64 " events, %" PRIu64 " late, %" PRIu64 " rows\n", st.batches,
               st.events, st.late, st.rows);
    return em_finalize(ctx, 0);
}
