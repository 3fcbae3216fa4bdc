/* Tests of jobs/common/etlindex.c, the ETL job's broadcast-join index: dense int64 keys (byte and int32 entries),
 * sparse and string keys (hash mode), duplicate keys, absent keys; and of the fast paths of etl_parse_int /
 * etl_parse_num against strtoll / strtod. */
#include <criterion/criterion.h>

#include "jobs/common/etlindex.h"
#include "jobs/common/etlspec.h"

#include <ember.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Key tuples of int64 values (em_tup_i64) in one buffer. */
typedef struct keys {
    em_tup t[64];
    const uint8_t *p[64];
    uint32_t l[64];
} keys;

static void int_keys(keys *k, const int64_t *v, int n)
{
    for (int i = 0; i < n; i++) {
        k->t[i] = (em_tup){0};
        em_tup_i64(&k->t[i], v[i]);
        k->p[i] = k->t[i].p;
        k->l[i] = (uint32_t)k->t[i].len;
    }
}

static void keys_free(keys *k, int n)
{
    for (int i = 0; i < n; i++) em_tup_free(&k->t[i]);
}

Test(etlindex, dense_keys_unique_small_targets)
{
    int64_t v[] = {5, 6, 7, 9};
    int32_t tg[] = {0, 3, 3, 254};
    keys k;
    etl_index ix;
    int32_t one;
    const int32_t *t;
    int_keys(&k, v, 4);
    cr_assert_eq(etl_index_build(&ix, k.p, k.l, tg, 4), 0);
    cr_assert(ix.dense && ix.ent8, "byte entries expected");
    cr_assert_eq(etl_index_find_i64(&ix, 6, &one, &t), 1);
    cr_assert_eq(t[0], 3);
    cr_assert_eq(etl_index_find_i64(&ix, 9, &one, &t), 1);
    cr_assert_eq(t[0], 254);
    cr_assert_eq(etl_index_find_i64(&ix, 8, &one, &t), 0);
    cr_assert_eq(etl_index_find_i64(&ix, 4, &one, &t), 0);
    cr_assert_eq(etl_index_find_i64(&ix, INT64_MIN, &one, &t), 0);
    cr_assert_eq(etl_index_find(&ix, k.p[0], k.l[0], &one, &t), 1);
    cr_assert_eq(t[0], 0);
    cr_assert_eq(etl_index_find(&ix, (const uint8_t *)"\x04x\0\0", 4, &one, &t), 0); /* a string key */
    etl_index_release(&ix);
    keys_free(&k, 4);
}

Test(etlindex, dense_keys_with_duplicates_and_big_targets)
{
    int64_t v[] = {-3, 1, -3, 2, -3};
    int32_t tg[] = {10, 1000, 11, 7, 12};
    keys k;
    etl_index ix;
    int32_t one;
    const int32_t *t;
    int_keys(&k, v, 5);
    cr_assert_eq(etl_index_build(&ix, k.p, k.l, tg, 5), 0);
    cr_assert(ix.dense && !ix.ent8);
    cr_assert_eq(etl_index_find_i64(&ix, -3, &one, &t), 3);
    cr_assert(t[0] == 10 && t[1] == 11 && t[2] == 12, "build order kept");
    cr_assert_eq(etl_index_find_i64(&ix, 1, &one, &t), 1);
    cr_assert_eq(t[0], 1000);
    cr_assert_eq(etl_index_find_i64(&ix, 0, &one, &t), 0);
    etl_index_release(&ix);
    keys_free(&k, 5);
}

Test(etlindex, sparse_and_string_keys_hash)
{
    int64_t v[] = {INT64_MIN, INT64_MAX, 0, 1000000000000LL, INT64_MAX};
    int32_t tg[] = {1, 2, 3, 4, 5, 6, 7};
    keys k;
    etl_index ix;
    int32_t one;
    const int32_t *t;
    int_keys(&k, v, 5);
    em_tup s = {0}, s2 = {0};
    em_tup_str(&s, "Korea, Republic of", 18);
    em_tup_str(&s2, "a\0b", 3); /* NUL inside: escaped bytes */
    k.p[5] = s.p, k.l[5] = (uint32_t)s.len;
    k.p[6] = s2.p, k.l[6] = (uint32_t)s2.len;
    cr_assert_eq(etl_index_build(&ix, k.p, k.l, tg, 7), 0);
    cr_assert(!ix.dense);
    cr_assert_eq(etl_index_find_i64(&ix, INT64_MIN, &one, &t), 1);
    cr_assert_eq(t[0], 1);
    cr_assert_eq(etl_index_find_i64(&ix, INT64_MAX, &one, &t), 2);
    cr_assert(t[0] == 2 && t[1] == 5);
    cr_assert_eq(etl_index_find_i64(&ix, 1000000000000LL, &one, &t), 1);
    cr_assert_eq(t[0], 4);
    cr_assert_eq(etl_index_find_i64(&ix, 1, &one, &t), 0);
    cr_assert_eq(etl_index_find(&ix, s.p, (uint32_t)s.len, &one, &t), 1);
    cr_assert_eq(t[0], 6);
    cr_assert_eq(etl_index_find(&ix, s2.p, (uint32_t)s2.len, &one, &t), 1);
    cr_assert_eq(t[0], 7);
    cr_assert_eq(etl_index_find(&ix, s.p, (uint32_t)s.len - 1, &one, &t), 0);
    etl_index_release(&ix);
    keys_free(&k, 5);
    em_tup_free(&s), em_tup_free(&s2);
}

Test(etlindex, empty_index_finds_nothing)
{
    etl_index ix;
    int32_t one;
    const int32_t *t;
    cr_assert_eq(etl_index_build(&ix, NULL, NULL, NULL, 0), 0);
    cr_assert_eq(etl_index_find_i64(&ix, 1, &one, &t), 0);
    cr_assert_eq(etl_index_find(&ix, (const uint8_t *)"\x01", 1, &one, &t), 0);
    etl_index_release(&ix);
}

Test(etlindex, many_keys_hash_grows)
{
    enum { N = 50000 };
    const uint8_t **p = malloc(N * sizeof *p);
    uint32_t *l = malloc(N * sizeof *l);
    int32_t *tg = malloc(N * sizeof *tg);
    em_tup *t = calloc(N, sizeof *t);
    for (int i = 0; i < N; i++) {
        char b[32];
        int n = snprintf(b, sizeof b, "key-%d", i * 7);
        em_tup_str(&t[i], b, (size_t)n);
        p[i] = t[i].p, l[i] = (uint32_t)t[i].len, tg[i] = i;
    }
    etl_index ix;
    cr_assert_eq(etl_index_build(&ix, p, l, tg, N), 0);
    for (int i = 0; i < N; i++) {
        int32_t one;
        const int32_t *r;
        cr_assert_eq(etl_index_find(&ix, p[i], l[i], &one, &r), 1);
        cr_assert_eq(r[0], i);
    }
    etl_index_release(&ix);
    for (int i = 0; i < N; i++) em_tup_free(&t[i]);
    free(t), free(p), free(l), free(tg);
}

/* The hand-written integer and decimal parsers give what strtoll / strtod give, on generated decimals. */
Test(etlindex, number_fast_paths_match_the_c_library)
{
    uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        char b[64];
        int n;
        switch (i % 4) {
        case 0: n = snprintf(b, sizeof b, "%lld.%02u", (long long)(x % 100000000) - 50000000, (unsigned)(x >> 40) % 100); break;
        case 1: n = snprintf(b, sizeof b, "%llu.%llu", (unsigned long long)(x >> 44), (unsigned long long)(x % 1000000000000ULL)); break;
        case 2: n = snprintf(b, sizeof b, "-0.%06llu", (unsigned long long)(x % 1000000)); break;
        default: n = snprintf(b, sizeof b, "%lld", (long long)x); break;
        }
        double d = 0, want = strtod(b, NULL);
        cr_assert_eq(etl_parse_num(b, (size_t)n, &d), 1, "%s", b);
        cr_assert(memcmp(&d, &want, sizeof d) == 0, "%s: %.17g, strtod %.17g", b, d, want);
        int64_t v = 0;
        errno = 0;
        long long w = strtoll(b, NULL, 10);
        int whole = strchr(b, '.') == NULL && errno == 0;
        cr_assert_eq(etl_parse_int(b, (size_t)n, &v), whole, "%s", b);
        if (whole) cr_assert_eq(v, w, "%s", b);
    }
    double d;
    cr_assert_eq(etl_parse_num("5.", 2, &d), 1);
    cr_assert_eq(d, 5.0);
    cr_assert_eq(etl_parse_num(".5", 2, &d), 1);
    cr_assert_eq(d, 0.5);
    cr_assert_eq(etl_parse_num(".", 1, &d), 0);
    cr_assert_eq(etl_parse_num("-", 1, &d), 0);
    cr_assert_eq(etl_parse_num("1.2.3", 5, &d), 0);
    cr_assert_eq(etl_parse_num("-0.00", 5, &d), 1);
    cr_assert(d == 0 && __builtin_signbit(d), "-0.00 is -0.0 as strtod says");
    int64_t v;
    cr_assert_eq(etl_parse_int("-9223372036854775808", 20, &v), 1);
    cr_assert_eq(v, INT64_MIN);
    cr_assert_eq(etl_parse_int("-9223372036854775809", 20, &v), 0);
    cr_assert_eq(etl_parse_int("18446744073709551616", 20, &v), 0);
}
