/*
 * etlout.h — the ETL job's output (jobs/etl.c): the collected groups as rows of cells, sorted by the group columns
 * (or --sort-by), written as CSV by the leader or handed by every rank to em_save_hdf5.
 */
#ifndef EM_JOBS_COMMON_ETLOUT_H
#define EM_JOBS_COMMON_ETLOUT_H

#include <ember.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "jobs/common/etlbad.h"
#include "jobs/common/etlplan.h"

typedef struct etl_cell {
    em_ftype type; /* NULL, I64, F64, STR */
    int64_t i;
    double d;
    const char *s;
    size_t n;
    int avg; /* printed with %.17g */
} etl_cell;

typedef struct etl_outrow {
    const uint8_t *key; /* (0, group...): memcmp order = group order */
    uint32_t klen;
    etl_cell c[ETL_MAXG + ETL_MAXA]; /* the group columns, then the aggregates */
} etl_outrow;

/* Splits the collected result of the last reduce into the bad-row summary (*bad; zero when there is none) and the
 * output rows, written to rows[0, n) (room for res->n); returns n. The rows point into res, which must outlive
 * them. LOCAL. */
size_t etl_out_rows(const etl_plan *pl, const em_records *res, etl_outrow *rows, etl_badsum *bad);

/* Sorts the rows by output column col (-1: none) in that direction, then by the group columns. LOCAL. */
void etl_out_sort(etl_outrow *rows, size_t nrows, int col, int desc);

/* Writes the header and the rows as CSV to f (the caller checks f for errors). LOCAL. */
void etl_out_csv(FILE *f, const etl_plan *pl, const etl_outrow *rows, size_t nrows);

/* Saves the rows as dataset "etl" of the HDF5 file path: a column's type fits every row. COLLECTIVE (every rank
 * passes the same rows). Returns 0 or em_save_hdf5's error. */
int etl_out_hdf5(em_ctx *ctx, const char *path, const etl_plan *pl, const etl_outrow *rows, size_t nrows);

#endif
