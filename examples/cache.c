/*
 * cache.c — compute a dataset once, use it in several actions: the primes below 200000.
 *
 *     ember run -np 2 build/examples/cache
 *
 * Datasets are lazy: each action runs the whole lineage again, from em_range through every map and filter.
 * Finding primes by trial division is the expensive step here, and three actions need the primes. em_cache
 * marks the dataset so that the first action keeps its partitions on the ranks that computed them and the
 * later actions read them from there (if a rank dies, its partitions are recomputed from lineage).
 */
#include <ember.h>

#include <inttypes.h>
#include <stdio.h>

/* Filter: trial division up to the square root — slow on purpose, so computing it once matters. */
static int is_prime(const em_rec *in, void *arg)
{
    int64_t n = em_i64_get(in->key);
    (void)arg;
    if (n < 2) return 0;
    for (int64_t d = 2; d * d <= n; d++)
        if (n % d == 0) return 0;
    return 1;
}

/* Map: n -> (n, n), because em_reduce_i64 aggregates the int64 values of the records. */
static int with_value(const em_rec *in, em_emitter *out, void *arg)
{
    (void)arg;
    return em_emit_i64(out, em_i64_get(in->key), em_i64_get(in->key));
}

int main(int argc, char **argv)
{
    em_ctx *ctx;
    int64_t count, sum, largest;
    int rc;
    if (em_init(&argc, &argv, &ctx) < 0) return 1;

    em_ds *primes = em_map(em_filter(em_range(ctx, 0, 200000, 0), is_prime, NULL), with_value, NULL);
    em_cache(primes); /* nothing runs yet: the first action below computes and keeps the partitions */

    if ((rc = em_count(primes, &count)) < 0 || (rc = em_reduce_i64(primes, EM_AGG_SUM, &sum)) < 0 ||
        (rc = em_reduce_i64(primes, EM_AGG_MAX, &largest)) < 0) {
        if (em_is_leader(ctx)) fprintf(stderr, "cache: %s: %s\n", em_strerror(rc), em_last_error());
        return em_finalize(ctx, 1);
    }
    if (em_is_leader(ctx)) {
        printf("primes below 200000: %" PRId64 "\n", count);
        printf("their sum: %" PRId64 "\n", sum);
        printf("the largest: %" PRId64 "\n", largest);
    }
    return em_finalize(ctx, 0);
}
