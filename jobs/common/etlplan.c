/*
 * etlplan.c — building the ETL job's plan (see etlplan.h) from its command line and the two CSV headers: column
 * references resolved against the headers, each side's payload laid out, the output names of the group columns.
 * Follows DESIGN.md §2 (every rank builds the same plan, and reports a bad argument once, from the leader).
 */
#include "jobs/common/etlplan.h"

#include <stdio.h>
#include <string.h>

#include "jobs/common/joberr.h"

#define PROG "etl"

/* Payload position of column c of side s (added when new). */
static int payload_pos(etl_side *s, int c, int numeric)
{
    for (int i = 0; i < s->nf; i++)
        if (s->col[i] == c) {
            s->numeric[i] |= numeric;
            return i;
        }
    s->col[s->nf] = c;
    s->numeric[s->nf] = numeric;
    return s->nf++;
}

/* Header of a side for messages: "a, b, c". */
static void columns_of(em_ds *csv, char *buf, size_t n)
{
    size_t at = 0;
    buf[0] = 0;
    for (int i = 0; i < em_csv_ncols(csv) && at + 1 < n; i++)
        at += (size_t)snprintf(buf + at, n - at, "%s%s", i ? ", " : "", em_csv_colname(csv, i));
}

int etl_plan_build(const em_ctx *ctx, etl_plan *pl, const char *lkey, const char *rkey, const char *const *where,
                   int nwhere, const char *group, const char *agg)
{
    char err[600], cols[400];
    const char *names[2][256];
    int nn[2];
    for (int s = 0; s < 2; s++) {
        nn[s] = em_csv_ncols(pl->s[s].csv);
        if (nn[s] <= 0) {
            em_job_error(ctx, PROG, "%s: no header row (an empty file?)", pl->s[s].file);
            return -1;
        }
        if (nn[s] > 256) nn[s] = 256;
        for (int i = 0; i < nn[s]; i++) names[s][i] = em_csv_colname(pl->s[s].csv, i);
    }
    const char *keys[2] = {lkey, rkey};
    for (int s = 0; s < 2; s++) {
        pl->s[s].key = em_csv_col(pl->s[s].csv, keys[s]);
        if (pl->s[s].key < 0) {
            columns_of(pl->s[s].csv, cols, sizeof cols);
            em_job_error(ctx, PROG, "%s: no column '%s' in %s (columns: %s)", s ? "--right-key" : "--left-key", keys[s],
                         pl->s[s].file, cols);
            return -1;
        }
    }
#define RESOLVE(ref, sidep, idxp, what)                                                                            \
    if (etl_colref_resolve(ref, names[0], nn[0], names[1], nn[1], pl->s[0].file, pl->s[1].file, sidep, idxp, err, \
                           sizeof err) < 0) {                                                                      \
        em_job_error(ctx, PROG, "%s: %s", what, err);                                                             \
        return -1;                                                                                                 \
    }
    for (int i = 0; i < nwhere; i++) {
        etl_where *w = &pl->where[i];
        if (etl_where_parse(where[i], w, err, sizeof err) < 0) {
            em_job_error(ctx, PROG, "%s", err);
            return -1;
        }
        pl->nwhere++;
        RESOLVE(&w->col, &w->side, &w->idx, "--where");
        pl->s[w->side].w[pl->s[w->side].nw++] = w;
    }
    if (etl_cols_parse(group, pl->gref, ETL_MAXG, &pl->ng, err, sizeof err) < 0) {
        em_job_error(ctx, PROG, "%s", err);
        return -1;
    }
    for (int g = 0; g < pl->ng; g++) {
        int side, idx;
        RESOLVE(&pl->gref[g], &side, &idx, "--group-by");
        pl->gside[g] = side;
        pl->gpos[g] = payload_pos(&pl->s[side], idx, 0);
    }
    if (etl_agg_parse(agg, pl->agg, ETL_MAXA, &pl->na, err, sizeof err) < 0) {
        em_job_error(ctx, PROG, "%s", err);
        return -1;
    }
    for (int i = 0; i < pl->na; i++) {
        etl_agg *ag = &pl->agg[i];
        if (ag->kind == ETL_COUNT) continue;
        RESOLVE(&ag->col, &ag->side, &ag->idx, "--agg");
        pl->apos[i] = payload_pos(&pl->s[ag->side], ag->idx, ag->kind != ETL_COUNT_DISTINCT);
    }
    for (int s = 0; s < 2; s++) {
        etl_side *sd = &pl->s[s];
        if (sd->nf > ETL_MAXF) {
            em_job_error(ctx, PROG, "too many columns used from %s (at most %d)", sd->file, ETL_MAXF);
            return -1;
        }
        sd->maxcol = sd->key;
        for (int i = 0; i < sd->nw; i++) sd->maxcol = sd->w[i]->idx > sd->maxcol ? sd->w[i]->idx : sd->maxcol;
        for (int i = 0; i < sd->nf; i++) sd->maxcol = sd->col[i] > sd->maxcol ? sd->col[i] : sd->maxcol;
        if (sd->maxcol >= ETL_MAXC) {
            em_job_error(ctx, PROG, "%s: column %d is used; at most %d columns are supported", sd->file,
                         sd->maxcol + 1, ETL_MAXC);
            return -1;
        }
    }
#undef RESOLVE
    for (int g = 0; g < pl->ng; g++) { /* the output names of the group columns, as written */
        static char gnames[ETL_MAXG][160];
        snprintf(gnames[g], sizeof gnames[g], "%.*s%s%.*s", pl->gref[g].side == ETL_ANY ? 0 : pl->gref[g].side ? 6 : 5,
                 pl->gref[g].side ? "right." : "left.", "", (int)pl->gref[g].len, pl->gref[g].name);
        pl->gname[g] = gnames[g];
    }
    return 0;
}

int etl_plan_sort_column(const em_ctx *ctx, const etl_plan *pl, const char *spec, int *desc)
{
    const char *c;
    size_t n;
    char err[300], alt[200];
    if (etl_sort_parse(spec, &c, &n, desc, err, sizeof err) < 0) {
        em_job_error(ctx, PROG, "%s", err);
        return -1;
    }
    snprintf(alt, sizeof alt, "%.*s", (int)n, c);
    char *colon = strchr(alt, ':');
    if (colon) *colon = '_';
    for (int g = 0; g < pl->ng; g++)
        if (strlen(pl->gname[g]) == n && strncmp(pl->gname[g], c, n) == 0) return g;
    for (int i = 0; i < pl->na; i++)
        if (strcmp(pl->agg[i].out, alt) == 0) return pl->ng + i;
    em_job_error(ctx, PROG, "--sort-by: '%.*s' is not an output column (a --group-by column or one of the --agg "
                 "outputs such as %s)", (int)n, c, pl->agg[0].out);
    return -1;
}
