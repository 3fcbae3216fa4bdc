/* record.c — record helpers: order-preserving int64/double encodings and emit shortcuts (DESIGN section 3).
 *
 * int64: big-endian with the sign bit flipped, so memcmp order == numeric order.
 * double: IEEE bits; positive numbers get the sign bit set, negative numbers are all inverted (the usual trick),
 * so memcmp order == numeric order (with -0.0 < +0.0 and NaNs at the ends).
 */
#include "ember.h"
#include "operators/dataset.h"

#include <string.h>

/* Big-endian loads and stores: one bswap on little-endian machines. */
static inline void put_be64(void *dst, uint64_t u)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    u = __builtin_bswap64(u);
#endif
    memcpy(dst, &u, 8);
}

static inline uint64_t get_be64(const void *src)
{
    uint64_t u;
    memcpy(&u, src, 8);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    u = __builtin_bswap64(u);
#endif
    return u;
}

void em_i64_put(void *dst, int64_t v) { put_be64(dst, (uint64_t)v ^ 0x8000000000000000ULL); }

int64_t em_i64_get(const void *src) { return (int64_t)(get_be64(src) ^ 0x8000000000000000ULL); }

void em_f64_put(void *dst, double v)
{
    if (v == 0) v = 0.0; /* -0.0 == 0.0: one encoding, so they group and join as one key */
    uint64_t u;
    memcpy(&u, &v, 8);
    put_be64(dst, (u & 0x8000000000000000ULL) ? ~u : u | 0x8000000000000000ULL);
}

double em_f64_get(const void *src)
{
    uint64_t u = get_be64(src);
    u = (u & 0x8000000000000000ULL) ? u & ~0x8000000000000000ULL : ~u;
    double v;
    memcpy(&v, &u, 8);
    return v;
}

int em_emit_i64(em_emitter *out, int64_t key, int64_t val)
{
    uint8_t k[8], v[8];
    put_be64(k, (uint64_t)key ^ 0x8000000000000000ULL);
    put_be64(v, (uint64_t)val ^ 0x8000000000000000ULL);
    em_rec r = {k, v, 8, 8};
    return out->push(out, &r);
}

int em_emit_str_i64(em_emitter *out, const char *key, size_t klen, int64_t val)
{
    /* The hot path of word counts: straight into a map-side combine table when the emitter is one. */
    if (out->push_i64) return out->push_i64(out, key, (uint32_t)klen, val);
    uint8_t v[8];
    put_be64(v, (uint64_t)val ^ 0x8000000000000000ULL);
    em_rec r = {key, v, (uint32_t)klen, 8};
    return out->push(out, &r);
}

/* ---- tuples ----
 * Each field is a tag byte and its bytes: 0x01 NULL; 0x02 int64 (8 bytes, em_i64_put); 0x03 double (8 bytes,
 * em_f64_put); 0x04 string: its bytes with every 0x00 written as 0x00 0xFF, then 0x00 0x00. Tags order the types
 * and the escaping keeps a string's end below any of its continuations, so memcmp orders tuples field by field. */
#include <stdlib.h>

enum { TAG_NULL = 1, TAG_I64 = 2, TAG_F64 = 3, TAG_STR = 4 };

static uint8_t *tup_room(em_tup *t, size_t n)
{
    if (t->len + n > t->cap) {
        size_t c = t->cap ? t->cap : 64;
        while (c < t->len + n) c *= 2;
        uint8_t *p = realloc(t->p, c);
        if (!p) abort(); /* out of memory: as em__malloc does */
        t->p = p;
        t->cap = c;
    }
    uint8_t *q = t->p + t->len;
    t->len += n;
    return q;
}

void em_tup_clear(em_tup *t) { t->len = 0; }

void em_tup_free(em_tup *t)
{
    free(t->p);
    t->p = NULL;
    t->len = t->cap = 0;
}

void em_tup_null(em_tup *t) { *tup_room(t, 1) = TAG_NULL; }

void em_tup_i64(em_tup *t, int64_t v)
{
    uint8_t *q = tup_room(t, 9);
    q[0] = TAG_I64;
    em_i64_put(q + 1, v);
}

void em_tup_f64(em_tup *t, double v)
{
    uint8_t *q = tup_room(t, 9);
    q[0] = TAG_F64;
    em_f64_put(q + 1, v);
}

void em_tup_str(em_tup *t, const void *s, size_t n)
{
    const uint8_t *b = s;
    size_t nul = 0;
    if (n && memchr(b, 0, n)) /* rare: count them */
        for (size_t i = 0; i < n; i++) nul += !b[i];
    uint8_t *q = tup_room(t, 1 + n + nul + 2);
    *q++ = TAG_STR;
    if (!nul) {
        if (n) memcpy(q, b, n);
        q += n;
    } else {
        for (size_t i = 0; i < n; i++) {
            *q++ = b[i];
            if (!b[i]) *q++ = 0xFF;
        }
    }
    q[0] = 0;
    q[1] = 0;
}

static _Thread_local uint8_t *unesc;
static _Thread_local size_t unesc_cap;

/* Parses the field at p[*pos, n) into f (f may be NULL: skip). Returns 0 or EM_EPARSE. */
static int tup_field(const uint8_t *p, size_t n, size_t *pos, em_field *f)
{
    size_t i = *pos;
    if (i >= n) return EM_EPARSE;
    uint8_t tag = p[i++];
    if (tag == TAG_NULL) {
        if (f) f->type = EM_F_NULL;
    } else if (tag == TAG_I64 || tag == TAG_F64) {
        if (n - i < 8) return EM_EPARSE;
        if (f) {
            f->type = tag == TAG_I64 ? EM_F_I64 : EM_F_F64;
            if (tag == TAG_I64) f->i64 = em_i64_get(p + i);
            else f->f64 = em_f64_get(p + i);
        }
        i += 8;
    } else if (tag == TAG_STR) {
        size_t s = i, nul = 0;
        for (;;) {
            const uint8_t *z = i < n ? memchr(p + i, 0, n - i) : NULL;
            if (!z || z + 1 >= p + n) return EM_EPARSE;
            i = (size_t)(z - p);
            if (p[i + 1] == 0) break;
            if (p[i + 1] != 0xFF) return EM_EPARSE;
            nul++;
            i += 2;
        }
        if (f) {
            f->type = EM_F_STR;
            f->len = i - s - nul;
            if (!nul) {
                f->str = (const char *)p + s;
            } else {
                if (unesc_cap < f->len) {
                    free(unesc);
                    unesc_cap = f->len * 2;
                    if (!(unesc = malloc(unesc_cap))) abort();
                }
                for (size_t j = s, o = 0; j < i; j++) {
                    unesc[o++] = p[j];
                    if (!p[j]) j++;
                }
                f->str = (const char *)unesc;
            }
        }
        i += 2;
    } else {
        return EM_EPARSE;
    }
    *pos = i;
    return 0;
}

int em_tup_get(const void *p, size_t n, int idx, em_field *f)
{
    size_t pos = 0;
    for (int k = 0;; k++) {
        if (pos == n) return EM_EINVAL;
        int rc = tup_field(p, n, &pos, k == idx ? f : NULL);
        if (rc < 0) return rc;
        if (k == idx) return 0;
    }
}

int em_tup_count(const void *p, size_t n)
{
    size_t pos = 0;
    int k = 0;
    while (pos < n) {
        if (tup_field(p, n, &pos, NULL) < 0) return EM_EPARSE;
        k++;
    }
    return k;
}
