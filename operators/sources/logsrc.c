/* logsrc.c — the input log as a dataset source (DESIGN section 7). A generic source node (EM__K_SOURCE): the plan
 * (which offsets of which log partition each dataset partition reads) is made when the dataset is built, the same
 * way on every rank because from/to are the same everywhere (the streaming engine agrees on them through an
 * action first); a task opens the topic and reads its range with em__log_read, which seeks with the sparse index,
 * so a piece in the middle of a partition costs no scan of what comes before it. A fold source (em__log_source_fold)
 * hands the raw records to a fold instead of making a tuple record of each. */
#include "operators/sources/logsrc.h"

#include "operators/dataset.h"
#include "operators/sources/streamlog.h"
#include "runtime/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct log_piece {
    int part;
    uint64_t from, to;
} log_piece;

typedef struct log_src {
    char *dir;
    log_piece *pieces;
    int npieces;
    int has_fold;
    em__log_fold fold;
} log_src;

static void log_src_free(void *p)
{
    log_src *s = p;
    if (!s) return;
    free(s->dir);
    free(s->pieces);
    free(s);
}

static int log_compute(const em__node *n, int part, em_emitter *sink);

static em_ds *log_source(em_ctx *ctx, const char *dir, const uint64_t *from, const uint64_t *to, uint64_t split,
                         const em__log_fold *fold)
{
    em__node *n = em__node_add(ctx, EM__K_SOURCE, NULL, 0);
    log_src *s = em__calloc(1, sizeof *s);
    s->dir = em__strdup(dir);
    if (fold) s->has_fold = 1, s->fold = *fold;
    n->src = s;
    n->src_free = log_src_free;
    n->src_compute = log_compute;
    char err[600] = "";
    em__log_topic *t = NULL;
    int rc = em__log_open(dir, &t, err, sizeof err);
    if (rc == 0) {
        int np = em__log_partitions(t);
        size_t cap = 0;
        for (int p = 0; p < np && rc == 0; p++) {
            if (from[p] > to[p]) {
                snprintf(err, sizeof err, "%s: partition %d: range [%llu, %llu) is backwards", dir, p,
                         (unsigned long long)from[p], (unsigned long long)to[p]);
                rc = EM_EINVAL;
                break;
            }
            for (uint64_t a = from[p]; a < to[p];) {
                uint64_t b = split && to[p] - a > split ? a + split : to[p];
                if ((size_t)s->npieces == cap) {
                    cap = cap ? 2 * cap : 16;
                    s->pieces = em__realloc(s->pieces, cap * sizeof *s->pieces);
                }
                s->pieces[s->npieces++] = (log_piece){p, a, b};
                a = b;
            }
        }
    }
    em__log_close(t);
    if (rc < 0) {
        n->err = em__strdup(*err ? err : em_strerror(rc));
        n->err_code = rc;
        s->npieces = 0;
    }
    n->nparts = s->npieces;
    return (em_ds *)n;
}

em_ds *em__log_source(em_ctx *ctx, const char *dir, const uint64_t *from, const uint64_t *to, uint64_t split)
{
    return log_source(ctx, dir, from, to, split, NULL);
}

em_ds *em__log_source_fold(em_ctx *ctx, const char *dir, const uint64_t *from, const uint64_t *to, uint64_t split,
                           const em__log_fold *fold)
{
    EM_ASSERT(fold && fold->each && fold->close);
    return log_source(ctx, dir, from, to, split, fold);
}

int em__log_source_range(const em_ds *ds, int part, int *log_part, uint64_t *from, uint64_t *to)
{
    const em__node *n = (const em__node *)ds;
    if (!n || n->kind != EM__K_SOURCE || n->src_compute != log_compute) return EM_EINVAL;
    const log_src *s = n->src;
    if (part < 0 || part >= s->npieces) return EM_EINVAL;
    *log_part = s->pieces[part].part;
    *from = s->pieces[part].from;
    *to = s->pieces[part].to;
    return 0;
}

typedef struct read_st {
    em_emitter *sink;
    em_tup t;
    int part;
} read_st;

static int on_record(void *arg, const em__log_rec *r)
{
    read_st *st = arg;
    em_tup_clear(&st->t);
    em_tup_i64(&st->t, r->time_ms);
    em_tup_str(&st->t, r->value, r->vlen);
    em_tup_i64(&st->t, st->part);
    em_tup_i64(&st->t, (int64_t)r->offset);
    em_rec rec = {r->key, st->t.p, r->klen, (uint32_t)st->t.len};
    return st->sink->push(st->sink, &rec);
}

static int log_compute(const em__node *n, int part, em_emitter *sink)
{
    if (n->err) return em__fail(n->err_code, "%s", n->err);
    const log_src *s = n->src;
    EM_ASSERT(part >= 0 && part < s->npieces);
    const log_piece *pc = &s->pieces[part];
    char err[600] = "";
    em__log_topic *t = NULL;
    read_st st = {sink, {0}, pc->part};
    void *fs = NULL;
    int opened = 0, rc = em__log_open(s->dir, &t, err, sizeof err);
    if (rc == 0 && s->has_fold) {
        fs = s->fold.open ? s->fold.open(part, pc->part, pc->to - pc->from, s->fold.arg) : NULL;
        opened = 1;
        rc = em__log_read(t, pc->part, pc->from, pc->to, s->fold.each, fs, NULL, err, sizeof err);
    } else if (rc == 0) {
        rc = em__log_read(t, pc->part, pc->from, pc->to, on_record, &st, NULL, err, sizeof err);
    }
    if (rc < 0 && *err) em__fail(rc, "%s", err); /* a sink's or fold's own error already set its message */
    if (opened) {
        int crc = s->fold.close(fs, rc < 0 ? NULL : sink);
        if (rc == 0) rc = crc;
    }
    em__log_close(t);
    em_tup_free(&st.t);
    return rc < 0 ? rc : 0;
}
