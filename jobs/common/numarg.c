/*
 * numarg.c — em_parse_u64(): integers for job flags in plain, scientific (1e10, 2.5e3) and power (2^32)
 * notation, with exact integer arithmetic (no floating point, so 1e19 and 2^63 are exact) and overflow checks.
 * Used by the jobs' command lines (DESIGN.md §1, jobs/).
 */
#include "jobs/common/numarg.h"

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* *v = v * m + add, false on overflow. */
static bool mul_add(uint64_t *v, uint64_t m, uint64_t add)
{
    if (*v > (UINT64_MAX - add) / m) return false;
    *v = *v * m + add;
    return true;
}

/* The decimal digits [s, end) as a number; -1 when empty, not all digits or above UINT64_MAX. */
static int digits_u64(const char *s, const char *end, uint64_t *out)
{
    uint64_t v = 0;
    if (s == end) return -1;
    for (; s < end; s++) {
        if (!is_digit(*s) || !mul_add(&v, 10, (uint64_t)(*s - '0'))) return -1;
    }
    *out = v;
    return 0;
}

/* base^exp, -1 on overflow. */
static int pow_u64(uint64_t base, uint64_t exp, uint64_t *out)
{
    uint64_t v = 1;
    if (base == 0 && exp > 0) v = 0;
    if (base > 1) {
        for (uint64_t i = 0; i < exp; i++) {
            if (!mul_add(&v, base, 0)) return -1;
        }
    }
    *out = v;
    return 0;
}

int em_parse_u64(const char *s, uint64_t *out)
{
    if (!s || !*s) return -1;
    const char *end = s + strlen(s), *caret = strchr(s, '^');
    uint64_t v, e;
    if (caret) {
        if (digits_u64(s, caret, &v) < 0 || digits_u64(caret + 1, end, &e) < 0 || pow_u64(v, e, &v) < 0)
            return -1;
        *out = v;
        return 0;
    }

    /* mantissa: digits [. digits], then an optional exponent [eE][+-]digits */
    const char *ip = s, *ie = s;
    while (is_digit(*ie)) ie++;
    const char *fp = ie, *fe = ie;
    if (*fe == '.') {
        fp = fe + 1;
        for (fe = fp; is_digit(*fe); fe++) {}
        if (fe == fp) return -1; /* "1." */
    }
    if (ie == ip) return -1; /* ".5", "", "-3", "abc" */
    int64_t shift = -(int64_t)(fe - fp); /* value = digits(int frac) x 10^shift */
    const char *p = fe;
    if (*p == 'e' || *p == 'E') {
        bool neg = p[1] == '-';
        p += 1 + (p[1] == '-' || p[1] == '+');
        const char *xe = p;
        while (is_digit(*xe)) xe++;
        if (xe == p || xe != end) return -1;
        uint64_t x = 0;
        for (; p < xe; p++) { /* clamp: anything past 10^9 overflows or is 0 anyway */
            x = x * 10 + (uint64_t)(*p - '0');
            if (x > 1000000000) x = 1000000000;
        }
        shift += neg ? -(int64_t)x : (int64_t)x;
    } else if (p != end) {
        return -1;
    }

    /* The significant digits: the integer part then the fraction part, without the last -shift ones when
     * shift < 0; those must all be zeros, or the value is not an integer. */
    char digits[64];
    size_t nd = 0;
    bool nonzero = false;
    for (const char *c = ip; c < fe; c++) {
        if (c == ie) c = fp; /* skip the '.' */
        if (c >= fe) break;
        if (nd == 0 && *c == '0') continue; /* leading zeros */
        if (nd == sizeof digits) return -1; /* more than 64 significant digits: too large, or fractional */
        digits[nd++] = *c;
        nonzero = true;
    }
    if (!nonzero) {
        *out = 0;
        return 0;
    }
    while (shift < 0 && nd > 0) {
        if (digits[nd - 1] != '0') return -1;
        nd--;
        shift++;
    }
    if (shift < 0 || digits_u64(digits, digits + nd, &v) < 0) return -1;
    for (int64_t i = 0; i < shift; i++) {
        if (!mul_add(&v, 10, 0)) return -1;
    }
    *out = v;
    return 0;
}
