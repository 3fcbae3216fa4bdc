/*
 * custom_combine.c — reduceByKey with your own combine function: the mean of the numbers in each class mod 7.
 *
 *     ember run -np 2 build/examples/custom_combine
 *
 * A mean cannot be combined from two means, but a (sum, count) pair can: (s1, c1) + (s2, c2) = (s1+s2, c1+c2).
 * So each number n becomes (n % 7, (n, 1)), em_reduce_by_key adds the pairs up, and the mean is sum / count.
 * The combine function must be associative and commutative: Ember applies it in any order, first inside each
 * task (map-side combine), then across tasks after the shuffle.
 */
#include <ember.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Map: n -> (n % 7, [sum = n, count = 1]), the pair as two order-preserving int64s (16 bytes). */
static int to_pair(const em_rec *in, em_emitter *out, void *arg)
{
    unsigned char key[8], pair[16];
    int64_t n = em_i64_get(in->key);
    (void)arg;
    em_i64_put(key, n % 7);
    em_i64_put(pair, n);
    em_i64_put(pair + 8, 1);
    return em_emit(out, key, 8, pair, 16);
}

/* Combine: a and b are borrowed; the result goes through em_value_set (copied). A negative return fails the task. */
static int add_pairs(const void *a, uint32_t alen, const void *b, uint32_t blen, em_value *out, void *arg)
{
    const unsigned char *x = a, *y = b;
    unsigned char sum[16];
    (void)arg;
    if (alen != 16 || blen != 16) return -1; /* not a pair: fail the task rather than read past the end */
    em_i64_put(sum, em_i64_get(x) + em_i64_get(y));
    em_i64_put(sum + 8, em_i64_get(x + 8) + em_i64_get(y + 8));
    return em_value_set(out, sum, 16);
}

static int by_key(const void *a, const void *b) /* em_i64_put keys: memcmp gives numeric order */
{
    return memcmp(((const em_rec *)a)->key, ((const em_rec *)b)->key, 8);
}

int main(int argc, char **argv)
{
    em_ctx *ctx;
    em_records res;
    int rc;
    if (em_init(&argc, &argv, &ctx) < 0) return 1;

    em_ds *pairs = em_map(em_range(ctx, 1, 100001, 0), to_pair, NULL);
    em_ds *totals = em_reduce_by_key(pairs, add_pairs, NULL, 0);
    if ((rc = em_collect(totals, &res)) < 0) {
        if (em_is_leader(ctx)) fprintf(stderr, "custom_combine: %s: %s\n", em_strerror(rc), em_last_error());
        return em_finalize(ctx, 1);
    }
    if (em_is_leader(ctx)) {
        qsort(res.recs, res.n, sizeof *res.recs, by_key); /* collect returns partition order */
        for (size_t i = 0; i < res.n; i++) {
            const unsigned char *v = res.recs[i].val; /* the (sum, count) pair of this key */
            printf("n %% 7 == %" PRId64 ": %" PRId64 " numbers, mean %.3f\n", em_i64_get(res.recs[i].key),
                   em_i64_get(v + 8), (double)em_i64_get(v) / (double)em_i64_get(v + 8));
        }
    }
    em_records_free(&res);
    return em_finalize(ctx, 0);
}
