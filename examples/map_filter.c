/*
 * map_filter.c — the smallest Ember dataflow: a range of numbers, a filter, a map, and two actions.
 *
 *     ember run -np 2 build/examples/map_filter
 *
 * Every rank runs main(). Building datasets (em_range, em_filter, em_map) is LOCAL and lazy: it only records
 * lineage. Actions (em_count, em_reduce_i64) are COLLECTIVE: all ranks call them in the same order, the tasks
 * run on every rank, and every rank gets the same answer. Only the leader prints, so the output appears once.
 */
#include <ember.h>

#include <inttypes.h>
#include <stdio.h>

/* Filter: keep multiples of 3. A record of em_range has the number as its key (8 bytes, see em_i64_get). */
static int multiple_of_3(const em_rec *in, void *arg)
{
    (void)arg;
    return em_i64_get(in->key) % 3 == 0; /* 1 keeps, 0 drops */
}

/* Map: n -> (n, n*n). A map may emit any number of records; this one emits exactly one, copied by em_emit. */
static int square(const em_rec *in, em_emitter *out, void *arg)
{
    int64_t n = em_i64_get(in->key);
    (void)arg;
    return em_emit_i64(out, n, n * n);
}

int main(int argc, char **argv)
{
    em_ctx *ctx;
    int64_t count, sum;
    int rc;
    if (em_init(&argc, &argv, &ctx) < 0) return 1;

    em_ds *nums = em_range(ctx, 0, 1000, 0);            /* 0..999 in the default number of partitions */
    em_ds *threes = em_filter(nums, multiple_of_3, NULL); /* pipelined: filter and map run in one task */
    em_ds *squares = em_map(threes, square, NULL);

    /* Two actions on the same lineage: each one runs its tasks. */
    if ((rc = em_count(threes, &count)) < 0 || (rc = em_reduce_i64(squares, EM_AGG_SUM, &sum)) < 0) {
        if (em_is_leader(ctx)) fprintf(stderr, "map_filter: %s: %s\n", em_strerror(rc), em_last_error());
        return em_finalize(ctx, 1);
    }
    if (em_is_leader(ctx)) {
        printf("multiples of 3 below 1000: %" PRId64 "\n", count);
        printf("sum of their squares: %" PRId64 "\n", sum);
    }
    return em_finalize(ctx, 0);
}
