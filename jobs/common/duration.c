/* duration.c — durations with ms/s/m/h/d units for the jobs' command lines (see duration.h). Each term is read
 * as an exact decimal (integer part and up to 9 fraction digits) and scaled in integers, so "0.001s" is exactly
 * 1 ms and no floating-point rounding ever decides whether a value is accepted. */
#include "jobs/common/duration.h"

#include <string.h>

/* Milliseconds per unit; the longer spelling is tried first so "ms" is not read as "m" then "s". */
static const struct {
    const char *name;
    int64_t ms;
} units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}, {"d", 86400000}};

int em_parse_duration_ms(const char *s, int64_t *out_ms)
{
    if (!s || !*s) return -1;
    if (strcmp(s, "0") == 0) {
        *out_ms = 0;
        return 0;
    }
    int64_t total = 0;
    while (*s) {
        /* NUMBER: digits [. digits]; the value is whole / 10^0 + frac / 10^nfrac */
        int64_t whole = 0, frac = 0, scale = 1;
        int ndig = 0, nfrac = 0;
        while (*s >= '0' && *s <= '9') {
            if (__builtin_mul_overflow(whole, 10, &whole) || __builtin_add_overflow(whole, *s++ - '0', &whole))
                return -1;
            ndig++;
        }
        if (*s == '.') {
            s++;
            while (*s >= '0' && *s <= '9') {
                if (nfrac == 9) return -1; /* finer than a nanosecond of a day is never a whole ms anyway */
                frac = frac * 10 + (*s++ - '0');
                scale *= 10;
                nfrac++;
            }
            if (nfrac == 0) return -1;
        }
        if (ndig == 0 && nfrac == 0) return -1;
        int u = -1;
        for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
            size_t n = strlen(units[i].name);
            if (strncmp(s, units[i].name, n) == 0) {
                u = (int)i;
                s += n;
                break;
            }
        }
        if (u < 0) return -1;
        int64_t per = units[u].ms, term;
        if (__builtin_mul_overflow(whole, per, &term)) return -1;
        /* frac * per / scale must be a whole number of ms; per <= 86400000 and frac < 10^9 fit in int64 */
        int64_t fms = frac * per;
        if (fms % scale) return -1;
        if (__builtin_add_overflow(term, fms / scale, &term)) return -1;
        if (__builtin_add_overflow(total, term, &total)) return -1;
    }
    *out_ms = total;
    return 0;
}
