/* shuffle.c — hash partitioning with map-side combine, the per-rank block store, and pull fetch of buckets
 * through the owner's progress thread (DESIGN section 5).
 *
 * A map task pushes its records into a combine table (one entry per distinct key, values combined on arrival);
 * when the table passes a size limit, or at the end, entries are appended to one of R bucket buffers by key hash.
 * The buckets go to this rank's block store under (shuffle, map partition), and the task reports their sizes.
 * A reduce task for bucket r reads it from every map output: locally straight from the store, remotely with
 * FETCH_REQ/FETCH_RESP in chunks of up to 4 MiB served by the owner's progress thread (so serving never waits for
 * the owner's executor). If an owner is fenced, the fetch fails with EM__FETCH_FAILED naming the lost output;
 * the driver re-runs that map task from lineage and retries the reduce.
 *
 * Not yet: spilling the block store to disk beyond --ember-memory, and compression on the wire (see README).
 */
#include "operators/shuffle.h"

#include "runtime/log.h"

#include <stdlib.h>
#include <string.h>

_Thread_local em__fetch_fail em__last_fetch_fail;
void (*em__fetch_hook)(void);

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

uint64_t em__hash(const void *p, size_t n)
{
    /* 64-bit multiply-xorshift over 8-byte words; good enough to spread keys over buckets and table slots. */
    const uint8_t *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (n * 0xC2B2AE3D27D4EB4FULL);
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ (w * 0xFF51AFD7ED558CCDULL)) * 0xC4CEB9FE1A85EC53ULL;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++) w |= (uint64_t)s[i] << (8 * i);
    h = (h ^ (w * 0xFF51AFD7ED558CCDULL)) * 0xC4CEB9FE1A85EC53ULL;
    h ^= h >> 32;
    h *= 0x9E3779B97F4A7C15ULL;
    h ^= h >> 29;
    return h;
}

/* ---- combine table ---- */

void em__ctab_init(em__ctab *t, const em__node *wide, int map_side)
{
    memset(t, 0, sizeof *t);
    t->node = wide;
    t->map_side = map_side;
    t->cap = 1024;
    t->off1 = em__calloc(t->cap, sizeof *t->off1);
    t->tag = em__calloc(t->cap, sizeof *t->tag);
}

void em__ctab_release(em__ctab *t)
{
    em__buf_release(&t->arena);
    em__buf_release(&t->scratch);
    free(t->off1);
    free(t->tag);
    memset(t, 0, sizeof *t);
}

void em__ctab_clear(em__ctab *t)
{
    t->arena.len = 0;
    memset(t->off1, 0, t->cap * sizeof *t->off1);
    t->n = 0;
}

static void ctab_grow(em__ctab *t)
{
    size_t ncap = t->cap * 2;
    uint64_t *off1 = em__calloc(ncap, sizeof *off1);
    uint32_t *tag = em__calloc(ncap, sizeof *tag);
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->off1[i]) continue;
        const uint8_t *rec = t->arena.p + t->off1[i] - 1;
        uint32_t kl;
        memcpy(&kl, rec, 4);
        uint64_t h = em__hash(rec + 8, kl);
        size_t j = h & (ncap - 1);
        while (off1[j]) j = (j + 1) & (ncap - 1);
        off1[j] = t->off1[i];
        tag[j] = (uint32_t)(h >> 32);
    }
    free(t->off1);
    free(t->tag);
    t->off1 = off1;
    t->tag = tag;
    t->cap = ncap;
}

struct em_value {
    em__buf *buf;
    int set;
};

int em_value_set(em_value *out, const void *val, uint32_t len)
{
    out->buf->len = 0;
    em__buf_add(out->buf, val, len);
    out->set = 1;
    return 0;
}

static int agg_combine(int agg, const uint8_t *a, const void *b, uint32_t blen, uint8_t *dst)
{
    if (blen != 8) return em__fail(EM_ETYPE, "reduceByKey: a value is %u bytes, not an int64 (8 bytes)", blen);
    int64_t x = em_i64_get(a), y = em_i64_get(b), z;
    switch (agg) {
    case EM_AGG_MIN: z = x < y ? x : y; break;
    case EM_AGG_MAX: z = x > y ? x : y; break;
    default: z = x + y; break; /* SUM, and COUNT once values are counts */
    }
    em_i64_put(dst, z);
    return 0;
}

int em__ctab_add(em__ctab *t, const void *k, uint32_t kl, const void *v, uint32_t vl)
{
    static const uint8_t one[8] = {0x80, 0, 0, 0, 0, 0, 0, 1}; /* em_i64_put(1) */
    const em__node *w = t->node;
    if (w->agg == EM_AGG_COUNT && t->map_side) {
        v = one;
        vl = 8;
    } else if (w->agg >= 0 && vl != 8) {
        return em__fail(EM_ETYPE, "reduceByKey: a value is %u bytes, not an int64 (8 bytes)", vl);
    }
    if (2 * (t->n + 1) > t->cap) ctab_grow(t);
    uint64_t h = em__hash(k, kl);
    uint32_t tg = (uint32_t)(h >> 32);
    size_t i = h & (t->cap - 1);
    for (; t->off1[i]; i = (i + 1) & (t->cap - 1)) {
        if (t->tag[i] != tg) continue;
        uint8_t *rec = t->arena.p + t->off1[i] - 1;
        uint32_t rkl, rvl;
        memcpy(&rkl, rec, 4);
        memcpy(&rvl, rec + 4, 4);
        if (rkl != kl || memcmp(rec + 8, k, kl) != 0) continue;
        uint8_t *rv = rec + 8 + rkl;
        if (w->agg >= 0) return agg_combine(w->agg, rv, v, vl, rv);
        em_value out = {&t->scratch, 0};
        int rc = w->combine(rv, rvl, v, vl, &out, w->arg);
        if (rc < 0) return *em_last_error() ? rc : em__fail(EM_EUSER, "combine callback of dataset %d returned %d", w->id, rc);
        if (!out.set) return em__fail(EM_EUSER, "combine callback of dataset %d did not call em_value_set", w->id);
        if (t->scratch.len == rvl) {
            memcpy(rv, t->scratch.p, rvl);
        } else { /* the value changed size: append a fresh record (the old bytes become garbage) */
            size_t off = t->arena.len; /* k is the caller's record, never inside arena: safe across growth */
            em__rec_append(&t->arena, k, kl, t->scratch.p, (uint32_t)t->scratch.len);
            t->off1[i] = off + 1;
        }
        return 0;
    }
    size_t off = t->arena.len;
    em__rec_append(&t->arena, k, kl, v, vl);
    t->off1[i] = off + 1;
    t->tag[i] = tg;
    t->n++;
    return 0;
}

int em__ctab_each(em__ctab *t, int (*fn)(const em_rec *r, void *arg), void *arg)
{
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->off1[i]) continue;
        size_t pos = t->off1[i] - 1;
        em_rec r;
        em__rec_next(t->arena.p, t->arena.len, &pos, &r);
        int rc = fn(&r, arg);
        if (rc < 0) return rc;
    }
    return 0;
}

/* ---- block store ---- */

struct em__block {
    uint32_t shuffle, map_part, nbuckets;
    int refs;
    em__buf data;
    uint64_t *offs;
    em__block *next; /* hash chain */
};

#define STORE_HASH 4096
static struct {
    pthread_mutex_t mu;
    em__block *tab[STORE_HASH];
    em__rt *rt;
} store = {PTHREAD_MUTEX_INITIALIZER, {0}, NULL};

static size_t store_slot(uint32_t s, uint32_t m) { return (size_t)(em__hash(&(uint64_t){(uint64_t)s << 32 | m}, 8) % STORE_HASH); }

static void block_unref(em__block *b)
{
    if (--b->refs > 0) return;
    em__buf_release(&b->data);
    free(b->offs);
    free(b);
}

/* Caller holds store.mu; returns a referenced block or NULL. */
static em__block *store_get_locked(uint32_t s, uint32_t m)
{
    for (em__block *b = store.tab[store_slot(s, m)]; b; b = b->next)
        if (b->shuffle == s && b->map_part == m) {
            b->refs++;
            return b;
        }
    return NULL;
}

void em__store_put(uint32_t shuffle, uint32_t map_part, em__buf *data, uint64_t *offs, uint32_t nbuckets)
{
    em__block *b = em__calloc(1, sizeof *b);
    b->shuffle = shuffle;
    b->map_part = map_part;
    b->nbuckets = nbuckets;
    b->refs = 1;
    b->data = *data;
    b->offs = offs;
    em__buf_init(data);
    pthread_mutex_lock(&store.mu);
    em__block **pp = &store.tab[store_slot(shuffle, map_part)];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->shuffle == shuffle && (*pp)->map_part == map_part) { /* a re-run replaces the old output */
            em__block *old = *pp;
            *pp = old->next;
            block_unref(old);
            break;
        }
    b->next = store.tab[store_slot(shuffle, map_part)];
    store.tab[store_slot(shuffle, map_part)] = b;
    pthread_mutex_unlock(&store.mu);
}

int em__store_has(uint32_t shuffle, uint32_t map_part)
{
    pthread_mutex_lock(&store.mu);
    em__block *b = store_get_locked(shuffle, map_part);
    if (b) block_unref(b);
    pthread_mutex_unlock(&store.mu);
    return b != NULL;
}

/* FETCH_REQ: u64 id, u32 shuffle, u32 map_part, u32 bucket, u64 offset
 * FETCH_RESP: u64 id, i32 status (0, or -1 = no such output), u64 bucket size, then the chunk bytes */
#define FETCH_CHUNK ((size_t)4 << 20)

static void serve_fetch(em__rt *rt, em__msg *m, void *arg)
{
    (void)arg;
    em__rd r;
    em__rd_init(&r, m->payload, m->len);
    uint64_t id = em__rd_u64(&r);
    uint32_t s = em__rd_u32(&r), mp = em__rd_u32(&r), bk = em__rd_u32(&r);
    uint64_t off = em__rd_u64(&r);
    int src = m->hdr->src;
    em__msg_free(m);
    if (r.err) return;
    pthread_mutex_lock(&store.mu);
    em__block *b = store_get_locked(s, mp);
    pthread_mutex_unlock(&store.mu);
    int32_t status = b && bk < b->nbuckets ? 0 : -1;
    uint64_t size = status ? 0 : b->offs[bk + 1] - b->offs[bk];
    size_t n = status || off >= size ? 0 : (size - off < FETCH_CHUNK ? size - off : FETCH_CHUNK);
    em__msg *resp = em__msg_new(EM__MSG_FETCH_RESP, 20 + n);
    memcpy(resp->payload, &id, 8);
    memcpy(resp->payload + 8, &status, 4);
    memcpy(resp->payload + 12, &size, 8);
    if (n) memcpy(resp->payload + 20, b->data.p + b->offs[bk] + off, n);
    if (b) {
        pthread_mutex_lock(&store.mu);
        block_unref(b);
        pthread_mutex_unlock(&store.mu);
    }
    em__send(rt, src, resp);
}

void em__store_init(em__rt *rt)
{
    store.rt = rt;
    em__rt_on(rt, EM__MSG_FETCH_REQ, serve_fetch, NULL);
}

/* ---- task dependencies (which rank holds which map output), per executor thread ---- */

static _Thread_local em__deploc *cur_deps;
static _Thread_local int cur_ndeps;

void em__task_deps_set(em__deploc *deps, int ndeps)
{
    cur_deps = deps;
    cur_ndeps = ndeps;
}

/* ---- map side ---- */

typedef struct map_state {
    em__ctab tab;
    em__buf *buckets;
    uint32_t nb;
} map_state;

static int spill_entry(const em_rec *r, void *arg)
{
    map_state *ms = arg;
    uint32_t b = (uint32_t)(em__hash(r->key, r->klen) % ms->nb);
    em__rec_append(&ms->buckets[b], r->key, r->klen, r->val, r->vlen);
    return 0;
}

#define MAP_TABLE_LIMIT ((size_t)64 << 20) /* bytes of combined records before flushing into buckets */

static int map_push(em_emitter *self, const em_rec *r)
{
    map_state *ms = self->state;
    int rc = em__ctab_add(&ms->tab, r->key, r->klen, r->val, r->vlen);
    if (rc < 0) return rc;
    if (ms->tab.arena.len > MAP_TABLE_LIMIT) {
        em__ctab_each(&ms->tab, spill_entry, ms);
        em__ctab_clear(&ms->tab);
    }
    return 0;
}

int em__shuffle_map(em_ctx *ctx, em__node *wide, int part, em__buf *sizes)
{
    (void)ctx;
    map_state ms;
    ms.nb = (uint32_t)wide->nparts;
    ms.buckets = em__calloc(ms.nb, sizeof *ms.buckets);
    em__ctab_init(&ms.tab, wide, 1);
    em_emitter sink = {map_push, NULL, wide, &ms};
    int rc = em__node_compute(wide->parent, part, &sink);
    if (rc == 0) rc = em__ctab_each(&ms.tab, spill_entry, &ms);
    em__ctab_release(&ms.tab);
    if (rc == 0) {
        em__buf all;
        em__buf_init(&all);
        uint64_t *offs = em__malloc(sizeof(uint64_t) * (ms.nb + 1));
        size_t total = 0;
        for (uint32_t b = 0; b < ms.nb; b++) total += ms.buckets[b].len;
        em__buf_grow(&all, total);
        for (uint32_t b = 0; b < ms.nb; b++) {
            offs[b] = all.len;
            em__buf_add(&all, ms.buckets[b].p, ms.buckets[b].len);
            em__buf_u64(sizes, ms.buckets[b].len);
        }
        offs[ms.nb] = all.len;
        em__store_put((uint32_t)wide->id, (uint32_t)part, &all, offs, ms.nb);
    }
    for (uint32_t b = 0; b < ms.nb; b++) em__buf_release(&ms.buckets[b]);
    free(ms.buckets);
    return rc;
}

/* ---- reduce side ---- */

static int add_all(em__ctab *t, const uint8_t *p, size_t n, uint32_t s, uint32_t m)
{
    size_t pos = 0;
    em_rec r;
    int k, rc;
    while ((k = em__rec_next(p, n, &pos, &r)) > 0)
        if ((rc = em__ctab_add(t, r.key, r.klen, r.val, r.vlen)) < 0) return rc;
    if (k < 0) return em__fail(EM_ECOMM, "shuffle %u: map output %u is malformed", s, m);
    return 0;
}

static int fetch_failed(uint32_t s, uint32_t m, int rank)
{
    em__last_fetch_fail = (em__fetch_fail){s, m, rank};
    em__fail(EM__FETCH_FAILED, "fetch of shuffle %u map output %u from r%d failed: the rank is gone", s, m, rank);
    return EM__FETCH_FAILED;
}

static _Atomic uint64_t fetch_ids;

static int fetch_remote(em_ctx *ctx, int owner, uint32_t s, uint32_t m, uint32_t bucket, em__buf *out)
{
    em__rt *rt = &ctx->rt;
    uint64_t off = 0, size = 0;
    if (em__fetch_hook) em__fetch_hook();
    do {
        uint64_t id = atomic_fetch_add(&fetch_ids, 1) + ((uint64_t)rt->rank << 48);
        em__msg *req = em__msg_new(EM__MSG_FETCH_REQ, 28);
        memcpy(req->payload, &id, 8);
        memcpy(req->payload + 8, &s, 4);
        memcpy(req->payload + 12, &m, 4);
        memcpy(req->payload + 16, &bucket, 4);
        memcpy(req->payload + 20, &off, 8);
        em__send(rt, owner, req);
        for (;;) {
            if (!em__rt_is_alive(rt, owner)) return fetch_failed(s, m, owner);
            em__msg *resp = em__mbox_get(&rt->fetch_mb, 200);
            if (!resp) continue;
            uint64_t rid = 0;
            if (resp->hdr->type == EM__MSG_FETCH_RESP && resp->len >= 20) memcpy(&rid, resp->payload, 8);
            if (resp->hdr->type != EM__MSG_FETCH_RESP || rid != id) { /* a wake-up or a stale answer */
                em__msg_free(resp);
                continue;
            }
            int32_t st;
            memcpy(&st, resp->payload + 8, 4);
            memcpy(&size, resp->payload + 12, 8);
            if (st != 0) {
                em__msg_free(resp);
                return fetch_failed(s, m, owner); /* the owner lost it (e.g. restarted) */
            }
            em__buf_add(out, resp->payload + 20, resp->len - 20);
            off += resp->len - 20;
            em__msg_free(resp);
            break;
        }
    } while (off < size);
    return 0;
}

typedef struct push_arg {
    em_emitter *sink;
} push_arg;

static int push_entry(const em_rec *r, void *arg)
{
    em_emitter *sink = ((push_arg *)arg)->sink;
    return sink->push(sink, r);
}

int em__shuffle_read(em_ctx *ctx, em__node *wide, int part, em_emitter *sink)
{
    em__deploc *d = NULL;
    for (int i = 0; i < cur_ndeps; i++)
        if (cur_deps[i].shuffle == (uint32_t)wide->id) d = &cur_deps[i];
    if (!d) return em__fail(EM_EINVAL, "task has no locations for shuffle %d", wide->id);
    em__ctab tab;
    em__ctab_init(&tab, wide, 0);
    em__buf remote;
    em__buf_init(&remote);
    int rc = 0;
    for (uint32_t m = 0; m < d->nmaps && rc == 0; m++) {
        int owner = d->loc[m];
        if (owner == ctx->rt.rank) {
            pthread_mutex_lock(&store.mu);
            em__block *b = store_get_locked((uint32_t)wide->id, m);
            pthread_mutex_unlock(&store.mu);
            if (!b) {
                rc = fetch_failed((uint32_t)wide->id, m, owner);
                break;
            }
            rc = add_all(&tab, b->data.p + b->offs[part], b->offs[part + 1] - b->offs[part], (uint32_t)wide->id, m);
            pthread_mutex_lock(&store.mu);
            block_unref(b);
            pthread_mutex_unlock(&store.mu);
        } else {
            remote.len = 0;
            rc = fetch_remote(ctx, owner, (uint32_t)wide->id, m, (uint32_t)part, &remote);
            if (rc == 0) rc = add_all(&tab, remote.p, remote.len, (uint32_t)wide->id, m);
        }
    }
    em__buf_release(&remote);
    if (rc == 0) {
        push_arg pa = {sink};
        rc = em__ctab_each(&tab, push_entry, &pa);
    }
    em__ctab_release(&tab);
    return rc;
}
