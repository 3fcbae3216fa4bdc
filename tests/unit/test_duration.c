/*
 * test_duration.c — em_parse_duration_ms() (jobs/common/duration.c): every unit, fractions, compound
 * durations, and every kind of rejected input (no unit, unknown unit, sign, spaces, sub-ms, overflow).
 */
#include <criterion/criterion.h>

#include "jobs/common/duration.h"

static void ok(const char *s, int64_t want)
{
    int64_t v = 12345;
    cr_expect_eq(em_parse_duration_ms(s, &v), 0, "'%s' should parse", s);
    cr_expect_eq(v, want, "'%s' gave %lld ms, expected %lld", s, (long long)v, (long long)want);
}

static void bad(const char *s)
{
    int64_t v = 12345;
    cr_expect_eq(em_parse_duration_ms(s, &v), -1, "'%s' should be rejected", s);
    cr_expect_eq(v, 12345, "'%s' changed the output although rejected", s);
}

Test(duration, every_unit)
{
    ok("250ms", 250);
    ok("10s", 10000);
    ok("2m", 120000);
    ok("3h", 10800000);
    ok("7d", 604800000);
    ok("0ms", 0);
    ok("0s", 0);
    ok("0", 0);
}

Test(duration, fractions_are_exact)
{
    ok("1.5s", 1500);
    ok("0.001s", 1);
    ok("0.5m", 30000);
    ok("1.25h", 4500000);
    ok("0.5d", 43200000);
    ok(".5s", 500);
    ok("2.000ms", 2);
}

Test(duration, compound_terms_add_up)
{
    ok("1m30s", 90000);
    ok("1h1m1s1ms", 3661001);
    ok("1d12h", 129600000);
    ok("10s10s", 20000); /* repeated units simply add */
}

Test(duration, largest_value)
{
    ok("9223372036854775807ms", INT64_MAX);
    bad("9223372036854775808ms");
    bad("106751991167301d"); /* just above INT64_MAX ms */
    bad("9223372036854775807ms1ms");
}

Test(duration, rejects_garbage)
{
    bad("");
    bad("10");     /* a number needs its unit, except 0 */
    bad("1.5");
    bad("s");
    bad("10x");
    bad("10 s");
    bad(" 10s");
    bad("10s ");
    bad("-5s");
    bad("+5s");
    bad("1.s");
    bad("1..5s");
    bad("10sec");
    bad("10S");
    bad("1e3ms");
    bad("00");
}

Test(duration, rejects_less_than_a_millisecond)
{
    bad("0.5ms");
    bad("1.0005s");
    bad("0.0001s");
    bad("1.0000000001s"); /* more fraction digits than are ever meaningful */
}
