/*
 * test_numarg.c — em_parse_u64() (jobs/common/numarg.c): plain, scientific and power notation, and every
 * kind of rejected input (garbage, negative, fractional, overflow).
 */
#include <criterion/criterion.h>

#include "jobs/common/numarg.h"

static void ok(const char *s, uint64_t want)
{
    uint64_t v = 12345;
    cr_expect_eq(em_parse_u64(s, &v), 0, "'%s' should parse", s);
    cr_expect_eq(v, want, "'%s' gave %llu, expected %llu", s, (unsigned long long)v, (unsigned long long)want);
}

static void bad(const char *s)
{
    uint64_t v = 12345;
    cr_expect_eq(em_parse_u64(s, &v), -1, "'%s' should be rejected", s);
    cr_expect_eq(v, 12345, "'%s' changed the output although rejected", s);
}

Test(numarg, plain_integers)
{
    ok("0", 0);
    ok("7", 7);
    ok("10000000000", UINT64_C(10000000000));
    ok("007", 7);
    ok("18446744073709551615", UINT64_MAX);
}

Test(numarg, scientific_notation)
{
    ok("1e10", UINT64_C(10000000000));
    ok("1E6", 1000000);
    ok("2.5e3", 2500);
    ok("25E+2", 2500);
    ok("2500e-2", 25);
    ok("1.000e3", 1000);
    ok("0e99999", 0);
    ok("0.0", 0);
    ok("1e0", 1);
    ok("1e19", UINT64_C(10000000000000000000));
    ok("1.8446744073709551615e19", UINT64_MAX);
}

Test(numarg, power_notation)
{
    ok("2^32", UINT64_C(4294967296));
    ok("2^63", UINT64_C(1) << 63);
    ok("10^0", 1);
    ok("0^0", 1);
    ok("0^5", 0);
    ok("1^99999999999", 1);
    ok("3^40", UINT64_C(12157665459056928801));
}

Test(numarg, rejects_garbage)
{
    const char *cases[] = {"", "abc", "12abc", " 12", "12 ", "+12", "0x10", "1e", "1e+", "e5", ".5", "1.",
                           "1..2", "1.2.3", "1e5e5", "2^", "^2", "2^^3", "2^3.5", "2^1e3", "1,000", "\xd9\xa1\xd9\xa2"};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) bad(cases[i]);
    uint64_t v;
    cr_expect_eq(em_parse_u64(NULL, &v), -1);
}

Test(numarg, rejects_negative_and_fractional)
{
    bad("-1");
    bad("-0");
    bad("-1e3");
    bad("2^-1");
    bad("2.5");
    bad("2.55e1");
    bad("1e-1");
    bad("5e-3");
}

Test(numarg, rejects_overflow)
{
    bad("18446744073709551616");
    bad("99999999999999999999999");
    bad("1e20");
    bad("1.8446744073709551616e19");
    bad("2^64");
    bad("10^20");
    bad("1e1000000000000000000000");
}
