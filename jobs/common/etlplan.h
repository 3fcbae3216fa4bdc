/*
 * etlplan.h — the ETL job's plan (jobs/etl.c): what each side reads from its CSV rows, which payload field every
 * group column and aggregate comes from, and the clauses that filter the rows. Built once from the command line and
 * the two headers, the same on every rank; the job's callbacks get it (or one of its sides) as their argument.
 */
#ifndef EM_JOBS_COMMON_ETLPLAN_H
#define EM_JOBS_COMMON_ETLPLAN_H

#include <ember.h>

#include "jobs/common/etlspec.h"

#define ETL_MAXW 32  /* --where clauses */
#define ETL_MAXG 16  /* group columns */
#define ETL_MAXA 16  /* aggregates */
#define ETL_MAXF 64  /* fields in a payload */
#define ETL_MAXC 256 /* columns a plan can name (etl_plan_build reads at most 256 names) */

typedef struct etl_side {
    int which; /* ETL_LEFT / ETL_RIGHT */
    const char *file;
    em_ds *csv;
    int key;                       /* key column */
    const etl_where *w[ETL_MAXW];  /* clauses on this etl_side */
    int nw;
    int col[ETL_MAXF];             /* payload: the columns copied, in order */
    int numeric[ETL_MAXF];         /* 1: the payload field must be a number (sum/avg/min/max) */
    int nf;
    int maxcol;                    /* the last column read (key, clauses, payload) */
    const struct etl_plan *plan;
} etl_side;

typedef struct etl_plan {
    etl_side s[2];
    em_join_kind join;
    int ng, na;
    etl_colref gref[ETL_MAXG];
    int gside[ETL_MAXG], gpos[ETL_MAXG]; /* group column g: which side's payload, at which position */
    etl_agg agg[ETL_MAXA];
    int apos[ETL_MAXA];                  /* aggregate a (not count): position in its side's payload */
    etl_where where[ETL_MAXW];
    int nwhere;
    const char *gname[ETL_MAXG];         /* output names of the group columns (as written) */
    struct etl_bcast *bc;                /* broadcast join: the right side on every rank (NULL: shuffle join) */
} etl_plan;

/* Builds the plan from the arguments (--left-key, --right-key, the --where clauses, --group-by, --agg) and the two
 * headers: the caller has set which, file and csv of both sides and zeroed the rest. The plan keeps pointers into
 * the argument strings, which must outlive it. LOCAL (every rank reaches the same verdict). Returns 0, or -1 after
 * printing the error once (em_job_error). */
int etl_plan_build(const em_ctx *ctx, etl_plan *pl, const char *lkey, const char *rkey, const char *const *where,
                   int nwhere, const char *group, const char *agg);

/* Index of the output column named by --sort-by (group names as written, aggregates as in the header or as in
 * --agg with ':'), or -1 after printing the error. LOCAL. */
int etl_plan_sort_column(const em_ctx *ctx, const etl_plan *pl, const char *spec, int *desc);

#endif
