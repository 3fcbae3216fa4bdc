/*
 * etlreduce.h — the ETL job's reduces (jobs/etl.c), after either join:
 *
 *   reduce 1  merges partial aggregates per group, and dedups the (group, value) pairs (map-side combine does most);
 *   map       turns each distinct (group, value) into a count of 1 for its group;
 *   reduce 2  adds those counts to the group's aggregates.
 *
 *     joined -> em_reduce_by_key(etl_combine) -> em_map(etl_distinct_to_counts) -> em_reduce_by_key(etl_combine)
 *
 * Values are the 'M' / 'D' / 'B' records of etlagg.h. Both callbacks take the plan as their argument. LOCAL.
 */
#ifndef EM_JOBS_COMMON_ETLREDUCE_H
#define EM_JOBS_COMMON_ETLREDUCE_H

#include <ember.h>
#include <stdint.h>

/* em_reduce_by_key callback: two values of a key -> one ('M' states merged, 'D' kept once, 'B' summaries merged).
 * Returns 0, or -1 for values of different kinds or sizes (or out of memory). */
int etl_combine(const void *a, uint32_t alen, const void *b, uint32_t blen, em_value *out, void *arg);

/* em_map callback: (kind 1+a, group..., value) -> (kind 0, group...) with count_distinct a = 1; everything else
 * passes. Returns em_emit's result, or -1 for a malformed key. */
int etl_distinct_to_counts(const em_rec *in, em_emitter *out, void *arg);

#endif
