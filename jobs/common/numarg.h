/*
 * numarg.h — parsing the numeric command-line arguments of the shipped jobs (--limit 1e10, --to 2^32, ...).
 */
#ifndef EM_JOBS_NUMARG_H
#define EM_JOBS_NUMARG_H

#include <stdint.h>

/* Parses a non-negative integer written as
 *     digits                 10000000000
 *     mantissa e exponent    1e10, 2.5e3, 25E+2, 2500e-2   (only when the value is an integer)
 *     base ^ exponent        2^32
 * into *out. The whole string must match: no sign, no spaces, no trailing characters. LOCAL.
 * Returns 0, or -1 (and leaves *out alone) for garbage, a negative or fractional value, or one above
 * UINT64_MAX. */
int em_parse_u64(const char *s, uint64_t *out);

#endif /* EM_JOBS_NUMARG_H */
