/*
 * etlbad.c — the ETL job's bad-row summary (see etlbad.h): counting, keeping the first rows in a fixed order,
 * encoding as a tuple for the reduces, and the report. Follows DESIGN.md §8 (bad rows are counted and reported
 * with file and line; --strict makes them fatal).
 */
#include "jobs/common/etlbad.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs/common/etlbytes.h"
#include "jobs/common/etlrow.h"

#define PROG "etl"

static _Thread_local em_tup tg, tx; /* scratch tuples of this executor thread */

void etl_badsum_count(etl_badsum *b, int64_t side, int64_t file, int64_t n)
{
    for (int i = 0; i < b->nfiles; i++)
        if (b->fside[i] == side && b->ffile[i] == file) {
            b->fcount[i] += n;
            return;
        }
    if (b->nfiles == 64) return; /* more than 64 input files with bad rows: the rest go uncounted by file */
    b->fside[b->nfiles] = side, b->ffile[b->nfiles] = file, b->fcount[b->nfiles++] = n;
}

static int row_before(const etl_badrow *x, const etl_badrow *y)
{
    if (x->side != y->side) return x->side < y->side;
    if (x->file != y->file) return x->file < y->file;
    return x->line < y->line;
}

void etl_badsum_list(etl_badsum *b, const etl_badrow *r)
{
    int at = b->nlist;
    while (at > 0 && row_before(r, &b->list[at - 1])) at--;
    if (at == ETL_BAD_LISTED) return;
    int n = b->nlist < ETL_BAD_LISTED ? b->nlist : ETL_BAD_LISTED - 1;
    memmove(&b->list[at + 1], &b->list[at], (size_t)(n - at) * sizeof *r);
    b->list[at] = *r;
    if (b->nlist < ETL_BAD_LISTED) b->nlist++;
}

void etl_badsum_decode(const uint8_t *p, size_t n, etl_badsum *b)
{
    int k = 0;
    memset(b, 0, sizeof *b);
    int nf = (int)etl_field_i64(p, n, k++);
    for (int i = 0; i < nf; i++, k += 3)
        etl_badsum_count(b, etl_field_i64(p, n, k), etl_field_i64(p, n, k + 1), etl_field_i64(p, n, k + 2));
    int nl = (int)etl_field_i64(p, n, k++);
    for (int i = 0; i < nl; i++, k += 4) {
        etl_badrow r = {etl_field_i64(p, n, k), etl_field_i64(p, n, k + 1), etl_field_i64(p, n, k + 2), ""};
        em_field f;
        if (em_tup_get(p, n, k + 3, &f) == 0 && f.type == EM_F_STR)
            snprintf(r.msg, sizeof r.msg, "%.*s", (int)f.len, f.str);
        etl_badsum_list(b, &r);
    }
}

void etl_badsum_encode(const etl_badsum *b, em_tup *t)
{
    em_tup_i64(t, b->nfiles);
    for (int i = 0; i < b->nfiles; i++) em_tup_i64(t, b->fside[i]), em_tup_i64(t, b->ffile[i]), em_tup_i64(t, b->fcount[i]);
    em_tup_i64(t, b->nlist);
    for (int i = 0; i < b->nlist; i++) {
        em_tup_i64(t, b->list[i].side), em_tup_i64(t, b->list[i].file), em_tup_i64(t, b->list[i].line);
        em_tup_str(t, b->list[i].msg, strlen(b->list[i].msg));
    }
}

int etl_badsum_emit(em_emitter *out, const etl_badsum *b)
{
    em_tup_clear(&tx);
    etl_badsum_encode(b, &tx);
    em_tup_clear(&tg);
    em_tup_i64(&tg, -1);
    etl_bytes val = {0};
    int rc = etl_bytes_add(&val, "B", 1) < 0 || etl_bytes_add(&val, tx.p, tx.len) < 0 ? -1
             : em_emit(out, tg.p, (uint32_t)tg.len, val.p, (uint32_t)val.len);
    free(val.p);
    return rc;
}

etl_badrow etl_badrow_of(int side, const em_rec *in, const char *msg)
{
    etl_badrow b = {side, etl_field_i64(in->key, in->klen, 0), etl_field_i64(in->key, in->klen, 1), ""};
    snprintf(b.msg, sizeof b.msg, "%s", msg);
    return b;
}

int64_t etl_badsum_report(const em_ctx *ctx, const etl_plan *pl, const etl_badsum *b, int strict)
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
