/*
 * etlrow.c — the ETL job's rows (see etlrow.h): a CSV record's fields read in place, typed, filtered by the --where
 * clauses of its side, and written to or read from tuples. Follows DESIGN.md §3 (records are borrowed; em_emit
 * copies) and §8 (a bad row is reported with its file and line, never dropped silently).
 */
#include "jobs/common/etlrow.h"

#include <stdio.h>
#include <string.h>

#include "jobs/common/etlbad.h"

static _Thread_local em_tup tk, tv; /* scratch tuples of this executor thread */

int64_t etl_field_i64(const void *p, size_t n, int idx)
{
    em_field f;
    return em_tup_get(p, n, idx, &f) == 0 && f.type == EM_F_I64 ? f.i64 : 0;
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
static int row_fields(const em_rec *in, int upto, const char **s, size_t *n, etl_bytes *own)
{
    const uint8_t *p = in->val, *e = p + in->vlen;
    size_t at[ETL_MAXC];
    int nesc = 0, esc[ETL_MAXC];
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
                if (etl_bytes_add(own, q, 1) < 0) return -1;
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

int etl_row_parse(const etl_side *sd, const em_rec *in, etl_prow *r, etl_bytes *own)
{
    const char *s[ETL_MAXC];
    size_t n[ETL_MAXC];
    if (row_fields(in, sd->maxcol, s, n, own) < 0) return -1;
    for (int i = 0; i < sd->nw; i++) {
        const etl_where *w = sd->w[i];
        int m = etl_where_match(w, s[w->idx], n[w->idx]);
        if (m == 0) return ETL_ROW_SKIP;
        if (m < 0) {
            snprintf(r->msg, sizeof r->msg, "%.*s: '%.*s%s' is not a number (--where)", (int)w->col.len, w->col.name,
                     SHOWN(n[w->idx]), s[w->idx], ELLIPSIS(n[w->idx]));
            return ETL_ROW_BAD;
        }
    }
    if (n[sd->key] == 0) {
        snprintf(r->msg, sizeof r->msg, "%s: empty key", em_csv_colname(sd->csv, sd->key));
        return ETL_ROW_BAD;
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
            return ETL_ROW_BAD;
        }
    }
    return ETL_ROW_OK;
}

void etl_field_put(em_tup *t, const em_field *f)
{
    switch (f->type) {
    case EM_F_NULL: em_tup_null(t); break;
    case EM_F_I64: em_tup_i64(t, f->i64); break;
    case EM_F_F64: em_tup_f64(t, f->f64); break;
    case EM_F_STR: em_tup_str(t, f->str, f->len); break;
    }
}

int etl_parse_row(const em_rec *in, em_emitter *out, void *arg)
{
    const etl_side *sd = arg;
    static _Thread_local etl_prow r;
    static _Thread_local etl_bytes own;
    int rc = etl_row_parse(sd, in, &r, &own);
    if (rc == ETL_ROW_BAD) {
        etl_badrow b = etl_badrow_of(sd->which, in, r.msg);
        em_tup_clear(&tk);
        em_tup_null(&tk);
        em_tup_clear(&tv);
        em_tup_i64(&tv, b.side), em_tup_i64(&tv, b.file), em_tup_i64(&tv, b.line);
        em_tup_str(&tv, b.msg, strlen(b.msg));
        return em_emit(out, tk.p, (uint32_t)tk.len, tv.p, (uint32_t)tv.len);
    }
    if (rc != ETL_ROW_OK) return rc;
    em_tup_clear(&tk);
    etl_field_put(&tk, &r.key);
    em_tup_clear(&tv);
    for (int i = 0; i < sd->nf; i++) etl_field_put(&tv, &r.f[i]);
    return em_emit(out, tk.p, (uint32_t)tk.len, tv.p, (uint32_t)tv.len);
}

int etl_payload_fields(const void *p, uint32_t len, em_field *f, int max, etl_bytes *own)
{
    size_t at[ETL_MAXF + 2];
    int n = em_tup_count(p, len);
    if (n < 0 || n > max || n > ETL_MAXF + 2) return -1;
    own->len = 0;
    for (int i = 0; i < n; i++) {
        at[i] = SIZE_MAX;
        if (em_tup_get(p, len, i, &f[i]) < 0) return -1;
        if (f[i].type == EM_F_STR && (f[i].str < (const char *)p || f[i].str >= (const char *)p + len)) {
            at[i] = own->len;
            if (etl_bytes_add(own, f[i].str, f[i].len) < 0) return -1;
        }
    }
    for (int i = 0; i < n; i++)
        if (at[i] != SIZE_MAX) f[i].str = (const char *)own->p + at[i];
    return n;
}
