/*
 * etlout.c — the ETL job's output (see etlout.h): cells from the final aggregate states, the sort, the CSV writer
 * (shortest round-tripping numbers, RFC 4180 quoting) and the HDF5 schema. Follows DESIGN.md §8 (outputs).
 */
#include "jobs/common/etlout.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "jobs/common/etlagg.h"

static int cell_cmp(const etl_cell *a, const etl_cell *b)
{
    int ta = a->type == EM_F_F64 ? EM_F_I64 : (int)a->type, tb = b->type == EM_F_F64 ? EM_F_I64 : (int)b->type;
    if (ta != tb) return ta < tb ? -1 : 1;
    if (ta == EM_F_NULL) return 0;
    if (ta == EM_F_I64) {
        if (a->type == EM_F_I64 && b->type == EM_F_I64) return (a->i > b->i) - (a->i < b->i);
        double x = a->type == EM_F_I64 ? (double)a->i : a->d, y = b->type == EM_F_I64 ? (double)b->i : b->d;
        return (x > y) - (x < y);
    }
    int c = memcmp(a->s, b->s, a->n < b->n ? a->n : b->n);
    return c ? c : (a->n > b->n) - (a->n < b->n);
}

/* qsort's comparator reads the --sort-by column from here (set by etl_out_sort). */
static int sort_col = -1, sort_desc;
static int row_cmp(const void *x, const void *y)
{
    const etl_outrow *a = x, *b = y;
    if (sort_col >= 0) {
        int c = cell_cmp(&a->c[sort_col], &b->c[sort_col]);
        if (c) return sort_desc ? -c : c;
    }
    int c = memcmp(a->key, b->key, a->klen < b->klen ? a->klen : b->klen);
    return c ? c : (a->klen > b->klen) - (a->klen < b->klen);
}

static void csv_put(FILE *f, const char *s, size_t n)
{
    if (!memchr(s, ',', n) && !memchr(s, '"', n) && !memchr(s, '\n', n) && !memchr(s, '\r', n)) {
        fwrite(s, 1, n, f);
        return;
    }
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '"') fputc('"', f);
        fputc(s[i], f);
    }
    fputc('"', f);
}

static void cell_put(FILE *f, const etl_cell *c)
{
    switch (c->type) {
    case EM_F_NULL: break;
    case EM_F_I64: fprintf(f, "%" PRId64, c->i); break;
    case EM_F_F64: {
        /* The shortest form that reads back as the same double (avg: always %.17g, as documented). */
        char b[40];
        for (int prec = c->avg ? 17 : 15; prec <= 17; prec++) {
            snprintf(b, sizeof b, "%.*g", prec, c->d);
            if (strtod(b, NULL) == c->d) break;
        }
        fputs(b, f);
        break;
    }
    case EM_F_STR: csv_put(f, c->s, c->n); break;
    }
}

/* The cell of aggregate a from its final state. */
static etl_cell agg_cell(etl_aggkind k, const etl_aggst *s)
{
    etl_cell c = {.type = EM_F_NULL};
    if (k == ETL_COUNT || k == ETL_COUNT_DISTINCT) return (etl_cell){.type = EM_F_I64, .i = s->n};
    if (s->n == 0) return c;
    int exact = s->all_int && !s->ovf;
    switch (k) {
    case ETL_SUM:
        if (exact) return (etl_cell){.type = EM_F_I64, .i = s->i};
        return (etl_cell){.type = EM_F_F64, .d = s->hi + s->lo};
    case ETL_AVG: return (etl_cell){.type = EM_F_F64, .d = (exact ? (double)s->i : s->hi + s->lo) / (double)s->n, .avg = 1};
    default:
        if (s->all_int) return (etl_cell){.type = EM_F_I64, .i = s->i};
        return (etl_cell){.type = EM_F_F64, .d = s->hi};
    }
}

size_t etl_out_rows(const etl_plan *pl, const em_records *res, etl_outrow *rows, etl_badsum *bad)
{
    size_t nrows = 0;
    memset(bad, 0, sizeof *bad);
    for (size_t i = 0; i < res->n; i++) {
        const em_rec *rec = &res->recs[i];
        const uint8_t *v = rec->val;
        if (rec->vlen && v[0] == 'B') {
            etl_badsum_decode(v + 1, rec->vlen - 1, bad);
            continue;
        }
        etl_outrow *o2 = &rows[nrows++];
        o2->key = rec->key;
        o2->klen = rec->klen;
        em_field gf[ETL_MAXG + 1];
        /* Strings with NUL bytes in group keys would need copies; the key bytes stay valid, so read in place
         * and copy only those (rare) through em_tup_get's buffer into a per-row allocation. */
        for (int g = 0; g < pl->ng; g++) {
            em_tup_get(rec->key, rec->klen, g + 1, &gf[g]);
            etl_cell *c = &o2->c[g];
            c->type = gf[g].type, c->i = gf[g].i64, c->d = gf[g].f64, c->s = gf[g].str, c->n = gf[g].len;
            if (c->type == EM_F_STR && (c->s < (const char *)rec->key || c->s >= (const char *)rec->key + rec->klen)) {
                char *copy = malloc(c->n ? c->n : 1);
                if (!copy) abort();
                memcpy(copy, c->s, c->n);
                c->s = copy; /* leaks until exit: a group key holding NUL bytes is rare */
            }
        }
        for (int k = 0; k < pl->na; k++) {
            etl_aggst s;
            memcpy(&s, v + 1 + (size_t)k * sizeof s, sizeof s);
            o2->c[pl->ng + k] = agg_cell(pl->agg[k].kind, &s);
        }
    }
    return nrows;
}

void etl_out_sort(etl_outrow *rows, size_t nrows, int col, int desc)
{
    sort_col = col, sort_desc = desc;
    qsort(rows, nrows, sizeof *rows, row_cmp);
}

/* The output column names: the group columns as written, then the aggregates (count, sum_amount, ...). */
static int out_names(const etl_plan *pl, const char **names)
{
    for (int g = 0; g < pl->ng; g++) names[g] = pl->gname[g];
    for (int k = 0; k < pl->na; k++) names[pl->ng + k] = pl->agg[k].out;
    return pl->ng + pl->na;
}

void etl_out_csv(FILE *f, const etl_plan *pl, const etl_outrow *rows, size_t nrows)
{
    const char *names[ETL_MAXG + ETL_MAXA];
    int ncols = out_names(pl, names);
    for (int c = 0; c < ncols; c++) {
        if (c) fputc(',', f);
        csv_put(f, names[c], strlen(names[c]));
    }
    fputc('\n', f);
    for (size_t i = 0; i < nrows; i++) {
        for (int c = 0; c < ncols; c++) {
            if (c) fputc(',', f);
            cell_put(f, &rows[i].c[c]);
        }
        fputc('\n', f);
    }
}

int etl_out_hdf5(em_ctx *ctx, const char *path, const etl_plan *pl, const etl_outrow *rows, size_t nrows)
{
    const char *names[ETL_MAXG + ETL_MAXA];
    int ncols = out_names(pl, names);
    /* HDF5: a column's type fits every row (ints stay i64 unless a row has a double or a NULL). */
    char schema[4096];
    size_t at = 0;
    int type[ETL_MAXG + ETL_MAXA]; /* 0 i64, 1 f64, 2 str */
    size_t width[ETL_MAXG + ETL_MAXA];
    for (int c = 0; c < ncols; c++) {
        int has_str = 0, has_f = 0, has_null = 0;
        width[c] = 1;
        for (size_t i = 0; i < nrows; i++) {
            const etl_cell *x = &rows[i].c[c];
            has_str |= x->type == EM_F_STR, has_f |= x->type == EM_F_F64, has_null |= x->type == EM_F_NULL;
            size_t w = x->type == EM_F_STR ? x->n : 21;
            if (w > width[c]) width[c] = w;
        }
        type[c] = c < pl->ng ? (has_str || has_null || has_f ? 2 : 0) : (has_f || has_null ? 1 : 0);
        char nm[160];
        snprintf(nm, sizeof nm, "%s", names[c]);
        for (char *p = nm; *p; p++)
            if (*p == ',' || *p == ':') *p = '_';
        if (type[c] == 2) at += (size_t)snprintf(schema + at, sizeof schema - at, "%s%s:str%zu", c ? "," : "", nm, width[c]);
        else at += (size_t)snprintf(schema + at, sizeof schema - at, "%s%s:%s", c ? "," : "", nm, type[c] ? "f64" : "i64");
    }
    em_rec *recs = calloc(nrows ? nrows : 1, sizeof *recs);
    em_tup *vals = calloc(nrows ? nrows : 1, sizeof *vals);
    uint8_t(*keys)[8] = calloc(nrows ? nrows : 1, 8);
    for (size_t i = 0; i < nrows; i++) {
        for (int c = 0; c < ncols; c++) {
            const etl_cell *x = &rows[i].c[c];
            if (type[c] == 0) em_tup_i64(&vals[i], x->i);
            else if (type[c] == 1) em_tup_f64(&vals[i], x->type == EM_F_I64 ? (double)x->i : x->type == EM_F_F64 ? x->d : __builtin_nan(""));
            else if (x->type == EM_F_STR) em_tup_str(&vals[i], x->s, x->n);
            else if (x->type == EM_F_NULL) em_tup_str(&vals[i], "", 0);
            else {
                char b[32];
                int bl = x->type == EM_F_I64 ? snprintf(b, sizeof b, "%" PRId64, x->i) : snprintf(b, sizeof b, "%.17g", x->d);
                em_tup_str(&vals[i], b, (size_t)bl);
            }
        }
        em_i64_put(keys[i], (int64_t)i);
        recs[i] = (em_rec){keys[i], vals[i].p, 8, (uint32_t)vals[i].len};
    }
    em_ds *out = em_parallelize(ctx, recs, nrows, 0);
    int rc = em_save_hdf5(out, path, "etl", schema);
    for (size_t i = 0; i < nrows; i++) em_tup_free(&vals[i]);
    free(recs), free(vals), free(keys);
    return rc;
}
