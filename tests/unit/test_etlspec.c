/* Tests of jobs/common/etlspec.c: the ETL job's --where / --agg / --group-by / --sort-by parsers, column
 * resolution with left./right. prefixes, and field typing. Expected values are written out by hand. */
#include <criterion/criterion.h>

#include "jobs/common/etlspec.h"

#include <string.h>

static char err[512];

Test(etlspec, parse_int_accepts_only_whole_integers)
{
    int64_t v = 0;
    cr_assert_eq(etl_parse_int("42", 2, &v), 1);
    cr_assert_eq(v, 42);
    cr_assert_eq(etl_parse_int("-007", 4, &v), 1);
    cr_assert_eq(v, -7);
    cr_assert_eq(etl_parse_int("+5", 2, &v), 1);
    cr_assert_eq(v, 5);
    cr_assert_eq(etl_parse_int("9223372036854775807", 19, &v), 1);
    cr_assert_eq(v, INT64_MAX);
    cr_assert_eq(etl_parse_int("9223372036854775808", 19, &v), 0);
    cr_assert_eq(etl_parse_int("", 0, &v), 0);
    cr_assert_eq(etl_parse_int("-", 1, &v), 0);
    cr_assert_eq(etl_parse_int(" 1", 2, &v), 0);
    cr_assert_eq(etl_parse_int("1.0", 3, &v), 0);
    cr_assert_eq(etl_parse_int("12abc", 2, &v), 1); /* only the first n bytes count */
    cr_assert_eq(v, 12);
}

Test(etlspec, parse_num_rejects_blanks_garbage_and_infinity)
{
    double d = 0;
    cr_assert_eq(etl_parse_num("3.25", 4, &d), 1);
    cr_assert_eq(d, 3.25);
    cr_assert_eq(etl_parse_num("-1e3", 4, &d), 1);
    cr_assert_eq(d, -1000.0);
    cr_assert_eq(etl_parse_num("abc", 3, &d), 0);
    cr_assert_eq(etl_parse_num("1.5x", 4, &d), 0);
    cr_assert_eq(etl_parse_num(" 1", 2, &d), 0);
    cr_assert_eq(etl_parse_num("inf", 3, &d), 0);
    cr_assert_eq(etl_parse_num("1e999", 5, &d), 0);
    cr_assert_eq(etl_parse_num("", 0, &d), 0);
}

Test(etlspec, where_numeric_and_string_comparisons)
{
    etl_where w;
    cr_assert_eq(etl_where_parse("amount >= 100", &w, err, sizeof err), 0);
    cr_assert_eq(w.op, ETL_GE);
    cr_assert_eq(w.numeric, 1);
    cr_assert_eq(w.num, 100.0);
    cr_assert_eq(w.col.len, 6);
    cr_assert_eq(etl_where_match(&w, "100", 3), 1);
    cr_assert_eq(etl_where_match(&w, "99.5", 4), 0);
    cr_assert_eq(etl_where_match(&w, "1e3", 3), 1);
    cr_assert_eq(etl_where_match(&w, "abc", 3), -1);
    cr_assert_eq(etl_where_match(&w, "", 0), 0);
    etl_where_release(&w);

    cr_assert_eq(etl_where_parse("right.country!=France", &w, err, sizeof err), 0);
    cr_assert_eq(w.op, ETL_NE);
    cr_assert_eq(w.numeric, 0);
    cr_assert_eq(w.col.side, ETL_RIGHT);
    cr_assert_eq(strncmp(w.col.name, "country", w.col.len), 0);
    cr_assert_eq(etl_where_match(&w, "France", 6), 0);
    cr_assert_eq(etl_where_match(&w, "Franc", 5), 1);
    etl_where_release(&w);

    cr_assert_eq(etl_where_parse("name < 'B c'", &w, err, sizeof err), 0);
    cr_assert_eq(w.op, ETL_LT);
    cr_assert_str_eq(w.str, "B c");
    cr_assert_eq(etl_where_match(&w, "A", 1), 1);
    cr_assert_eq(etl_where_match(&w, "B", 1), 1); /* a prefix sorts first */
    cr_assert_eq(etl_where_match(&w, "B c", 3), 0);
    cr_assert_eq(etl_where_match(&w, "b", 1), 0); /* bytewise: 'b' > 'B' */
    etl_where_release(&w);

    /* quotes force a string: "10" vs "9" compare as text */
    cr_assert_eq(etl_where_parse("code = \"10\"", &w, err, sizeof err), 0);
    cr_assert_eq(w.numeric, 0);
    cr_assert_eq(etl_where_match(&w, "10", 2), 1);
    cr_assert_eq(etl_where_match(&w, "10.0", 4), 0);
    etl_where_release(&w);

    cr_assert_eq(etl_where_parse("x <= -2.5", &w, err, sizeof err), 0);
    cr_assert_eq(w.op, ETL_LE);
    cr_assert_eq(etl_where_match(&w, "-2.5", 4), 1);
    cr_assert_eq(etl_where_match(&w, "-2", 2), 0);
    etl_where_release(&w);
    cr_assert_eq(etl_where_parse("x == 3", &w, err, sizeof err), 0);
    cr_assert_eq(w.op, ETL_EQ);
    cr_assert_eq(etl_where_match(&w, "3.0", 3), 1);
    etl_where_release(&w);
    cr_assert_eq(etl_where_parse("x > 3", &w, err, sizeof err), 0);
    cr_assert_eq(w.op, ETL_GT);
    etl_where_release(&w);
}

Test(etlspec, where_errors_name_the_problem)
{
    etl_where w;
    cr_assert_eq(etl_where_parse("amount 100", &w, err, sizeof err), -1);
    cr_assert(strstr(err, "expected 'COLUMN OP VALUE'"), "%s", err);
    cr_assert_eq(etl_where_parse(" = 3", &w, err, sizeof err), -1);
    cr_assert(strstr(err, "no column"), "%s", err);
    cr_assert_eq(etl_where_parse("a >= ", &w, err, sizeof err), -1);
    cr_assert(strstr(err, "no value"), "%s", err);
    cr_assert_eq(etl_where_parse("a ! 3", &w, err, sizeof err), -1);
    cr_assert(strstr(err, "unknown operator"), "%s", err);
}

Test(etlspec, agg_list)
{
    etl_agg a[8];
    int n;
    cr_assert_eq(etl_agg_parse("count,sum:amount, avg:left.amount ,min:x,max:x,count_distinct:right.cid", a, 8, &n,
                               err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, 6);
    cr_assert_eq(a[0].kind, ETL_COUNT);
    cr_assert_str_eq(a[0].out, "count");
    cr_assert_eq(a[1].kind, ETL_SUM);
    cr_assert_str_eq(a[1].out, "sum_amount");
    cr_assert_eq(a[2].kind, ETL_AVG);
    cr_assert_eq(a[2].col.side, ETL_LEFT);
    cr_assert_str_eq(a[2].out, "avg_left.amount");
    cr_assert_eq(a[3].kind, ETL_MIN);
    cr_assert_eq(a[4].kind, ETL_MAX);
    cr_assert_eq(a[5].kind, ETL_COUNT_DISTINCT);
    cr_assert_eq(a[5].col.side, ETL_RIGHT);
    cr_assert_eq(strncmp(a[5].col.name, "cid", a[5].col.len), 0);
    cr_assert_str_eq(a[5].out, "count_distinct_right.cid");
}

Test(etlspec, agg_errors)
{
    etl_agg a[4];
    int n;
    cr_assert_eq(etl_agg_parse("median:x", a, 4, &n, err, sizeof err), -1);
    cr_assert(strstr(err, "unknown aggregate 'median'"), "%s", err);
    cr_assert_eq(etl_agg_parse("sum", a, 4, &n, err, sizeof err), -1);
    cr_assert(strstr(err, "needs a column"), "%s", err);
    cr_assert_eq(etl_agg_parse("count:x", a, 4, &n, err, sizeof err), -1);
    cr_assert(strstr(err, "takes no column"), "%s", err);
    cr_assert_eq(etl_agg_parse("count,,sum:x", a, 4, &n, err, sizeof err), -1);
    cr_assert(strstr(err, "empty item"), "%s", err);
    cr_assert_eq(etl_agg_parse("sum:x,sum:x", a, 4, &n, err, sizeof err), -1);
    cr_assert(strstr(err, "listed twice"), "%s", err);
    cr_assert_eq(etl_agg_parse("count,sum:a,sum:b,sum:c,sum:d", a, 4, &n, err, sizeof err), -1);
    cr_assert(strstr(err, "more than 4"), "%s", err);
}

Test(etlspec, group_by_and_resolution)
{
    etl_colref r[4];
    int n, side, idx;
    const char *l[] = {"order_id", "customer_id", "amount"}, *rt[] = {"customer_id", "name", "country"};
    cr_assert_eq(etl_cols_parse("country,left.customer_id", r, 4, &n, err, sizeof err), 0);
    cr_assert_eq(n, 2);
    cr_assert_eq(etl_colref_resolve(&r[0], l, 3, rt, 3, "o.csv", "c.csv", &side, &idx, err, sizeof err), 0);
    cr_assert_eq(side, ETL_RIGHT);
    cr_assert_eq(idx, 2);
    cr_assert_eq(etl_colref_resolve(&r[1], l, 3, rt, 3, "o.csv", "c.csv", &side, &idx, err, sizeof err), 0);
    cr_assert_eq(side, ETL_LEFT);
    cr_assert_eq(idx, 1);

    etl_colref c;
    etl_colref_parse("customer_id", 11, &c);
    cr_assert_eq(etl_colref_resolve(&c, l, 3, rt, 3, "o.csv", "c.csv", &side, &idx, err, sizeof err), -1);
    cr_assert(strstr(err, "'customer_id' is in both o.csv and c.csv: write left.customer_id or right.customer_id"),
              "%s", err);
    etl_colref_parse("nope", 4, &c);
    cr_assert_eq(etl_colref_resolve(&c, l, 3, rt, 3, "o.csv", "c.csv", &side, &idx, err, sizeof err), -1);
    cr_assert(strstr(err, "no column 'nope' in o.csv or c.csv"), "%s", err);
    etl_colref_parse("right.amount", 12, &c);
    cr_assert_eq(etl_colref_resolve(&c, l, 3, rt, 3, "o.csv", "c.csv", &side, &idx, err, sizeof err), -1);
    cr_assert(strstr(err, "no column 'amount' in c.csv (right)"), "%s", err);

    cr_assert_eq(etl_cols_parse("a,,b", r, 4, &n, err, sizeof err), -1);
    cr_assert(strstr(err, "empty column name"), "%s", err);
    cr_assert_eq(etl_cols_parse("a,b,a", r, 4, &n, err, sizeof err), -1);
    cr_assert(strstr(err, "listed twice"), "%s", err);
}

Test(etlspec, sort_by)
{
    const char *c;
    size_t n;
    int desc;
    cr_assert_eq(etl_sort_parse("sum_amount:desc", &c, &n, &desc, err, sizeof err), 0);
    cr_assert_eq(desc, 1);
    cr_assert_eq(n, 10);
    cr_assert_eq(etl_sort_parse("country:asc", &c, &n, &desc, err, sizeof err), 0);
    cr_assert_eq(desc, 0);
    cr_assert_eq(n, 7);
    cr_assert_eq(etl_sort_parse("sum:amount", &c, &n, &desc, err, sizeof err), 0);
    cr_assert_eq(n, 10);
    cr_assert_eq(etl_sort_parse(":desc", &c, &n, &desc, err, sizeof err), -1);
}
