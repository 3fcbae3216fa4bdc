/* shuffle.h — map-side combine tables, the per-rank block store, and fetching buckets from other ranks
 * (DESIGN section 5). */
#ifndef EM_OPERATORS_SHUFFLE_H
#define EM_OPERATORS_SHUFFLE_H

#include "operators/dataset.h"

/* memcpy of a few bytes without the library call. */
static inline void em__copy_small(uint8_t *d, const uint8_t *s, size_t n)
{
    if (n > 16) {
        memcpy(d, s, n);
        return;
    }
    uint64_t a, b;
    uint32_t c, e;
    if (n >= 8) {
        memcpy(&a, s, 8);
        memcpy(&b, s + n - 8, 8);
        memcpy(d, &a, 8);
        memcpy(d + n - 8, &b, 8);
    } else if (n >= 4) {
        memcpy(&c, s, 4);
        memcpy(&e, s + n - 4, 4);
        memcpy(d, &c, 4);
        memcpy(d + n - 4, &e, 4);
    } else if (n > 0) {
        d[0] = s[0];
        d[n >> 1] = s[n >> 1];
        d[n - 1] = s[n - 1];
    }
}

/* Records in shuffle buffers: u32 klen, u32 vlen, key bytes, value bytes, back to back. */
static inline void em__rec_append(em__buf *b, const void *k, uint32_t kl, const void *v, uint32_t vl)
{
    if (b->len + 8 + (size_t)kl + vl > b->cap) em__buf_grow(b, 8 + (size_t)kl + vl);
    uint8_t *p = b->p + b->len;
    memcpy(p, &kl, 4);
    memcpy(p + 4, &vl, 4);
    em__copy_small(p + 8, k, kl); /* keys and values are mostly short: a call to memcpy would cost more */
    em__copy_small(p + 8 + kl, v, vl);
    b->len += 8 + (size_t)kl + vl;
}
/* em_i64_get / em_i64_put, inline for the combine loop. */
static inline int64_t em__i64_load(const void *src)
{
    uint64_t u;
    memcpy(&u, src, 8);
    return (int64_t)(__builtin_bswap64(u) ^ 0x8000000000000000ULL);
}
static inline void em__i64_store(void *dst, int64_t v)
{
    uint64_t u = __builtin_bswap64((uint64_t)v ^ 0x8000000000000000ULL);
    memcpy(dst, &u, 8);
}

/* Decodes the record at *pos of [p, p+n); returns 1, 0 at the end, -1 if malformed. */
int em__rec_next(const uint8_t *p, size_t n, size_t *pos, em_rec *r);

/* Inline: the combine table hashes every record. */
static inline uint64_t em__hash(const void *p, size_t n)
{
    /* 64-bit multiply-xorshift over 8-byte words; the tail (and short keys) read with at most two overlapping
     * loads instead of a byte loop. Good enough to spread keys over buckets and table slots. */
    const uint8_t *s = p;
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (n * 0xC2B2AE3D27D4EB4FULL);
    while (n > 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ (w * 0xFF51AFD7ED558CCDULL)) * 0xC4CEB9FE1A85EC53ULL;
        h ^= h >> 29;
        s += 8;
        n -= 8;
    }
    uint64_t w;
    if (n >= 4) {
        uint32_t a, b;
        memcpy(&a, s, 4);
        memcpy(&b, s + n - 4, 4);
        w = (uint64_t)a << 32 | b;
    } else if (n > 0) {
        w = (uint64_t)s[0] << 16 | (uint64_t)s[n >> 1] << 8 | s[n - 1];
    } else {
        w = 0;
    }
    h = (h ^ (w * 0xFF51AFD7ED558CCDULL)) * 0xC4CEB9FE1A85EC53ULL;
    h ^= h >> 32;
    h *= 0x9E3779B97F4A7C15ULL;
    h ^= h >> 29;
    return h;
}

/* A combine table (operators/combine.c): one entry per distinct key, values combined as records arrive.
 * Adds are queued with their slots prefetched and applied EM__CTAB_BATCH at a time, the oldest first, once
 * 2 * EM__CTAB_BATCH are queued: each slot is prefetched at least EM__CTAB_BATCH adds before it is probed, and the
 * cache misses of a batch overlap. Every reader (each, drain) applies the whole queue first, in arrival order. */
typedef struct em__slot {
    uint32_t off1; /* offset+1 of the entry's record in arena, 0 = empty */
    uint32_t tag;  /* high hash bits; the slot index comes from them too */
    uint32_t klen; /* the key's length */
    uint32_t khi;  /* with klo: the key's first 12 bytes (packed injectively when shorter), so a key of up to */
    uint64_t klo;  /*   12 bytes is matched in the slot */
    uint64_t acc;  /* 8-byte built-in aggregates: the running value, written to the arena record when read */
} em__slot;        /* 32 bytes: two per cache line, a probe touches one */

enum { EM__CTAB_BATCH = 16 };
#define EM__CTAB_SHORT UINT32_MAX /* em__ctab_q.vl of a short-key int64 add */

typedef struct em__ctab {
    em__buf arena;   /* the records: u32 klen, u32 vlen, key, value (em__rec_append format) */
    em__slot *slot;  /* [cap] */
    size_t cap, n;
    size_t rec_bytes; /* bytes of the entries' records as readers get them (u32 klen, u32 vlen, key, value) */
    size_t peak;      /* the most entries held at once so far (drains and clears empty the table) */
    int presized;     /* em__ctab_presize chose cap */
    size_t limit;    /* bytes of arena + slots before em__ctab_full */
    size_t max_cap;  /* slots may take half the limit */
    const em__node *node; /* the wide node: agg or combine fn */
    int map_side;         /* COUNT turns each input record into 1 on the map side */
    int acc_mode;         /* 0: values live in the arena; 1: acc is a native int64 sum; 2: acc holds 8 value bytes */
    int count_ones;       /* map side of COUNT: every value counts 1 */
    uint8_t one[24];      /* the record of a slot-only entry being read: key (up to 12 bytes), then 8 value bytes */
    em__buf scratch;
    em__buf qbuf[2];      /* queued adds: key and value bytes, one buffer per half of q (none for short keys in
                           * acc_mode 1) */
    /* A queued add: the key's hash and length, and either its bytes and value at qbuf[its half] + off (vl bytes),
     * or, for a key of up to 12 bytes in acc_mode 1 (vl == EM__CTAB_SHORT), the key as its slot prefix and the
     * int64 to add. q is a ring of two halves: the oldest add is q[qhead], qhead is 0 or EM__CTAB_BATCH. */
    struct em__ctab_q { uint64_t h, klo; int64_t delta; uint32_t off, kl, vl, khi; } q[2 * EM__CTAB_BATCH];
    int nq, qhead;
} em__ctab;

/* limit: bytes of records and slots the table may hold before em__ctab_full says to drain it. */
void em__ctab_init(em__ctab *t, const em__node *wide, int map_side, size_t limit);
/* Before the first add: room for about `entries` entries at once, instead of doubling up to it, unless an earlier
 * table of this thread left its size (the map tasks of one job look alike: that size wins). */
void em__ctab_presize(em__ctab *t, size_t entries);
/* Frees the slots (or keeps an empty table's big slot array for the thread's next table of that size). */
void em__ctab_release(em__ctab *t);
/* Frees the slot array this thread keeps for its next table: when the thread ends. */
void em__ctab_spare_free(void);
void em__ctab_clear(em__ctab *t);
/* Queues an add. Returns 1 when queued adds were applied (the table changed: only then may em__ctab_full change),
 * 0 when the add was only queued, or a negative EM_E* code. */
int em__ctab_add(em__ctab *t, const void *k, uint32_t kl, const void *v, uint32_t vl);
/* Applies the oldest EM__CTAB_BATCH queued adds, half of the queue (it is full); returns 1 or a negative EM_E*
 * code. */
int em__ctab_flush_half(em__ctab *t);
/* Applies every queued add; returns 0 or a negative EM_E* code. */
int em__ctab_flush(em__ctab *t);
int em__ctab_add_i64_enc(em__ctab *t, const void *k, uint32_t kl, int64_t v);

/* The key's first 12 bytes as lo (8) and hi (4); a shorter key packed injectively (its length is compared too)
 * with overlapping loads that cover every byte. */
static inline uint64_t em__key_prefix(const uint8_t *k, uint32_t kl, uint32_t *hi)
{
    uint64_t lo = 0;
    uint32_t a, b;
    *hi = 0;
    if (kl >= 8) {
        memcpy(&lo, k, 8);
        memcpy(hi, k + (kl > 12 ? 8 : kl - 4), 4);
    } else if (kl >= 4) {
        memcpy(&a, k, 4);
        memcpy(&b, k + kl - 4, 4);
        lo = (uint64_t)b << 32 | a;
    } else if (kl > 0) {
        lo = (uint64_t)k[0] | (uint64_t)k[kl >> 1] << 8 | (uint64_t)k[kl - 1] << 16;
    }
    return lo;
}

/* The hash of a key of up to 12 bytes, from its prefix and length: one 64x64->128 multiply folded (as wyhash's
 * mixer), then another. Only the combine table's slots use it (partitions come from em__hash): within a table
 * every key of up to 12 bytes is hashed this way, longer ones with em__hash. */
static inline uint64_t em__prefix_hash(uint64_t lo, uint32_t hi, uint32_t kl)
{
    __extension__ typedef unsigned __int128 u128;
    u128 r = (u128)(lo ^ 0xA0761D6478BD642FULL) * (((uint64_t)hi << 32 | kl) ^ 0xE7037ED1A0B428DBULL);
    uint64_t x = (uint64_t)r ^ (uint64_t)(r >> 64);
    r = (u128)(x ^ 0x8EBC6AF09C88C6E3ULL) * 0x589965CC75374CC3ULL;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

/* em__ctab_add of an int64 value (as em_i64_put would encode it), without encoding it first. Inline: it is the
 * per-word step of a word count. A key of up to 12 bytes in a COUNT/SUM table is queued as its prefix. */
static inline int em__ctab_add_i64(em__ctab *t, const void *k, uint32_t kl, int64_t v)
{
    if (t->acc_mode != 1 || kl > 12) return em__ctab_add_i64_enc(t, k, kl, v);
    struct em__ctab_q *q = &t->q[(t->qhead + t->nq++) & (2 * EM__CTAB_BATCH - 1)];
    q->klo = em__key_prefix(k, kl, &q->khi);
    q->h = em__prefix_hash(q->klo, q->khi, kl);
    __builtin_prefetch(&t->slot[(uint32_t)(q->h >> 32) & (t->cap - 1)], 1);
    q->delta = t->count_ones ? 1 : v;
    q->kl = kl;
    q->vl = EM__CTAB_SHORT;
    return t->nq == 2 * EM__CTAB_BATCH ? em__ctab_flush_half(t) : 0;
}
/* Whether the table has reached its limit (checked after an add; every queued add may still make an entry). */
static inline int em__ctab_full(const em__ctab *t)
{
    return t->n + 2 * EM__CTAB_BATCH >= t->max_cap / 2 || t->arena.len + t->cap * sizeof(em__slot) > t->limit;
}
/* Merges value v into the accumulator acc by the reduce-side rules of t's node. */
int em__ctab_merge_acc(em__ctab *t, em__buf *acc, const void *v, uint32_t vl);
/* Built-in aggregators: whether the reduce output differs from the intermediate value, and the output value. */
int em__agg_needs_final(int agg);
void em__agg_final(int agg, const void *inter, uint8_t out[8]);
/* Calls fn for every entry; stops at the first negative return. */
int em__ctab_each(em__ctab *t, int (*fn)(const em_rec *r, void *arg), void *arg);
/* em__ctab_each, then empty (each slot is cleared as it is visited); fn is called for every entry even after an
 * error, whose code is returned. */
int em__ctab_drain(em__ctab *t, int (*fn)(const em_rec *r, void *arg), void *arg);

/* ---- block store: the output of map tasks, by (shuffle, map partition), R buckets each ---- */
typedef struct em__block em__block;
void em__store_init(em__rt *rt);
/* Takes ownership of data; offs has nbuckets+1 entries (bucket r is data[offs[r], offs[r+1])). */
void em__store_put(uint32_t shuffle, uint32_t map_part, em__buf *data, uint64_t *offs, uint32_t nbuckets);
int em__store_has(uint32_t shuffle, uint32_t map_part);
/* The executor keeps the TASK_DONE payload of each successful result task of the current action (a new action
 * drops the older ones); inventory answers carry them to a new leader. */
void em__result_keep(uint32_t action, const void *payload, size_t len);
void em__results_drop(void);
/* Drops every block (and deletes spill files): at finalize. */
void em__store_drop_all(void);
/* Compressed bytes of map output this rank wrote to disk. */
uint64_t em__store_spilled(void);

/* ---- the two sides of a shuffle, run on the executor thread ---- */

/* Where the map outputs of one shuffle live (set per task by the executor from the TASK message). */
typedef struct em__deploc {
    uint32_t shuffle;
    uint32_t nmaps;
    int32_t *loc; /* [nmaps] owner rank of each map output */
} em__deploc;
void em__task_deps_set(em__deploc *deps, int ndeps);
/* sortByKey map tasks: the range bounds (em__rec format, keys only) that came with the task. */
void em__task_bounds_set(const void *bounds, size_t len);
/* Bytes a task may hold in memory for sorting or combining before it spills (--ember-memory / 4). */
size_t em__task_budget(const em_ctx *ctx);
/* Compressed bytes this thread's tasks spilled to disk (the executor reads and resets it per task). */
extern _Thread_local uint64_t em__task_spilled;
/* Per-task counters of the executor thread (reset by the executor before each task): records produced, shuffle
 * bytes written, seconds spent waiting for fetches. */
extern _Thread_local uint64_t em__task_records, em__task_bytes_out;
extern _Thread_local double em__task_fetch_wait;

/* Cached partitions live in the block store under (node id | EM__CACHE_ID, partition); deps carry their owners
 * under the same id. */
#define EM__CACHE_ID 0x80000000u
/* Computes partition `part` of a cached node: from this rank's store, else from the rank that holds it, else
 * from lineage (and keeps it). */
int em__cache_compute(em_ctx *ctx, em__node *node, int part, em_emitter *sink);
/* A sink may return this to end a task early with success (take). */
#define EM__STOP EM__STOP_CODE

/* A fetch failed because an owner is gone: the task reports this so the driver recomputes the lost maps. */
typedef struct em__fetch_fail {
    uint32_t shuffle, map_part;
    int32_t rank;
} em__fetch_fail;
extern _Thread_local em__fetch_fail em__last_fetch_fail;
#define EM__FETCH_FAILED EM__FETCH_FAILED_CODE

/* Called before each remote fetch on the fetching thread (the scheduler's fault injection hangs here). */
extern void (*em__fetch_hook)(void);

/* Map side: computes partition `part` of the wide node's input `side` (0, or 1 for COGROUP's second input) and
 * writes its buckets to the local block store. sizes gets nbuckets u64 sizes (the completion report). */
int em__shuffle_map(em_ctx *ctx, em__node *wide, int side, int part, em__buf *sizes);
/* Reduce side: fetches bucket `part` from every map output, combines and pushes the result into sink. */
int em__shuffle_read(em_ctx *ctx, em__node *wide, int part, em_emitter *sink);

#endif
