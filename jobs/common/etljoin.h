/*
 * etljoin.h — the ETL job's join (jobs/etl.c): the cogroup callback of the shuffle join, and the pair it turns
 * each match into, which the broadcast join (etlbcast.h) emits the same way.
 *
 * Per key: the right side's rows are held in memory, each left row is paired with each of them (or, for --join
 * left, with nothing); each pair becomes (group, partial aggregates) plus, for every count_distinct, a (group, value)
 * pair; the BAD key (NULL) becomes one summary record (etlbad.h).
 */
#ifndef EM_JOBS_COMMON_ETLJOIN_H
#define EM_JOBS_COMMON_ETLJOIN_H

#include <ember.h>
#include <stdint.h>

#include "jobs/common/etlplan.h"

/* One joined pair (r may be NULL: a left row without match) -> its group's partial aggregates ((0, group...),
 * 'M' + states) and, per count_distinct a, its distinct pair ((1 + a, group..., value), 'D'). l and r are the
 * payload fields of the two sides. LOCAL. Returns 0 or em_emit's error. */
int etl_join_pair(const etl_plan *pl, const em_field *l, const em_field *r, em_emitter *out);

/* em_cogroup callback (arg: the plan): a (left, right) as above. LOCAL. Returns 0, -1 (out of memory, a payload
 * that is not a tuple) or em_values_next's / em_emit's error. */
int etl_join_rows(const void *key, uint32_t klen, em_values *a, em_values *b, em_emitter *out, void *arg);

#endif
