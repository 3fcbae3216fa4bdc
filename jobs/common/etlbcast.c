/*
 * etlbcast.c — the ETL job's broadcast join (see etlbcast.h): the right side packed into blocks, collected and
 * indexed on every rank, and the left side joined and pre-aggregated in the tasks that read it.
 * Follows DESIGN.md §4 (mapPartitions, collect) and §5 (what the shuffle no longer has to move).
 */
#include "jobs/common/etlbcast.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs/common/etlagg.h"
#include "jobs/common/etljoin.h"
#include "jobs/common/etlrow.h"

static _Thread_local em_tup tk, tv, tx; /* scratch tuples of this executor thread */

/*
 * The right side travels to every rank (em_collect) in blocks of about RBLOCK bytes rather than one record per
 * row: a few hundred records instead of a million, and each distinct payload (a dimension table has few: the
 * countries) once per block. One block is a record with an empty key and the value
 *
 *     u32 ndict | ndict x (u32 len, payload tuple) | u32 nrows | nrows x (key field, u32 dict index)
 *
 * (a key field is one typed tuple field: self-delimiting). Integers are in this machine's order: every rank runs
 * the same binary, as for etl_aggst. Bad rows go as etl_parse_row emits them, under the NULL key.
 */
#define RBLOCK (64 << 10)
#define RDICT 4096 /* slots of a block's payload dictionary (it is emitted before it is half full) */

/* One task's block being filled. */
typedef struct rblock {
    etl_bytes dict, rows, out;
    uint32_t ndict, nrows;
    int32_t slot[RDICT]; /* dictionary index + 1 by payload hash, 0 empty */
    uint32_t doff[RDICT / 2]; /* offset of each dictionary entry in dict */
    etl_prow row;
    etl_bytes own;
} rblock;

static int bytes_u32(etl_bytes *b, uint32_t v) { return etl_bytes_add(b, &v, 4); }

void *etl_rblock_open(int part, void *arg)
{
    (void)part, (void)arg;
    return calloc(1, sizeof(rblock));
}

static int rblock_flush(rblock *b, em_emitter *out)
{
    if (b->nrows == 0) return 0;
    b->out.len = 0;
    if (bytes_u32(&b->out, b->ndict) < 0 || etl_bytes_add(&b->out, b->dict.p, b->dict.len) < 0 ||
        bytes_u32(&b->out, b->nrows) < 0 || etl_bytes_add(&b->out, b->rows.p, b->rows.len) < 0)
        return -1;
    b->dict.len = b->rows.len = 0;
    b->ndict = b->nrows = 0;
    memset(b->slot, 0, sizeof b->slot);
    return em_emit(out, "", 0, b->out.p, (uint32_t)b->out.len);
}

int etl_rblock_each(void *state, const em_rec *in, em_emitter *out, void *arg)
{
    rblock *b = state;
    if (!b) return -1;
    if (b->rows.len + b->dict.len >= RBLOCK || b->ndict >= RDICT / 2) {
        int rc = rblock_flush(b, out);
        if (rc < 0) return rc;
    }
    const etl_side *sd = arg;
    int rc = etl_row_parse(sd, in, &b->row, &b->own);
    if (rc == ETL_ROW_BAD) return etl_parse_row(in, out, arg); /* as the shuffle join sends it (rare: parsed twice) */
    if (rc != ETL_ROW_OK) return rc;
    em_tup_clear(&tv);
    for (int i = 0; i < sd->nf; i++) etl_field_put(&tv, &b->row.f[i]);
    uint32_t d;
    for (size_t i = etl_hash(tv.p, tv.len) & (RDICT - 1);; i = (i + 1) & (RDICT - 1)) {
        if (b->slot[i] == 0) { /* a new payload: u32 len, etl_bytes */
            b->doff[b->ndict] = (uint32_t)b->dict.len;
            if (bytes_u32(&b->dict, (uint32_t)tv.len) < 0 || etl_bytes_add(&b->dict, tv.p, tv.len) < 0) return -1;
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
    etl_field_put(&tk, &b->row.key);
    if (etl_bytes_add(&b->rows, tk.p, tk.len) < 0 || bytes_u32(&b->rows, d) < 0) return -1;
    b->nrows++;
    return 0;
}

int etl_rblock_close(void *state, em_emitter *out, void *arg)
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
static int32_t intern(etl_bcast *bc, interner *in, const em_tup *t, size_t *cap)
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
    if (etl_bytes_add(&bc->gt, t->p, t->len) < 0) return -1;
    bc->goff[bc->ngroups + 1] = bc->gt.len;
    in->slot[i] = ++bc->ngroups;
    return bc->ngroups - 1;
}

/* The group tuple (0, group...) of a joined pair (r NULL: no right row). */
static void group_tuple(const etl_plan *pl, const em_field *l, const em_field *r, em_tup *t)
{
    static const em_field null_field = {.type = EM_F_NULL};
    const em_field *side_f[2] = {l, r};
    em_tup_clear(t);
    em_tup_i64(t, 0);
    for (int g = 0; g < pl->ng; g++)
        etl_field_put(t, side_f[pl->gside[g]] ? &side_f[pl->gside[g]][pl->gpos[g]] : &null_field);
}

int etl_bcast_build(etl_plan *pl, etl_bcast *bc, em_records *res)
{
    int rc = -1;
    size_t nrows = 0, m = 0, gcap = 0, ndict = 0;
    const uint8_t **keys = NULL;
    uint32_t *kl = NULL;
    int32_t *tgt = NULL, *dmap = NULL;
    interner in = {0};
    etl_bytes own = {0};
    em_tup t = {0};
    em_field rf[ETL_MAXF];
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
            etl_badrow b = {etl_field_i64(v, r->vlen, 0), etl_field_i64(v, r->vlen, 1), etl_field_i64(v, r->vlen, 2), ""};
            em_field f;
            if (em_tup_get(v, r->vlen, 3, &f) == 0 && f.type == EM_F_STR)
                snprintf(b.msg, sizeof b.msg, "%.*s", (int)f.len, f.str);
            etl_badsum_count(&bc->bad, b.side, b.file, 1);
            etl_badsum_list(&bc->bad, &b);
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
            if (etl_payload_fields(v + pos + 4, l, rf, ETL_MAXF, &own) < 0) {
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
        if ((size_t)bc->ngroups + 2 > gcap || etl_bytes_add(&bc->gt, t.p, t.len) < 0) goto out;
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

void etl_bcast_release(etl_bcast *bc)
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
    etl_aggst *acc;        /* fast: [nslot][na] */
    int32_t *gid;      /* fast: [nslot] group id of each slot */
    size_t nslot, cap;
    etl_badsum bad;        /* the left side's bad rows in this task */
    etl_bytes lown, rown, dk;
    etl_prow row;
} btask;

void *etl_bjoin_open(int part, void *arg)
{
    const etl_plan *pl = arg;
    (void)part;
    btask *t = calloc(1, sizeof *t);
    if (t && pl->bc->fast && !(t->slot_of = calloc((size_t)pl->bc->ngroups + 1, sizeof *t->slot_of))) {
        free(t);
        t = NULL;
    }
    return t;
}

/* The aggregate states of group id g in this task (created empty). NULL when out of memory. */
static etl_aggst *bjoin_slot(const etl_plan *pl, btask *t, int32_t g)
{
    if (t->slot_of[g]) return &t->acc[(size_t)(t->slot_of[g] - 1) * (size_t)pl->na];
    if (t->nslot == t->cap) {
        size_t nc = t->cap ? t->cap * 2 : 64;
        etl_aggst *na = realloc(t->acc, nc * (size_t)pl->na * sizeof *na);
        if (!na) return NULL;
        t->acc = na;
        int32_t *ng = realloc(t->gid, nc * sizeof *ng);
        if (!ng) return NULL;
        t->gid = ng;
        t->cap = nc;
    }
    etl_aggst *a = &t->acc[t->nslot * (size_t)pl->na];
    for (int k = 0; k < pl->na; k++) a[k] = (etl_aggst){.all_int = 1};
    t->gid[t->nslot] = g;
    t->slot_of[g] = (int32_t)++t->nslot;
    return a;
}

int etl_bjoin_each(void *state, const em_rec *in, em_emitter *out, void *arg)
{
    const etl_plan *pl = arg;
    const etl_bcast *bc = pl->bc;
    btask *t = state;
    etl_prow *r = &t->row;
    int rc;
    if (!t) return -1;
    if ((rc = etl_row_parse(&pl->s[0], in, r, &t->lown)) == ETL_ROW_BAD) {
        etl_badrow b = etl_badrow_of(ETL_LEFT, in, r->msg);
        etl_badsum_count(&t->bad, b.side, b.file, 1);
        etl_badsum_list(&t->bad, &b);
        return 0;
    }
    if (rc != ETL_ROW_OK) return rc;
    const int32_t *tg_;
    int32_t one, nt;
    if (r->key.type == EM_F_I64) {
        nt = etl_index_find_i64(&bc->ix, r->key.i64, &one, &tg_);
    } else {
        em_tup_clear(&tk);
        etl_field_put(&tk, &r->key);
        nt = etl_index_find(&bc->ix, tk.p, (uint32_t)tk.len, &one, &tg_);
    }
    if (nt == 0 && pl->join == EM_JOIN_INNER) return 0; /* unmatched left rows are dropped */
    if (!bc->fast) {
        em_field rf[ETL_MAXF];
        if (nt == 0) return etl_join_pair(pl, r->f, NULL, out);
        for (int k = 0; k < nt; k++) {
            if (etl_payload_fields(bc->pay[tg_[k]], bc->paylen[tg_[k]], rf, ETL_MAXF, &t->rown) < 0) return -1;
            if ((rc = etl_join_pair(pl, r->f, rf, out)) < 0) return rc;
        }
        return 0;
    }
    /* The row's contribution to each aggregate, as etl_join_pair would emit it. */
    etl_aggst c[ETL_MAXA];
    for (int a = 0; a < pl->na; a++) {
        const em_field *f = &r->f[pl->apos[a]];
        c[a] = (etl_aggst){.all_int = 1};
        if (pl->agg[a].kind == ETL_COUNT) c[a].n = 1;
        else if (pl->agg[a].kind == ETL_COUNT_DISTINCT) continue;
        else if (f->type == EM_F_I64) c[a].n = 1, c[a].i = f->i64, c[a].hi = (double)f->i64;
        else if (f->type == EM_F_F64) c[a].n = 1, c[a].all_int = 0, c[a].hi = f->f64;
    }
    int32_t none = bc->ngroups;
    for (int k = 0; k < (nt ? nt : 1); k++) {
        int32_t g = nt ? tg_[k] : none;
        etl_aggst *s = bjoin_slot(pl, t, g);
        if (!s) return -1;
        for (int a = 0; a < pl->na; a++) {
            if (pl->agg[a].kind != ETL_COUNT_DISTINCT) {
                etl_aggst_merge(pl->agg[a].kind, &s[a], &c[a]);
                continue;
            }
            const em_field *f = &r->f[pl->apos[a]];
            if (f->type == EM_F_NULL) continue;
            /* (1 + a, group..., value): the group tuple without its leading 0 (9 bytes) */
            size_t g0 = bc->goff[g] + 9, g1 = bc->goff[g + 1];
            t->dk.len = 0;
            em_tup_clear(&tx);
            em_tup_i64(&tx, 1 + a);
            if (etl_bytes_add(&t->dk, tx.p, tx.len) < 0 || etl_bytes_add(&t->dk, bc->gt.p + g0, g1 - g0) < 0) return -1;
            em_tup_clear(&tx);
            etl_field_put(&tx, f);
            if (etl_bytes_add(&t->dk, tx.p, tx.len) < 0) return -1;
            if ((rc = em_emit(out, t->dk.p, (uint32_t)t->dk.len, "D", 1)) < 0) return rc;
        }
    }
    return 0;
}

int etl_bjoin_close(void *state, em_emitter *out, void *arg)
{
    const etl_plan *pl = arg;
    const etl_bcast *bc = pl->bc;
    btask *t = state;
    int rc = 0;
    if (!t) return -1;
    uint8_t st[1 + ETL_MAXA * sizeof(etl_aggst)];
    st[0] = 'M';
    for (size_t i = 0; i < t->nslot && rc >= 0; i++) {
        int32_t g = t->gid[i];
        memcpy(st + 1, &t->acc[i * (size_t)pl->na], (size_t)pl->na * sizeof(etl_aggst));
        rc = em_emit(out, bc->gt.p + bc->goff[g], (uint32_t)(bc->goff[g + 1] - bc->goff[g]), st,
                     (uint32_t)(1 + (size_t)pl->na * sizeof(etl_aggst)));
    }
    if (rc >= 0 && t->bad.nfiles) rc = etl_badsum_emit(out, &t->bad);
    free(t->slot_of), free(t->acc), free(t->gid), free(t->lown.p), free(t->rown.p), free(t->dk.p);
    free(t);
    return rc < 0 ? rc : 0;
}
