/* combine.c — the combine table of reduceByKey and aggregateByKey (DESIGN section 5): one entry per distinct key,
 * values combined as records arrive, on the map side (before the shuffle) and on the reduce side.
 *
 * Open addressing with linear probing over 32-byte slots, load at most 1/2. A slot holds the key's length, 32 hash
 * bits and its first 12 bytes, and for the 8-byte built-in aggregates (count, sum, min, max) the running value, so
 * a key of up to 12 bytes is found and updated without touching the arena (word count's common case). Slots are
 * found from the tag alone (tag & (cap - 1)), so growing never rehashes a key.
 *
 * Each entry's record (u32 klen, u32 vlen, key, value) lives in the arena; readers get those records, with the
 * slot's running value written into them first. COUNT and SUM keys of up to 12 bytes are the exception: the slot
 * is the whole entry (SLOT_ONLY; key from the prefix, value from acc), queued as the prefix and the int64 to add
 * and hashed from the prefix (em__prefix_hash; longer keys with em__hash), and their record is made when read.
 * Adds are queued with their slots prefetched and applied EM__CTAB_BATCH at a time, each at least EM__CTAB_BATCH
 * adds after its prefetch: a big table's probes are cache (and TLB) misses, and the queue lets them overlap.
 */
#include "operators/shuffle.h"

#include "runtime/log.h"

#include <stdlib.h>
#include <string.h>

enum { QUEUE_MAX_BYTES = 256 }; /* bigger records are applied at once (after the queue, to keep the order) */
/* em__slot.off1 of an entry that has no arena record: a key of up to 12 bytes in acc_mode 1, whose key is the
 * slot's prefix and whose value is acc. Arena offsets stay below 4 GiB - 1 (arena_full), so never equal it. */
#define SLOT_ONLY UINT32_MAX
#define HUGE_PAGE ((size_t)2 << 20)

/* The slots of the previous table of this thread: the next table starts at that size instead of doubling its way
 * up again (the map tasks of one job look alike). A presized table leaves the size its entries needed. */
static _Thread_local size_t cap_hint[2];

/* Slot arrays of 2 MiB and more are their own mapping (em__huge_alloc): fresh pages are zero already, and huge
 * pages save most of the TLB misses of probes, which are random accesses. */
static em__slot *slots_new(size_t cap)
{
    size_t bytes = cap * sizeof(em__slot);
    return bytes < HUGE_PAGE ? em__calloc(cap, sizeof(em__slot)) : em__huge_alloc(bytes);
}

static void slots_free(em__slot *s, size_t cap)
{
    size_t bytes = cap * sizeof(em__slot);
    if (bytes < HUGE_PAGE) free(s);
    else em__huge_free(s, bytes);
}

/* The slot array of this thread's last table, when it was big (its own mapping) and left empty (a drain clears
 * each slot as it reads it): the next table of the same size takes it instead of mapping fresh pages, which the
 * kernel would fault in and zero again (word count: 16 MiB per map task). At most one is kept. */
static _Thread_local struct {
    em__slot *slot;
    size_t cap;
} spare;

static em__slot *slots_get(size_t cap)
{
    em__slot *s = spare.slot;
    if (s && spare.cap == cap) {
        spare.slot = NULL;
        return s;
    }
    em__ctab_spare_free(); /* a size no table wants now: not kept beside a new array */
    return slots_new(cap);
}

/* Frees the slots of a table that is done with them, or keeps them as the spare. */
static void slots_put(em__slot *s, size_t cap, int empty)
{
    if (!empty || cap * sizeof(em__slot) < HUGE_PAGE) {
        slots_free(s, cap);
        return;
    }
    em__ctab_spare_free();
    spare.slot = s;
    spare.cap = cap;
}

void em__ctab_spare_free(void)
{
    if (spare.slot) slots_free(spare.slot, spare.cap);
    spare.slot = NULL;
}

static int is_f64(int agg) { return agg >= EM_AGG_SUM_F64 && agg <= EM_AGG_MEAN_F64; }
static int is_builtin(int agg) { return agg >= EM_AGG_COUNT && agg <= EM_AGG_MEAN_F64; }
static uint32_t inter_len(int agg) { return agg == EM_AGG_MEAN || agg == EM_AGG_MEAN_F64 ? 16 : 8; }

void em__ctab_init(em__ctab *t, const em__node *wide, int map_side, size_t limit)
{
    memset(t, 0, sizeof *t);
    t->node = wide;
    t->map_side = map_side;
    t->limit = limit < ((size_t)3 << 30) ? limit : (size_t)3 << 30; /* arena offsets are 32-bit */
    t->max_cap = 64;
    while (t->max_cap * 2 * sizeof(em__slot) <= t->limit / 2) t->max_cap *= 2;
    int agg = wide->agg;
    t->acc_mode = agg == EM_AGG_COUNT || agg == EM_AGG_SUM ? 1 : is_builtin(agg) && inter_len(agg) == 8 ? 2 : 0;
    t->count_ones = map_side && agg == EM_AGG_COUNT;
    t->cap = cap_hint[map_side != 0] ? cap_hint[map_side != 0] : 1024;
    if (t->cap > t->max_cap) t->cap = t->max_cap;
    t->slot = slots_get(t->cap);
}

/* The slots a table holding n entries grows to (ctab_apply keeps room for a batch more), at least 1024. */
static size_t cap_for(size_t n)
{
    size_t cap = 1024;
    while (2 * (n + EM__CTAB_BATCH) > cap) cap *= 2;
    return cap;
}

void em__ctab_presize(em__ctab *t, size_t entries)
{
    EM_ASSERT(t->n == 0 && t->nq == 0);
    size_t cap = cap_for(entries);
    if (cap > t->max_cap) cap = t->max_cap;
    if (cap_hint[t->map_side != 0] || cap <= t->cap) return;
    slots_free(t->slot, t->cap);
    t->slot = slots_get(cap);
    t->cap = cap;
    t->presized = 1;
}

void em__ctab_release(em__ctab *t)
{
    if (t->n > t->peak) t->peak = t->n;
    /* a presized table may be bigger than its entries needed; one that grew needed its size */
    size_t need = cap_for(t->peak);
    cap_hint[t->map_side != 0] = t->presized && need < t->cap ? need : t->cap;
    em__buf_release(&t->arena);
    em__buf_release(&t->scratch);
    em__buf_release(&t->qbuf[0]);
    em__buf_release(&t->qbuf[1]);
    slots_put(t->slot, t->cap, t->n == 0 && t->nq == 0);
    memset(t, 0, sizeof *t);
}

static void queue_empty(em__ctab *t)
{
    t->nq = 0;
    t->qhead = 0;
    t->qbuf[0].len = t->qbuf[1].len = 0;
}

void em__ctab_clear(em__ctab *t)
{
    t->arena.len = 0;
    memset(t->slot, 0, t->cap * sizeof *t->slot);
    if (t->n > t->peak) t->peak = t->n;
    t->n = 0;
    t->rec_bytes = 0;
    queue_empty(t);
}

static void ctab_grow(em__ctab *t)
{
    size_t ncap = t->cap * 2;
    em__slot *ns = slots_new(ncap);
    for (size_t i = 0; i < t->cap; i++) {
        if (!t->slot[i].off1) continue;
        size_t j = t->slot[i].tag & (ncap - 1);
        while (ns[j].off1) j = (j + 1) & (ncap - 1);
        ns[j] = t->slot[i];
    }
    slots_free(t->slot, t->cap);
    t->slot = ns;
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

/* Built-in aggregators keep an intermediate value per key: COUNT, SUM, MIN, MAX: int64 (em_i64 bytes); the _F64
 * ones: a double (em_f64 bytes); MEAN: int64 sum + int64 count; MEAN_F64: double sum + int64 count (16 bytes).
 * agg_in turns a record's value into that form on the map side; agg_merge merges two intermediates in place;
 * em__agg_final turns one into the output value on the reduce side. */
static int agg_in(const em__node *w, const void *v, uint32_t vl, uint8_t dst[16])
{
    int agg = w->agg;
    if (agg == EM_AGG_COUNT) {
        em_i64_put(dst, 1);
        return 0;
    }
    if (vl != 8)
        return em__fail(EM_ETYPE, "reduceByKey (dataset %d): a value is %u bytes, not %s (8 bytes)", w->id, vl,
                        is_f64(agg) ? "a double" : "an int64");
    memcpy(dst, v, 8);
    if (agg == EM_AGG_MEAN || agg == EM_AGG_MEAN_F64) em_i64_put(dst + 8, 1);
    return 0;
}

static void agg_merge(int agg, uint8_t *acc, const uint8_t *v)
{
    if (is_f64(agg)) {
        double x = em_f64_get(acc), y = em_f64_get(v);
        em_f64_put(acc, agg == EM_AGG_MIN_F64 ? (y < x ? y : x) : agg == EM_AGG_MAX_F64 ? (y > x ? y : x) : x + y);
    } else {
        int64_t x = em_i64_get(acc), y = em_i64_get(v);
        em_i64_put(acc, agg == EM_AGG_MIN ? (y < x ? y : x)
                        : agg == EM_AGG_MAX ? (y > x ? y : x)
                                            : (int64_t)((uint64_t)x + (uint64_t)y));
    }
    if (agg == EM_AGG_MEAN || agg == EM_AGG_MEAN_F64) em_i64_put(acc + 8, em_i64_get(acc + 8) + em_i64_get(v + 8));
}

void em__agg_final(int agg, const void *inter, uint8_t out[8])
{
    if (agg == EM_AGG_MEAN) em_f64_put(out, (double)em_i64_get(inter) / (double)em_i64_get((const uint8_t *)inter + 8));
    else if (agg == EM_AGG_MEAN_F64) em_f64_put(out, em_f64_get(inter) / (double)em_i64_get((const uint8_t *)inter + 8));
    else memcpy(out, inter, 8);
}

int em__agg_needs_final(int agg) { return agg == EM_AGG_MEAN || agg == EM_AGG_MEAN_F64; }

/* A user function (combine, or aggregateByKey's seq/comb) of (a, b) into t->scratch. */
static int user_merge(em__ctab *t, em_combine_fn fn, const void *a, uint32_t al, const void *b, uint32_t bl)
{
    const em__node *w = t->node;
    em_value out = {&t->scratch, 0};
    int rc = fn(a, al, b, bl, &out, w->arg);
    if (rc < 0) return *em_last_error() ? rc : em__fail(EM_EUSER, "combine callback of dataset %d returned %d", w->id, rc);
    if (!out.set) return em__fail(EM_EUSER, "combine callback of dataset %d did not call em_value_set", w->id);
    return 0;
}

/* A key of up to 12 bytes back from its prefix: em__key_prefix covers every byte of such a key. */
static inline void prefix_key(uint64_t lo, uint32_t hi, uint32_t kl, uint8_t d[16])
{
    if (kl >= 8) {
        memcpy(d, &lo, 8);
        memcpy(d + kl - 4, &hi, 4);
    } else if (kl >= 4) {
        uint32_t a = (uint32_t)lo, b = (uint32_t)(lo >> 32);
        memcpy(d, &a, 4);
        memcpy(d + kl - 4, &b, 4);
    } else if (kl > 0) {
        d[0] = (uint8_t)lo;
        d[kl >> 1] = (uint8_t)(lo >> 8);
        d[kl - 1] = (uint8_t)(lo >> 16);
    }
}

/* Slots keep 32-bit arena offsets; the limit (at most 3 GiB) keeps the arena far below, but one huge record could
 * still cross 4 GiB. */
static int arena_full(const em__ctab *t)
{
    return em__fail(EM_ENOMEM, "reduceByKey (dataset %d): a combine table's records would pass 4 GiB", t->node->id);
}

/* Applies one add whose value is already in the table's form (agg_in done) and whose key hashes to h; the table
 * has a free slot (the caller grew it). Not inlined: in the queue's loop it took the registers of the short keys'
 * path (ctab_put_short, word count's common case), which then cost 10% more instructions. */
static __attribute__((noinline)) int ctab_put(em__ctab *t, uint64_t h, const uint8_t *k, uint32_t kl, const void *v, uint32_t vl)
{
    const em__node *w = t->node;
    int agg = w->agg;
    uint32_t tg = (uint32_t)(h >> 32);
    uint32_t khi;
    uint64_t klo = em__key_prefix(k, kl, &khi);
    size_t mask = t->cap - 1, i = tg & mask;
    for (; t->slot[i].off1; i = (i + 1) & mask) {
        em__slot *s = &t->slot[i];
        if (s->tag != tg || s->klen != kl || s->klo != klo || s->khi != khi) continue;
        /* A SLOT_ONLY entry's key is <= 12 bytes in acc_mode 1, where such keys never come here (em__ctab_add) */
        uint8_t *rec = t->arena.p + s->off1 - 1;
        if (kl > 12 && memcmp(rec + 8 + 12, k + 12, kl - 12) != 0) continue;
        if (t->acc_mode == 1) { /* COUNT, SUM: the common case */
            s->acc += (uint64_t)em__i64_load(v);
            return 0;
        }
        if (t->acc_mode == 2) {
            agg_merge(agg, (uint8_t *)&s->acc, v);
            return 0;
        }
        if (is_builtin(agg)) {
            agg_merge(agg, rec + 8 + kl, v);
            return 0;
        }
        if (agg == EM__AGG_FIRST) return 0;
        uint32_t rvl;
        memcpy(&rvl, rec + 4, 4);
        em_combine_fn fn = agg == EM__AGG_USER && t->map_side ? w->seq : w->combine;
        int rc = user_merge(t, fn, rec + 8 + kl, rvl, v, vl);
        if (rc < 0) return rc;
        if (t->scratch.len == rvl) {
            memcpy(rec + 8 + kl, t->scratch.p, rvl);
        } else { /* the value changed size: append a fresh record (the old bytes become garbage) */
            size_t off = t->arena.len; /* k is never inside the arena: safe across its growth */
            if (off + 8 + (size_t)kl + t->scratch.len >= UINT32_MAX) return arena_full(t);
            em__rec_append(&t->arena, k, kl, t->scratch.p, (uint32_t)t->scratch.len);
            s->off1 = (uint32_t)off + 1;
            t->rec_bytes = t->rec_bytes - rvl + t->scratch.len;
        }
        return 0;
    }
    if (agg == EM__AGG_USER && t->map_side) { /* a new key starts from the zero value */
        int rc = user_merge(t, w->seq, w->data.p ? w->data.p : (const uint8_t *)"", (uint32_t)w->data.len, v, vl);
        if (rc < 0) return rc;
        v = t->scratch.p ? t->scratch.p : (const uint8_t *)"";
        vl = (uint32_t)t->scratch.len;
    }
    size_t off = t->arena.len;
    if (off + 8 + (size_t)kl + vl >= UINT32_MAX) return arena_full(t);
    em__rec_append(&t->arena, k, kl, v, vl);
    uint64_t acc = 0;
    if (t->acc_mode == 1) acc = (uint64_t)em__i64_load(v);
    else if (t->acc_mode == 2) memcpy(&acc, v, 8);
    t->slot[i] = (em__slot){(uint32_t)off + 1, tg, kl, khi, klo, acc};
    t->n++;
    t->rec_bytes += 8 + (size_t)kl + vl;
    return 0;
}

/* ctab_put of an int64 to add to the key given by its prefix (acc_mode 1, a key of up to 12 bytes): the key and
 * its sum live in the slot alone (no arena record, SLOT_ONLY), so a key costs one probe and an add. The slots and
 * their mask come from the caller, which keeps them in registers (a store to a slot could alias t's fields).
 * Returns 1 when the key made a new entry (the caller counts it in t->n), 0 otherwise. */
static inline __attribute__((always_inline)) int ctab_put_short(em__slot *slot, size_t mask, const struct em__ctab_q *q)
{
    uint32_t tg = (uint32_t)(q->h >> 32);
    size_t i = tg & mask;
    for (; slot[i].off1; i = (i + 1) & mask) {
        em__slot *s = &slot[i];
        if (s->tag == tg && s->klo == q->klo && s->khi == q->khi && s->klen == q->kl) {
            s->acc += (uint64_t)q->delta;
            return 0;
        }
    }
    slot[i] = (em__slot){SLOT_ONLY, tg, q->kl, q->khi, q->klo, (uint64_t)q->delta};
    return 1;
}

/* Applies the m queued adds of one half of the queue from q[first], in arrival order. The table grows first if
 * they could fill it past half (ctab_put and ctab_put_short need a free slot). */
static int ctab_apply(em__ctab *t, int first, int m)
{
    const em__buf *qb = &t->qbuf[first / EM__CTAB_BATCH];
    if (2 * (t->n + (size_t)m) > t->cap) ctab_grow(t);
    em__slot *slot = t->slot; /* fixed until the next grow */
    size_t mask = t->cap - 1, made = 0, bytes = 0;
    int rc = 0;
    for (const struct em__ctab_q *q = &t->q[first], *end = q + m; q < end; q++) {
        if (q->vl == EM__CTAB_SHORT) {
            if (ctab_put_short(slot, mask, q)) {
                made++;
                bytes += 16 + (size_t)q->kl; /* its record: 8 bytes of lengths, the key, an int64 */
            }
            continue;
        }
        const uint8_t *p = qb->p + q->off;
        if ((rc = ctab_put(t, q->h, p, q->kl, p + q->kl, q->vl)) < 0) break;
    }
    t->n += made;
    t->rec_bytes += bytes;
    return rc;
}

/* Applies every queued add. After an error the rest of the queue is dropped (the task fails). */
static int ctab_flush_queue(em__ctab *t)
{
    int old = t->nq < EM__CTAB_BATCH ? t->nq : EM__CTAB_BATCH;
    int rc = ctab_apply(t, t->qhead, old);
    if (rc == 0) rc = ctab_apply(t, t->qhead ^ EM__CTAB_BATCH, t->nq - old);
    queue_empty(t);
    return rc;
}

int em__ctab_add(em__ctab *t, const void *k, uint32_t kl, const void *v, uint32_t vl)
{
    const em__node *w = t->node;
    int agg = w->agg;
    uint8_t conv[16];
    if (is_builtin(agg)) {
        if (t->map_side) {
            int rc = agg_in(w, v, vl, conv);
            if (rc < 0) return rc;
            v = conv;
            vl = inter_len(agg);
        } else if (vl != inter_len(agg)) {
            return em__fail(EM_ECOMM, "reduceByKey (dataset %d): a shuffled value is %u bytes, not %u", w->id, vl,
                            inter_len(agg));
        }
    }
    if (t->acc_mode == 1 && kl <= 12) return em__ctab_add_i64(t, k, kl, em__i64_load(v));
    uint64_t h = em__hash(k, kl);
    if ((size_t)kl + vl > QUEUE_MAX_BYTES) {
        int rc = ctab_flush_queue(t);
        if (rc == 0 && 2 * (t->n + 1) > t->cap) ctab_grow(t);
        if (rc == 0) rc = ctab_put(t, h, k, kl, v, vl);
        return rc < 0 ? rc : 1;
    }
    __builtin_prefetch(&t->slot[(uint32_t)(h >> 32) & (t->cap - 1)], 1);
    int j = (t->qhead + t->nq++) & (2 * EM__CTAB_BATCH - 1);
    em__buf *qb = &t->qbuf[j / EM__CTAB_BATCH];
    t->q[j] = (struct em__ctab_q){.h = h, .off = (uint32_t)qb->len, .kl = kl, .vl = vl};
    if (qb->len + kl + vl > qb->cap) em__buf_grow(qb, (size_t)kl + vl);
    em__copy_small(qb->p + qb->len, k, kl);
    em__copy_small(qb->p + qb->len + kl, v, vl);
    qb->len += (size_t)kl + vl;
    return t->nq == 2 * EM__CTAB_BATCH ? em__ctab_flush_half(t) : 0;
}

int em__ctab_add_i64_enc(em__ctab *t, const void *k, uint32_t kl, int64_t v)
{
    uint8_t b[8];
    em__i64_store(b, v);
    return em__ctab_add(t, k, kl, b, 8);
}

int em__ctab_flush(em__ctab *t) { return ctab_flush_queue(t); }

int em__ctab_flush_half(em__ctab *t)
{
    int rc = ctab_apply(t, t->qhead, EM__CTAB_BATCH);
    if (rc < 0) {
        queue_empty(t); /* the task fails */
        return rc;
    }
    t->qbuf[t->qhead / EM__CTAB_BATCH].len = 0;
    t->qhead ^= EM__CTAB_BATCH;
    t->nq -= EM__CTAB_BATCH;
    return 1;
}

int em__ctab_merge_acc(em__ctab *t, em__buf *acc, const void *v, uint32_t vl)
{
    int agg = t->node->agg;
    if (is_builtin(agg)) {
        if (vl != inter_len(agg) || acc->len != vl)
            return em__fail(EM_ECOMM, "reduceByKey (dataset %d): a shuffled value is %u bytes, not %u", t->node->id,
                            vl, inter_len(agg));
        agg_merge(agg, acc->p, v);
        return 0;
    }
    if (agg == EM__AGG_FIRST) return 0;
    int rc = user_merge(t, t->node->combine, acc->p, (uint32_t)acc->len, v, vl);
    if (rc < 0) return rc;
    acc->len = 0;
    em__buf_add(acc, t->scratch.p, t->scratch.len);
    return 0;
}

/* The record of slot s, its value brought up to date from the slot. A SLOT_ONLY entry's record is made in t->one
 * (valid until the next call). */
static inline void slot_rec(em__ctab *t, const em__slot *s, em_rec *r)
{
    if (s->off1 == SLOT_ONLY) {
        prefix_key(s->klo, s->khi, s->klen, t->one);
        em__i64_store(t->one + 16, (int64_t)s->acc);
        *r = (em_rec){t->one, t->one + 16, s->klen, 8};
        return;
    }
    size_t pos = s->off1 - 1;
    em__rec_next(t->arena.p, t->arena.len, &pos, r);
    if (t->acc_mode == 1) em__i64_store((uint8_t *)r->val, (int64_t)s->acc);
    else if (t->acc_mode == 2) memcpy((uint8_t *)r->val, &s->acc, 8);
}

/* Readers walk the slots in order, so the records they read are scattered over the arena: prefetched ahead. */
enum { READ_AHEAD = 16 };
static inline void prefetch_rec(const em__ctab *t, size_t i)
{
    if (i < t->cap && t->slot[i].off1 && t->slot[i].off1 != SLOT_ONLY) __builtin_prefetch(t->arena.p + t->slot[i].off1 - 1, 1);
}

int em__ctab_each(em__ctab *t, int (*fn)(const em_rec *r, void *arg), void *arg)
{
    int rc = ctab_flush_queue(t);
    for (size_t i = 0; rc == 0 && i < t->cap; i++) {
        prefetch_rec(t, i + READ_AHEAD);
        if (!t->slot[i].off1) continue;
        em_rec r;
        slot_rec(t, &t->slot[i], &r);
        rc = fn(&r, arg);
    }
    return rc < 0 ? rc : 0;
}

int em__ctab_drain(em__ctab *t, int (*fn)(const em_rec *r, void *arg), void *arg)
{
    int rc = ctab_flush_queue(t);
    for (size_t i = 0; i < t->cap; i++) {
        prefetch_rec(t, i + READ_AHEAD);
        if (!t->slot[i].off1) continue;
        em_rec r;
        slot_rec(t, &t->slot[i], &r);
        t->slot[i].off1 = 0;
        if (rc == 0) rc = fn(&r, arg);
    }
    t->arena.len = 0;
    if (t->n > t->peak) t->peak = t->n;
    t->n = 0;
    t->rec_bytes = 0;
    return rc;
}
