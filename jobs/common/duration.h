/* duration.h — parsing the durations of the shipped jobs' command lines (--window 10s, --lateness 1m30s, ...). */
#ifndef EM_JOBS_COMMON_DURATION_H
#define EM_JOBS_COMMON_DURATION_H

#include <stdint.h>

/* Parses a duration into milliseconds: one or more terms NUMBER UNIT written back to back, where NUMBER is
 * digits with an optional fraction ("1.5") and UNIT is ms, s, m (minutes), h or d (days):
 *     250ms   10s   1.5s   1m30s   2h   7d   0
 * A bare "0" is accepted (zero needs no unit); any other number needs its unit. The total must be a whole number
 * of milliseconds ("1.0005s" is refused) and at most INT64_MAX ms. No sign, no spaces. LOCAL.
 * Returns 0, or -1 (and leaves *out_ms alone) for anything else. */
int em_parse_duration_ms(const char *s, int64_t *out_ms);

#endif
