/*
 * etl.c — the ETL job: join two CSV files on a key, filter, group and aggregate (the classic Spark ETL), written
 * against the public API only. Follows DESIGN.md §2-5 and §8.
 *
 *     ember run -np 3 build/bin/etl --left orders.csv --right customers.csv --left-key customer_id \
 *         --right-key customer_id --where 'amount > 10' --group-by country --agg count,sum:amount,avg:amount \
 *         --out by_country.csv
 *
 * Dataflow (one action):
 *     em_csv(left)  -> em_map parse -+
 *                                    +-> em_cogroup join -> em_reduce_by_key -> em_map -> em_reduce_by_key -> collect
 *     em_csv(right) -> em_map parse -+
 *
 *   parse     applies the --where clauses of its side, types the fields it needs, and emits (join key, payload);
 *             a row whose key is empty or whose compared / aggregated field is not a number goes under one BAD
 *             key with its file, line and reason instead (counted, never joined).
 *   join      per key: the right side's rows are held in memory, each left row is paired with each of them (or,
 *             for --join left, with nothing); each pair becomes (group, partial aggregates) plus, for every
 *             count_distinct, a (group, value) pair; the BAD key becomes one summary record.
 *   reduce 1  merges partial aggregates per group, and dedups the (group, value) pairs (map-side combine does most);
 *   map       turns each distinct (group, value) into a count of 1 for its group;
 *   reduce 2  adds those counts to the group's aggregates.
 * Records are tuples (em_tup) so that groups sort by their typed values: the leader sorts the collected groups
 * and writes the CSV, or every rank hands the same rows to em_save_hdf5.
 *
 * Typing (jobs/common/etlspec.h): keys and group columns are int64 when the field is an integer, else strings;
 * aggregated fields are numbers; empty fields are missing values (NULL): sum/avg/min/max skip them, count counts
 * rows, count_distinct ignores them. A sum of integers stays an exact integer (until it would overflow int64).
 */
#include <ember.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jobs/common/etlspec.h"
#include "jobs/common/joberr.h"

#define PROG "etl"
#define MAXW 32 /* --where clauses */
#define MAXG 16 /* group columns */
#define MAXA 16 /* aggregates */
#define MAXF 64 /* fields in a payload */
#define BAD_LISTED 10

static const char usage[] =
    "usage: " PROG " --left FILE --right FILE --left-key COL --right-key COL [--join inner|left]\n"
    "           [--where 'COL OP VALUE' ...] --group-by COL[,COL...]\n"
    "           --agg count,sum:COL,avg:COL,min:COL,max:COL,count_distinct:COL\n"
    "           [--out OUT.csv | OUT.h5] [--sort-by COL[:desc]] [--strict]\n"
    "Joins two CSV files (header row required) on LEFT-KEY = RIGHT-KEY, keeps the rows that pass every --where\n"
    "(OP: = != < <= > >=; applied before the join), groups by the columns (left./right. prefix when a name is in\n"
    "both files) and prints one row per group with the aggregates, sorted by the group columns (or --sort-by:\n"
    "a group column or an output column such as sum_amount). Without --out the CSV goes to stdout.\n"
    "Rows whose key is empty or whose compared/aggregated field is not a number are skipped and reported;\n"
    "--strict makes them (and malformed CSV rows) fatal. With no argument at all, runs on examples/data.\n";

/* ---- the job's plan, the same on every rank (callbacks get it as their argument) ---------------------------- */

typedef struct etl_side {
    int which; /* ETL_LEFT / ETL_RIGHT */
    const char *file;
    em_ds *csv;
    int key;                      /* key column */
    const etl_where *w[MAXW];     /* clauses on this etl_side */
    int nw;
    int col[MAXF];                /* payload: the columns copied, in order */
    int numeric[MAXF];            /* 1: the payload field must be a number (sum/avg/min/max) */
    int nf;
    const struct plan *plan;
} etl_side;

typedef struct plan {
    etl_side s[2];
    em_join_kind join;
    int ng, na;
    etl_colref gref[MAXG];
    int gside[MAXG], gpos[MAXG]; /* group column g: which side's payload, at which position */
    etl_agg agg[MAXA];
    int apos[MAXA];              /* aggregate a (not count): position in its side's payload */
    etl_where where[MAXW];
    int nwhere;
    const char *gname[MAXG];     /* output names of the group columns (as written) */
} plan;

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

/* ---- aggregate states ---------------------------------------------------------------------------------------
 * A value of the first reduce is one kind byte and then:
 *   'M'  a group's partial aggregates: na x struct aggst (fixed size, memcpy'd: records stay on this machine
 *        type, every rank runs the same binary)
 *   'D'  nothing: a distinct (group, value) pair
 *   'B'  the bad-row summary: a tuple (see bad_*)
 */
typedef struct aggst {
    int64_t n;       /* rows (count), non-missing values (sum/avg/min/max), distinct values (count_distinct) */
    int64_t i;       /* exact integer sum (sum/avg) or integer min/max, while all_int */
    double hi, lo;   /* double sum, Neumaier-compensated (lo: the lost low part); min/max in hi */
    uint32_t all_int;
    uint32_t ovf;    /* the integer sum overflowed: use hi + lo */
} aggst;

/* Neumaier's compensated sum: lo collects what each addition to hi rounds away. */
static void sum_add(aggst *s, double v)
{
    double t = s->hi + v;
    if (__builtin_fabs(s->hi) >= __builtin_fabs(v)) s->lo += (s->hi - t) + v;
    else s->lo += (v - t) + s->hi;
    s->hi = t;
}

static void agg_merge(etl_aggkind k, aggst *a, const aggst *b)
{
    if (b->n == 0) return;
    if (a->n == 0 && k != ETL_COUNT && k != ETL_COUNT_DISTINCT) {
        *a = *b;
        return;
    }
    switch (k) {
    case ETL_COUNT:
    case ETL_COUNT_DISTINCT: a->n += b->n; break;
    case ETL_SUM:
    case ETL_AVG:
        a->n += b->n;
        a->ovf |= b->ovf || __builtin_add_overflow(a->i, b->i, &a->i);
        a->all_int &= b->all_int;
        sum_add(a, b->hi);
        a->lo += b->lo;
        break;
    case ETL_MIN:
    case ETL_MAX: {
        int lt = a->all_int && b->all_int ? b->i < a->i : b->hi < a->hi;
        int gt = a->all_int && b->all_int ? b->i > a->i : b->hi > a->hi;
        if (k == ETL_MIN ? lt : gt) a->i = b->i, a->hi = b->hi;
        a->all_int &= b->all_int;
        a->n += b->n;
        break;
    }
    }
}

/* ---- bad rows: a summary tuple (count, then (side, file, count) per file, then up to 10 listed rows) ------- */

typedef struct badrow {
    int64_t side, file, line;
    char msg[200];
} badrow;
typedef struct badsum {
    int nfiles;
    int64_t fside[64], ffile[64], fcount[64];
    int nlist;
    badrow list[BAD_LISTED];
} badsum;

static void bad_count(badsum *b, int64_t side, int64_t file, int64_t n)
{
    for (int i = 0; i < b->nfiles; i++)
        if (b->fside[i] == side && b->ffile[i] == file) {
            b->fcount[i] += n;
            return;
        }
    if (b->nfiles == 64) return; /* more than 64 input files with bad rows: the rest go uncounted by file */
    b->fside[b->nfiles] = side, b->ffile[b->nfiles] = file, b->fcount[b->nfiles++] = n;
}

static int row_before(const badrow *x, const badrow *y)
{
    if (x->side != y->side) return x->side < y->side;
    if (x->file != y->file) return x->file < y->file;
    return x->line < y->line;
}

/* Keeps the BAD_LISTED first rows by (side, file, line), so the list does not depend on task order. */
static void bad_list(badsum *b, const badrow *r)
{
    int at = b->nlist;
    while (at > 0 && row_before(r, &b->list[at - 1])) at--;
    if (at == BAD_LISTED) return;
    int n = b->nlist < BAD_LISTED ? b->nlist : BAD_LISTED - 1;
    memmove(&b->list[at + 1], &b->list[at], (size_t)(n - at) * sizeof *r);
    b->list[at] = *r;
    if (b->nlist < BAD_LISTED) b->nlist++;
}

static int64_t fi64(const void *p, size_t n, int idx)
{
    em_field f;
    return em_tup_get(p, n, idx, &f) == 0 && f.type == EM_F_I64 ? f.i64 : 0;
}

static void bad_decode(const uint8_t *p, size_t n, badsum *b)
{
    int k = 0;
    memset(b, 0, sizeof *b);
    int nf = (int)fi64(p, n, k++);
    for (int i = 0; i < nf; i++, k += 3) bad_count(b, fi64(p, n, k), fi64(p, n, k + 1), fi64(p, n, k + 2));
    int nl = (int)fi64(p, n, k++);
    for (int i = 0; i < nl; i++, k += 4) {
        badrow r = {fi64(p, n, k), fi64(p, n, k + 1), fi64(p, n, k + 2), ""};
        em_field f;
        if (em_tup_get(p, n, k + 3, &f) == 0 && f.type == EM_F_STR)
            snprintf(r.msg, sizeof r.msg, "%.*s", (int)f.len, f.str);
        bad_list(b, &r);
    }
}

static void bad_encode(const badsum *b, em_tup *t)
{
    em_tup_i64(t, b->nfiles);
    for (int i = 0; i < b->nfiles; i++) em_tup_i64(t, b->fside[i]), em_tup_i64(t, b->ffile[i]), em_tup_i64(t, b->fcount[i]);
    em_tup_i64(t, b->nlist);
    for (int i = 0; i < b->nlist; i++) {
        em_tup_i64(t, b->list[i].side), em_tup_i64(t, b->list[i].file), em_tup_i64(t, b->list[i].line);
        em_tup_str(t, b->list[i].msg, strlen(b->list[i].msg));
    }
}

/* ---- parse: a CSV row -> (join key, payload) or a bad row -------------------------------------------------- */

static _Thread_local em_tup tk, tv, tg, tx; /* scratch tuples of this executor thread */

/* A field of a CSV record (strings only). NUL-holding strings live in em_tup_get's per-thread buffer until the next
 * call: every caller below uses the field before fetching another. */
static int csv_field(const em_rec *in, int idx, const char **s, size_t *n)
{
    em_field f;
    int rc = em_tup_get(in->val, in->vlen, idx, &f);
    if (rc < 0 || f.type != EM_F_STR) return rc < 0 ? rc : -1;
    *s = f.str;
    *n = f.len;
    return 0;
}

static int emit_bad(const etl_side *sd, const em_rec *in, em_emitter *out, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int emit_bad(const etl_side *sd, const em_rec *in, em_emitter *out, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    em_tup_clear(&tk);
    em_tup_null(&tk);
    em_tup_clear(&tv);
    em_tup_i64(&tv, sd->which);
    em_tup_i64(&tv, fi64(in->key, in->klen, 0));
    em_tup_i64(&tv, fi64(in->key, in->klen, 1));
    em_tup_str(&tv, msg, strlen(msg));
    return em_emit(out, tk.p, (uint32_t)tk.len, tv.p, (uint32_t)tv.len);
}

/* A key or group value: int64 when the field is an integer, else the string; empty = NULL. */
static void put_typed(em_tup *t, const char *s, size_t n)
{
    int64_t v;
    if (n == 0) em_tup_null(t);
    else if (etl_parse_int(s, n, &v)) em_tup_i64(t, v);
    else em_tup_str(t, s, n);
}

#define SHOWN(n) ((n) > 40 ? 40 : (int)(n))
#define ELLIPSIS(n) ((n) > 40 ? "..." : "")

static int parse_row(const em_rec *in, em_emitter *out, void *arg)
{
    const etl_side *sd = arg;
    const char *s;
    size_t n;
    for (int i = 0; i < sd->nw; i++) {
        const etl_where *w = sd->w[i];
        if (csv_field(in, w->idx, &s, &n) < 0) return -1;
        int m = etl_where_match(w, s, n);
        if (m == 0) return 0;
        if (m < 0)
            return emit_bad(sd, in, out, "%.*s: '%.*s%s' is not a number (--where)", (int)w->col.len, w->col.name,
                            SHOWN(n), s, ELLIPSIS(n));
    }
    if (csv_field(in, sd->key, &s, &n) < 0) return -1;
    if (n == 0) return emit_bad(sd, in, out, "%s: empty key", em_csv_colname(sd->csv, sd->key));
    em_tup_clear(&tk);
    put_typed(&tk, s, n);
    em_tup_clear(&tv);
    for (int i = 0; i < sd->nf; i++) {
        if (csv_field(in, sd->col[i], &s, &n) < 0) return -1;
        if (!sd->numeric[i]) {
            put_typed(&tv, s, n);
            continue;
        }
        int64_t iv;
        double d;
        if (n == 0) em_tup_null(&tv);
        else if (etl_parse_int(s, n, &iv)) em_tup_i64(&tv, iv);
        else if (etl_parse_num(s, n, &d)) em_tup_f64(&tv, d);
        else
            return emit_bad(sd, in, out, "%s: '%.*s%s' is not a number", em_csv_colname(sd->csv, sd->col[i]),
                            SHOWN(n), s, ELLIPSIS(n));
    }
    return em_emit(out, tk.p, (uint32_t)tk.len, tv.p, (uint32_t)tv.len);
}

/* ---- join: cogroup callback --------------------------------------------------------------------------------- */

/* A growable byte buffer for copies (no per-record malloc once warm). */
typedef struct bytes {
    uint8_t *p;
    size_t len, cap;
} bytes;

static int bytes_add(bytes *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->len + n) c *= 2;
        uint8_t *q = realloc(b->p, c);
        if (!q) return -1;
        b->p = q;
        b->cap = c;
    }
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

/* Fields of a payload tuple into f[0..n), returning n or -1. A string holding NUL bytes comes from em_tup_get's
 * per-thread buffer, which the next call reuses: such strings are copied into *own, and their pointers set once
 * every copy is made (own->p may move while it grows). */
static int payload_fields(const void *p, uint32_t len, em_field *f, int max, bytes *own)
{
    size_t at[MAXF + 2];
    int n = em_tup_count(p, len);
    if (n < 0 || n > max || n > MAXF + 2) return -1;
    own->len = 0;
    for (int i = 0; i < n; i++) {
        at[i] = SIZE_MAX;
        if (em_tup_get(p, len, i, &f[i]) < 0) return -1;
        if (f[i].type == EM_F_STR && (f[i].str < (const char *)p || f[i].str >= (const char *)p + len)) {
            at[i] = own->len;
            if (bytes_add(own, f[i].str, f[i].len) < 0) return -1;
        }
    }
    for (int i = 0; i < n; i++)
        if (at[i] != SIZE_MAX) f[i].str = (const char *)own->p + at[i];
    return n;
}

static void put_field(em_tup *t, const em_field *f)
{
    switch (f->type) {
    case EM_F_NULL: em_tup_null(t); break;
    case EM_F_I64: em_tup_i64(t, f->i64); break;
    case EM_F_F64: em_tup_f64(t, f->f64); break;
    case EM_F_STR: em_tup_str(t, f->str, f->len); break;
    }
}

/* One joined pair (r may be NULL: a left row without match) -> its group's partial aggregates and distinct pairs. */
static int emit_pair(const plan *pl, const em_field *l, const em_field *r, em_emitter *out)
{
    static const em_field null_field = {.type = EM_F_NULL};
    const em_field *side_f[2] = {l, r};
    uint8_t st[1 + MAXA * sizeof(aggst)];
    int rc;
    em_tup_clear(&tg);
    em_tup_i64(&tg, 0);
    for (int g = 0; g < pl->ng; g++) put_field(&tg, side_f[pl->gside[g]] ? &side_f[pl->gside[g]][pl->gpos[g]] : &null_field);
    st[0] = 'M';
    for (int a = 0; a < pl->na; a++) {
        const etl_agg *ag = &pl->agg[a];
        aggst s = {0};
        s.all_int = 1;
        const em_field *f = ag->kind == ETL_COUNT || !side_f[ag->side] ? &null_field : &side_f[ag->side][pl->apos[a]];
        if (ag->kind == ETL_COUNT) {
            s.n = 1;
        } else if (ag->kind == ETL_COUNT_DISTINCT) {
            if (f->type != EM_F_NULL) { /* (group, value) under kind 1 + a */
                em_tup_clear(&tx);
                em_tup_i64(&tx, 1 + a);
                for (int g = 0; g < pl->ng; g++)
                    put_field(&tx, side_f[pl->gside[g]] ? &side_f[pl->gside[g]][pl->gpos[g]] : &null_field);
                put_field(&tx, f);
                if ((rc = em_emit(out, tx.p, (uint32_t)tx.len, "D", 1)) < 0) return rc;
            }
        } else if (f->type == EM_F_I64) {
            s.n = 1, s.i = f->i64, s.hi = (double)f->i64;
        } else if (f->type == EM_F_F64) {
            s.n = 1, s.all_int = 0, s.hi = f->f64;
        }
        memcpy(st + 1 + (size_t)a * sizeof s, &s, sizeof s);
    }
    return em_emit(out, tg.p, (uint32_t)tg.len, st, (uint32_t)(1 + (size_t)pl->na * sizeof(aggst)));
}

static int join_rows(const void *key, uint32_t klen, em_values *a, em_values *b, em_emitter *out, void *arg)
{
    const plan *pl = arg;
    const void *v;
    uint32_t vl;
    int rc;
    em_field kf;
    if (em_tup_get(key, klen, 0, &kf) == 0 && kf.type == EM_F_NULL) { /* the bad rows of both sides */
        badsum bs;
        memset(&bs, 0, sizeof bs);
        for (int s = 0; s < 2; s++)
            while ((rc = em_values_next(s ? b : a, &v, &vl)) > 0) {
                badrow r = {fi64(v, vl, 0), fi64(v, vl, 1), fi64(v, vl, 2), ""};
                em_field f;
                if (em_tup_get(v, vl, 3, &f) == 0 && f.type == EM_F_STR) snprintf(r.msg, sizeof r.msg, "%.*s", (int)f.len, f.str);
                bad_count(&bs, r.side, r.file, 1);
                bad_list(&bs, &r);
            }
        if (rc < 0) return rc;
        em_tup_clear(&tx);
        bad_encode(&bs, &tx);
        em_tup_clear(&tg);
        em_tup_i64(&tg, -1);
        bytes val = {0};
        rc = bytes_add(&val, "B", 1) < 0 || bytes_add(&val, tx.p, tx.len) < 0 ? -1
             : em_emit(out, tg.p, (uint32_t)tg.len, val.p, (uint32_t)val.len);
        free(val.p);
        return rc;
    }
    /* Right rows of this key, held in memory (usually one: a dimension table). */
    bytes rows = {0}, offs = {0}, lown = {0}, rown = {0};
    em_field lf[MAXF], rf[MAXF];
    size_t nr = 0;
    while ((rc = em_values_next(b, &v, &vl)) > 0) {
        size_t o[2] = {rows.len, rows.len + vl};
        if (bytes_add(&rows, v, vl) < 0 || bytes_add(&offs, o, sizeof o) < 0) {
            rc = -1;
            break;
        }
        nr++;
    }
    if (rc < 0 || (nr == 0 && pl->join == EM_JOIN_INNER)) goto out; /* unmatched left rows are dropped */
    const size_t *off = (const size_t *)(void *)offs.p;
    while ((rc = em_values_next(a, &v, &vl)) > 0) {
        if (payload_fields(v, vl, lf, MAXF, &lown) < 0) {
            rc = -1;
            break;
        }
        if (nr == 0) {
            if ((rc = emit_pair(pl, lf, NULL, out)) < 0) break;
            continue;
        }
        for (size_t i = 0; i < nr && rc >= 0; i++)
            if (payload_fields(rows.p + off[2 * i], (uint32_t)(off[2 * i + 1] - off[2 * i]), rf, MAXF, &rown) < 0) rc = -1;
            else rc = emit_pair(pl, lf, rf, out);
        if (rc < 0) break;
    }
out:
    free(rows.p), free(offs.p), free(lown.p), free(rown.p);
    return rc < 0 ? rc : 0;
}
/* ---- reduces ------------------------------------------------------------------------------------------------ */

static int combine(const void *a, uint32_t alen, const void *b, uint32_t blen, em_value *out, void *arg)
{
    const plan *pl = arg;
    const uint8_t *pa = a, *pb = b;
    if (alen == 0 || blen == 0 || pa[0] != pb[0]) return -1;
    if (pa[0] == 'D') return em_value_set(out, "D", 1);
    if (pa[0] == 'M') {
        uint8_t st[1 + MAXA * sizeof(aggst)];
        if (alen != blen || alen != 1 + (size_t)pl->na * sizeof(aggst)) return -1;
        memcpy(st, pa, alen);
        for (int i = 0; i < pl->na; i++) {
            aggst x, y;
            memcpy(&x, st + 1 + (size_t)i * sizeof x, sizeof x);
            memcpy(&y, pb + 1 + (size_t)i * sizeof y, sizeof y);
            agg_merge(pl->agg[i].kind, &x, &y);
            memcpy(st + 1 + (size_t)i * sizeof x, &x, sizeof x);
        }
        return em_value_set(out, st, alen);
    }
    badsum x, y;
    bad_decode(pa + 1, alen - 1, &x);
    bad_decode(pb + 1, blen - 1, &y);
    for (int i = 0; i < y.nfiles; i++) bad_count(&x, y.fside[i], y.ffile[i], y.fcount[i]);
    for (int i = 0; i < y.nlist; i++) bad_list(&x, &y.list[i]);
    em_tup t = {0};
    bad_encode(&x, &t);
    bytes val = {0};
    int rc = bytes_add(&val, "B", 1) < 0 || bytes_add(&val, t.p, t.len) < 0 ? -1 : em_value_set(out, val.p, (uint32_t)val.len);
    em_tup_free(&t);
    free(val.p);
    return rc;
}

/* (kind 1+a, group..., value) -> (kind 0, group...) with count_distinct a = 1; everything else passes. */
static int distinct_to_counts(const em_rec *in, em_emitter *out, void *arg)
{
    const plan *pl = arg;
    int64_t kind = fi64(in->key, in->klen, 0);
    if (kind <= 0) return em_emit(out, in->key, in->klen, in->val, in->vlen);
    uint8_t st[1 + MAXA * sizeof(aggst)];
    memset(st, 0, sizeof st);
    st[0] = 'M';
    for (int a = 0; a < pl->na; a++) {
        aggst s = {0};
        s.all_int = 1;
        if (a == kind - 1) s.n = 1;
        memcpy(st + 1 + (size_t)a * sizeof s, &s, sizeof s);
    }
    em_tup_clear(&tx);
    em_tup_i64(&tx, 0);
    bytes own = {0};
    em_field gf[MAXG + 2];
    int n = payload_fields(in->key, in->klen, gf, MAXG + 2, &own);
    if (n == pl->ng + 2)
        for (int g = 1; g <= pl->ng; g++) put_field(&tx, &gf[g]);
    free(own.p);
    if (n != pl->ng + 2) return -1;
    return em_emit(out, tx.p, (uint32_t)tx.len, st, (uint32_t)(1 + (size_t)pl->na * sizeof(aggst)));
}

/* ---- output ------------------------------------------------------------------------------------------------- */

typedef struct cell {
    em_ftype type; /* NULL, I64, F64, STR */
    int64_t i;
    double d;
    const char *s;
    size_t n;
    int avg; /* printed with %.17g */
} cell;

typedef struct outrow {
    const uint8_t *key; /* (0, group...): memcmp order = group order */
    uint32_t klen;
    cell c[MAXG + MAXA];
} outrow;

static int cell_cmp(const cell *a, const cell *b)
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

static int sort_col = -1, sort_desc;
static int row_cmp(const void *x, const void *y)
{
    const outrow *a = x, *b = y;
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

static void cell_put(FILE *f, const cell *c)
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
static cell agg_cell(etl_aggkind k, const aggst *s)
{
    cell c = {.type = EM_F_NULL};
    if (k == ETL_COUNT || k == ETL_COUNT_DISTINCT) return (cell){.type = EM_F_I64, .i = s->n};
    if (s->n == 0) return c;
    int exact = s->all_int && !s->ovf;
    switch (k) {
    case ETL_SUM:
        if (exact) return (cell){.type = EM_F_I64, .i = s->i};
        return (cell){.type = EM_F_F64, .d = s->hi + s->lo};
    case ETL_AVG: return (cell){.type = EM_F_F64, .d = (exact ? (double)s->i : s->hi + s->lo) / (double)s->n, .avg = 1};
    default:
        if (s->all_int) return (cell){.type = EM_F_I64, .i = s->i};
        return (cell){.type = EM_F_F64, .d = s->hi};
    }
}

/* ---- command line ------------------------------------------------------------------------------------------- */

typedef struct args {
    const char *left, *right, *lkey, *rkey, *join, *group, *agg, *out, *sort;
    const char *where[MAXW];
    int nwhere, strict;
} args;

#define DEFAULT_DIR "examples/data"

/* examples/data next to the binary's build/ directory (as wordcount finds its sample). */
static const char *sample_path(const char *name)
{
    static char paths[2][PATH_MAX];
    static int k;
    char *path = paths[k++ & 1];
    ssize_t n = readlink("/proc/self/exe", path, PATH_MAX - 1);
    if (n <= 0) n = 0;
    path[n] = '\0';
    char *slash = strrchr(path, '/');
    size_t dir = slash ? (size_t)(slash - path) + 1 : 0;
    snprintf(path + dir, PATH_MAX - dir, "../../" DEFAULT_DIR "/%s", name);
    return path;
}

static int parse_args(int argc, char **argv, const em_ctx *ctx, args *a)
{
    static const struct { const char *flag; size_t off; } flags[] = {
        {"--left", offsetof(args, left)},      {"--right", offsetof(args, right)},
        {"--left-key", offsetof(args, lkey)},  {"--right-key", offsetof(args, rkey)},
        {"--join", offsetof(args, join)},      {"--group-by", offsetof(args, group)},
        {"--agg", offsetof(args, agg)},        {"--out", offsetof(args, out)},
        {"--sort-by", offsetof(args, sort)},
    };
    memset(a, 0, sizeof *a);
    if (argc <= 1) { /* make demo: the shipped sample */
        a->left = sample_path("orders.csv");
        a->right = sample_path("customers.csv");
        a->lkey = a->rkey = "customer_id";
        a->group = "country";
        a->agg = "count,sum:amount,avg:amount,min:amount,max:amount,count_distinct:left.customer_id";
        a->join = "inner";
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        char *arg = argv[i], *eq = strchr(arg, '=');
        size_t flen = eq && strncmp(arg, "--", 2) == 0 ? (size_t)(eq - arg) : strlen(arg);
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            if (em_is_leader(ctx)) fputs(usage, stdout);
            return 1;
        }
        if (strcmp(arg, "--strict") == 0) {
            a->strict = 1;
            continue;
        }
        const char **dst = NULL;
        int is_where = flen == 7 && strncmp(arg, "--where", 7) == 0;
        for (size_t k = 0; k < sizeof flags / sizeof flags[0]; k++)
            if (strlen(flags[k].flag) == flen && strncmp(arg, flags[k].flag, flen) == 0)
                dst = (const char **)((char *)a + flags[k].off);
        if (!dst && !is_where) {
            em_job_error(ctx, PROG, "unknown argument '%s' (see --help)", arg);
            return -1;
        }
        const char *val = eq && flen < strlen(arg) ? eq + 1 : ++i < argc ? argv[i] : NULL;
        if (!val || !*val) {
            em_job_error(ctx, PROG, "%.*s: missing value", (int)flen, arg);
            return -1;
        }
        if (is_where) {
            if (a->nwhere == MAXW) {
                em_job_error(ctx, PROG, "--where: more than %d clauses", MAXW);
                return -1;
            }
            a->where[a->nwhere++] = val;
        } else {
            *dst = val;
        }
    }
    const char *missing = !a->left ? "--left FILE" : !a->right ? "--right FILE" : !a->lkey ? "--left-key COL"
                        : !a->rkey ? "--right-key COL" : !a->group ? "--group-by COL[,COL...]" : !a->agg ? "--agg LIST" : NULL;
    if (missing) {
        em_job_error(ctx, PROG, "missing %s (see --help)", missing);
        return -1;
    }
    if (!a->join) a->join = "inner";
    if (strcmp(a->join, "inner") != 0 && strcmp(a->join, "left") != 0) {
        em_job_error(ctx, PROG, "--join: '%s' is not a join type (expected inner or left)", a->join);
        return -1;
    }
    if (a->out) {
        const char *dot = strrchr(a->out, '.');
        if (!dot || (strcmp(dot, ".csv") != 0 && strcmp(dot, ".h5") != 0 && strcmp(dot, ".hdf5") != 0)) {
            em_job_error(ctx, PROG, "--out: '%s' should end in .csv, .h5 or .hdf5", a->out);
            return -1;
        }
    }
    return 0;
}

static const char *file_problem(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0) return errno == ENOENT || errno == ENOTDIR ? "no such file" : strerror(errno);
    if (!S_ISREG(st.st_mode)) return "not a regular file";
    return NULL;
}

/* Header of a side for messages: "a, b, c". */
static void columns_of(em_ds *csv, char *buf, size_t n)
{
    size_t at = 0;
    buf[0] = 0;
    for (int i = 0; i < em_csv_ncols(csv) && at + 1 < n; i++)
        at += (size_t)snprintf(buf + at, n - at, "%s%s", i ? ", " : "", em_csv_colname(csv, i));
}

/* Builds the plan from the arguments and the two headers. Returns 0 or -1 after printing the error. */
static int make_plan(const em_ctx *ctx, const args *a, plan *pl)
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
    const char *keys[2] = {a->lkey, a->rkey};
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
    for (int i = 0; i < a->nwhere; i++) {
        etl_where *w = &pl->where[i];
        if (etl_where_parse(a->where[i], w, err, sizeof err) < 0) {
            em_job_error(ctx, PROG, "%s", err);
            return -1;
        }
        pl->nwhere++;
        RESOLVE(&w->col, &w->side, &w->idx, "--where");
        pl->s[w->side].w[pl->s[w->side].nw++] = w;
    }
    if (etl_cols_parse(a->group, pl->gref, MAXG, &pl->ng, err, sizeof err) < 0) {
        em_job_error(ctx, PROG, "%s", err);
        return -1;
    }
    for (int g = 0; g < pl->ng; g++) {
        int side, idx;
        RESOLVE(&pl->gref[g], &side, &idx, "--group-by");
        pl->gside[g] = side;
        pl->gpos[g] = payload_pos(&pl->s[side], idx, 0);
    }
    if (etl_agg_parse(a->agg, pl->agg, MAXA, &pl->na, err, sizeof err) < 0) {
        em_job_error(ctx, PROG, "%s", err);
        return -1;
    }
    for (int i = 0; i < pl->na; i++) {
        etl_agg *ag = &pl->agg[i];
        if (ag->kind == ETL_COUNT) continue;
        RESOLVE(&ag->col, &ag->side, &ag->idx, "--agg");
        pl->apos[i] = payload_pos(&pl->s[ag->side], ag->idx, ag->kind != ETL_COUNT_DISTINCT);
    }
    for (int s = 0; s < 2; s++)
        if (pl->s[s].nf > MAXF) {
            em_job_error(ctx, PROG, "too many columns used from %s (at most %d)", pl->s[s].file, MAXF);
            return -1;
        }
#undef RESOLVE
    return 0;
}

/* Index of the output column named by --sort-by (group names as written, aggregates as in the header or as in
 * --agg with ':'), or -1 after printing the error. */
static int sort_column(const em_ctx *ctx, const plan *pl, const char *spec, int *desc)
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

/* Reports the bad rows; returns how many there were. */
static int64_t report_bad(const em_ctx *ctx, const plan *pl, const badsum *b, int strict)
{
    int64_t total = 0;
    for (int i = 0; i < b->nfiles; i++) total += b->fcount[i];
    if (!total || !em_is_leader(ctx)) return total;
    for (int i = 0; i < b->nfiles; i++) {
        const etl_side *sd = &pl->s[b->fside[i] ? 1 : 0];
        const char *f = em_csv_file(sd->csv, (int)b->ffile[i]);
        fprintf(stderr, "%s: %s %" PRId64 " bad row%s in %s", PROG, strict ? "--strict: found" : "skipped",
                b->fcount[i], b->fcount[i] == 1 ? "" : "s", f ? f : sd->file);
        int listed = 0;
        for (int k = 0; k < b->nlist; k++)
            if (b->list[k].side == b->fside[i] && b->list[k].file == b->ffile[i]) {
                fprintf(stderr, "%s line %" PRId64 ": %s", listed ? ";" : ":", b->list[k].line, b->list[k].msg);
                listed++;
            }
        if (listed < b->fcount[i]) fprintf(stderr, "%s ...", listed ? ";" : ":");
        fputc('\n', stderr);
    }
    return total;
}

int main(int argc, char **argv)
{
    em_ctx *ctx;
    args a;
    static plan pl;
    em_records res = {0};
    int rc;
    if (em_init(&argc, &argv, &ctx) < 0) return 1;
    if ((rc = parse_args(argc, argv, ctx, &a)) != 0) return em_finalize(ctx, rc < 0 ? 2 : 0);
    const char *files[2] = {a.left, a.right};
    for (int s = 0; s < 2; s++) {
        const char *why = file_problem(files[s]);
        if (why) {
            em_job_error(ctx, PROG, "%s %s: %s", s ? "--right" : "--left", files[s], why);
            return em_finalize(ctx, 2);
        }
    }
    pl.join = strcmp(a.join, "left") == 0 ? EM_JOIN_LEFT : EM_JOIN_INNER;
    em_csv_opts o = {.strict = a.strict, .line_keys = 1};
    for (int s = 0; s < 2; s++) {
        pl.s[s].which = s;
        pl.s[s].file = files[s];
        pl.s[s].plan = &pl;
        pl.s[s].csv = em_csv(ctx, &files[s], 1, &o, 0);
    }
    if (make_plan(ctx, &a, &pl) < 0) return em_finalize(ctx, 2);
    for (int g = 0; g < pl.ng; g++) {
        static char gnames[MAXG][160];
        snprintf(gnames[g], sizeof gnames[g], "%.*s%s%.*s", pl.gref[g].side == ETL_ANY ? 0 : pl.gref[g].side ? 6 : 5,
                 pl.gref[g].side ? "right." : "left.", "", (int)pl.gref[g].len, pl.gref[g].name);
        pl.gname[g] = gnames[g];
    }
    if (a.sort && (sort_col = sort_column(ctx, &pl, a.sort, &sort_desc)) < 0) return em_finalize(ctx, 2);

    /* Lazy: nothing runs until em_collect. */
    em_ds *l = em_map(pl.s[0].csv, parse_row, &pl.s[0]);
    em_ds *r = em_map(pl.s[1].csv, parse_row, &pl.s[1]);
    em_ds *joined = em_cogroup(l, r, join_rows, &pl, 0);
    em_ds *partial = em_reduce_by_key(joined, combine, &pl, 0);
    em_ds *counted = em_map(partial, distinct_to_counts, &pl);
    em_ds *groups = em_reduce_by_key(counted, combine, &pl, 0);
    if ((rc = em_collect(groups, &res)) < 0) goto fail;

    /* Every rank has the result: split it into the bad-row summary and the output rows. */
    badsum bad;
    memset(&bad, 0, sizeof bad);
    outrow *rows = calloc(res.n ? res.n : 1, sizeof *rows);
    size_t nrows = 0;
    for (size_t i = 0; i < res.n; i++) {
        const em_rec *rec = &res.recs[i];
        const uint8_t *v = rec->val;
        if (rec->vlen && v[0] == 'B') {
            bad_decode(v + 1, rec->vlen - 1, &bad);
            continue;
        }
        outrow *o2 = &rows[nrows++];
        o2->key = rec->key;
        o2->klen = rec->klen;
        em_field gf[MAXG + 1];
        /* Strings with NUL bytes in group keys would need copies; the key bytes stay valid, so read in place
         * and copy only those (rare) through em_tup_get's buffer into a per-row allocation. */
        for (int g = 0; g < pl.ng; g++) {
            em_tup_get(rec->key, rec->klen, g + 1, &gf[g]);
            cell *c = &o2->c[g];
            c->type = gf[g].type, c->i = gf[g].i64, c->d = gf[g].f64, c->s = gf[g].str, c->n = gf[g].len;
            if (c->type == EM_F_STR && (c->s < (const char *)rec->key || c->s >= (const char *)rec->key + rec->klen)) {
                char *copy = malloc(c->n ? c->n : 1);
                if (!copy) abort();
                memcpy(copy, c->s, c->n);
                c->s = copy; /* leaks until exit: a group key holding NUL bytes is rare */
            }
        }
        for (int k = 0; k < pl.na; k++) {
            aggst s;
            memcpy(&s, v + 1 + (size_t)k * sizeof s, sizeof s);
            o2->c[pl.ng + k] = agg_cell(pl.agg[k].kind, &s);
        }
    }
    int64_t nbad = report_bad(ctx, &pl, &bad, a.strict);
    if (nbad && a.strict) {
        if (em_is_leader(ctx))
            fprintf(stderr, "%s: --strict: %" PRId64 " bad row%s, no output written\n", PROG, nbad, nbad == 1 ? "" : "s");
        free(rows);
        em_records_free(&res);
        return em_finalize(ctx, 1);
    }
    qsort(rows, nrows, sizeof *rows, row_cmp);
    int ncols = pl.ng + pl.na;
    const char *names[MAXG + MAXA];
    for (int g = 0; g < pl.ng; g++) names[g] = pl.gname[g];
    for (int k = 0; k < pl.na; k++) names[pl.ng + k] = pl.agg[k].out;

    const char *dot = a.out ? strrchr(a.out, '.') : NULL;
    if (dot && strcmp(dot, ".csv") != 0) {
        /* HDF5: a column's type fits every row (ints stay i64 unless a row has a double or a NULL). */
        char schema[4096];
        size_t at = 0;
        int type[MAXG + MAXA]; /* 0 i64, 1 f64, 2 str */
        size_t width[MAXG + MAXA];
        for (int c = 0; c < ncols; c++) {
            int has_str = 0, has_f = 0, has_null = 0;
            width[c] = 1;
            for (size_t i = 0; i < nrows; i++) {
                const cell *x = &rows[i].c[c];
                has_str |= x->type == EM_F_STR, has_f |= x->type == EM_F_F64, has_null |= x->type == EM_F_NULL;
                size_t w = x->type == EM_F_STR ? x->n : 21;
                if (w > width[c]) width[c] = w;
            }
            type[c] = c < pl.ng ? (has_str || has_null || has_f ? 2 : 0) : (has_f || has_null ? 1 : 0);
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
                const cell *x = &rows[i].c[c];
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
        rc = em_save_hdf5(out, a.out, "etl", schema);
        for (size_t i = 0; i < nrows; i++) em_tup_free(&vals[i]);
        free(recs), free(vals), free(keys);
        if (rc < 0) {
            free(rows);
            goto fail;
        }
    } else if (em_is_leader(ctx)) {
        /* CSV: written under a temporary name and renamed, so a failed run never leaves half a file. */
        char tmp[PATH_MAX];
        FILE *f = stdout;
        if (a.out) {
            snprintf(tmp, sizeof tmp, "%s.tmp.%d", a.out, (int)getpid());
            if (!(f = fopen(tmp, "w"))) {
                fprintf(stderr, "%s: cannot create %s: %s\n", PROG, tmp, strerror(errno));
                free(rows);
                em_records_free(&res);
                return em_finalize(ctx, 1);
            }
        }
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
        if (a.out) {
            int bad_write = ferror(f) | (fflush(f) != 0) | (fsync(fileno(f)) != 0);
            bad_write |= fclose(f) != 0;
            if (bad_write || rename(tmp, a.out) < 0) {
                fprintf(stderr, "%s: cannot write %s: %s\n", PROG, a.out, strerror(errno));
                unlink(tmp);
                free(rows);
                em_records_free(&res);
                return em_finalize(ctx, 1);
            }
        }
    }
    if (em_is_leader(ctx) && a.out) fprintf(stderr, "%s: wrote %zu group%s to %s\n", PROG, nrows, nrows == 1 ? "" : "s", a.out);
    free(rows);
    em_records_free(&res);
    for (int i = 0; i < pl.nwhere; i++) etl_where_release(&pl.where[i]);
    return em_finalize(ctx, 0);
fail:
    if (em_is_leader(ctx)) fprintf(stderr, PROG ": %s: %s\n", em_strerror(rc), em_last_error());
    em_records_free(&res);
    return em_finalize(ctx, 1);
}
