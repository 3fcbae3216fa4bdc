/* shuffle.c — reduceByKey (built-in aggregators and a user combine), collect and save over a shuffle, checked
 * against a naive single-process computation done here without Ember. Exit status is the verdict. */
#include "ember.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NKEYS 997

static int to_mod(const em_rec *r, em_emitter *out, void *arg)
{
    int64_t i = em_i64_get(r->key);
    int64_t mod = *(int64_t *)arg;
    return em_emit_i64(out, i % mod, i);
}

/* keys as strings with a NUL byte inside, values as int64 */
static int to_str(const em_rec *r, em_emitter *out, void *arg)
{
    (void)arg;
    int64_t i = em_i64_get(r->key);
    char k[32];
    int n = snprintf(k, sizeof k, "k%lld", (long long)(i % 101));
    k[0] = 0; /* a NUL byte inside the key */
    return em_emit_str_i64(out, k, (size_t)n, 1);
}

/* user combine: keep the longer of two strings (ties: the byte-smaller) */
static int longer(const void *a, uint32_t al, const void *b, uint32_t bl, em_value *out, void *arg)
{
    (void)arg;
    int pick_a = al > bl || (al == bl && memcmp(a, b, al) <= 0);
    return pick_a ? em_value_set(out, a, al) : em_value_set(out, b, bl);
}

static int to_strval(const em_rec *r, em_emitter *out, void *arg)
{
    (void)arg;
    int64_t i = em_i64_get(r->key);
    char v[64];
    int n = snprintf(v, sizeof v, "%lld", (long long)(i * 7919 % 100003));
    uint8_t k[8];
    em_i64_put(k, i % 10);
    return em_emit(out, k, 8, v, (uint32_t)n);
}

/* i -> (i mod 1000 * (1 + its eighth of [0, SKEW_N)), i): later partitions of the range have more distinct keys,
 * so a map task's buckets outgrow those of the task before it on the same thread (the sizes it started from). */
#define SKEW_N 400000
static int to_skewed(const em_rec *r, em_emitter *out, void *arg)
{
    (void)arg;
    int64_t i = em_i64_get(r->key);
    return em_emit_i64(out, i % (1000 * (1 + i * 8 / SKEW_N)), i);
}

/* i -> (a 120-byte key naming i, i): map outputs of about 10 MB in 2 buckets, each fetched in several chunks */
static int to_wide_key(const em_rec *r, em_emitter *out, void *arg)
{
    (void)arg;
    int64_t i = em_i64_get(r->key);
    char k[121];
    memset(k, 'w', sizeof k);
    snprintf(k, 24, "%020lld", (long long)i);
    k[20] = '-';
    return em_emit_str_i64(out, k, 120, i);
}

int main(int argc, char **argv)
{
    em_ctx *ctx;
    if (em_init(&argc, &argv, &ctx) < 0) return 2;
    int bad = 0;
    const int64_t N = 200000;
    static int64_t mod = NKEYS;
    em_ds *pairs = em_map(em_range(ctx, 0, N, 7), to_mod, &mod);
    for (int agg = EM_AGG_COUNT; agg <= EM_AGG_MAX; agg++) {
        em_ds *red = em_reduce_by_key_agg(pairs, (em_agg)agg, 5);
        em_records out;
        if (em_collect(red, &out) < 0) { bad |= 1; continue; }
        int64_t want[NKEYS], seen[NKEYS] = {0};
        for (int k = 0; k < NKEYS; k++) want[k] = agg == EM_AGG_MIN ? INT64_MAX : agg == EM_AGG_MAX ? INT64_MIN : 0;
        for (int64_t i = 0; i < N; i++) {
            int64_t k = i % NKEYS;
            if (agg == EM_AGG_COUNT) want[k]++;
            else if (agg == EM_AGG_SUM) want[k] += i;
            else if (agg == EM_AGG_MIN) want[k] = i < want[k] ? i : want[k];
            else want[k] = i > want[k] ? i : want[k];
        }
        if (out.n != NKEYS) bad |= 2;
        for (size_t j = 0; j < out.n; j++) {
            int64_t k = em_i64_get(out.recs[j].key), v = em_i64_get(out.recs[j].val);
            if (k < 0 || k >= NKEYS || seen[k]++ || v != want[k]) bad |= 4;
        }
        em_records_free(&out);
    }
    /* count of the reduced dataset, and string keys with NUL bytes */
    int64_t n;
    if (em_count(em_reduce_by_key_agg(em_map(em_range(ctx, 0, N, 3), to_str, NULL), EM_AGG_SUM, 4), &n) < 0 || n != 101) bad |= 8;
    /* user combine function */
    em_records lo;
    if (em_collect(em_reduce_by_key(em_map(em_range(ctx, 0, 5000, 4), to_strval, NULL), longer, NULL, 3), &lo) < 0) bad |= 16;
    else {
        char best[10][64] = {{0}};
        for (int64_t i = 0; i < 5000; i++) {
            char v[64];
            snprintf(v, sizeof v, "%lld", (long long)(i * 7919 % 100003));
            char *b = best[i % 10];
            if (strlen(v) > strlen(b) || (strlen(v) == strlen(b) && strcmp(v, b) < 0)) strcpy(b, v);
        }
        if (lo.n != 10) bad |= 32;
        for (size_t j = 0; j < lo.n; j++) {
            int64_t k = em_i64_get(lo.recs[j].key);
            if (k < 0 || k > 9 || lo.recs[j].vlen != strlen(best[k]) || memcmp(lo.recs[j].val, best[k], lo.recs[j].vlen)) bad |= 64;
        }
        em_records_free(&lo);
    }
    /* a reduced dataset used by two actions: the second reuses the shuffle (same answer either way) */
    em_ds *twice = em_reduce_by_key_agg(pairs, EM_AGG_SUM, 6);
    int64_t c1 = 0, c2 = 0;
    if (em_count(twice, &c1) < 0 || em_count(twice, &c2) < 0 || c1 != NKEYS || c2 != NKEYS) bad |= 128;
    /* map outputs of hundreds of kB per task, growing from task to task (operators/shuffle.c's bucket slab) */
    em_records sk;
    if (em_collect(em_reduce_by_key_agg(em_map(em_range(ctx, 0, SKEW_N, 8), to_skewed, NULL), EM_AGG_SUM, 5), &sk) < 0) {
        bad |= 512;
    } else {
        static int64_t want[8000];
        static char seen[8000];
        memset(want, 0, sizeof want);
        memset(seen, 0, sizeof seen);
        for (int64_t i = 0; i < SKEW_N; i++) want[i % (1000 * (1 + i * 8 / SKEW_N))] += i;
        if (sk.n != 8000) bad |= 1024;
        for (size_t j = 0; j < sk.n; j++) {
            int64_t k = em_i64_get(sk.recs[j].key);
            if (k < 0 || k >= 8000 || seen[k]++ || em_i64_get(sk.recs[j].val) != want[k]) bad |= 1024;
        }
        em_records_free(&sk);
    }
    /* buckets bigger than a fetch chunk (4 MiB): fetched in pieces (with --wide: not in the fault-injection runs,
     * see shuffle.sh) */
    int wide_case = 0, small_limit = 0;
    for (int i = 1; i < argc; i++) {
        wide_case |= strcmp(argv[i], "--wide") == 0;
        small_limit |= strcmp(argv[i], "--small-limit") == 0;
    }
    const int64_t WN = 160000;
    em_ds *wide = em_reduce_by_key_agg(em_map(em_range(ctx, 0, WN, 2), to_wide_key, NULL), EM_AGG_SUM, 2);
    int64_t wn = 0, wsum = 0;
    if (wide_case && (em_count(wide, &wn) < 0 || wn != WN)) bad |= 2048;
    if (wide_case && (em_reduce_i64(wide, EM_AGG_SUM, &wsum) < 0 || wsum != WN * (WN - 1) / 2)) bad |= 4096;
    /* collect above the limit fails cleanly with EM_ETOOBIG */
    em_records big;
    if (small_limit) {
        if (em_collect(em_range(ctx, 0, 100000, 4), &big) != EM_ETOOBIG) bad |= 256;
    }
    if (bad) fprintf(stderr, "r%d: shuffle checks failed, mask %d\n", em_rank(ctx), bad);
    else if (em_is_leader(ctx)) printf("ok shuffle np=%d\n", em_size(ctx));
    return em_finalize(ctx, bad ? 1 : 0);
}
