/* shuffle_bw.c — how fast Ember's shuffle moves data between ranks (bench/run.sh, "shuffle" row).
 *
 * A dataset of R records of 8-byte keys and 248-byte values (256 bytes each, --mb MiB in all) is cached, counted
 * once (so the map side's input is in memory), then repartitioned (no combine: every byte crosses the shuffle) and
 * counted. The repartition's time minus the cached count's time is the shuffle; the bytes it moved between ranks
 * are those that changed rank: with P ranks, (P-1)/P of the data. Prints `shuffle: X GB/s (...)`. */
#include "ember.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define VAL 248

static int widen(const em_rec *in, em_emitter *out, void *arg)
{
    (void)arg;
    uint8_t v[VAL];
    memset(v, (int)(em_i64_get(in->key) & 0xff), sizeof v);
    return em_emit(out, in->key, 8, v, VAL);
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    em_ctx *ctx;
    if (em_init(&argc, &argv, &ctx) < 0) return 1;
    long mb = 512;
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--mb") == 0) mb = atol(argv[i + 1]);
    int64_t n = (int64_t)mb * 1024 * 1024 / (8 + VAL);
    int parts = 4 * em_size(ctx);
    em_ds *data = em_cache(em_map(em_range(ctx, 0, n, parts), widen, NULL));
    int64_t c1 = 0, c2 = 0, c3 = 0;
    int rc = em_count(data, &c1); /* computes and caches */
    double t0 = now();
    if (rc == 0) rc = em_count(data, &c2); /* reads the cache: the cost the shuffle run also pays */
    double t1 = now();
    if (rc == 0) rc = em_count(em_repartition(data, parts), &c3);
    double t2 = now();
    if (rc < 0) {
        if (em_is_leader(ctx)) fprintf(stderr, "shuffle_bw: %s\n", em_last_error());
        return em_finalize(ctx, 1);
    }
    if (em_is_leader(ctx)) {
        double bytes = (double)n * (8 + VAL + 8) * (em_size(ctx) - 1) / em_size(ctx); /* + 8-byte record header */
        double t = (t2 - t1) - (t1 - t0);
        if (t <= 0) t = t2 - t1;
        printf("records %lld / %lld / %lld\n", (long long)c1, (long long)c2, (long long)c3);
        printf("shuffle: %.3f GB/s (%.0f MB crossed ranks in %.3f s; repartition %.3f s, cached scan %.3f s)\n",
               bytes / t / 1e9, bytes / 1e6, t, t2 - t1, t1 - t0);
    }
    return em_finalize(ctx, c1 == n && c2 == n && c3 == n ? 0 : 1);
}
