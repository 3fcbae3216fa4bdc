/* record.c — record helpers: order-preserving int64/double encodings and emit shortcuts (DESIGN section 3).
 *
 * int64: big-endian with the sign bit flipped, so memcmp order == numeric order.
 * double: IEEE bits; positive numbers get the sign bit set, negative numbers are all inverted (the usual trick),
 * so memcmp order == numeric order (with -0.0 < +0.0 and NaNs at the ends).
 */
#include "ember.h"

#include <string.h>

void em_i64_put(void *dst, int64_t v)
{
    uint64_t u = (uint64_t)v ^ 0x8000000000000000ULL;
    uint8_t *d = dst;
    for (int i = 7; i >= 0; i--) {
        d[i] = (uint8_t)u;
        u >>= 8;
    }
}

int64_t em_i64_get(const void *src)
{
    const uint8_t *s = src;
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u = u << 8 | s[i];
    return (int64_t)(u ^ 0x8000000000000000ULL);
}

void em_f64_put(void *dst, double v)
{
    uint64_t u;
    memcpy(&u, &v, 8);
    u = (u & 0x8000000000000000ULL) ? ~u : u | 0x8000000000000000ULL;
    uint8_t *d = dst;
    for (int i = 7; i >= 0; i--) {
        d[i] = (uint8_t)u;
        u >>= 8;
    }
}

double em_f64_get(const void *src)
{
    const uint8_t *s = src;
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u = u << 8 | s[i];
    u = (u & 0x8000000000000000ULL) ? u & ~0x8000000000000000ULL : ~u;
    double v;
    memcpy(&v, &u, 8);
    return v;
}

int em_emit_i64(em_emitter *out, int64_t key, int64_t val)
{
    uint8_t k[8], v[8];
    em_i64_put(k, key);
    em_i64_put(v, val);
    return em_emit(out, k, 8, v, 8);
}

int em_emit_str_i64(em_emitter *out, const char *key, size_t klen, int64_t val)
{
    uint8_t v[8];
    em_i64_put(v, val);
    return em_emit(out, key, (uint32_t)klen, v, 8);
}
