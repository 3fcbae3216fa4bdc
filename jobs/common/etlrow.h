/*
 * etlrow.h — the ETL job's rows (jobs/etl.c): a CSV record of one side read into typed fields (the join key and the
 * payload the plan asks for, or why the row is bad), and the tuples (em_tup) those fields travel in.
 * Everything is LOCAL: it runs inside the tasks, on the records they are handed.
 *
 * Typing (etlspec.h): keys and group columns are int64 when the field is an integer, else strings; aggregated
 * fields are numbers; an empty field is NULL.
 */
#ifndef EM_JOBS_COMMON_ETLROW_H
#define EM_JOBS_COMMON_ETLROW_H

#include <ember.h>
#include <stddef.h>
#include <stdint.h>

#include "jobs/common/etlbytes.h"
#include "jobs/common/etlplan.h"

/* A CSV row of one side, typed: the join key and the payload fields, or why the row is bad. */
enum { ETL_ROW_SKIP = 0, ETL_ROW_OK = 1, ETL_ROW_BAD = 2 };
typedef struct etl_prow {
    em_field key;
    em_field f[ETL_MAXF];
    char msg[200]; /* ETL_ROW_BAD: "amount: 'abc' is not a number" */
} etl_prow;

/* Applies the side's --where clauses and types its fields. Returns ETL_ROW_OK, ETL_ROW_SKIP (filtered out),
 * ETL_ROW_BAD (with r->msg) or -1 (not a CSV record). Strings point into the record or into *own. */
int etl_row_parse(const etl_side *sd, const em_rec *in, etl_prow *r, etl_bytes *own);

/* em_map callback (arg: the etl_side) of the shuffle join and of the right side of a broadcast join: emits (typed
 * key, payload), or the bad row under the NULL key as (side, file, line, message). */
int etl_parse_row(const em_rec *in, em_emitter *out, void *arg);

/* Appends field f to tuple t. */
void etl_field_put(em_tup *t, const em_field *f);
/* Field idx of tuple p[0, n) when it is an int64, else 0. */
int64_t etl_field_i64(const void *p, size_t n, int idx);

/* Fields of a payload tuple into f[0..n), returning n or -1. A string holding NUL bytes comes from em_tup_get's
 * per-thread buffer, which the next call reuses: such strings are copied into *own, and their pointers set once
 * every copy is made (own->p may move while it grows). */
int etl_payload_fields(const void *p, uint32_t len, em_field *f, int max, etl_bytes *own);

#endif
