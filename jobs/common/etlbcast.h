/*
 * etlbcast.h — the ETL job's broadcast join (jobs/etl.c).
 *
 * When the right side is small (--broadcast-max), it is collected onto every rank (one action) and indexed by key
 * (etlindex.h); the left side is then joined where it is read, in a mapPartitions, and never shuffled: only the
 * per-task partial aggregates are. The join is the same as etl_join_rows (each left row with each right row of its
 * key, or with nothing for --join left), and so are the records that reach the reduces.
 *
 * Fast form, when every group column comes from the right side and every aggregate but count reads the left side:
 * a right row's group is known before the left side is read, so right rows are indexed by group id and each task
 * folds its rows into one aggregate state per group (etl_aggst_merge, as the map-side combine would), emitted when
 * the task ends. count_distinct still emits its (group, value) pairs. Otherwise each joined pair goes through
 * etl_join_pair.
 *
 * The job runs, on every rank:
 *     em_map_partitions(right csv, etl_rblock_open, etl_rblock_each, etl_rblock_close, &pl.s[1]) -> em_collect
 *     etl_bcast_build(&pl, &bc, &collected)
 *     em_map_partitions(left csv, etl_bjoin_open, etl_bjoin_each, etl_bjoin_close, &pl) -> the reduces
 */
#ifndef EM_JOBS_COMMON_ETLBCAST_H
#define EM_JOBS_COMMON_ETLBCAST_H

#include <ember.h>
#include <stddef.h>
#include <stdint.h>

#include "jobs/common/etlbad.h"
#include "jobs/common/etlbytes.h"
#include "jobs/common/etlindex.h"
#include "jobs/common/etlplan.h"

typedef struct etl_bcast {
    etl_index ix;        /* key -> payload id (general form) or group id (fast form) */
    int fast;
    em_records right;    /* the collected right side: blocks (see etl_rblock_* in etlbcast.c) and bad rows */
    const uint8_t **pay; /* general form: [npay] each distinct payload of a block, in right.mem */
    uint32_t *paylen;
    size_t npay;
    etl_bytes gt;        /* fast: the group tuple (0, group...) of each group id, back to back */
    size_t *goff;        /* fast: [ngroups + 2] offsets in gt; id ngroups is the all-NULL group (unmatched left rows) */
    int32_t ngroups;
    etl_badsum bad;      /* the right side's bad rows */
} etl_bcast;

/* em_map_partitions callbacks (arg: the right etl_side) that parse the right side and pack it into blocks of about
 * 64 KiB for em_collect; bad rows go as etl_parse_row emits them. LOCAL. */
void *etl_rblock_open(int part, void *arg);
int etl_rblock_each(void *state, const em_rec *in, em_emitter *out, void *arg);
int etl_rblock_close(void *state, em_emitter *out, void *arg);

/* Builds *bc from the collected right side (res, taken over) and sets pl->bc. LOCAL, and the same on every rank
 * (every rank holds the same collected records). Returns 0, -1 (out of memory) or EM_EPARSE (a damaged block).
 * Whatever it returns, bc holds what was built so far, and etl_bcast_release(bc) frees it. */
int etl_bcast_build(etl_plan *pl, etl_bcast *bc, em_records *res);
void etl_bcast_release(etl_bcast *bc);

/* em_map_partitions callbacks (arg: the plan, whose bc is built) that join the left side where it is read and emit
 * what etl_join_rows would (the fast form: one 'M' record per group met by the task, when it ends), plus the task's
 * bad rows as one summary. LOCAL. */
void *etl_bjoin_open(int part, void *arg);
int etl_bjoin_each(void *state, const em_rec *in, em_emitter *out, void *arg);
int etl_bjoin_close(void *state, em_emitter *out, void *arg);

#endif
