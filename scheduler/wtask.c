/* wtask.c — the per-task stage of the streaming engine (shared DESIGN.md §7; formats in scheduler/stream.h): a
 * batch's tasks read their log ranges and aggregate the events into partials per (window, key), sorted, for
 * window.c to merge into the window state.
 *
 * Where the time goes (1M distinct keys per window is the benchmark's case): without a transform the log source
 * hands the raw records to the task (em__log_source_fold: no record or tuple per event). A fused task that counts
 * over at most 2 windows per event appends an item per (window, event) and sorts them at the end (sort mode, see
 * SORT_MAX_ITEMS); otherwise the task's table, open addressing keyed by (window, key): the key is hashed once per
 * event (sliding windows reuse that hash), key bytes go to one arena, accumulators are encoded in place (a count is
 * one 8-byte add). Either way the task sorts by (window, key bytes) with a radix sort on a 16-byte prefix (window,
 * first 8 key bytes) that skips constant bytes (MSD passes down to cache-sized buckets, LSD passes inside them), and
 * emits its entries packed into blocks of about 64 KiB (a collect of a million partials moves a few hundred
 * records) or, fused, as sorted runs per window.
 */
#include "scheduler/stream.h"

#include "operators/sources/logsrc.h"
#include "runtime/log.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BAD_REPORT_MAX 10 /* bad values named on stderr per task */
#define BLOCK_BYTES 65536 /* a partial record's value holds about this many bytes of entries */

/* ---- the sort of a task's entries (and of a checkpoint's keys) ---- */

static int sitem_cmp(const void *pa, const void *pb)
{
    const em__sitem *a = pa, *b = pb;
    return em__key_cmp(a->k, a->kl, b->k, b->kl);
}

static em__sitem *items_get(int w, size_t n);

/* Byte b of an item's (hi, lo) as one 128-bit number: 0-7 are lo's, 8-15 hi's, 0 the least significant. */
static inline unsigned ibyte(const em__sitem *x, int b)
{
    return (unsigned)(((b < 8 ? x->lo : x->hi) >> (8 * (b & 7))) & 255);
}

#define SORT_CACHED 16384 /* items (512 KiB): the LSD passes over a bucket this small stay in the L2 cache */

/* LSD radix of it[0, n) over the bytes pos[0, np) (least significant first; those the same in every item of
 * it are skipped), tmp as scratch: the result is in it. */
static void sort_lsd(em__sitem *it, em__sitem *tmp, size_t n, const int *pos, int np)
{
    size_t cnt[16][256];
    memset(cnt, 0, (size_t)np * sizeof cnt[0]);
    for (size_t i = 0; i < n; i++)
        for (int q = 0; q < np; q++) cnt[q][ibyte(&it[i], pos[q])]++;
    em__sitem *src = it, *dst = tmp;
    for (int q = 0; q < np; q++) {
        size_t *c = cnt[q], sum = 0;
        if (c[ibyte(&it[0], pos[q])] == n) continue; /* one value: nothing to do */
        for (int v = 0; v < 256; v++) {
            size_t x = c[v];
            c[v] = sum;
            sum += x;
        }
        const int b = pos[q];
        for (size_t i = 0; i < n; i++) dst[c[ibyte(&src[i], b)]++] = src[i];
        em__sitem *t = src;
        src = dst;
        dst = t;
    }
    if (src != it) memcpy(it, src, n * sizeof *it);
}

/* Sorts the n items held in a by the bytes pos[0, np) (most significant last); the result goes to a when into_a,
 * else to b; the other array is scratch. Big arrays take MSD passes on the most significant byte until a bucket
 * fits the cache (SORT_CACHED), where the rest are LSD passes: two or three passes over memory instead of one per
 * byte. Every pass is stable. */
static void sort_msd(em__sitem *a, em__sitem *b, size_t n, const int *pos, int np, int into_a)
{
    if (np == 0 || n < 2 || n <= SORT_CACHED) {
        if (n >= 2 && n <= 32) { /* insertion, stable: cheaper than histograms of 256 */
            for (size_t i = 1; i < n; i++) {
                em__sitem x = a[i];
                size_t j = i;
                for (; j > 0 && (a[j - 1].hi > x.hi || (a[j - 1].hi == x.hi && a[j - 1].lo > x.lo)); j--)
                    a[j] = a[j - 1];
                a[j] = x;
            }
        } else if (np && n >= 2) {
            sort_lsd(a, b, n, pos, np);
        }
        if (!into_a && n) memcpy(b, a, n * sizeof *a);
        return;
    }
    const int top = pos[np - 1];
    size_t c[256] = {0}, at[256];
    for (size_t i = 0; i < n; i++) c[ibyte(&a[i], top)]++;
    if (c[ibyte(&a[0], top)] == n) { /* one value here (the window, in one of a batch's windows): on to the next */
        sort_msd(a, b, n, pos, np - 1, into_a);
        return;
    }
    size_t sum = 0;
    for (int v = 0; v < 256; v++) at[v] = sum, sum += c[v];
    for (size_t i = 0; i < n; i++) {
        const unsigned v = ibyte(&a[i], top);
        b[at[v]++] = a[i];
    }
    /* the buckets are in b now: each is sorted on, its result back in a when into_a */
    size_t o = 0;
    for (int v = 0; v < 256; v++) {
        if (c[v]) sort_msd(b + o, a + o, c[v], pos, np - 1, !into_a);
        o += c[v];
    }
}

/* Radix sort on the bytes of (hi, lo) that are not the same in every item, then each group of equal (hi, lo) by
 * the full key. */
void em__sort_items(em__sitem *it, size_t n)
{
    if (n < 2) return;
    /* the bytes that differ between items: a window's bytes mostly do not, nor the keys' common prefix */
    uint64_t dhi = 0, dlo = 0;
    for (size_t i = 1; i < n; i++) dhi |= it[i].hi ^ it[0].hi, dlo |= it[i].lo ^ it[0].lo;
    int pos[16], npos = 0;
    for (int b = 0; b < 16; b++)
        if (((b < 8 ? dlo : dhi) >> (8 * (b & 7))) & 255) pos[npos++] = b;
    sort_msd(it, items_get(1, n), n, pos, npos, 1);
    for (size_t i = 0, j; i < n; i = j) {
        int same = it[i].kl <= 8; /* keys of at most 8 bytes with one prefix and one length are one key */
        for (j = i + 1; j < n && it[j].hi == it[i].hi && it[j].lo == it[i].lo; j++) same &= it[j].kl == it[i].kl;
        if (j - i > 1 && !same) qsort(it + i, j - i, sizeof *it, sitem_cmp);
    }
}

/* ---- the task's table: (window, key) -> encoded accumulator ----
 * Open addressing with linear probing over 32-byte slots that hold what a probe compares: the window, the key's
 * length and its first 8 bytes (em__key_prefix, zero-padded: with the length it is the whole key when the key has
 * at most 8 bytes, so such a key is matched without touching the key arena) and the entry's index + 1 (0: empty).
 * A count lives in the slot itself; other accumulators in an array by entry. So a count costs one slot access per
 * event, and events reach the table through a short FIFO that prefetches an event's slot PIPE events before it is
 * probed, so that several cache misses are in flight at once (with 1M keys the table is far larger than the
 * caches). The FIFO keeps the order events arrive in: values are added to an accumulator in log order.
 * Key bytes go to one arena, offsets by entry. */

typedef struct tslot {
    int64_t win;
    uint64_t pre;  /* em__key_prefix(key) */
    uint32_t klen;
    uint32_t idx;  /* entry + 1; 0: empty */
    uint64_t cnt;  /* the accumulator when it is a count (as == 8), native order */
} tslot;

/* Sort mode, for a fused task that counts (em__wtask_fold_runs), instead of the table: each (window, event) is
 * appended as an item, and at the end the items are sorted (em__sort_items) and equal keys added up. In the
 * benchmark's case nearly every event of a task is a key of its own (a quarter million events over a million keys),
 * so the table bought little combining for a cache miss per event: the appends are sequential, and the sort was
 * needed anyway. Used when the task's items are bounded by its record count times at most 2 windows per event
 * (tumbling windows, or a slide of at least half the window) and fit SORT_MAX_ITEMS; more windows per event
 * repeat keys that the table combines. */
#define SORT_MAX_ITEMS ((uint64_t)1 << 21)

#define PIPE 8         /* events in flight between the prefetch of their slot and the probe */
#define PIPE_KEY 32    /* key bytes a FIFO entry holds; an event with a longer key drains the FIFO first */

typedef struct pend {
    uint64_t hk, pre; /* the key's hash and prefix */
    int64_t tm, last; /* event time, start of its latest window */
    em__num v;
    uint32_t kl;
    uint8_t k[PIPE_KEY];
} pend;

/* A task's table. `wm` is the watermark at the start of the batch; `part` the log partition the task reads (-1:
 * unknown); o->log_dir names the log in messages. */
typedef struct em__wtask {
    const em_stream_opts *o;
    em__agg ag;
    size_t as;
    int inline_acc; /* count: the count is kept in the slot */
    int64_t wm;   /* watermark at the start of the batch */
    int64_t part; /* the log partition read, -1: unknown (names bad events) */
    tslot *slot;
    size_t nslot; /* a power of two, >= 2 n */
    uint64_t *koff; /* per entry: its key's offset in keys */
    uint16_t *kp;   /* per entry: its key partition (em__key_part) */
    int kparts;     /* key partitions of the window state */
    uint8_t *accs;  /* per entry (not inline_acc) */
    size_t n, ecap;
    uint8_t *keys;
    size_t klen, kcap;
    pend fifo[PIPE];
    unsigned fhead, fn;
    /* Sort mode (SORT_MAX_ITEMS): no table; every (window, event) is an item, its key bytes in `keys` (item k:
     * the offset there until the end), its count in idx. */
    int sorted;
    em__sitem *it;
    size_t ni, icap;
    uint64_t events, late, bad;
    int64_t max_t;
    int has_max;
} em__wtask;

/* The hash of (window, key) from the key's hash. */
static inline uint64_t win_hash(uint64_t hk, int64_t win)
{
    uint64_t h = (hk ^ (uint64_t)win) * 0xD6E8FEB86659FD93ULL;
    return h ^ (h >> 32);
}

/* Memory a thread keeps from task to task: the slot array of its last table and the item arrays of the sort. A
 * batch's tasks look alike, and reusing memory the thread already has costs far less than faulting in fresh pages
 * (each task would otherwise fault in its whole table and item arrays: tens of MB per batch, and page faults are
 * slow in a VM). Freed when the thread ends. */
typedef struct tscratch {
    tslot *slot;
    size_t slot_n;
    em__sitem *items[2]; /* [0]: a task's items, [1]: the radix sort's second array */
    size_t items_n[2];
} tscratch;

static _Thread_local tscratch *scr;
static pthread_once_t scr_once = PTHREAD_ONCE_INIT;
static pthread_key_t scr_key;

static void scr_free(void *p)
{
    tscratch *t = p;
    free(t->slot);
    free(t->items[0]);
    free(t->items[1]);
    free(t);
}
static void scr_key_make(void) { EM_ASSERT(pthread_key_create(&scr_key, scr_free) == 0); }

static tscratch *scratch(void)
{
    if (!scr) {
        scr = em__calloc(1, sizeof *scr);
        pthread_once(&scr_once, scr_key_make);
        pthread_setspecific(scr_key, scr);
    }
    return scr;
}

/* This thread's item array w (0 or 1), room for n items; valid until the next call with the same w. */
static em__sitem *items_get(int w, size_t n)
{
    tscratch *t = scratch();
    if (t->items_n[w] < n) {
        free(t->items[w]);
        t->items_n[w] = n + n / 8;
        t->items[w] = em__malloc(t->items_n[w] * sizeof(em__sitem));
    }
    return t->items[w];
}

/* Zeroed slots, at least n (a power of two) of them: *got says how many. */
static tslot *slots_get(size_t n, size_t *got)
{
    tscratch *t = scratch();
    if (t->slot && t->slot_n >= n && t->slot_n <= 4 * n) {
        tslot *s = t->slot;
        *got = t->slot_n;
        t->slot = NULL;
        memset(s, 0, *got * sizeof *s);
        return s;
    }
    *got = n;
    return em__calloc(n, sizeof(tslot));
}

/* Gives slots back: kept if they are the bigger ones. */
static void slots_put(tslot *s, size_t n)
{
    if (!s) return;
    tscratch *t = scratch();
    if (n < t->slot_n) {
        free(s);
        return;
    }
    free(t->slot);
    t->slot = s;
    t->slot_n = n;
}

static void wt_rehash(em__wtask *t, size_t nslot)
{
    tslot *old = t->slot;
    size_t nold = t->nslot;
    EM_ASSERT(nslot <= ((size_t)1 << 31));
    t->slot = slots_get(nslot, &nslot);
    t->nslot = nslot;
    for (size_t i = 0; i < nold; i++) {
        const tslot *s = &old[i];
        if (!s->idx) continue;
        size_t j = win_hash(em__hash_key(t->keys + t->koff[s->idx - 1], s->klen), s->win) & (nslot - 1);
        while (t->slot[j].idx) j = (j + 1) & (nslot - 1);
        t->slot[j] = *s;
    }
    slots_put(old, nold);
}

/* The slot of (win, key) with hash h, a zeroed entry inserted if absent. */
static tslot *wt_get(em__wtask *t, uint64_t h, int64_t win, const void *k, uint32_t kl, uint64_t pre)
{
    if (2 * (t->n + 1) > t->nslot) wt_rehash(t, t->nslot ? 2 * t->nslot : 4096);
    const size_t mask = t->nslot - 1;
    size_t j = h & mask;
    tslot *s;
    for (; (s = &t->slot[j])->idx; j = (j + 1) & mask)
        if (s->win == win && s->pre == pre && s->klen == kl &&
            (kl <= 8 || memcmp(t->keys + t->koff[s->idx - 1], k, kl) == 0))
            return s;
    EM_ASSERT(t->n < ((size_t)1 << 30));
    if (t->n == t->ecap) {
        t->ecap = t->ecap ? 2 * t->ecap : 1024;
        t->koff = em__realloc(t->koff, t->ecap * sizeof *t->koff);
        t->kp = em__realloc(t->kp, t->ecap * sizeof *t->kp);
        if (!t->inline_acc) t->accs = em__realloc(t->accs, t->ecap * t->as);
    }
    if (t->klen + kl > t->kcap) {
        while (t->klen + kl > t->kcap) t->kcap = t->kcap ? 2 * t->kcap : 16384;
        t->keys = em__realloc(t->keys, t->kcap);
    }
    if (kl) memcpy(t->keys + t->klen, k, kl);
    t->koff[t->n] = t->klen;
    t->kp[t->n] = (uint16_t)em__key_part(k, kl, t->kparts);
    t->klen += kl;
    if (!t->inline_acc) memset(t->accs + t->n * t->as, 0, t->as);
    *s = (tslot){win, pre, kl, (uint32_t)++t->n, 0};
    return s;
}

/* `nrec`: the records the task will read (0: unknown), to size the table once instead of growing it. With
 * `may_sort`, a task that counts takes sort mode when its items fit (SORT_MAX_ITEMS). */
static em__wtask *wtask_new(const em__wtask_arg *b, int64_t part, uint64_t nrec, int may_sort)
{
    const em_stream_opts *o = b->o;
    em__wtask *t = em__calloc(1, sizeof *t);
    t->kparts = b->kparts;
    t->part = part;
    t->o = o;
    t->ag = em__agg_of(o);
    t->as = t->ag.size;
    t->inline_acc = t->ag.kind == EM_STREAM_COUNT;
    t->wm = b->wm;
    const uint64_t wins = (uint64_t)((o->window_ms + o->slide_ms - 1) / o->slide_ms); /* windows per event, at most */
    if (may_sort && t->inline_acc && nrec && wins <= 2 && nrec * wins <= SORT_MAX_ITEMS) {
        t->sorted = 1;
        t->icap = (size_t)(nrec * wins);
        t->it = items_get(0, t->icap);
        return t;
    }
    /* entries expected: at most one per record and window it falls in (capped: keys usually repeat) */
    uint64_t per = (uint64_t)(o->window_ms / o->slide_ms), want = nrec * (per < 4 ? per : 4);
    if (want > ((uint64_t)1 << 22)) want = (uint64_t)1 << 22;
    if (want > 1024) {
        size_t ns = 4096;
        while (ns < 2 * want) ns *= 2;
        t->slot = slots_get(ns, &t->nslot);
        t->ecap = (size_t)want;
        t->koff = em__malloc(t->ecap * sizeof *t->koff);
        t->kp = em__malloc(t->ecap * sizeof *t->kp);
        if (!t->inline_acc) t->accs = em__malloc(t->ecap * t->as);
    }
    return t;
}

static int64_t floor_div(int64_t a, int64_t b) { return a / b - (a % b != 0 && (a < 0) != (b < 0)); }

/* Names a bad event on stderr (the first BAD_REPORT_MAX of a task). */
static void report_bad(em__wtask *t, int64_t off, const em_rec *rec, const char *why, const void *val, size_t vlen)
{
    if (++t->bad > BAD_REPORT_MAX) return;
    int64_t part = t->part;
    em_field fp, fo;
    if (rec && em_tup_get(rec->val, rec->vlen, 2, &fp) == 0 && fp.type == EM_F_I64) part = fp.i64;
    if (rec && em_tup_get(rec->val, rec->vlen, 3, &fo) == 0 && fo.type == EM_F_I64) off = fo.i64;
    EM_LOG_W("%s: partition %" PRId64 " offset %" PRId64 ": %s '%.*s'%s", t->o->log_dir, part, off, why,
             (int)(vlen > 60 ? 60 : vlen), (const char *)val, vlen > 60 ? "..." : "");
}

/* Adds a good event to every window of it still open (the windows starting at `last`, last - S, ...). */
static inline void wt_apply(em__wtask *t, uint64_t hk, uint64_t pre, int64_t tm, int64_t last, const void *key,
                            uint32_t klen, const em__num *v)
{
    const int64_t W = t->o->window_ms, S = t->o->slide_ms, wm = t->wm;
    for (int64_t s = last; s > tm - W && s + W > wm; s -= S) {
        tslot *sl = wt_get(t, win_hash(hk, s), s, key, klen, pre);
        if (t->inline_acc) sl->cnt++;
        else em__acc_add(t->ag.kind, t->accs + (size_t)(sl->idx - 1) * t->as, v);
    }
}

/* A user's aggregate: combines the event's accumulator `a` into every window of it still open (as wt_apply). */
static void wt_apply_user(em__wtask *t, int64_t tm, int64_t last, const void *key, uint32_t klen, const uint8_t *a)
{
    const int64_t W = t->o->window_ms, S = t->o->slide_ms, wm = t->wm;
    const uint64_t hk = em__hash_key(key, klen), pre = em__key_prefix(key, klen);
    for (int64_t s = last; s > tm - W && s + W > wm; s -= S) {
        const size_t n0 = t->n;
        const size_t e = wt_get(t, win_hash(hk, s), s, key, klen, pre)->idx - 1; /* may move t->accs */
        uint8_t *d = t->accs + e * t->as;
        if (t->n != n0) memcpy(d, a, t->as); /* the first event of this (window, key) */
        else em__acc_merge_user(&t->ag, d, a);
    }
}

/* Applies the oldest event of the FIFO. */
static inline void fifo_pop(em__wtask *t)
{
    pend *p = &t->fifo[t->fhead];
    wt_apply(t, p->hk, p->pre, p->tm, p->last, p->k, p->kl, &p->v);
    t->fhead = (t->fhead + 1) % PIPE;
    t->fn--;
}

static void fifo_drain(em__wtask *t)
{
    while (t->fn) fifo_pop(t);
}

/* Sort mode: appends the event's items, one per window of it still open. */
static inline void wt_append(em__wtask *t, int64_t tm, int64_t last, const void *key, uint32_t klen)
{
    const int64_t W = t->o->window_ms, S = t->o->slide_ms, wm = t->wm;
    if (t->klen + klen > t->kcap) {
        while (t->klen + klen > t->kcap) t->kcap = t->kcap ? 2 * t->kcap : 65536;
        t->keys = em__realloc(t->keys, t->kcap);
    }
    if (klen) memcpy(t->keys + t->klen, key, klen);
    const uint64_t pre = em__key_prefix(key, klen);
    for (int64_t s = last; s > tm - W && s + W > wm; s -= S) {
        EM_ASSERT(t->ni < t->icap); /* icap bounds the windows of every record the task reads */
        t->it[t->ni++] = (em__sitem){(uint64_t)s ^ 0x8000000000000000ULL, pre, (const uint8_t *)(uintptr_t)t->klen,
                                     klen, 1};
    }
    t->klen += klen;
}

/* Adds one event (bytes borrowed). The partition and `off` name it in the message if it is bad (or, when `rec` is
 * not NULL, the tuple fields [2] and [3] of rec->val do). Never fails: bad and late events are counted. */
static void wtask_add(em__wtask *t, int64_t tm, const void *key, uint32_t klen, const void *val, uint32_t vlen,
                      int64_t off, const em_rec *rec)
{
    const int64_t W = t->o->window_ms, S = t->o->slide_ms, wm = t->wm;
    t->events++;
    if (tm < -EM__STREAM_MAX_TIME || tm > EM__STREAM_MAX_TIME) {
        char tb[32];
        int n = snprintf(tb, sizeof tb, "%" PRId64, tm);
        report_bad(t, off, rec, "event time out of range (|t| > 2^62 ms)", tb, (size_t)n);
        return;
    }
    if (!t->has_max || tm > t->max_t) t->max_t = tm, t->has_max = 1;
    int64_t last = floor_div(tm, S) * S; /* the start of the latest window holding tm: it closes last */
    if (last + W <= wm) {
        t->late++;
        return;
    }
    if (t->ag.kind == EM_STREAM_USER) {
        const em_stream_combine *u = t->ag.user;
        _Alignas(16) uint8_t a[EM_STREAM_ACC_MAX];
        memset(a, 0, t->as);
        if (u->from_event(a, tm, key, klen, val, vlen, u->arg) < 0) {
            report_bad(t, off, rec, "value refused by the combine function:", val, vlen);
            return;
        }
        wt_apply_user(t, tm, last, key, klen, a);
        return;
    }
    em__num v = {1, 0, 0};
    if (t->ag.kind != EM_STREAM_COUNT && em__num_parse(val, vlen, &v) < 0) {
        report_bad(t, off, rec, "value is not a number:", val, vlen);
        return;
    }
    if (t->sorted) {
        wt_append(t, tm, last, key, klen);
        return;
    }
    const uint64_t hk = em__hash_key(key, klen), pre = em__key_prefix(key, klen);
    if (klen > PIPE_KEY) { /* too long to hold: in order, after the events before it */
        fifo_drain(t);
        wt_apply(t, hk, pre, tm, last, key, klen, &v);
        return;
    }
    if (t->nslot) __builtin_prefetch(&t->slot[win_hash(hk, last) & (t->nslot - 1)], 1);
    if (t->fn == PIPE) fifo_pop(t);
    pend *p = &t->fifo[(t->fhead + t->fn++) % PIPE];
    p->hk = hk;
    p->pre = pre;
    p->tm = tm;
    p->last = last;
    p->v = v;
    p->kl = klen;
    if (klen) memcpy(p->k, key, klen);
}

static void wt_free(em__wtask *t)
{
    slots_put(t->slot, t->nslot);
    free(t->koff);
    free(t->kp);
    free(t->accs);
    free(t->keys);
    free(t);
}

/* Emits the items it[0, n) of key partition k as partial records: per window, blocks of at most BLOCK_BYTES (or
 * one entry), one record per block, not per (window, key). */
static int emit_part(const em__wtask *t, em_emitter *out, const em__sitem *it, size_t n, int k, const uint64_t *cnt,
                     em__buf *blk)
{
    uint8_t wk[10];
    int rc = 0;
    wk[0] = (uint8_t)(k >> 8);
    wk[1] = (uint8_t)k;
    for (size_t i = 0; i < n && rc >= 0;) {
        const uint64_t whi = it[i].hi;
        em_i64_put(wk + 2, (int64_t)(whi ^ 0x8000000000000000ULL));
        blk->len = 0;
        blk->p[blk->len++] = 0; /* the first block of this window's run */
        for (; i < n && it[i].hi == whi && rc >= 0; i++) {
            if (blk->len > BLOCK_BYTES) {
                rc = em_emit(out, wk, sizeof wk, blk->p, (uint32_t)blk->len);
                blk->len = 0;
                blk->p[blk->len++] = 1; /* continues the run */
            }
            em__buf_grow(blk, 5 + (size_t)it[i].kl + t->as);
            uint8_t *d = blk->p + blk->len;
            const uint32_t kl = it[i].kl;
            for (uint32_t v = kl;; v >>= 7) { /* LEB128 */
                *d++ = (uint8_t)((v & 127) | (v > 127 ? 128 : 0));
                if (v <= 127) break;
            }
            if (kl <= 8)
                for (uint32_t b = 0; b < kl; b++) d[b] = (uint8_t)(it[i].lo >> (56 - 8 * b));
            else
                memcpy(d, it[i].k, kl);
            d += kl;
            if (cnt) em__put64(d, cnt[it[i].idx]);
            else memcpy(d, t->accs + (size_t)it[i].idx * t->as, t->as);
            blk->len = (size_t)(d + t->as - blk->p);
        }
        if (rc >= 0) rc = em_emit(out, wk, sizeof wk, blk->p, (uint32_t)blk->len);
    }
    return rc;
}

/* The task's counters record (events, late, bad, largest event time; EM__WSTATS_LEN bytes), and the line for the
 * bad events past the ones named. */
static void task_stats(const em__wtask *t, uint8_t *st)
{
    memset(st, 0, EM__WSTATS_LEN);
    em__put64(st, t->events);
    em__put64(st + 8, t->late);
    em__put64(st + 16, t->bad);
    em__put64(st + 24, (uint64_t)t->max_t);
    st[32] = (uint8_t)t->has_max;
    if (t->bad > BAD_REPORT_MAX)
        EM_LOG_W("%s: %" PRIu64 " more bad events in this task were skipped and not listed", t->o->log_dir,
                 t->bad - BAD_REPORT_MAX);
}

/* The sorted items it[0, n) as one em__wrun per window. An item's count is cnt[idx], or idx itself when cnt is NULL
 * in sort mode; otherwise idx is its entry in t->accs. */
static em__win *items_runs(const em__wtask *t, const em__sitem *it, size_t n, const uint64_t *cnt, size_t *nwins)
{
    size_t nw = 0;
    for (size_t i = 0; i < n; i++) nw += !i || it[i].hi != it[i - 1].hi;
    em__win *w = em__calloc(nw ? nw : 1, sizeof *w);
    for (size_t i = 0, k = 0, j; i < n; i = j, k++) {
        size_t kb = 0;
        for (j = i; j < n && it[j].hi == it[i].hi; j++) kb += it[j].kl;
        w[k].start = (int64_t)(it[i].hi ^ 0x8000000000000000ULL);
        em__wrun *r = &w[k].run;
        em__wrun_reserve(r, j - i, kb + 8, t->as); /* 8 spare key bytes: a short key is stored as 8 */
        size_t o = 0;
        for (size_t q = i; q < j; q++) {
            const uint32_t kl = it[q].kl;
            if (kl <= 8) /* its prefix is the key: no trip to the arena */
                for (int b = 0; b < 8; b++) r->keys[o + (size_t)b] = (uint8_t)(it[q].lo >> (56 - 8 * b));
            else
                memcpy(r->keys + o, it[q].k, kl);
            o += kl;
            uint8_t *a = r->accs + r->n * t->as;
            if (cnt) em__put64(a, cnt[it[q].idx]);
            else if (t->sorted) em__put64(a, it[q].idx);
            else memcpy(a, t->accs + (size_t)it[q].idx * t->as, t->as);
            r->koff[++r->n] = o;
        }
    }
    *nwins = nw;
    return w;
}

/* Sort mode's items: key offsets become pointers, then sorted, equal keys of a window made one item (counts
 * added). Returns the items left; *bad when a key is not of key partition t->part. */
static size_t sorted_combine(em__wtask *t, int *bad)
{
    em__sitem *it = t->it;
    const size_t n = t->ni;
    for (size_t i = 0; i < n; i++) it[i].k = t->keys + (uintptr_t)it[i].k;
    em__sort_items(it, n);
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        em__sitem *p = m ? &it[m - 1] : NULL;
        if (p && p->hi == it[i].hi && p->lo == it[i].lo && p->kl == it[i].kl &&
            (it[i].kl <= 8 || memcmp(p->k, it[i].k, it[i].kl) == 0)) {
            p->idx += it[i].idx;
            continue;
        }
        it[m++] = it[i];
    }
    if (t->kparts > 1) /* a loop of its own: the hashes of successive keys overlap */
        for (size_t i = 0; i < m; i++) *bad |= em__key_part(it[i].k, it[i].kl, t->kparts) != t->part;
    return m;
}

/* Fused mode's end of a task (see em__wtask_fold_runs): the sorted items become one em__wrun per window, and the
 * counters go to wstats. Frees t. Returns 0, or EM_EINVAL when a key is not of key partition t->part. */
static int wtask_finish_runs(em__wtask *t, em__win **wins, size_t *nwins, uint8_t *wstats)
{
    int bad = 0;
    if (t->sorted) {
        *wins = items_runs(t, t->it, sorted_combine(t, &bad), NULL, nwins);
    } else {
        fifo_drain(t);
        const size_t n = t->n;
        em__sitem *it = items_get(0, n ? n : 1);
        size_t m = 0;
        for (size_t j = 0; j < t->nslot; j++) {
            const tslot *s = &t->slot[j];
            if (!s->idx) continue;
            if (t->kparts > 1 && t->kp[s->idx - 1] != t->part) bad = 1;
            /* idx: the entry (its accumulator), or for a count the item's place in cnt below */
            const uint32_t idx = t->inline_acc ? (uint32_t)m : s->idx - 1;
            it[m++] = (em__sitem){(uint64_t)s->win ^ 0x8000000000000000ULL, s->pre, t->keys + t->koff[s->idx - 1],
                                  s->klen, idx};
        }
        EM_ASSERT(m == n);
        uint64_t *cnt = NULL;
        if (t->inline_acc) { /* counts by item, in slot order as the items were made */
            cnt = em__malloc((n ? n : 1) * sizeof *cnt);
            size_t q = 0;
            for (size_t j = 0; j < t->nslot; j++)
                if (t->slot[j].idx) cnt[q++] = t->slot[j].cnt;
        }
        slots_put(t->slot, t->nslot);
        t->slot = NULL;
        t->nslot = 0;
        em__sort_items(it, n);
        *wins = items_runs(t, it, n, cnt, nwins);
        free(cnt);
    }
    task_stats(t, wstats);
    int rc = 0;
    if (bad)
        rc = em__fail(EM_EINVAL, "%s: log partition %" PRId64 " holds keys that belong to other partitions (hash of "
                      "the key mod %d): the streaming engine keeps each partition's window state on one rank and "
                      "needs a log written by `ember log append`", t->o->log_dir, t->part, t->kparts);
    wt_free(t);
    return rc;
}

/* Emits the partials grouped by key partition, each group in (window, key) order, then the counters record; frees
 * t (also when out is NULL: nothing is emitted). Returns 0 or em_emit's error. */
static int wtask_finish(em__wtask *t, em_emitter *out)
{
    if (!t) return 0;
    int rc = 0;
    if (!out) goto done;
    fifo_drain(t);
    /* Sort items from one pass over the slots; counts move to a dense array (item idx: its place there; otherwise
     * idx is the entry), so that after the sort the emit reads the items in order, a small array at random, and
     * the key arena only for keys over 8 bytes (a shorter key is its prefix). */
    const size_t n = t->n;
    em__sitem *it = em__malloc((n ? n : 1) * sizeof *it);
    uint64_t *cnt = t->inline_acc ? em__malloc((n ? n : 1) * sizeof *cnt) : NULL;
    /* key partition by item idx: the entry's own array, or (counts) a dense copy beside cnt */
    uint16_t *ip = t->inline_acc && t->kparts > 1 ? em__malloc((n ? n : 1) * sizeof *ip) : t->kp;
    uint32_t maxk = 0;
    size_t m = 0;
    for (size_t j = 0; j < t->nslot; j++) {
        const tslot *s = &t->slot[j];
        if (!s->idx) continue;
        uint32_t idx = s->idx - 1;
        if (cnt) {
            if (ip != t->kp) ip[m] = t->kp[idx];
            cnt[m] = s->cnt, idx = (uint32_t)m;
        }
        it[m++] = (em__sitem){(uint64_t)s->win ^ 0x8000000000000000ULL, s->pre, t->keys + t->koff[s->idx - 1],
                              s->klen, idx};
        if (s->klen > maxk) maxk = s->klen;
    }
    EM_ASSERT(m == n);
    slots_put(t->slot, t->nslot); /* not needed any more: the sort allocates */
    t->slot = NULL;
    t->nslot = 0;
    em__sort_items(it, n);
    em__buf blk;
    em__buf_init(&blk);
    em__buf_grow(&blk, BLOCK_BYTES + 5 + (size_t)maxk + 8 + t->as);
    int only = t->kparts <= 1 ? 0 : -1; /* the key partition of every item, if they all have one */
    if (only < 0 && n) {
        only = ip[it[0].idx];
        for (size_t i = 1; i < n && only >= 0; i++)
            if (ip[it[i].idx] != only) only = -1;
    }
    if (only >= 0 || !n) {
        /* one group (a task reading one log partition: the usual case), no scatter */
        rc = emit_part(t, out, it, n, only < 0 ? 0 : only, cnt, &blk);
    } else {
        /* a stable scatter by key partition keeps each group in (window, key) order */
        const int K = t->kparts;
        size_t *first = em__calloc((size_t)K + 1, sizeof *first);
        for (size_t i = 0; i < n; i++) first[ip[it[i].idx] + 1]++;
        for (int k = 0; k < K; k++) first[k + 1] += first[k];
        size_t *at = em__malloc((size_t)K * sizeof *at);
        memcpy(at, first, (size_t)K * sizeof *at);
        em__sitem *g = em__malloc((n ? n : 1) * sizeof *g);
        for (size_t i = 0; i < n; i++) g[at[ip[it[i].idx]]++] = it[i];
        for (int k = 0; k < K && rc >= 0; k++) rc = emit_part(t, out, g + first[k], first[k + 1] - first[k], k, cnt, &blk);
        free(g);
        free(at);
        free(first);
    }
    em__buf_release(&blk);
    if (ip != t->kp) free(ip);
    free(it);
    free(cnt);
    uint8_t s[EM__WSTATS_LEN];
    task_stats(t, s);
    if (rc >= 0) rc = em_emit(out, "", 0, s, EM__WSTATS_LEN);
done:
    wt_free(t);
    return rc;
}

/* ---- the batch's dataset ---- */

static void *fold_open(int part, int log_part, uint64_t nrec, void *arg)
{
    (void)part;
    const em__wtask_arg *b = arg;
    return wtask_new(b, log_part, nrec, 0);
}

static int fold_each(void *state, const em__log_rec *r)
{
    wtask_add(state, r->time_ms, r->key, r->klen, r->value, r->vlen, (int64_t)r->offset, NULL);
    return 0;
}

static int fold_close(void *state, em_emitter *out) { return wtask_finish(state, out); }

static void *task_open(int part, void *arg)
{
    (void)part;
    const em__wtask_arg *b = arg;
    return wtask_new(b, -1, 0, 0);
}

static int task_each(void *state, const em_rec *in, em_emitter *out, void *arg)
{
    const em__wtask_arg *b = arg;
    em_field ft, fv = {0};
    (void)out;
    if (em_tup_get(in->val, in->vlen, 0, &ft) < 0 || ft.type != EM_F_I64 ||
        (b->o->agg != EM_STREAM_COUNT && (em_tup_get(in->val, in->vlen, 1, &fv) < 0 || fv.type != EM_F_STR)))
        return em__fail(EM_EPARSE, "stream: an event record's value is not a tuple (event time, value, ...): did a "
                                   "transform change the record shape?");
    wtask_add(state, ft.i64, in->key, in->klen, fv.str, (uint32_t)fv.len, -1, in);
    return 0;
}

static int task_close(void *state, em_emitter *out, void *arg)
{
    (void)arg;
    return wtask_finish(state, out);
}

em_ds *em__wtask_dataset(em_ctx *ctx, em__wtask_arg *b, const uint64_t *from, const uint64_t *to, uint64_t split)
{
    const em_stream_opts *o = b->o;
    if (o->transform) {
        em_ds *ev = o->transform(em__log_source(ctx, o->log_dir, from, to, split), o->transform_arg);
        return em_map_partitions(ev, task_open, task_each, task_close, b);
    }
    em__log_fold f = {fold_open, fold_each, fold_close, b};
    return em__log_source_fold(ctx, o->log_dir, from, to, split, &f);
}

int em__wtask_fold_runs(const em__wtask_arg *b, int log_part, uint64_t from, uint64_t to, em__win **wins,
                        size_t *nwins, uint8_t *wstats)
{
    char err[600] = "";
    em__log_topic *lt = NULL;
    *wins = NULL;
    *nwins = 0;
    memset(wstats, 0, EM__WSTATS_LEN);
    int rc = em__log_open(b->o->log_dir, &lt, err, sizeof err);
    em__wtask *t = NULL;
    if (rc == 0) {
        t = wtask_new(b, log_part, to - from, 1);
        rc = em__log_read(lt, log_part, from, to, fold_each, t, NULL, err, sizeof err);
    }
    em__log_close(lt);
    if (rc < 0) {
        if (*err) em__fail(rc, "%s", err);
        wtask_finish(t, NULL);
        return rc;
    }
    return wtask_finish_runs(t, wins, nwins, wstats);
}
