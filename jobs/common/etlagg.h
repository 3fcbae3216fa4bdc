/*
 * etlagg.h — the ETL job's aggregate states (jobs/etl.c): one etl_aggst per aggregate and group, merged as the
 * partial aggregates of the tasks meet in the reduces. LOCAL and pure.
 *
 * A value of the first reduce is one kind byte and then:
 *   'M'  a group's partial aggregates: na x struct etl_aggst (fixed size, memcpy'd: records stay on this machine
 *        type, every rank runs the same binary)
 *   'D'  nothing: a distinct (group, value) pair
 *   'B'  the bad-row summary: a tuple (see etlbad.h)
 */
#ifndef EM_JOBS_COMMON_ETLAGG_H
#define EM_JOBS_COMMON_ETLAGG_H

#include <stdint.h>

#include "jobs/common/etlspec.h"

typedef struct etl_aggst {
    int64_t n;       /* rows (count), non-missing values (sum/avg/min/max), distinct values (count_distinct) */
    int64_t i;       /* exact integer sum (sum/avg) or integer min/max, while all_int */
    double hi, lo;   /* double sum, Neumaier-compensated (lo: the lost low part); min/max in hi */
    uint32_t all_int;
    uint32_t ovf;    /* the integer sum overflowed: use hi + lo */
} etl_aggst;

/* Merges b into a, both states of an aggregate of kind k. An empty b (n == 0) changes nothing. LOCAL. */
void etl_aggst_merge(etl_aggkind k, etl_aggst *a, const etl_aggst *b);

#endif
