/* shuffle.c — the two sides of a shuffle, run on the executor thread (DESIGN section 5), and em_cache, which
 * keeps partitions in the block store the same way (DESIGN section 4).
 *
 * A map task pushes its records into a combine table (one entry per distinct key, values combined on arrival);
 * when the table passes a size limit, or at the end, entries are appended to one of R bucket buffers by key hash.
 * The buckets go to this rank's block store (operators/store.c) under (shuffle, map partition), and the task
 * reports their sizes. A reduce task for bucket r reads it from every map output: locally straight from the store,
 * remotely through operators/fetch.c; then it combines, sorts or groups the records into its sink. If an owner is
 * fenced, the read fails with EM__FETCH_FAILED naming the lost output; the driver re-runs that map task from
 * lineage and retries the reduce.
 */
#include "operators/shuffle.h"

#include "operators/fetch.h"
#include "operators/sorter.h"
#include "operators/sources/textsplit.h"
#include "operators/store.h"
#include "runtime/log.h"

#include <stdlib.h>
#include <string.h>

_Thread_local uint64_t em__task_spilled, em__task_records, em__task_bytes_out;
_Thread_local double em__task_fetch_wait;

int em__rec_next(const uint8_t *p, size_t n, size_t *pos, em_rec *r)
{
    if (*pos >= n) return 0;
    if (n - *pos < 8) return -1;
    uint32_t kl, vl;
    memcpy(&kl, p + *pos, 4);
    memcpy(&vl, p + *pos + 4, 4);
    if (n - *pos - 8 < (uint64_t)kl + vl) return -1;
    r->key = p + *pos + 8;
    r->klen = kl;
    r->val = p + *pos + 8 + kl;
    r->vlen = vl;
    *pos += 8 + (size_t)kl + vl;
    return 1;
}

/* ---- task context (which rank holds which map output or cached partition; sort bounds), per executor thread ---- */

static _Thread_local em__deploc *cur_deps;
static _Thread_local int cur_ndeps;
static _Thread_local const uint8_t *cur_bounds;
static _Thread_local size_t cur_bounds_len;

void em__task_deps_set(em__deploc *deps, int ndeps)
{
    cur_deps = deps;
    cur_ndeps = ndeps;
}

void em__task_bounds_set(const void *bounds, size_t len)
{
    cur_bounds = bounds;
    cur_bounds_len = len;
}

static em__deploc *find_deps(uint32_t id)
{
    for (int i = 0; i < cur_ndeps; i++)
        if (cur_deps[i].shuffle == id) return &cur_deps[i];
    return NULL;
}

size_t em__task_budget(const em_ctx *ctx)
{
    size_t b = (size_t)ctx->rt.cfg.memory / 4;
    return b < ((size_t)1 << 20) ? (size_t)1 << 20 : b;
}

/* ---- map side ---- */

/* Below this the buckets are separate buffers. Small enough that every test whose map tasks run twice on a
 * thread goes through the slab (its moves and frees), big enough to skip a mapping for tiny outputs. */
#define SLAB_MIN ((size_t)64 << 10)

typedef struct map_state {
    em__ctab tab;
    em__buf *buckets;
    uint32_t nb;
    const em__node *wide;
    /* SORT: the R-1 upper bounds of the first R-1 buckets, as keys */
    em_rec *bounds;
    uint32_t nbounds;
    uint64_t rr; /* REPART: next bucket */
    size_t limit; /* combine table bytes before a flush */
    uint8_t *slab; /* the buckets' first home, one slice each (NULL: each its own buffer) */
    size_t slab_bytes;
} map_state;

/* Appends a record to bucket b. A bucket that outgrows its slice of the slab moves to a buffer of its own. */
static inline void bucket_append(map_state *ms, uint32_t b, const em_rec *r)
{
    em__buf *bk = &ms->buckets[b];
    size_t need = 8 + (size_t)r->klen + r->vlen;
    if (bk->len + need > bk->cap && em__in_slab(ms->slab, ms->slab_bytes, bk->p)) {
        em__buf own;
        em__buf_init(&own);
        em__buf_grow(&own, 2 * bk->cap + need);
        em__buf_add(&own, bk->p, bk->len);
        *bk = own;
    }
    em__rec_append(bk, r->key, r->klen, r->val, r->vlen);
}

/* Gives the (empty) buckets room for sz[b] bytes each: slices of one slab past SLAB_MIN in all. */
static void buckets_place(map_state *ms, const size_t *sz)
{
    size_t total = 0;
    for (uint32_t b = 0; b < ms->nb; b++) total += (sz[b] + 63) & ~(size_t)63;
    if (total < SLAB_MIN) {
        for (uint32_t b = 0; b < ms->nb; b++) em__buf_grow(&ms->buckets[b], sz[b]);
        return;
    }
    ms->slab_bytes = total;
    ms->slab = em__huge_alloc(total);
    size_t off = 0;
    for (uint32_t b = 0; b < ms->nb; b++) {
        size_t n = (sz[b] + 63) & ~(size_t)63;
        if (n) ms->buckets[b] = (em__buf){ms->slab + off, 0, n}; /* an empty one stays outside (a slice at the
                                                                   * slab's end would look like its own buffer) */
        off += n;
    }
}

static int spill_entry(const em_rec *r, void *arg)
{
    map_state *ms = arg;
    bucket_append(ms, (uint32_t)(em__hash(r->key, r->klen) % ms->nb), r);
    return 0;
}

/* Bytes of records and slots a map task's combine table may hold before it is flushed into the buckets: half the
 * task budget (--ember-memory / 4; the other half is for the task's buckets), at most 128 MiB; the table only grows
 * as far as it needs (word count of 1 GB with --ember-memory 128M: peak RSS 240 MB per rank with the whole budget,
 * 175-190 MB with half; the bench's limit is 202 MB). A bigger table combines
 * more (less to shuffle and to merge on the reduce side) and, with slots prefetched in batches, costs little in
 * cache misses: word count of 1 GB at np=2 took 7.3 s with 16 MiB, 6.2-6.9 s with 64 MiB, 5.7-6.2 s with 128 MiB
 * (100 MB: the same with 64 and 128). Defined at compile time for tuning (-DMAP_TABLE_LIMIT=...). */
#ifndef MAP_TABLE_LIMIT
#define MAP_TABLE_LIMIT ((size_t)128 << 20)
#endif

static int combine_push(em_emitter *self, const em_rec *r)
{
    map_state *ms = self->state;
    em__task_records++;
    int rc = em__ctab_add(&ms->tab, r->key, r->klen, r->val, r->vlen);
    if (rc <= 0) return rc; /* only queued: the table did not change */
    return em__ctab_full(&ms->tab) ? em__ctab_drain(&ms->tab, spill_entry, ms) : 0;
}

static int combine_push_i64(em_emitter *self, const void *key, uint32_t klen, int64_t v)
{
    map_state *ms = self->state;
    em__task_records++;
    int rc = em__ctab_add_i64(&ms->tab, key, klen, v);
    if (rc <= 0) return rc; /* the table only changes when queued adds are applied: no need to look before */
    return em__ctab_full(&ms->tab) ? em__ctab_drain(&ms->tab, spill_entry, ms) : 0;
}

/* Bucket of a key under a range partitioner: the first bucket whose bound is >= key (the last one otherwise);
 * descending order mirrors it. */
static uint32_t range_bucket(const map_state *ms, const em_rec *r)
{
    uint32_t lo = 0, hi = ms->nbounds;
    int desc = !ms->wide->ascending;
    while (lo < hi) {
        uint32_t mid = (lo + hi) / 2;
        int c = em__key_cmp(ms->bounds[mid].key, ms->bounds[mid].klen, r->key, r->klen);
        if (desc ? c > 0 : c < 0) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static int partition_push(em_emitter *self, const em_rec *r)
{
    map_state *ms = self->state;
    em__task_records++;
    uint32_t b;
    switch (ms->wide->kind) {
    case EM__K_SORT: b = range_bucket(ms, r); break;
    case EM__K_REPART: b = (uint32_t)(ms->rr++ % ms->nb); break;
    default: b = (uint32_t)(em__hash(r->key, r->klen) % ms->nb); break;
    }
    bucket_append(ms, b, r);
    return 0;
}


/* Bytes of text that partition `part` of n reads: through narrow nodes that keep their parent's partitions down to
 * a text source; 0 when unknown. */
static uint64_t input_bytes(const em__node *n, int part)
{
    while (n->parent && (n->kind == EM__K_MAP || n->kind == EM__K_FILTER || n->kind == EM__K_MAPPART ||
                         n->kind == EM__K_SAMPLE))
        n = n->parent;
    if (n->kind != EM__K_TEXT || part >= n->nsplits) return 0;
    return n->splits[part].end - n->splits[part].start;
}

/* A map task's combine table starts with room for one entry per this many bytes of text, when it is the first of
 * its thread: doubling up to word count's 245000 distinct words in 12.5 MB of the Zipf corpus (one per 51 bytes)
 * took about 13 ms of the first task's 65 (np=2, 100 MB). Text with fewer distinct words gets too many slots in
 * its first task (a corpus of 30000 words: 8 times too many, no slower as measured); the next tasks start at the
 * size the entries needed. */
#define TEXT_BYTES_PER_KEY 64

static _Thread_local struct {
    int shuffle;
    uint32_t nb;
    size_t bytes; /* the largest bucket */
} bucket_hint = {-1, 0, 0};

int em__shuffle_map(em_ctx *ctx, em__node *wide, int side, int part, em__buf *sizes)
{
    map_state ms;
    memset(&ms, 0, sizeof ms);
    ms.nb = (uint32_t)wide->nparts;
    ms.wide = wide;
    ms.limit = em__task_budget(ctx) / 2 < MAP_TABLE_LIMIT ? em__task_budget(ctx) / 2 : MAP_TABLE_LIMIT;
    ms.buckets = em__calloc(ms.nb, sizeof *ms.buckets);
    /* Buckets start at the size this shuffle's previous map task on this thread ended with: growing them by
     * doubling copied about their whole size again (and faulted in both copies' pages). Together past SLAB_MIN
     * they are slices of one mapping on huge pages: in word count, fresh 4 KiB pages of the buckets were half the
     * page faults of the job, and the faults about a third of its CPU time on these VMs. */
    int combine = wide->kind == EM__K_REDUCE, rc = 0;
    if (!combine && bucket_hint.shuffle == wide->id && bucket_hint.nb == ms.nb) { /* combine: sized at the end */
        size_t per = (bucket_hint.bytes + bucket_hint.bytes / 8 + 63) & ~(size_t)63;
        size_t *sz = em__malloc(ms.nb * sizeof *sz);
        for (uint32_t b = 0; b < ms.nb; b++) sz[b] = per;
        buckets_place(&ms, sz);
        free(sz);
    }
    ms.rr = em__hash(&part, sizeof part); /* spread the round robin's start over partitions */
    if (combine) {
        em__ctab_init(&ms.tab, wide, 1, ms.limit);
        em__ctab_presize(&ms.tab, input_bytes(em__wide_input(wide, side), part) / TEXT_BYTES_PER_KEY);
    }
    if (wide->kind == EM__K_SORT) { /* the bounds came with the task */
        size_t pos = 0, cap = 0;
        em_rec r;
        while (em__rec_next(cur_bounds, cur_bounds_len, &pos, &r) > 0) {
            if (ms.nbounds == cap) ms.bounds = em__realloc(ms.bounds, sizeof *ms.bounds * (cap = cap ? 2 * cap : 16));
            ms.bounds[ms.nbounds++] = r;
        }
        if (ms.nbounds >= ms.nb) rc = em__fail(EM_EINVAL, "sortByKey (dataset %d): %u bounds for %u partitions", wide->id, ms.nbounds, ms.nb);
    }
    em_emitter sink = {combine ? combine_push : partition_push, NULL, wide, &ms, NULL};
    if (combine) sink.push_i64 = combine_push_i64;
    em__node *in = em__wide_input(wide, side);
    if (rc == 0) rc = em__node_compute(in, part, &sink);
    if (rc == 0 && combine) {
        /* The table's entries are the task's output: when they are all of it (the table was never drained before),
         * the buckets are first given room for their share of the entries' bytes and 1/8 more, so they do not
         * grow: the keys' hashes spread the entries evenly (word count of 20 and 100 MB: the biggest bucket of a
         * task at most 3.4% over its share). Unlike sizing each bucket exactly, this reads the table only once;
         * a bucket that still outgrows its room moves out of the slab (bucket_append). */
        int fresh = 1;
        for (uint32_t b = 0; b < ms.nb; b++) fresh &= ms.buckets[b].len == 0;
        rc = em__ctab_flush(&ms.tab);
        if (rc == 0 && fresh && ms.tab.n) {
            size_t share = ms.tab.rec_bytes / ms.nb;
            size_t *sz = em__malloc(ms.nb * sizeof *sz);
            for (uint32_t b = 0; b < ms.nb; b++) sz[b] = share + share / 8 + 256;
            buckets_place(&ms, sz);
            free(sz);
        }
        if (rc == 0) rc = em__ctab_drain(&ms.tab, spill_entry, &ms); /* drained: its slots can be reused */
    }
    if (combine) em__ctab_release(&ms.tab);
    if (rc == 0) { /* the buckets go to the store as they are: no copy into one block */
        size_t most = 0;
        for (uint32_t b = 0; b < ms.nb; b++) most = ms.buckets[b].len > most ? ms.buckets[b].len : most;
        bucket_hint.shuffle = wide->id;
        bucket_hint.nb = ms.nb;
        bucket_hint.bytes = most;
        em__task_bytes_out = 0;
        for (uint32_t b = 0; b < ms.nb; b++) {
            em__buf_u64(sizes, ms.buckets[b].len);
            em__task_bytes_out += ms.buckets[b].len;
        }
        uint32_t map_id = (uint32_t)(side ? wide->parent->nparts + part : part);
        em__store_put_buckets((uint32_t)wide->id, map_id, ms.buckets, ms.nb, ms.slab, ms.slab_bytes);
        ms.buckets = NULL;
        ms.slab = NULL;
    }
    for (uint32_t b = 0; ms.buckets && b < ms.nb; b++)
        if (!em__in_slab(ms.slab, ms.slab_bytes, ms.buckets[b].p)) em__buf_release(&ms.buckets[b]);
    em__huge_free(ms.slab, ms.slab_bytes);
    free(ms.buckets);
    free(ms.bounds);
    return rc;
}

/* ---- reduce side ---- */

typedef struct reduce_state {
    em__node *wide;
    em_emitter *sink;
    em__ctab tab;
    em__sorter sorter[2]; /* SORT, GROUP: [0]; COGROUP: one per side; REDUCE: entries spilled from tab */
    int spilled;          /* REDUCE: the table overflowed into sorter[0] */
    size_t budget;
    uint32_t s, m;        /* for messages */
} reduce_state;

static int to_sorter(const em_rec *r, void *arg) { return em__sorter_add(arg, r); }

static int consume(const uint8_t *p, size_t n, int side, void *arg)
{
    reduce_state *rs = arg;
    size_t pos = 0;
    em_rec r;
    int k, rc = 0;
    while ((k = em__rec_next(p, n, &pos, &r)) > 0) {
        switch (rs->wide->kind) {
        case EM__K_REDUCE:
            rc = em__ctab_add(&rs->tab, r.key, r.klen, r.val, r.vlen);
            if (rc > 0 && em__ctab_full(&rs->tab)) { /* too many keys: a sorted run on disk */
                rs->spilled = 1;
                rc = em__ctab_each(&rs->tab, to_sorter, &rs->sorter[0]);
                em__ctab_clear(&rs->tab);
            }
            break;
        case EM__K_REPART: rc = rs->sink->push(rs->sink, &r); break;
        default: rc = em__sorter_add(&rs->sorter[side], &r); break;
        }
        if (rc < 0) return rc;
    }
    if (k < 0) return em__fail(EM_ECOMM, "shuffle %u: map output %u is malformed", rs->s, rs->m);
    return 0;
}

/* A reduce task's reads: its partition's bucket of every map output, those of this rank straight from the store. */
typedef struct local_reads {
    em_ctx *ctx;
    const em__deploc *d;
    uint32_t part;
    reduce_state *rs;
    em__buf scratch;
} local_reads;

static int read_local(void *arg)
{
    local_reads *lr = arg;
    reduce_state *rs = lr->rs;
    const uint32_t p1 = (uint32_t)rs->wide->parent->nparts;
    int rc = 0;
    for (uint32_t m = 0; m < lr->d->nmaps && rc == 0; m++) {
        if (lr->d->loc[m] != lr->ctx->rt.rank) continue;
        rs->m = m;
        int side = rs->wide->kind == EM__K_COGROUP && m >= p1;
        rc = em__fetch_bucket(lr->ctx, rs->s, m, lr->d->loc[m], lr->part, side, &lr->scratch, consume, rs);
    }
    return rc;
}

static int consume_fetched(uint32_t m, const uint8_t *p, size_t n, void *arg)
{
    reduce_state *rs = ((local_reads *)arg)->rs;
    rs->m = m;
    return consume(p, n, rs->wide->kind == EM__K_COGROUP && m >= (uint32_t)rs->wide->parent->nparts, rs);
}

static int push_final(reduce_state *rs, const em_rec *r)
{
    int agg = rs->wide->agg;
    if (em__agg_needs_final(agg)) {
        uint8_t v[8];
        em__agg_final(agg, r->val, v);
        em_rec o = {r->key, v, r->klen, 8};
        return rs->sink->push(rs->sink, &o);
    }
    return rs->sink->push(rs->sink, r);
}

static int push_entry(const em_rec *r, void *arg) { return push_final(arg, r); }

/* REDUCE after a spill: the sorted stream of partial entries, equal keys merged. */
static int merge_spilled(reduce_state *rs)
{
    em__sorter *so = &rs->sorter[0];
    int rc = em__ctab_each(&rs->tab, to_sorter, so);
    em__ctab_clear(&rs->tab);
    if (rc == 0) rc = em__sorter_finish(so);
    em__buf key, acc;
    em__buf_init(&key);
    em__buf_init(&acc);
    int have = 0;
    em_rec r;
    while (rc == 0 && (rc = em__sorter_next(so, &r)) > 0) {
        if (have && em__key_cmp(key.p, (uint32_t)key.len, r.key, r.klen) == 0) {
            rc = em__ctab_merge_acc(&rs->tab, &acc, r.val, r.vlen);
            continue;
        }
        if (have) {
            em_rec o = {key.p, acc.p, (uint32_t)key.len, (uint32_t)acc.len};
            if ((rc = push_final(rs, &o)) < 0) break;
        }
        key.len = acc.len = 0;
        em__buf_add(&key, r.key, r.klen);
        em__buf_add(&acc, r.val, r.vlen);
        have = 1;
        rc = 0;
    }
    if (rc == 0 && have) {
        em_rec o = {key.p, acc.p, (uint32_t)key.len, (uint32_t)acc.len};
        rc = push_final(rs, &o);
    }
    em__buf_release(&key);
    em__buf_release(&acc);
    return rc;
}

/* The values of one key from a sorted stream, with a one-record lookahead kept between groups. */
struct em_values {
    em__sorter *so;
    em_rec look;
    int have;     /* look holds the next unread record */
    int eof;
    const uint8_t *key;
    uint32_t klen;
    int err;
};

static int values_fill(em_values *it)
{
    if (it->have || it->eof) return 0;
    int rc = em__sorter_next(it->so, &it->look);
    if (rc < 0) return it->err = rc;
    if (rc == 0) it->eof = 1;
    else it->have = 1;
    return 0;
}

int em_values_next(em_values *it, const void **val, uint32_t *vlen)
{
    if (it->err) return it->err;
    int rc = values_fill(it);
    if (rc < 0) return rc;
    if (!it->have || em__key_cmp(it->look.key, it->look.klen, it->key, it->klen) != 0) return 0;
    it->have = 0; /* consumed: stays valid until the sorter moves, i.e. the next call */
    *val = it->look.val;
    *vlen = it->look.vlen;
    return 1;
}

static int drain(em_values *it)
{
    const void *v;
    uint32_t vl;
    int rc;
    while ((rc = em_values_next(it, &v, &vl)) > 0) {
    }
    return rc;
}

static int run_groups(reduce_state *rs)
{
    em__node *w = rs->wide;
    int sides = w->kind == EM__K_COGROUP ? 2 : 1, rc = 0;
    em_values it[2];
    memset(it, 0, sizeof it);
    for (int i = 0; i < sides; i++) {
        if ((rc = em__sorter_finish(&rs->sorter[i])) < 0) return rc;
        it[i].so = &rs->sorter[i];
    }
    em__buf key;
    em__buf_init(&key);
    for (;;) {
        /* the next key: the smallest lookahead */
        int any = 0;
        for (int i = 0; i < sides; i++) {
            if ((rc = values_fill(&it[i])) < 0) goto out;
            if (!it[i].have) continue;
            if (!any || em__key_cmp(it[i].look.key, it[i].look.klen, key.p, (uint32_t)key.len) < 0) {
                key.len = 0;
                em__buf_add(&key, it[i].look.key, it[i].look.klen);
            }
            any = 1;
        }
        if (!any) break;
        for (int i = 0; i < sides; i++) {
            it[i].key = key.p ? key.p : (const uint8_t *)"";
            it[i].klen = (uint32_t)key.len;
        }
        if (w->kind == EM__K_COGROUP)
            rc = em__user_rc(w, w->cogroup(it[0].key, it[0].klen, &it[0], &it[1], rs->sink, w->arg), "cogroup");
        else
            rc = em__user_rc(w, w->group(it[0].key, it[0].klen, &it[0], rs->sink, w->arg), "groupByKey");
        if (rc < 0) goto out;
        for (int i = 0; i < sides; i++)
            if ((rc = drain(&it[i])) < 0) goto out;
    }
out:
    em__buf_release(&key);
    return rc < 0 ? rc : 0;
}

int em__shuffle_read(em_ctx *ctx, em__node *wide, int part, em_emitter *sink)
{
    em__deploc *d = find_deps((uint32_t)wide->id);
    if (!d) return em__fail(EM_EINVAL, "task has no locations for shuffle %d", wide->id);
    reduce_state rs;
    memset(&rs, 0, sizeof rs);
    rs.wide = wide;
    rs.sink = sink;
    rs.budget = em__task_budget(ctx);
    rs.s = (uint32_t)wide->id;
    const char *tmp = ctx->rt.cfg.tmpdir;
    if (wide->kind == EM__K_REDUCE) em__ctab_init(&rs.tab, wide, 0, rs.budget);
    for (int i = 0; i < 2; i++) em__sorter_init(&rs.sorter[i], rs.budget / 2, tmp, wide->kind == EM__K_SORT && !wide->ascending);
    local_reads lr = {.ctx = ctx, .d = d, .part = (uint32_t)part, .rs = &rs};
    em__buf_init(&lr.scratch);
    int rc = 0;
    uint32_t *rmaps = em__malloc(sizeof *rmaps * (d->nmaps ? d->nmaps : 1));
    int32_t *rowners = em__malloc(sizeof *rowners * (d->nmaps ? d->nmaps : 1));
    size_t nremote = 0;
    for (uint32_t m = 0; m < d->nmaps; m++)
        if (d->loc[m] != ctx->rt.rank) {
            rmaps[nremote] = m;
            rowners[nremote++] = d->loc[m];
        }
    for (size_t i = 0; i < nremote && rc == 0; i++)
        if (rowners[i] < 0) rc = em__fetch_failed((uint32_t)wide->id, rmaps[i], rowners[i]);
    /* the remote outputs are asked for first, and arrive while the local ones are read */
    if (rc == 0) rc = nremote ? em__fetch_many(ctx, rs.s, (uint32_t)part, rmaps, rowners, nremote, read_local,
                                               consume_fetched, &lr)
                              : read_local(&lr);
    free(rmaps);
    free(rowners);
    em__buf_release(&lr.scratch);
    if (rc == 0) {
        switch (wide->kind) {
        case EM__K_REDUCE: rc = rs.spilled ? merge_spilled(&rs) : em__ctab_each(&rs.tab, push_entry, &rs); break;
        case EM__K_REPART: break;
        case EM__K_SORT: {
            em_rec r;
            if ((rc = em__sorter_finish(&rs.sorter[0])) < 0) break;
            while ((rc = em__sorter_next(&rs.sorter[0], &r)) > 0)
                if ((rc = sink->push(sink, &r)) < 0) break;
            break;
        }
        default: rc = run_groups(&rs); break;
        }
    }
    uint64_t spilled = rs.sorter[0].spilled + rs.sorter[1].spilled;
    if (spilled) EM_LOG_I("shuffle %d reduce %d: spilled %llu bytes (compressed) to disk", wide->id, part, (unsigned long long)spilled);
    em__task_spilled += spilled;
    if (wide->kind == EM__K_REDUCE) em__ctab_release(&rs.tab);
    for (int i = 0; i < 2; i++) em__sorter_release(&rs.sorter[i]);
    return rc < 0 ? rc : 0;
}

/* ---- em_cache: partitions kept in the block store under (node id | EM__CACHE_ID, partition), one bucket ---- */

typedef struct tee_state {
    em__buf buf;
    int stopped;
} tee_state;

static int tee_push(em_emitter *self, const em_rec *r)
{
    tee_state *t = self->state;
    em__rec_append(&t->buf, r->key, r->klen, r->val, r->vlen);
    int rc = self->next->push(self->next, r);
    if (rc == EM__STOP) t->stopped = 1;
    return rc;
}

typedef struct replay_arg {
    em_emitter *sink;
    em__buf *copy; /* a remote partition is kept here too */
} replay_arg;

static int replay(const uint8_t *p, size_t n, int side, void *arg)
{
    (void)side;
    replay_arg *ra = arg;
    if (ra->copy) em__buf_add(ra->copy, p, n);
    size_t pos = 0;
    em_rec r;
    int k, rc;
    while ((k = em__rec_next(p, n, &pos, &r)) > 0)
        if ((rc = ra->sink->push(ra->sink, &r)) < 0) return rc;
    return k < 0 ? em__fail(EM_ECOMM, "a cached partition is malformed") : 0;
}

static void store_partition(uint32_t id, int part, em__buf *data)
{
    uint64_t *offs = em__malloc(2 * sizeof *offs);
    offs[0] = 0;
    offs[1] = data->len;
    em__store_put(id, (uint32_t)part, data, offs, 1);
}

int em__cache_compute(em_ctx *ctx, em__node *node, int part, em_emitter *sink)
{
    uint32_t id = (uint32_t)node->id | EM__CACHE_ID;
    em__deploc *d = find_deps(id);
    int owner = em__store_has(id, (uint32_t)part) ? ctx->rt.rank : d && (uint32_t)part < d->nmaps ? d->loc[part] : -1;
    if (owner >= 0) {
        em__buf scratch, copy;
        em__buf_init(&scratch);
        em__buf_init(&copy);
        replay_arg ra = {sink, owner == ctx->rt.rank ? NULL : &copy};
        int rc = em__fetch_bucket(ctx, id, (uint32_t)part, owner, 0, 0, &scratch, replay, &ra);
        em__buf_release(&scratch);
        if (rc == 0 && ra.copy) store_partition(id, part, &copy); /* now held here too */
        em__buf_release(&copy);
        if (rc != EM__FETCH_FAILED) return rc;
        EM_LOG_W("cached partition %d of dataset %d is gone with r%d; recomputing it from lineage", part, node->id, owner);
        em__set_error("");
    }
    tee_state t;
    em__buf_init(&t.buf);
    t.stopped = 0;
    em_emitter tee = {tee_push, sink, node, &t, NULL};
    int rc = em__node_compute_uncached(node, part, &tee);
    if (rc == 0 && !t.stopped) store_partition(id, part, &t.buf);
    em__buf_release(&t.buf);
    return rc;
}
