/* pipeline.c — a job with join + groupByKey + sortByKey (+ distinct), used by tests/mpi/matrix.sh to check that
 * every recovery path gives the output of the fault-free run, and checked itself against python3 there.
 *
 * customers: id in [0, N), country "c<id % 7>"; orders: id in [0, M), customer (id * 7919) % (N + 5) (so some
 * orders have no customer), amount id % 1000. Output: per country (sorted by name): orders, sum, max of amounts
 * over the inner join; then the number of distinct amounts of joined orders. */
#include "ember.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int64_t N = 5000, M = 60000;

static int customer(const em_rec *in, em_emitter *out, void *arg)
{
    (void)arg;
    int64_t id = em_i64_get(in->key);
    char c[16];
    int n = snprintf(c, sizeof c, "c%d", (int)(id % 7));
    uint8_t k[8];
    em_i64_put(k, id);
    return em_emit(out, k, 8, c, (uint32_t)n);
}

static int order(const em_rec *in, em_emitter *out, void *arg)
{
    (void)arg;
    int64_t id = em_i64_get(in->key);
    char a[16];
    int n = snprintf(a, sizeof a, "%d", (int)(id % 1000));
    uint8_t k[8];
    em_i64_put(k, (id * 7919) % (N + 5));
    return em_emit(out, k, 8, a, (uint32_t)n);
}

/* (customer, (amount, country)) -> (country, amount as int64) */
static int by_country(const em_rec *in, em_emitter *out, void *arg)
{
    (void)arg;
    em_field amount, country;
    if (em_tup_get(in->val, in->vlen, 0, &amount) < 0 || em_tup_get(in->val, in->vlen, 1, &country) < 0) return -1;
    char num[32];
    size_t n = amount.len < sizeof num - 1 ? amount.len : sizeof num - 1;
    memcpy(num, amount.str, n);
    num[n] = 0;
    int64_t a = strtoll(num, NULL, 10);
    char c[32];
    memcpy(c, country.str, country.len < sizeof c ? country.len : sizeof c);
    return em_emit_str_i64(out, c, country.len < sizeof c ? country.len : sizeof c, a);
}

static int stats(const void *key, uint32_t klen, em_values *vals, em_emitter *out, void *arg)
{
    (void)arg;
    const void *v;
    uint32_t vl;
    int64_t n = 0, sum = 0, max = 0;
    int rc;
    while ((rc = em_values_next(vals, &v, &vl)) > 0) {
        int64_t a = em_i64_get(v);
        n++;
        sum += a;
        if (a > max) max = a;
    }
    if (rc < 0) return rc;
    char line[96];
    int len = snprintf(line, sizeof line, "%lld %lld %lld", (long long)n, (long long)sum, (long long)max);
    return em_emit(out, key, klen, line, (uint32_t)len);
}

static int amount_key(const em_rec *in, em_emitter *out, void *arg)
{
    (void)arg;
    return em_emit(out, in->val, in->vlen, NULL, 0);
}

int main(int argc, char **argv)
{
    em_ctx *ctx;
    if (em_init(&argc, &argv, &ctx) < 0) return 1;
    if (argc > 2) {
        N = atoll(argv[1]);
        M = atoll(argv[2]);
    }
    em_ds *cust = em_map(em_range(ctx, 0, N, 0), customer, NULL);
    em_ds *ord = em_map(em_range(ctx, 0, M, 0), order, NULL);
    em_ds *joined = em_map(em_join(ord, cust, EM_JOIN_INNER, 0), by_country, NULL);
    em_ds *groups = em_sort_by_key(em_group_by_key(joined, stats, NULL, 0), 1, 3);
    em_records r;
    int64_t distinct = 0;
    int rc = em_collect(groups, &r);
    if (rc == 0) rc = em_count(em_distinct(em_map(joined, amount_key, NULL), 0), &distinct);
    if (rc < 0) {
        if (em_is_leader(ctx)) fprintf(stderr, "pipeline: %s: %s\n", em_strerror(rc), em_last_error());
        return em_finalize(ctx, 1);
    }
    if (em_is_leader(ctx)) {
        for (size_t i = 0; i < r.n; i++)
            printf("%.*s %.*s\n", (int)r.recs[i].klen, (const char *)r.recs[i].key, (int)r.recs[i].vlen,
                   (const char *)r.recs[i].val);
        printf("distinct amounts %lld\n", (long long)distinct);
    }
    em_records_free(&r);
    return em_finalize(ctx, 0);
}
