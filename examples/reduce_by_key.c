/*
 * reduce_by_key.c — grouping by key with a built-in aggregator: how many 16-bit numbers have k bits set.
 *
 *     ember run -np 2 build/examples/reduce_by_key
 *
 * em_reduce_by_key_agg(ds, EM_AGG_COUNT, 0) is Spark's reduceByKey with a ready-made function: it gives one
 * record per distinct key. It is a shuffle (records move between ranks by key), but each task first combines
 * its own records per key ("map-side combine"), so only one record per key and task crosses the network.
 * EM_AGG_SUM, EM_AGG_MIN and EM_AGG_MAX work the same way on int64 values.
 */
#include <ember.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Map: n -> (number of bits set in n, 1). COUNT ignores the value; SUM would add the ones up the same way. */
static int popcount_key(const em_rec *in, em_emitter *out, void *arg)
{
    (void)arg;
    return em_emit_i64(out, __builtin_popcountll((unsigned long long)em_i64_get(in->key)), 1);
}

/* Keys written by em_i64_put compare with memcmp in numeric order, so sorting bytes sorts numbers. */
static int by_key(const void *pa, const void *pb)
{
    const em_rec *a = pa, *b = pb;
    return memcmp(a->key, b->key, 8);
}

int main(int argc, char **argv)
{
    em_ctx *ctx;
    em_records res;
    int rc;
    if (em_init(&argc, &argv, &ctx) < 0) return 1;

    em_ds *nums = em_range(ctx, 0, 1 << 16, 0);
    em_ds *bits = em_map(nums, popcount_key, NULL);
    em_ds *hist = em_reduce_by_key_agg(bits, EM_AGG_COUNT, 0); /* 0: default number of output partitions */

    /* em_collect brings every record to every rank, in partition order: sort before printing. */
    if ((rc = em_collect(hist, &res)) < 0) {
        if (em_is_leader(ctx)) fprintf(stderr, "reduce_by_key: %s: %s\n", em_strerror(rc), em_last_error());
        return em_finalize(ctx, 1);
    }
    if (em_is_leader(ctx)) {
        qsort(res.recs, res.n, sizeof *res.recs, by_key);
        for (size_t i = 0; i < res.n; i++)
            printf("%" PRId64 " bits set: %" PRId64 "\n", em_i64_get(res.recs[i].key), em_i64_get(res.recs[i].val));
    }
    em_records_free(&res);
    return em_finalize(ctx, 0);
}
