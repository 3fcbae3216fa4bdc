/*
 * Tests of the tuple helpers (em_tup_*) and the order-preserving int64/double encodings of include/ember.h:
 * random tuples round-trip field by field, and memcmp of two encoded tuples orders them like a naive
 * field-by-field comparator written here (NULL first, numbers numerically, strings bytewise, a prefix first).
 */
#include <criterion/criterion.h>

#include "ember.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state;
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
static uint64_t below(uint64_t n) { return rnd() % n; }

/* A field as the test holds it. */
typedef struct fld {
    em_ftype type;
    int64_t i;
    double d;
    uint8_t s[24];
    size_t n;
} fld;
#define MAXF 8

static const uint8_t alpha[] = {0, 1, 'a', 'b', 0x7f, 0x80, 0xfe, 0xff};

static int64_t some_i64(int small)
{
    static const int64_t special[] = {INT64_MIN, INT64_MIN + 1, -1, 0, 1, INT64_MAX - 1, INT64_MAX};
    if (small) return (int64_t)below(5) - 2;
    return below(3) ? (int64_t)rnd() : special[below(sizeof special / sizeof *special)];
}
static double some_f64(int small)
{
    static const double special[] = {-INFINITY, -DBL_MAX, -1.5, -DBL_MIN, -4.9e-324, 0.0, 4.9e-324, DBL_MIN, 0.5,
                                     1.0, 1e300, DBL_MAX, INFINITY};
    if (small) return special[below(sizeof special / sizeof *special)];
    if (below(3)) return ((double)(int64_t)rnd()) / (double)(1 + below(1000000)) * (below(2) ? 1e-200 : 1);
    return special[below(sizeof special / sizeof *special)];
}
static void some_str(fld *f, int small)
{
    f->n = below(small ? 4 : 24);
    for (size_t i = 0; i < f->n; i++) f->s[i] = small ? alpha[below(4)] : alpha[below(sizeof alpha)];
}

static void encode(em_tup *t, const fld *f, int nf)
{
    for (int i = 0; i < nf; i++) switch (f[i].type) {
        case EM_F_NULL: em_tup_null(t); break;
        case EM_F_I64: em_tup_i64(t, f[i].i); break;
        case EM_F_F64: em_tup_f64(t, f[i].d); break;
        case EM_F_STR: em_tup_str(t, f[i].s, f[i].n); break;
        }
}

static void random_fields(fld *f, int nf)
{
    for (int i = 0; i < nf; i++) {
        memset(&f[i], 0, sizeof f[i]);
        f[i].type = (em_ftype)below(4);
        if (f[i].type == EM_F_I64) f[i].i = some_i64(0);
        if (f[i].type == EM_F_F64) f[i].d = some_f64(0);
        if (f[i].type == EM_F_STR) some_str(&f[i], 0);
    }
}

Test(tuple, round_trip_of_random_tuples)
{
    em_tup t = {0};
    rng_state = 1;
    for (int iter = 0; iter < 5000; iter++) {
        fld f[MAXF];
        int nf = (int)below(MAXF + 1);
        random_fields(f, nf);
        em_tup_clear(&t); /* reuses the memory of the previous tuple */
        encode(&t, f, nf);
        cr_assert_eq(em_tup_count(t.p, t.len), nf, "iteration %d: %d fields counted, want %d", iter,
                     em_tup_count(t.p, t.len), nf);
        for (int i = 0; i < nf; i++) {
            em_field g;
            cr_assert_eq(em_tup_get(t.p, t.len, i, &g), 0, "iteration %d field %d", iter, i);
            cr_assert_eq(g.type, f[i].type, "iteration %d field %d: type %d, want %d", iter, i, g.type, f[i].type);
            if (g.type == EM_F_I64) cr_assert_eq(g.i64, f[i].i);
            if (g.type == EM_F_F64) cr_assert(!memcmp(&g.f64, &f[i].d, sizeof g.f64), "%.17g != %.17g", g.f64, f[i].d);
            if (g.type == EM_F_STR) {
                cr_assert_eq(g.len, f[i].n, "iteration %d field %d: string of %zu bytes, want %zu", iter, i, g.len, f[i].n);
                cr_assert(!f[i].n || !memcmp(g.str, f[i].s, f[i].n), "iteration %d field %d: string differs", iter, i);
            }
        }
        em_field g;
        cr_assert_eq(em_tup_get(t.p, t.len, nf, &g), EM_EINVAL, "field past the end");
        cr_assert_eq(em_tup_get(t.p, t.len, -1, &g), EM_EINVAL, "negative field index");
    }
    em_tup_free(&t);
    cr_assert_null(t.p);
    cr_assert_eq(t.len, 0);
}

Test(tuple, strings_with_nul_bytes_are_copied_out)
{
    em_tup t = {0};
    em_field a, b;
    em_tup_str(&t, "a\0b", 3);
    em_tup_str(&t, "\0\0", 2);
    em_tup_str(&t, "", 0);
    cr_assert_eq(em_tup_count(t.p, t.len), 3);
    cr_assert_eq(em_tup_get(t.p, t.len, 0, &a), 0);
    cr_assert(a.type == EM_F_STR && a.len == 3 && !memcmp(a.str, "a\0b", 3));
    cr_assert_eq(em_tup_get(t.p, t.len, 1, &b), 0);
    cr_assert(b.type == EM_F_STR && b.len == 2 && !memcmp(b.str, "\0\0", 2));
    cr_assert_eq(em_tup_get(t.p, t.len, 2, &b), 0);
    cr_assert(b.type == EM_F_STR && b.len == 0);
    em_tup_free(&t);
    em_tup_free(&t); /* freeing twice is harmless */
}

Test(tuple, malformed_bytes_are_parse_errors)
{
    em_tup t = {0};
    em_field f;
    uint8_t junk[] = {0x09, 1, 2, 3};
    cr_assert_eq(em_tup_count(junk, sizeof junk), EM_EPARSE);
    cr_assert_eq(em_tup_get(junk, sizeof junk, 0, &f), EM_EPARSE);
    em_tup_i64(&t, 42);
    cr_assert_eq(em_tup_count(t.p, t.len - 1), EM_EPARSE, "a truncated int64");
    em_tup_clear(&t);
    em_tup_str(&t, "abc", 3);
    cr_assert_eq(em_tup_count(t.p, t.len - 1), EM_EPARSE, "a string without its end");
    cr_assert_eq(em_tup_count(t.p, 0), 0, "the empty tuple");
    em_tup_free(&t);
}

/* ---- order ---- */

static int sgn(int64_t x) { return (x > 0) - (x < 0); }

/* The naive comparator: field by field; NULL before any value; numbers numerically, strings bytewise with a
 * proper prefix first; a tuple that is a prefix of the other first. Fields at one position have one type or NULL. */
static int naive_cmp(const fld *a, int na, const fld *b, int nb)
{
    for (int i = 0; i < na && i < nb; i++) {
        if (a[i].type == EM_F_NULL || b[i].type == EM_F_NULL) {
            int c = (b[i].type == EM_F_NULL) - (a[i].type == EM_F_NULL);
            if (c) return c;
            continue;
        }
        cr_assert_eq(a[i].type, b[i].type, "test bug: mixed types at one position");
        int c = 0;
        if (a[i].type == EM_F_I64) c = (a[i].i > b[i].i) - (a[i].i < b[i].i);
        if (a[i].type == EM_F_F64) c = (a[i].d > b[i].d) - (a[i].d < b[i].d);
        if (a[i].type == EM_F_STR) {
            size_t m = a[i].n < b[i].n ? a[i].n : b[i].n;
            c = m ? memcmp(a[i].s, b[i].s, m) : 0;
            c = c ? sgn(c) : (a[i].n > b[i].n) - (a[i].n < b[i].n);
        }
        if (c) return c;
    }
    return (na > nb) - (na < nb);
}

static int bytes_cmp(const em_tup *a, const em_tup *b)
{
    size_t m = a->len < b->len ? a->len : b->len;
    int c = m ? memcmp(a->p, b->p, m) : 0;
    return c ? sgn(c) : (a->len > b->len) - (a->len < b->len);
}

/* Values of a position's type from small domains, so equal fields, prefixes and ties are common. */
static void schema_fields(const em_ftype *schema, fld *f, int nf)
{
    for (int i = 0; i < nf; i++) {
        memset(&f[i], 0, sizeof f[i]);
        f[i].type = below(5) ? schema[i] : EM_F_NULL;
        if (f[i].type == EM_F_I64) f[i].i = below(2) ? some_i64(1) : some_i64(0);
        if (f[i].type == EM_F_F64) f[i].d = some_f64(below(2));
        if (f[i].type == EM_F_STR) some_str(&f[i], below(4) != 0);
    }
}

Test(tuple, memcmp_order_is_field_by_field_order)
{
    em_tup ta = {0}, tb = {0};
    rng_state = 7;
    for (int iter = 0; iter < 200000; iter++) {
        em_ftype schema[MAXF];
        fld a[MAXF], b[MAXF];
        int len = 1 + (int)below(4);
        for (int i = 0; i < len; i++) schema[i] = (em_ftype)(1 + below(3));
        int na = (int)below((uint64_t)len + 1), nb = below(2) ? na : (int)below((uint64_t)len + 1);
        schema_fields(schema, a, na);
        schema_fields(schema, b, nb);
        if (below(4) == 0 && na) memcpy(b, a, sizeof a[0] * (size_t)(nb < na ? nb : na)); /* a common prefix */
        em_tup_clear(&ta);
        em_tup_clear(&tb);
        encode(&ta, a, na);
        encode(&tb, b, nb);
        int want = naive_cmp(a, na, b, nb), got = bytes_cmp(&ta, &tb);
        cr_assert_eq(got, want, "iteration %d: memcmp says %d, field by field %d (%d and %d fields)", iter, got, want, na, nb);
    }
    em_tup_free(&ta);
    em_tup_free(&tb);
}

/* ---- em_i64_put / em_f64_put ---- */

static int enc_cmp(const uint8_t *a, const uint8_t *b) { return sgn(memcmp(a, b, 8)); }

Test(encoding, int64_round_trip_and_order)
{
    rng_state = 11;
    for (int iter = 0; iter < 100000; iter++) {
        int64_t x = some_i64(below(4) == 0), y = below(8) ? some_i64(below(4) == 0) : x;
        uint8_t ex[8], ey[8];
        em_i64_put(ex, x);
        em_i64_put(ey, y);
        cr_assert_eq(em_i64_get(ex), x);
        cr_assert_eq(enc_cmp(ex, ey), (x > y) - (x < y), "%lld vs %lld", (long long)x, (long long)y);
    }
}

Test(encoding, double_round_trip_and_order)
{
    rng_state = 13;
    for (int iter = 0; iter < 100000; iter++) {
        double x = some_f64(below(4) == 0), y = below(8) ? some_f64(below(4) == 0) : x;
        uint8_t ex[8], ey[8];
        double back;
        em_f64_put(ex, x);
        em_f64_put(ey, y);
        back = em_f64_get(ex);
        cr_assert(!memcmp(&back, &x, 8), "%.17g came back as %.17g", x, back);
        cr_assert_eq(enc_cmp(ex, ey), (x > y) - (x < y), "%.17g vs %.17g", x, y);
    }
}
