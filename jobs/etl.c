/*
 * etl.c — the ETL job: join two CSV files on a key, filter, group and aggregate (the classic Spark ETL), written
 * against the public API only. Follows DESIGN.md §2-5 and §8.
 *
 *     ember run -np 3 build/bin/etl --left orders.csv --right customers.csv --left-key customer_id \
 *         --right-key customer_id --where 'amount > 10' --group-by country --agg count,sum:amount,avg:amount \
 *         --out by_country.csv
 *
 * Dataflow, shuffle join (one action; when the right file is bigger than --broadcast-max):
 *     em_csv(left)  -> em_map parse -+
 *                                    +-> em_cogroup join -> em_reduce_by_key -> em_map -> em_reduce_by_key -> collect
 *     em_csv(right) -> em_map parse -+
 *
 * Broadcast join (two actions; the default for a right file of at most 64 MiB, see "broadcast join" below):
 *     em_csv(right) -> em_map_partitions rblock (parse, packed in blocks) -> collect: the index on every rank
 *     em_csv(left)  -> em_map_partitions bjoin (parse, look up, pre-aggregate per group) -> em_reduce_by_key -> ...
 *                      (the same reduces as above)
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

#include "jobs/common/etlindex.h"
#include "jobs/common/etlspec.h"
#include "jobs/common/joberr.h"
#include "jobs/common/numarg.h"

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
    "           [--out OUT.csv | OUT.h5] [--sort-by COL[:desc]] [--strict] [--broadcast-max SIZE]\n"
    "Joins two CSV files (header row required) on LEFT-KEY = RIGHT-KEY, keeps the rows that pass every --where\n"
    "(OP: = != < <= > >=; applied before the join), groups by the columns (left./right. prefix when a name is in\n"
    "both files) and prints one row per group with the aggregates, sorted by the group columns (or --sort-by:\n"
    "a group column or an output column such as sum_amount). Without --out the CSV goes to stdout.\n"
    "Rows whose key is empty or whose compared/aggregated field is not a number are skipped and reported;\n"
    "--strict makes them (and malformed CSV rows) fatal. With no argument at all, runs on examples/data.\n"
    "A right file of at most --broadcast-max bytes (default 64M; K, M, G suffixes; 0: never) is copied to every\n"
    "rank and the left side is joined where it is read, without a shuffle; a bigger one is shuffled with the left.\n";

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
    int maxcol;                   /* the last column read (key, clauses, payload) */
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
    struct bcast *bc;            /* broadcast join: the right side on every rank (NULL: shuffle join) */
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

/* A task's bad-row summary as its own record (group key -1, value 'B' + the encoded summary) for the reduce. */
static int emit_bad(em_emitter *out, const badsum *b)
{
    em_tup_clear(&tx);
    bad_encode(b, &tx);
    em_tup_clear(&tg);
    em_tup_i64(&tg, -1);
    bytes val = {0};
    int rc = bytes_add(&val, "B", 1) < 0 || bytes_add(&val, tx.p, tx.len) < 0 ? -1
             : em_emit(out, tg.p, (uint32_t)tg.len, val.p, (uint32_t)val.len);
    free(val.p);
    return rc;
}

/*
 * Fields 0..upto of a CSV record in one pass over its value, a tuple of strings (em_csv): s[i] and n[i]. This is
 * em_tup_get's string format read in place, once, instead of one em_tup_get per field (each walks from the start):
 *
 *     0x04  bytes, a 0x00 inside written 0x00 0xFF  0x00 0x00
 *
 * A field holding NUL bytes is unescaped into *own; its pointer is set once every copy is made (own->p may move).
 * Returns 0, or -1 if the record is not such a tuple or has fewer fields.
 */
#define MAXC 256 /* columns a plan can name (make_plan reads at most 256 names) */
static int row_fields(const em_rec *in, int upto, const char **s, size_t *n, bytes *own)
{
    const uint8_t *p = in->val, *e = p + in->vlen;
    size_t at[MAXC];
    int nesc = 0, esc[MAXC];
    own->len = 0;
    for (int i = 0; i <= upto; i++) {
        if (p >= e || *p != 0x04) return -1;
        const uint8_t *f = ++p, *z;
        for (;;) {
            if (!(z = memchr(p, 0, (size_t)(e - p))) || z + 1 >= e) return -1;
            if (z[1] == 0) break;
            if (z[1] != 0xFF) return -1;
            p = z + 2;
        }
        if (p == f) { /* no escaped NUL: the common case */
            s[i] = (const char *)f;
            n[i] = (size_t)(z - f);
        } else {
            at[i] = own->len;
            for (const uint8_t *q = f; q < z; q++) {
                if (bytes_add(own, q, 1) < 0) return -1;
                if (!*q) q++;
            }
            n[i] = own->len - at[i];
            esc[nesc++] = i;
        }
        p = z + 2;
    }
    for (int k = 0; k < nesc; k++) s[esc[k]] = (const char *)own->p + at[esc[k]];
    return 0;
}

/* A key or group value: int64 when the field is an integer, else the string; empty = NULL. */
static void typed_field(em_field *f, const char *s, size_t n)
{
    if (n == 0) f->type = EM_F_NULL;
    else if (etl_parse_int(s, n, &f->i64)) f->type = EM_F_I64;
    else f->type = EM_F_STR, f->str = s, f->len = n;
}

#define SHOWN(n) ((n) > 40 ? 40 : (int)(n))
#define ELLIPSIS(n) ((n) > 40 ? "..." : "")

/* A CSV row of one side, typed: the join key and the payload fields, or why the row is bad. */
enum { ROW_SKIP = 0, ROW_OK = 1, ROW_BAD = 2 };
typedef struct prow {
    em_field key;
    em_field f[MAXF];
    char msg[200]; /* ROW_BAD: "amount: 'abc' is not a number" */
} prow;

/* Applies the side's --where clauses and types its fields. Returns ROW_OK, ROW_SKIP (filtered out), ROW_BAD (with
 * r->msg) or -1 (not a CSV record). Strings point into the record or into *own. */
static int side_parse(const etl_side *sd, const em_rec *in, prow *r, bytes *own)
{
    const char *s[MAXC];
    size_t n[MAXC];
    if (row_fields(in, sd->maxcol, s, n, own) < 0) return -1;
    for (int i = 0; i < sd->nw; i++) {
        const etl_where *w = sd->w[i];
        int m = etl_where_match(w, s[w->idx], n[w->idx]);
        if (m == 0) return ROW_SKIP;
        if (m < 0) {
            snprintf(r->msg, sizeof r->msg, "%.*s: '%.*s%s' is not a number (--where)", (int)w->col.len, w->col.name,
                     SHOWN(n[w->idx]), s[w->idx], ELLIPSIS(n[w->idx]));
            return ROW_BAD;
        }
    }
    if (n[sd->key] == 0) {
        snprintf(r->msg, sizeof r->msg, "%s: empty key", em_csv_colname(sd->csv, sd->key));
        return ROW_BAD;
    }
    typed_field(&r->key, s[sd->key], n[sd->key]);
    for (int i = 0; i < sd->nf; i++) {
        int c = sd->col[i];
        em_field *f = &r->f[i];
        if (!sd->numeric[i]) {
            typed_field(f, s[c], n[c]);
        } else if (n[c] == 0) {
            f->type = EM_F_NULL;
        } else if (etl_parse_int(s[c], n[c], &f->i64)) {
            f->type = EM_F_I64;
        } else if (etl_parse_num(s[c], n[c], &f->f64)) {
            f->type = EM_F_F64;
        } else {
            snprintf(r->msg, sizeof r->msg, "%s: '%.*s%s' is not a number", em_csv_colname(sd->csv, c), SHOWN(n[c]),
                     s[c], ELLIPSIS(n[c]));
            return ROW_BAD;
        }
    }
    return ROW_OK;
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

/* A bad row as a badrow (its file and line come from the CSV record's key: em_csv_opts.line_keys). */
static badrow bad_row(int side, const em_rec *in, const char *msg)
{
    badrow b = {side, fi64(in->key, in->klen, 0), fi64(in->key, in->klen, 1), ""};
    snprintf(b.msg, sizeof b.msg, "%s", msg);
    return b;
}

/* Shuffle join and the right side of a broadcast join: emits (typed key, payload), or the bad row under the NULL
 * key as (side, file, line, message). */
static int parse_row(const em_rec *in, em_emitter *out, void *arg)
{
    const etl_side *sd = arg;
    static _Thread_local prow r;
    static _Thread_local bytes own;
    int rc = side_parse(sd, in, &r, &own);
    if (rc == ROW_BAD) {
        badrow b = bad_row(sd->which, in, r.msg);
        em_tup_clear(&tk);
        em_tup_null(&tk);
        em_tup_clear(&tv);
        em_tup_i64(&tv, b.side), em_tup_i64(&tv, b.file), em_tup_i64(&tv, b.line);
        em_tup_str(&tv, b.msg, strlen(b.msg));
        return em_emit(out, tk.p, (uint32_t)tk.len, tv.p, (uint32_t)tv.len);
    }
    if (rc != ROW_OK) return rc;
    em_tup_clear(&tk);
    put_field(&tk, &r.key);
    em_tup_clear(&tv);
    for (int i = 0; i < sd->nf; i++) put_field(&tv, &r.f[i]);
    return em_emit(out, tk.p, (uint32_t)tk.len, tv.p, (uint32_t)tv.len);
}

/* ---- join: cogroup callback --------------------------------------------------------------------------------- */

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
        return emit_bad(out, &bs);
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
/* ---- broadcast join ------------------------------------------------------------------------------------------
 * When the right side is small (--broadcast-max), it is collected onto every rank (one action) and indexed by key
 * (etlindex.h); the left side is then joined where it is read, in a mapPartitions, and never shuffled: only the
 * per-task partial aggregates are. The join is the same as join_rows (each left row with each right row of its key,
 * or with nothing for --join left), and so are the records that reach the reduces.
 *
 * Fast form, when every group column comes from the right side and every aggregate but count reads the left side:
 * a right row's group is known before the left side is read, so right rows are indexed by group id and each task
 * folds its rows into one aggregate state per group (agg_merge, as the map-side combine would), emitted when the
 * task ends. count_distinct still emits its (group, value) pairs. Otherwise each joined pair goes through emit_pair.
 */
typedef struct bcast {
    etl_index ix;      /* key -> payload id (general form) or group id (fast form) */
    int fast;
    em_records right;  /* the collected right side: blocks (see rblock_*) and bad rows */
    const uint8_t **pay; /* general form: [npay] each distinct payload of a block, in right.mem */
    uint32_t *paylen;
    size_t npay;
    bytes gt;          /* fast: the group tuple (0, group...) of each group id, back to back */
    size_t *goff;      /* fast: [ngroups + 2] offsets in gt; id ngroups is the all-NULL group (unmatched left rows) */
    int32_t ngroups;
    badsum bad;        /* the right side's bad rows */
} bcast;

/*
 * The right side travels to every rank (em_collect) in blocks of about RBLOCK bytes rather than one record per
 * row: a few hundred records instead of a million, and each distinct payload (a dimension table has few: the
 * countries) once per block. One block is a record with an empty key and the value
 *
 *     u32 ndict | ndict x (u32 len, payload tuple) | u32 nrows | nrows x (key field, u32 dict index)
 *
 * (a key field is one typed tuple field: self-delimiting). Integers are in this machine's order: every rank runs
 * the same binary, as for aggst. Bad rows go as parse_row emits them, under the NULL key.
 */
#define RBLOCK (64 << 10)
#define RDICT 4096 /* slots of a block's payload dictionary (it is emitted before it is half full) */

typedef struct rblock {
    bytes dict, rows, out;
    uint32_t ndict, nrows;
    int32_t slot[RDICT]; /* dictionary index + 1 by payload hash, 0 empty */
    uint32_t doff[RDICT / 2]; /* offset of each dictionary entry in dict */
    prow row;
    bytes own;
} rblock;

static int bytes_u32(bytes *b, uint32_t v) { return bytes_add(b, &v, 4); }

static void *rblock_open(int part, void *arg)
{
    (void)part, (void)arg;
    return calloc(1, sizeof(rblock));
}

static int rblock_flush(rblock *b, em_emitter *out)
{
    if (b->nrows == 0) return 0;
    b->out.len = 0;
    if (bytes_u32(&b->out, b->ndict) < 0 || bytes_add(&b->out, b->dict.p, b->dict.len) < 0 ||
        bytes_u32(&b->out, b->nrows) < 0 || bytes_add(&b->out, b->rows.p, b->rows.len) < 0)
        return -1;
    b->dict.len = b->rows.len = 0;
    b->ndict = b->nrows = 0;
    memset(b->slot, 0, sizeof b->slot);
    return em_emit(out, "", 0, b->out.p, (uint32_t)b->out.len);
}

static int rblock_each(void *state, const em_rec *in, em_emitter *out, void *arg)
{
    rblock *b = state;
    if (!b) return -1;
    if (b->rows.len + b->dict.len >= RBLOCK || b->ndict >= RDICT / 2) {
        int rc = rblock_flush(b, out);
        if (rc < 0) return rc;
    }
    const etl_side *sd = arg;
    int rc = side_parse(sd, in, &b->row, &b->own);
    if (rc == ROW_BAD) return parse_row(in, out, arg); /* as the shuffle join sends it (rare: parsed twice) */
    if (rc != ROW_OK) return rc;
    em_tup_clear(&tv);
    for (int i = 0; i < sd->nf; i++) put_field(&tv, &b->row.f[i]);
    uint32_t d;
    for (size_t i = etl_hash(tv.p, tv.len) & (RDICT - 1);; i = (i + 1) & (RDICT - 1)) {
        if (b->slot[i] == 0) { /* a new payload: u32 len, bytes */
            b->doff[b->ndict] = (uint32_t)b->dict.len;
            if (bytes_u32(&b->dict, (uint32_t)tv.len) < 0 || bytes_add(&b->dict, tv.p, tv.len) < 0) return -1;
            d = b->ndict++;
            b->slot[i] = (int32_t)d + 1;
            break;
        }
        uint32_t len, at = b->doff[b->slot[i] - 1];
        memcpy(&len, b->dict.p + at, 4);
        if (len == tv.len && memcmp(b->dict.p + at + 4, tv.p, len) == 0) {
            d = (uint32_t)b->slot[i] - 1;
            break;
        }
    }
    em_tup_clear(&tk);
    put_field(&tk, &b->row.key);
    if (bytes_add(&b->rows, tk.p, tk.len) < 0 || bytes_u32(&b->rows, d) < 0) return -1;
    b->nrows++;
    return 0;
}

static int rblock_close(void *state, em_emitter *out, void *arg)
{
    rblock *b = state;
    (void)arg;
    if (!b) return -1;
    int rc = rblock_flush(b, out);
    free(b->dict.p), free(b->rows.p), free(b->out.p), free(b->own.p);
    free(b);
    return rc;
}

/* Length of the one-field tuple at p[0, n) (a key field of a block), or 0 if malformed. */
static size_t key_field_len(const uint8_t *p, size_t n)
{
    if (n == 0) return 0;
    if (p[0] == 0x01) return 1;
    if (p[0] == 0x02 || p[0] == 0x03) return n >= 9 ? 9 : 0;
    if (p[0] != 0x04) return 0;
    for (size_t i = 1; i + 1 < n; i++)
        if (p[i] == 0 && p[++i] == 0) return i + 1;
    return 0;
}

static int is_null_key(const void *k, uint32_t kl)
{
    em_field f;
    return kl && em_tup_get(k, kl, 0, &f) == 0 && f.type == EM_F_NULL;
}

/* Group ids of distinct group tuples, by open addressing over offsets into bc->gt. */
typedef struct interner {
    int32_t *slot; /* id + 1, 0 empty */
    size_t mask;
} interner;

/* The id of tuple t (added when new). Returns the id or -1 (out of memory). */
static int32_t intern(bcast *bc, interner *in, const em_tup *t, size_t *cap)
{
    if ((size_t)bc->ngroups * 2 >= in->mask) { /* grow and rehash */
        size_t nm = in->mask ? in->mask * 2 + 1 : 1023;
        int32_t *ns = calloc(nm + 1, sizeof *ns);
        if (!ns) return -1;
        for (int32_t g = 0; g < bc->ngroups; g++) {
            size_t i = etl_hash(bc->gt.p + bc->goff[g], bc->goff[g + 1] - bc->goff[g]) & nm;
            while (ns[i]) i = (i + 1) & nm;
            ns[i] = g + 1;
        }
        free(in->slot);
        in->slot = ns;
        in->mask = nm;
    }
    size_t i = etl_hash(t->p, t->len) & in->mask;
    for (; in->slot[i]; i = (i + 1) & in->mask) {
        int32_t g = in->slot[i] - 1;
        if (bc->goff[g + 1] - bc->goff[g] == t->len && memcmp(bc->gt.p + bc->goff[g], t->p, t->len) == 0) return g;
    }
    if ((size_t)bc->ngroups + 3 > *cap) {
        size_t nc = *cap ? *cap * 2 : 1024;
        size_t *no = realloc(bc->goff, nc * sizeof *no);
        if (!no) return -1;
        bc->goff = no;
        *cap = nc;
    }
    if (bytes_add(&bc->gt, t->p, t->len) < 0) return -1;
    bc->goff[bc->ngroups + 1] = bc->gt.len;
    in->slot[i] = ++bc->ngroups;
    return bc->ngroups - 1;
}

/* The group tuple (0, group...) of a joined pair (r NULL: no right row). */
static void group_tuple(const plan *pl, const em_field *l, const em_field *r, em_tup *t)
{
    static const em_field null_field = {.type = EM_F_NULL};
    const em_field *side_f[2] = {l, r};
    em_tup_clear(t);
    em_tup_i64(t, 0);
    for (int g = 0; g < pl->ng; g++) put_field(t, side_f[pl->gside[g]] ? &side_f[pl->gside[g]][pl->gpos[g]] : &null_field);
}

/* Builds *bc from the collected right side (res, taken over) and sets pl->bc. The same on every rank. Returns 0,
 * -1 (out of memory) or EM_EPARSE (a damaged block). */
static int bcast_build(plan *pl, bcast *bc, em_records *res)
{
    int rc = -1;
    size_t nrows = 0, m = 0, gcap = 0, ndict = 0;
    const uint8_t **keys = NULL;
    uint32_t *kl = NULL;
    int32_t *tgt = NULL, *dmap = NULL;
    interner in = {0};
    bytes own = {0};
    em_tup t = {0};
    em_field rf[MAXF];
    memset(bc, 0, sizeof *bc);
    bc->right = *res;
    *res = (em_records){0};
    bc->fast = 1;
    for (int g = 0; g < pl->ng; g++) bc->fast &= pl->gside[g] == ETL_RIGHT;
    for (int a = 0; a < pl->na; a++) bc->fast &= pl->agg[a].kind == ETL_COUNT || pl->agg[a].side == ETL_LEFT;
    /* Sizes first: rows and dictionary entries of all blocks. */
    for (size_t i = 0; i < bc->right.n; i++) {
        const em_rec *r = &bc->right.recs[i];
        uint32_t nd, nr, l;
        size_t pos = 4;
        if (r->klen != 0) continue;
        if (r->vlen < 4) return EM_EPARSE;
        memcpy(&nd, r->val, 4);
        for (uint32_t k = 0; k < nd; k++, pos += 4 + l) {
            if (pos + 4 > r->vlen) return EM_EPARSE;
            memcpy(&l, (const uint8_t *)r->val + pos, 4);
        }
        if (pos + 4 > r->vlen) return EM_EPARSE;
        memcpy(&nr, (const uint8_t *)r->val + pos, 4);
        nrows += nr;
        ndict += nd;
    }
    if (nrows > INT32_MAX / 2 || ndict > INT32_MAX / 2) return -1;
    if (!(keys = malloc((nrows ? nrows : 1) * sizeof *keys)) || !(kl = malloc((nrows ? nrows : 1) * sizeof *kl)) ||
        !(tgt = malloc((nrows ? nrows : 1) * sizeof *tgt)) || !(dmap = malloc((ndict ? ndict : 1) * sizeof *dmap)))
        goto out;
    if (!bc->fast && (!(bc->pay = malloc((ndict ? ndict : 1) * sizeof *bc->pay)) ||
                      !(bc->paylen = malloc((ndict ? ndict : 1) * sizeof *bc->paylen))))
        goto out;
    if (bc->fast) {
        if (!(bc->goff = malloc(1024 * sizeof *bc->goff))) goto out;
        gcap = 1024;
        bc->goff[0] = 0;
    }
    for (size_t i = 0; i < bc->right.n; i++) {
        const em_rec *r = &bc->right.recs[i];
        const uint8_t *v = r->val;
        if (r->klen != 0) {
            if (!is_null_key(r->key, r->klen)) continue;
            /* a bad row: (side, file, line, message) */
            badrow b = {fi64(v, r->vlen, 0), fi64(v, r->vlen, 1), fi64(v, r->vlen, 2), ""};
            em_field f;
            if (em_tup_get(v, r->vlen, 3, &f) == 0 && f.type == EM_F_STR)
                snprintf(b.msg, sizeof b.msg, "%.*s", (int)f.len, f.str);
            bad_count(&bc->bad, b.side, b.file, 1);
            bad_list(&bc->bad, &b);
            continue;
        }
        uint32_t nd, nr, l;
        size_t pos = 4;
        memcpy(&nd, v, 4);
        for (uint32_t k = 0; k < nd; k++, pos += 4 + l) { /* each payload: a group id, or a payload id */
            memcpy(&l, v + pos, 4);
            if (!bc->fast) {
                bc->pay[bc->npay] = v + pos + 4;
                bc->paylen[bc->npay] = l;
                dmap[k] = (int32_t)bc->npay++;
                continue;
            }
            if (payload_fields(v + pos + 4, l, rf, MAXF, &own) < 0) {
                rc = EM_EPARSE;
                goto out;
            }
            group_tuple(pl, NULL, rf, &t);
            if ((dmap[k] = intern(bc, &in, &t, &gcap)) < 0) goto out;
        }
        memcpy(&nr, v + pos, 4);
        pos += 4;
        for (uint32_t k = 0; k < nr; k++, m++) {
            size_t n = key_field_len(v + pos, r->vlen - pos);
            uint32_t d;
            if (n == 0 || pos + n + 4 > r->vlen) {
                rc = EM_EPARSE;
                goto out;
            }
            memcpy(&d, v + pos + n, 4);
            if (d >= nd) {
                rc = EM_EPARSE;
                goto out;
            }
            keys[m] = v + pos;
            kl[m] = (uint32_t)n;
            tgt[m] = dmap[d];
            pos += n + 4;
        }
    }
    if (bc->fast) { /* the all-NULL group of left rows without a match (--join left) */
        group_tuple(pl, NULL, NULL, &t);
        if ((size_t)bc->ngroups + 2 > gcap || bytes_add(&bc->gt, t.p, t.len) < 0) goto out;
        bc->goff[bc->ngroups + 1] = bc->gt.len;
    }
    if (etl_index_build(&bc->ix, keys, kl, tgt, m) < 0) goto out;
    if (bc->fast) em_records_free(&bc->right); /* the index holds what the tasks need */
    pl->bc = bc;
    rc = 0;
out:
    free(keys), free(kl), free(tgt), free(dmap), free(in.slot), free(own.p);
    em_tup_free(&t);
    return rc;
}

static void bcast_release(bcast *bc)
{
    etl_index_release(&bc->ix);
    em_records_free(&bc->right);
    free(bc->pay), free(bc->paylen);
    free(bc->gt.p);
    free(bc->goff);
}

/* One task's state. */
typedef struct btask {
    int32_t *slot_of;  /* fast: [ngroups + 1] slot + 1 of each group id met, 0 none */
    aggst *acc;        /* fast: [nslot][na] */
    int32_t *gid;      /* fast: [nslot] group id of each slot */
    size_t nslot, cap;
    badsum bad;        /* the left side's bad rows in this task */
    bytes lown, rown, dk;
    prow row;
} btask;

static void *bjoin_open(int part, void *arg)
{
    const plan *pl = arg;
    (void)part;
    btask *t = calloc(1, sizeof *t);
    if (t && pl->bc->fast && !(t->slot_of = calloc((size_t)pl->bc->ngroups + 1, sizeof *t->slot_of))) {
        free(t);
        t = NULL;
    }
    return t;
}

/* The aggregate states of group id g in this task (created empty). NULL when out of memory. */
static aggst *bjoin_slot(const plan *pl, btask *t, int32_t g)
{
    if (t->slot_of[g]) return &t->acc[(size_t)(t->slot_of[g] - 1) * (size_t)pl->na];
    if (t->nslot == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 64;
        aggst *na = realloc(t->acc, nc * (size_t)pl->na * sizeof *na);
        if (!na) return NULL;
        t->acc = na;
        int32_t *ng = realloc(t->gid, nc * sizeof *ng);
        if (!ng) return NULL;
        t->gid = ng;
        t->cap = nc;
    }
    aggst *a = &t->acc[t->nslot * (size_t)pl->na];
    for (int k = 0; k < pl->na; k++) a[k] = (aggst){.all_int = 1};
    t->gid[t->nslot] = g;
    t->slot_of[g] = (int32_t)++t->nslot;
    return a;
}

static int bjoin_each(void *state, const em_rec *in, em_emitter *out, void *arg)
{
    const plan *pl = arg;
    const bcast *bc = pl->bc;
    btask *t = state;
    prow *r = &t->row;
    int rc;
    if (!t) return -1;
    if ((rc = side_parse(&pl->s[0], in, r, &t->lown)) == ROW_BAD) {
        badrow b = bad_row(ETL_LEFT, in, r->msg);
        bad_count(&t->bad, b.side, b.file, 1);
        bad_list(&t->bad, &b);
        return 0;
    }
    if (rc != ROW_OK) return rc;
    const int32_t *tg_;
    int32_t one, nt;
    if (r->key.type == EM_F_I64) {
        nt = etl_index_find_i64(&bc->ix, r->key.i64, &one, &tg_);
    } else {
        em_tup_clear(&tk);
        put_field(&tk, &r->key);
        nt = etl_index_find(&bc->ix, tk.p, (uint32_t)tk.len, &one, &tg_);
    }
    if (nt == 0 && pl->join == EM_JOIN_INNER) return 0; /* unmatched left rows are dropped */
    if (!bc->fast) {
        em_field rf[MAXF];
        if (nt == 0) return emit_pair(pl, r->f, NULL, out);
        for (int k = 0; k < nt; k++) {
            if (payload_fields(bc->pay[tg_[k]], bc->paylen[tg_[k]], rf, MAXF, &t->rown) < 0) return -1;
            if ((rc = emit_pair(pl, r->f, rf, out)) < 0) return rc;
        }
        return 0;
    }
    /* The row's contribution to each aggregate, as emit_pair would emit it. */
    aggst c[MAXA];
    for (int a = 0; a < pl->na; a++) {
        const em_field *f = &r->f[pl->apos[a]];
        c[a] = (aggst){.all_int = 1};
        if (pl->agg[a].kind == ETL_COUNT) c[a].n = 1;
        else if (pl->agg[a].kind == ETL_COUNT_DISTINCT) continue;
        else if (f->type == EM_F_I64) c[a].n = 1, c[a].i = f->i64, c[a].hi = (double)f->i64;
        else if (f->type == EM_F_F64) c[a].n = 1, c[a].all_int = 0, c[a].hi = f->f64;
    }
    int32_t none = bc->ngroups;
    for (int k = 0; k < (nt ? nt : 1); k++) {
        int32_t g = nt ? tg_[k] : none;
        aggst *s = bjoin_slot(pl, t, g);
        if (!s) return -1;
        for (int a = 0; a < pl->na; a++) {
            if (pl->agg[a].kind != ETL_COUNT_DISTINCT) {
                agg_merge(pl->agg[a].kind, &s[a], &c[a]);
                continue;
            }
            const em_field *f = &r->f[pl->apos[a]];
            if (f->type == EM_F_NULL) continue;
            /* (1 + a, group..., value): the group tuple without its leading 0 (9 bytes) */
            size_t g0 = bc->goff[g] + 9, g1 = bc->goff[g + 1];
            t->dk.len = 0;
            em_tup_clear(&tx);
            em_tup_i64(&tx, 1 + a);
            if (bytes_add(&t->dk, tx.p, tx.len) < 0 || bytes_add(&t->dk, bc->gt.p + g0, g1 - g0) < 0) return -1;
            em_tup_clear(&tx);
            put_field(&tx, f);
            if (bytes_add(&t->dk, tx.p, tx.len) < 0) return -1;
            if ((rc = em_emit(out, t->dk.p, (uint32_t)t->dk.len, "D", 1)) < 0) return rc;
        }
    }
    return 0;
}

static int bjoin_close(void *state, em_emitter *out, void *arg)
{
    const plan *pl = arg;
    const bcast *bc = pl->bc;
    btask *t = state;
    int rc = 0;
    if (!t) return -1;
    uint8_t st[1 + MAXA * sizeof(aggst)];
    st[0] = 'M';
    for (size_t i = 0; i < t->nslot && rc >= 0; i++) {
        int32_t g = t->gid[i];
        memcpy(st + 1, &t->acc[i * (size_t)pl->na], (size_t)pl->na * sizeof(aggst));
        rc = em_emit(out, bc->gt.p + bc->goff[g], (uint32_t)(bc->goff[g + 1] - bc->goff[g]), st,
                     (uint32_t)(1 + (size_t)pl->na * sizeof(aggst)));
    }
    if (rc >= 0 && t->bad.nfiles) rc = emit_bad(out, &t->bad);
    free(t->slot_of), free(t->acc), free(t->gid), free(t->lown.p), free(t->rown.p), free(t->dk.p);
    free(t);
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
    const char *left, *right, *lkey, *rkey, *join, *group, *agg, *out, *sort, *bmax;
    const char *where[MAXW];
    int nwhere, strict;
    uint64_t bmax_bytes; /* --broadcast-max in bytes */
} args;

#define DEFAULT_DIR "examples/data"
#define DEFAULT_BROADCAST_MAX ((uint64_t)64 << 20)

/* "64M" -> 67108864 (K, M, G: powers of 1024). 0 or -1. */
static int parse_size(const char *s, uint64_t *out)
{
    char num[64];
    size_t n = strlen(s);
    int shift = 0;
    if (n == 0 || n >= sizeof num) return -1;
    switch (s[n - 1]) {
    case 'k': case 'K': shift = 10; break;
    case 'm': case 'M': shift = 20; break;
    case 'g': case 'G': shift = 30; break;
    default: break;
    }
    memcpy(num, s, n - (shift ? 1 : 0));
    num[n - (shift ? 1 : 0)] = 0;
    uint64_t v;
    if (em_parse_u64(num, &v) < 0 || v > (UINT64_MAX >> shift)) return -1;
    *out = v << shift;
    return 0;
}

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
        {"--sort-by", offsetof(args, sort)},   {"--broadcast-max", offsetof(args, bmax)},
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
    a->bmax_bytes = DEFAULT_BROADCAST_MAX;
    if (a->bmax && parse_size(a->bmax, &a->bmax_bytes) < 0) {
        em_job_error(ctx, PROG, "--broadcast-max: '%s' is not a size (bytes, or with a K, M or G suffix)", a->bmax);
        return -1;
    }
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
    for (int s = 0; s < 2; s++) {
        etl_side *sd = &pl->s[s];
        if (sd->nf > MAXF) {
            em_job_error(ctx, PROG, "too many columns used from %s (at most %d)", sd->file, MAXF);
            return -1;
        }
        sd->maxcol = sd->key;
        for (int i = 0; i < sd->nw; i++) sd->maxcol = sd->w[i]->idx > sd->maxcol ? sd->w[i]->idx : sd->maxcol;
        for (int i = 0; i < sd->nf; i++) sd->maxcol = sd->col[i] > sd->maxcol ? sd->col[i] : sd->maxcol;
        if (sd->maxcol >= MAXC) {
            em_job_error(ctx, PROG, "%s: column %d is used; at most %d columns are supported", sd->file,
                         sd->maxcol + 1, MAXC);
            return -1;
        }
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

    /* Broadcast the right side when its file is small enough (every rank sees the same size: the same plan). */
    static bcast bc;
    struct stat rst;
    int broadcast = a.bmax_bytes > 0 && stat(a.right, &rst) == 0 && (uint64_t)rst.st_size <= a.bmax_bytes;
    em_ds *joined;
    if (broadcast) {
        em_records rres = {0};
        em_ds *rb = em_map_partitions(pl.s[1].csv, rblock_open, rblock_each, rblock_close, &pl.s[1]);
        if ((rc = em_collect(rb, &rres)) < 0) goto fail;
        if ((rc = bcast_build(&pl, &bc, &rres)) == -1) {
            fprintf(stderr, "%s: rank %d: out of memory indexing %s\n", PROG, em_rank(ctx), a.right);
            _exit(1); /* STYLE rule 5: this rank fails, the others see a dead executor */
        }
        if (rc < 0) {
            if (em_is_leader(ctx)) fprintf(stderr, "%s: the collected right side is damaged\n", PROG);
            bcast_release(&bc);
            return em_finalize(ctx, 1);
        }
        joined = em_map_partitions(pl.s[0].csv, bjoin_open, bjoin_each, bjoin_close, &pl);
    } else {
        /* Lazy: nothing runs until em_collect. */
        em_ds *l = em_map(pl.s[0].csv, parse_row, &pl.s[0]);
        em_ds *r = em_map(pl.s[1].csv, parse_row, &pl.s[1]);
        joined = em_cogroup(l, r, join_rows, &pl, 0);
    }
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
    if (pl.bc) { /* the right side's bad rows never went through the reduces */
        for (int i = 0; i < bc.bad.nfiles; i++) bad_count(&bad, bc.bad.fside[i], bc.bad.ffile[i], bc.bad.fcount[i]);
        for (int i = 0; i < bc.bad.nlist; i++) bad_list(&bad, &bc.bad.list[i]);
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
    bcast_release(&bc);
    for (int i = 0; i < pl.nwhere; i++) etl_where_release(&pl.where[i]);
    return em_finalize(ctx, 0);
fail:
    if (em_is_leader(ctx)) fprintf(stderr, PROG ": %s: %s\n", em_strerror(rc), em_last_error());
    em_records_free(&res);
    return em_finalize(ctx, 1);
}
