/*
 * etlbad.h — the ETL job's bad-row summary (jobs/etl.c): rows whose key is empty or whose compared / aggregated
 * field is not a number are counted per input file, and the first ETL_BAD_LISTED of them (by side, file, line) are
 * kept with their reason, so that the report names them whatever the order the tasks ran in.
 *
 * A summary travels as a tuple (em_tup): count, then (side, file, count) per file, then up to 10 listed rows as
 * (side, file, line, message). Everything but etl_badsum_emit and etl_badsum_report is LOCAL and pure.
 */
#ifndef EM_JOBS_COMMON_ETLBAD_H
#define EM_JOBS_COMMON_ETLBAD_H

#include <ember.h>
#include <stddef.h>
#include <stdint.h>

#include "jobs/common/etlplan.h"

#define ETL_BAD_LISTED 10

typedef struct etl_badrow {
    int64_t side, file, line;
    char msg[200];
} etl_badrow;
typedef struct etl_badsum {
    int nfiles;
    int64_t fside[64], ffile[64], fcount[64];
    int nlist;
    etl_badrow list[ETL_BAD_LISTED];
} etl_badsum;

/* Adds n bad rows of (side, file) to the counts (past 64 files, the rest go uncounted by file). */
void etl_badsum_count(etl_badsum *b, int64_t side, int64_t file, int64_t n);
/* Keeps the ETL_BAD_LISTED first rows by (side, file, line), so the list does not depend on task order. */
void etl_badsum_list(etl_badsum *b, const etl_badrow *r);

/* The summary tuple p[0, n) into *b (overwritten; malformed parts read as zeros), and *b appended to t. */
void etl_badsum_decode(const uint8_t *p, size_t n, etl_badsum *b);
void etl_badsum_encode(const etl_badsum *b, em_tup *t);

/* A task's bad-row summary as its own record (group key -1, value 'B' + the encoded summary) for the reduce.
 * LOCAL (inside a task). Returns em_emit's result, or -1 when out of memory. */
int etl_badsum_emit(em_emitter *out, const etl_badsum *b);

/* A bad row as an etl_badrow (its file and line come from the CSV record's key: em_csv_opts.line_keys). */
etl_badrow etl_badrow_of(int side, const em_rec *in, const char *msg);

/* Reports the bad rows on stderr, from the leader only ("etl: skipped N bad rows in FILE: line L: why; ..." or,
 * with strict, "etl: --strict: found ..."); returns how many there were (on every rank). LOCAL. */
int64_t etl_badsum_report(const em_ctx *ctx, const etl_plan *pl, const etl_badsum *b, int strict);

#endif
