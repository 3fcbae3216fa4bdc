/*
 * etlagg.c — merging the ETL job's aggregate states (see etlagg.h): exact integer sums while they fit int64,
 * compensated double sums otherwise, min and max compared as integers while every value was one.
 * Follows DESIGN.md §5 (a merge is what the map-side combine and the reduce both run).
 */
#include "jobs/common/etlagg.h"

/* Neumaier's compensated sum: lo collects what each addition to hi rounds away. */
static void sum_add(etl_aggst *s, double v)
{
    double t = s->hi + v;
    if (__builtin_fabs(s->hi) >= __builtin_fabs(v)) s->lo += (s->hi - t) + v;
    else s->lo += (v - t) + s->hi;
    s->hi = t;
}

void etl_aggst_merge(etl_aggkind k, etl_aggst *a, const etl_aggst *b)
{
    if (b->n == 0) return;
    if (a->n == 0 && k != ETL_COUNT && k != ETL_COUNT_DISTINCT) {
        *a = *b;
        return;
    }
    switch (k) {
    case ETL_COUNT:
    case ETL_COUNT_DISTINCT: a->n += b->n; break;
    case ETL_SUM:
    case ETL_AVG:
        a->n += b->n;
        a->ovf |= b->ovf || __builtin_add_overflow(a->i, b->i, &a->i);
        a->all_int &= b->all_int;
        sum_add(a, b->hi);
        a->lo += b->lo;
        break;
    case ETL_MIN:
    case ETL_MAX: {
        int lt = a->all_int && b->all_int ? b->i < a->i : b->hi < a->hi;
        int gt = a->all_int && b->all_int ? b->i > a->i : b->hi > a->hi;
        if (k == ETL_MIN ? lt : gt) a->i = b->i, a->hi = b->hi;
        a->all_int &= b->all_int;
        a->n += b->n;
        break;
    }
    }
}
