/* window.c — event-time windows and their state for the streaming engine (shared DESIGN.md §7; semantics in the
 * em_stream_* section of include/ember.h, formats in scheduler/stream.h): numbers and accumulators, the per-task
 * aggregation of events into partials per (window, key), the replicated window state those partials are merged
 * into, and the output rows of closed windows.
 *
 * Where the time goes, and why the shapes below (1M distinct keys per window is the benchmark's case):
 *   - A task aggregates its events in an open-addressing table keyed by (window, key): the key is hashed once per
 *     event (sliding windows reuse that hash), key bytes go to one arena, accumulators are encoded in place (a count
 *     is one 8-byte add). At the end the task sorts its entries by (window, key bytes) with an LSD radix sort on a
 *     16-byte prefix (window, first 8 key bytes) that skips constant bytes, so every task's partials arrive sorted.
 *     Tasks run in parallel, so that sort costs no rank the whole work.
 *   - The state of an open window is one sorted run of keys. A batch's partials for a window are runs too (one per
 *     task), so merging them into the state is a k-way merge (sequential memory, no hashing of 1M keys on every
 *     rank), and a closed window is already in output order: no sort when it closes.
 */
#include "scheduler/stream.h"

#include "runtime/log.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BAD_REPORT_MAX 10 /* bad values named on stderr per task */
#define NUM_MAX 127       /* bytes: a longer value is not a number */
#define TAG_MASK 0xFFFFFFFF00000000ULL

static const char *const agg_names[] = {"count", "sum", "min", "max", "avg"};

int em_stream_agg_parse(const char *name)
{
    for (int i = 0; i < 5; i++)
        if (name && strcmp(name, agg_names[i]) == 0) return i;
    return -1;
}

const char *em_stream_agg_name(em_stream_agg agg) { return (unsigned)agg < 5 ? agg_names[agg] : "?"; }

/* ---- numbers and accumulators ---- */

__extension__ typedef __int128 i128;
__extension__ typedef unsigned __int128 u128;

/* Little-endian fixed-width fields (the encoded accumulators). */
static inline void put64(uint8_t *p, uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(p, &v, 8);
#else
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
#endif
}
static inline uint64_t get64(const uint8_t *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
#else
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
#endif
}
static inline uint64_t load64(const uint8_t *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static inline uint32_t load32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
static uint64_t dbits(double d)
{
    uint64_t u;
    memcpy(&u, &d, 8);
    return u;
}
static double bitsd(uint64_t u)
{
    double d;
    memcpy(&d, &u, 8);
    return d;
}

/* A parsed value: an integer literal that fits int64 is kept exact; any other decimal number is a double. */
typedef struct num {
    int is_int;
    int64_t i;
    double f;
} num;

/* Grammar (the e2e test's python3 check implements the same):
 *   integer = [+-]? digits                                (within int64; larger ones are read as doubles)
 *   decimal = [+-]? (digits [. digits*] | . digits) ([eE] [+-]? digits)?   finite after rounding
 * at most NUM_MAX bytes, no spaces. Returns 0 or -1. */
static int parse_num(const char *s, size_t n, num *out)
{
    char buf[NUM_MAX + 1];
    if (n == 0 || n > NUM_MAX) return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    size_t i = 0, d0, nd = 0, nf = 0;
    if (buf[i] == '+' || buf[i] == '-') i++;
    d0 = i;
    while (buf[i] >= '0' && buf[i] <= '9') i++, nd++;
    if (i == n && nd) { /* integer */
        errno = 0;
        char *end;
        long long v = strtoll(buf, &end, 10);
        if (errno == 0 && *end == '\0') {
            *out = (num){1, v, 0};
            return 0;
        }
    }
    i = d0 + nd;
    if (buf[i] == '.') {
        i++;
        while (buf[i] >= '0' && buf[i] <= '9') i++, nf++;
    }
    if (nd + nf == 0) return -1;
    if (buf[i] == 'e' || buf[i] == 'E') {
        size_t ne = 0;
        i++;
        if (buf[i] == '+' || buf[i] == '-') i++;
        while (buf[i] >= '0' && buf[i] <= '9') i++, ne++;
        if (!ne) return -1;
    }
    if (i != n) return -1;
    double f = strtod(buf, NULL); /* the grammar above is a subset of strtod's: the whole string is read */
    if (!isfinite(f)) return -1;
    *out = (num){0, 0, f};
    return 0;
}

/* The decoded aggregate of one (window, key). count uses n only; sum/avg n, nfloat, isum, fsum; min/max n, kind,
 * xi/xf. */
typedef struct acc {
    int64_t n;
    int64_t nfloat;
    i128 isum;
    double fsum;
    int kind;
    int64_t xi;
    double xf;
} acc;

size_t em__acc_size(em_stream_agg agg)
{
    return agg == EM_STREAM_COUNT ? 8 : agg == EM_STREAM_SUM || agg == EM_STREAM_AVG ? 40 : 17;
}

static void acc_encode(em_stream_agg agg, const acc *a, uint8_t *p)
{
    put64(p, (uint64_t)a->n);
    if (agg == EM_STREAM_SUM || agg == EM_STREAM_AVG) {
        put64(p + 8, (uint64_t)a->nfloat);
        put64(p + 16, (uint64_t)a->isum);
        put64(p + 24, (uint64_t)(a->isum >> 64));
        put64(p + 32, dbits(a->fsum));
    } else if (agg != EM_STREAM_COUNT) {
        p[8] = (uint8_t)a->kind;
        put64(p + 9, a->kind == 2 ? dbits(a->xf) : (uint64_t)a->xi);
    }
}

static void acc_decode(em_stream_agg agg, const uint8_t *p, acc *a)
{
    memset(a, 0, sizeof *a);
    a->n = (int64_t)get64(p);
    if (agg == EM_STREAM_SUM || agg == EM_STREAM_AVG) {
        a->nfloat = (int64_t)get64(p + 8);
        a->isum = (i128)(((u128)get64(p + 24) << 64) | get64(p + 16));
        a->fsum = bitsd(get64(p + 32));
    } else if (agg != EM_STREAM_COUNT) {
        a->kind = p[8];
        if (a->kind == 2) a->xf = bitsd(get64(p + 9));
        else a->xi = (int64_t)get64(p + 9);
    }
}

/* Compares two numbers by value, an integer and a double exactly (long double holds both on x86-64). */
static int num_cmp(int ak, int64_t ai, double af, int bk, int64_t bi, double bf)
{
    if (ak == 1 && bk == 1) return (ai > bi) - (ai < bi);
    long double a = ak == 1 ? (long double)ai : (long double)af, b = bk == 1 ? (long double)bi : (long double)bf;
    return (a > b) - (a < b);
}

/* Folds a candidate extreme into a->kind/xi/xf. Of two equal values the integer wins, so the result (and how it is
 * printed) never depends on the order values arrive in. */
static void acc_extreme(acc *a, int is_max, int kind, int64_t xi, double xf)
{
    if (!kind) return;
    if (a->kind) {
        int c = num_cmp(kind, xi, xf, a->kind, a->xi, a->xf);
        if (c == 0 ? !(kind == 1 && a->kind == 2) : is_max ? c < 0 : c > 0) return;
    }
    a->kind = kind;
    a->xi = xi;
    a->xf = xf;
}

/* Adds one value to the encoded accumulator p. */
static inline void acc_add(em_stream_agg agg, uint8_t *p, const num *v)
{
    if (agg == EM_STREAM_COUNT) {
        put64(p, get64(p) + 1);
        return;
    }
    acc a;
    acc_decode(agg, p, &a);
    a.n++;
    if (agg == EM_STREAM_SUM || agg == EM_STREAM_AVG) {
        if (v->is_int) {
            a.isum += v->i;
        } else {
            a.fsum += v->f;
            a.nfloat++;
        }
    } else {
        acc_extreme(&a, agg == EM_STREAM_MAX, v->is_int ? 1 : 2, v->i, v->f);
    }
    acc_encode(agg, &a, p);
}

/* p += q, both encoded. */
static inline void acc_merge(em_stream_agg agg, uint8_t *p, const uint8_t *q)
{
    if (agg == EM_STREAM_COUNT) {
        put64(p, get64(p) + get64(q));
        return;
    }
    acc a, b;
    acc_decode(agg, p, &a);
    acc_decode(agg, q, &b);
    a.n += b.n;
    if (agg == EM_STREAM_SUM || agg == EM_STREAM_AVG) {
        a.nfloat += b.nfloat;
        a.isum += b.isum;
        a.fsum += b.fsum;
    } else {
        acc_extreme(&a, agg == EM_STREAM_MAX, b.kind, b.xi, b.xf);
    }
    acc_encode(agg, &a, p);
}

/* ---- key order and the sort ---- */

static inline uint64_t load_be64(const uint8_t *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return __builtin_bswap64(load64(p));
#else
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    return v;
#endif
}

/* Output order of keys: bytes (memcmp), then the shorter first. */
static inline int key_cmp(const uint8_t *a, uint32_t al, const uint8_t *b, uint32_t bl)
{
    uint32_t n = al < bl ? al : bl;
    int c = n ? memcmp(a, b, n) : 0;
    return c ? c : (al > bl) - (al < bl);
}

/* The first 8 key bytes, big-endian, zero-padded: their order is the keys' order except between keys whose first
 * 8 bytes (padded) are equal, which the sort compares in full. */
static inline uint64_t key_prefix(const uint8_t *k, uint32_t kl)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (kl >= 8) return __builtin_bswap64(load64(k));
    if (kl >= 4) /* two overlapping 4-byte loads: bytes 0..3 and kl-4..kl-1 */
        return (uint64_t)__builtin_bswap32(load32(k)) << 32 |
               (uint64_t)__builtin_bswap32(load32(k + kl - 4)) << (8 * (8 - kl));
#endif
    uint64_t v = 0;
    uint32_t n = kl < 8 ? kl : 8;
    for (uint32_t i = 0; i < n; i++) v |= (uint64_t)k[i] << (56 - 8 * i);
    return v;
}

typedef struct sitem {
    uint64_t hi, lo;  /* hi: window start with its sign bit flipped (unsigned order); lo: key_prefix */
    const uint8_t *k;
    uint32_t kl;
    uint32_t idx;
} sitem;

static int sitem_cmp(const void *pa, const void *pb)
{
    const sitem *a = pa, *b = pb;
    return key_cmp(a->k, a->kl, b->k, b->kl);
}

/* Sorts it[0, n) by (hi, lo, full key): LSD radix over the 16 bytes of (hi, lo) that are not the same in every
 * item, then each group of equal (hi, lo) by the full key. */
static void sort_items(sitem *it, size_t n)
{
    if (n < 2) return;
    /* the bytes that differ between items: a window's bytes mostly do not, nor the keys' common prefix */
    uint64_t dhi = 0, dlo = 0;
    for (size_t i = 1; i < n; i++) dhi |= it[i].hi ^ it[0].hi, dlo |= it[i].lo ^ it[0].lo;
    int pos[16], npos = 0;
    for (int b = 0; b < 16; b++)
        if (((b < 8 ? dlo : dhi) >> (8 * (b & 7))) & 255) pos[npos++] = b;
    size_t(*cnt)[256] = em__calloc(16, sizeof *cnt);
    for (size_t i = 0; i < n; i++)
        for (int q = 0; q < npos; q++) {
            int b = pos[q];
            cnt[b][((b < 8 ? it[i].lo : it[i].hi) >> (8 * (b & 7))) & 255]++;
        }
    sitem *tmp = em__malloc(n * sizeof *tmp), *src = it, *dst = tmp;
    for (int q = 0; q < npos; q++) {
        const int b = pos[q];
        size_t *c = cnt[b], sum = 0;
        for (int v = 0; v < 256; v++) {
            size_t x = c[v];
            c[v] = sum;
            sum += x;
        }
        const int sh = 8 * (b & 7);
        for (size_t i = 0; i < n; i++) {
            uint64_t w = b < 8 ? src[i].lo : src[i].hi;
            dst[c[(w >> sh) & 255]++] = src[i];
        }
        sitem *t = src;
        src = dst;
        dst = t;
    }
    if (src != it) memcpy(it, src, n * sizeof *it);
    free(tmp);
    free(cnt);
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && it[j].hi == it[i].hi && it[j].lo == it[i].lo; j++) {}
        if (j - i > 1) qsort(it + i, j - i, sizeof *it, sitem_cmp);
    }
}

/* ---- the task's table: (window, key) -> encoded accumulator ----
 * Open addressing with linear probing; a slot holds the hash's high 32 bits (a tag, so a probe rarely touches an
 * entry) and the entry's index + 1. Entries and accumulators are arrays in insertion order, key bytes one arena. */

typedef struct tent {
    uint64_t hash;
    int64_t win;
    size_t koff;
    uint32_t klen;
} tent;

struct em__wtask {
    const em_stream_opts *o;
    em_stream_agg agg;
    size_t as;
    int64_t wm;   /* watermark at the start of the batch */
    int64_t part; /* the log partition read, -1: unknown (names bad events) */
    uint64_t *slot;
    size_t nslot; /* a power of two, >= 2 n */
    tent *e;
    uint8_t *accs;
    size_t n, ecap;
    uint8_t *keys;
    size_t klen, kcap;
    uint64_t events, late, bad;
    int64_t max_t;
    int has_max;
};

static uint64_t hash_bytes(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (n * 0xC2B2AE3D27D4EB4FULL);
    while (n >= 8) {
        uint64_t w = load64(b);
        h = (h ^ (w * 0xBF58476D1CE4E5B9ULL)) * 0x94D049BB133111EBULL;
        h ^= h >> 29;
        b += 8;
        n -= 8;
    }
    /* the last 0..7 bytes, as overlapping loads (the length is already in h) */
    uint64_t w = n >= 4 ? (uint64_t)load32(b) << 32 | load32(b + n - 4)
               : n ? (uint64_t)b[0] << 16 | (uint64_t)b[n / 2] << 8 | b[n - 1] : 0;
    h = (h ^ (w * 0xBF58476D1CE4E5B9ULL)) * 0x94D049BB133111EBULL;
    h ^= h >> 31;
    return h;
}

/* The hash of (window, key) from the key's hash: both halves (slot bits and tag) depend on both. */
static inline uint64_t win_hash(uint64_t hk, int64_t win)
{
    uint64_t h = (hk ^ (uint64_t)win) * 0xD6E8FEB86659FD93ULL;
    return h ^ (h >> 32);
}

static void wt_rehash(em__wtask *t, size_t nslot)
{
    free(t->slot);
    t->slot = em__calloc(nslot, sizeof *t->slot);
    t->nslot = nslot;
    for (size_t i = 0; i < t->n; i++) {
        size_t j = t->e[i].hash & (nslot - 1);
        while (t->slot[j]) j = (j + 1) & (nslot - 1);
        t->slot[j] = (t->e[i].hash & TAG_MASK) | (i + 1);
    }
}

/* The accumulator of (win, key) with hash h, a zeroed one inserted if absent. */
static uint8_t *wt_get(em__wtask *t, uint64_t h, int64_t win, const void *k, uint32_t kl)
{
    if (2 * (t->n + 1) > t->nslot) wt_rehash(t, t->nslot ? 2 * t->nslot : 4096);
    const size_t mask = t->nslot - 1;
    const uint64_t tag = h & TAG_MASK;
    size_t j = h & mask;
    for (uint64_t s; (s = t->slot[j]); j = (j + 1) & mask) {
        if ((s & TAG_MASK) != tag) continue;
        size_t i = (s & ~TAG_MASK) - 1;
        const tent *e = &t->e[i];
        if (e->win == win && e->klen == kl && memcmp(t->keys + e->koff, k, kl) == 0) return t->accs + i * t->as;
    }
    EM_ASSERT(t->n < UINT32_MAX - 1);
    if (t->n == t->ecap) {
        t->ecap = t->ecap ? 2 * t->ecap : 1024;
        t->e = em__realloc(t->e, t->ecap * sizeof *t->e);
        t->accs = em__realloc(t->accs, t->ecap * t->as);
    }
    if (t->klen + kl > t->kcap) {
        while (t->klen + kl > t->kcap) t->kcap = t->kcap ? 2 * t->kcap : 16384;
        t->keys = em__realloc(t->keys, t->kcap);
    }
    if (kl) memcpy(t->keys + t->klen, k, kl);
    t->e[t->n] = (tent){h, win, t->klen, kl};
    t->klen += kl;
    uint8_t *a = t->accs + t->n * t->as;
    if (t->as == 8) put64(a, 0);
    else memset(a, 0, t->as);
    t->slot[j] = tag | ++t->n;
    return a;
}

em__wtask *em__wtask_new(const em_stream_opts *o, int64_t wm, int64_t part)
{
    em__wtask *t = em__calloc(1, sizeof *t);
    t->part = part;
    t->o = o;
    t->agg = o->agg;
    t->as = em__acc_size(o->agg);
    t->wm = wm;
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

void em__wtask_add(em__wtask *t, int64_t tm, const void *key, uint32_t klen, const void *val, uint32_t vlen,
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
    num v = {1, 0, 0};
    if (t->agg != EM_STREAM_COUNT && parse_num(val, vlen, &v) < 0) {
        report_bad(t, off, rec, "value is not a number:", val, vlen);
        return;
    }
    const uint64_t hk = hash_bytes(key, klen);
    for (int64_t s = last; s > tm - W && s + W > wm; s -= S) acc_add(t->agg, wt_get(t, win_hash(hk, s), s, key, klen), &v);
}

static void wt_free(em__wtask *t)
{
    free(t->slot);
    free(t->e);
    free(t->accs);
    free(t->keys);
    free(t);
}

int em__wtask_finish(em__wtask *t, em_emitter *out)
{
    if (!t) return 0;
    int rc = 0;
    if (!out) goto done;
    /* The table is no longer needed for lookups: free the slots before the sort allocates. */
    free(t->slot);
    t->slot = NULL;
    sitem *it = em__malloc((t->n ? t->n : 1) * sizeof *it);
    uint32_t maxk = 0;
    for (size_t i = 0; i < t->n; i++) {
        const tent *e = &t->e[i];
        const uint8_t *k = t->keys + e->koff;
        it[i] = (sitem){(uint64_t)e->win ^ 0x8000000000000000ULL, key_prefix(k, e->klen), k, e->klen, (uint32_t)i};
        if (e->klen > maxk) maxk = e->klen;
    }
    sort_items(it, t->n);
    uint8_t *kb = em__malloc(8 + (size_t)maxk);
    for (size_t i = 0; i < t->n && rc >= 0; i++) {
        em_i64_put(kb, t->e[it[i].idx].win);
        if (it[i].kl) memcpy(kb + 8, it[i].k, it[i].kl);
        rc = em_emit(out, kb, 8 + it[i].kl, t->accs + (size_t)it[i].idx * t->as, (uint32_t)t->as);
    }
    free(kb);
    free(it);
    uint8_t s[EM__WSTATS_LEN] = {0};
    put64(s, t->events);
    put64(s + 8, t->late);
    put64(s + 16, t->bad);
    put64(s + 24, (uint64_t)t->max_t);
    s[32] = (uint8_t)t->has_max;
    if (rc >= 0) rc = em_emit(out, "", 0, s, EM__WSTATS_LEN);
    if (t->bad > BAD_REPORT_MAX)
        EM_LOG_W("%s: %" PRIu64 " more bad events in this task were skipped and not listed", t->o->log_dir,
                 t->bad - BAD_REPORT_MAX);
done:
    wt_free(t);
    return rc;
}

/* ---- runs: a window's sorted keys ---- */

static void run_release(em__wrun *r)
{
    free(r->koff);
    free(r->keys);
    free(r->accs);
    memset(r, 0, sizeof *r);
}

static void run_reserve(em__wrun *r, size_t n, size_t kbytes, size_t as)
{
    if (!r->koff || n > r->cap) {
        size_t c = r->cap ? r->cap : 64;
        while (c < n) c *= 2;
        r->koff = em__realloc(r->koff, (c + 1) * sizeof *r->koff);
        r->accs = em__realloc(r->accs, c * as);
        if (!r->cap) r->koff[0] = 0;
        r->cap = c;
    }
    size_t used = r->koff[r->n];
    if (!r->keys || used + kbytes > r->kcap) {
        size_t c = r->kcap ? r->kcap : 1024;
        while (c < used + kbytes) c *= 2;
        r->kcap = c;
        r->keys = em__realloc(r->keys, c);
    }
}

/* Appends (key, acc); the caller reserved room. */
static inline void run_append(em__wrun *r, const uint8_t *k, uint32_t kl, const uint8_t *a, size_t as)
{
    size_t o = r->koff[r->n];
    if (kl) memcpy(r->keys + o, k, kl);
    memcpy(r->accs + r->n * as, a, as);
    r->koff[++r->n] = o + kl;
}

void em__wrun_push(em__wrun *r, const void *key, uint32_t klen, const uint8_t *a, size_t as)
{
    run_reserve(r, r->n + 1, klen, as);
    run_append(r, key, klen, a, as);
}

int em__wrun_seal(em__wrun *r, size_t as)
{
    int sorted = 1;
    for (size_t i = 1; i < r->n && sorted; i++)
        sorted = key_cmp(r->keys + r->koff[i - 1], (uint32_t)(r->koff[i] - r->koff[i - 1]), r->keys + r->koff[i],
                         (uint32_t)(r->koff[i + 1] - r->koff[i])) < 0;
    if (sorted) return 0;
    sitem *it = em__malloc(r->n * sizeof *it);
    for (size_t i = 0; i < r->n; i++) {
        const uint8_t *k = r->keys + r->koff[i];
        uint32_t kl = (uint32_t)(r->koff[i + 1] - r->koff[i]);
        it[i] = (sitem){0, key_prefix(k, kl), k, kl, (uint32_t)i};
    }
    sort_items(it, r->n);
    em__wrun s = {0};
    run_reserve(&s, r->n, r->koff[r->n], as);
    int rc = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (i && key_cmp(it[i - 1].k, it[i - 1].kl, it[i].k, it[i].kl) == 0) rc = -1;
        run_append(&s, it[i].k, it[i].kl, r->accs + (size_t)it[i].idx * as, as);
    }
    free(it);
    run_release(r);
    *r = s;
    return rc;
}

/* ---- the state ---- */

void em__wstate_release(em__wstate *s)
{
    for (size_t w = 0; w < s->n; w++) run_release(&s->wins[w].run);
    free(s->wins);
    s->wins = NULL;
    s->n = s->cap = 0;
}

em__win *em__wstate_win(em__wstate *s, int64_t start)
{
    size_t lo = 0, hi = s->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (s->wins[mid].start < start) lo = mid + 1;
        else hi = mid;
    }
    if (lo < s->n && s->wins[lo].start == start) return &s->wins[lo];
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        s->wins = em__realloc(s->wins, s->cap * sizeof *s->wins);
    }
    memmove(&s->wins[lo + 1], &s->wins[lo], (s->n - lo) * sizeof *s->wins);
    s->n++;
    memset(&s->wins[lo], 0, sizeof s->wins[lo]);
    s->wins[lo].start = start;
    return &s->wins[lo];
}

/* A run of partial records: collected records [b, e) of one window with strictly increasing keys. */
typedef struct prun {
    int64_t win;
    size_t b, e;
    size_t seq; /* collect order */
} prun;

static int prun_cmp(const void *pa, const void *pb)
{
    const prun *a = pa, *b = pb;
    if (a->win != b->win) return a->win < b->win ? -1 : 1;
    return (a->seq > b->seq) - (a->seq < b->seq);
}

/* A cursor of the k-way merge: over the state's run (recs == NULL) or over partial records. */
typedef struct cur {
    const em__wrun *run;
    const em_rec *recs;
    size_t i, end, as;
    const uint8_t *k, *a;
    uint32_t kl;
    uint64_t pre; /* key_prefix(k, kl): most comparisons end there */
} cur;

static inline int cur_load(cur *c)
{
    if (c->i >= c->end) return 0;
    if (c->recs) {
        const em_rec *x = &c->recs[c->i];
        c->k = (const uint8_t *)x->key + 8;
        c->kl = x->klen - 8;
        c->a = x->val;
    } else {
        c->k = c->run->keys + c->run->koff[c->i];
        c->kl = (uint32_t)(c->run->koff[c->i + 1] - c->run->koff[c->i]);
        c->a = c->run->accs + c->i * c->as;
    }
    c->pre = key_prefix(c->k, c->kl);
    return 1;
}

/* Heap order: key, then cursor index (so equal keys combine in collect order, the state first). */
static inline int cur_less(const cur *c, size_t x, size_t y)
{
    if (c[x].pre != c[y].pre) return c[x].pre < c[y].pre;
    int r = key_cmp(c[x].k, c[x].kl, c[y].k, c[y].kl);
    return r ? r < 0 : x < y;
}

static void heap_down(size_t *h, size_t n, const cur *c, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, m = i;
        if (l < n && cur_less(c, h[l], h[m])) m = l;
        if (l + 1 < n && cur_less(c, h[l + 1], h[m])) m = l + 1;
        if (m == i) return;
        size_t t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

/* win's run := the k-way merge of itself and the partial runs p[0, np) (records of r). */
static void merge_window(em__wstate *s, em__win *w, const em_records *r, const prun *p, size_t np)
{
    const size_t as = em__acc_size(s->agg);
    size_t nc = np + 1, total = w->run.n, kbytes = w->run.n ? w->run.koff[w->run.n] : 0;
    cur *c = em__calloc(nc, sizeof *c);
    size_t *h = em__malloc(nc * sizeof *h), nh = 0;
    c[0] = (cur){&w->run, NULL, 0, w->run.n, as, NULL, NULL, 0, 0};
    for (size_t i = 0; i < np; i++) {
        c[i + 1] = (cur){NULL, r->recs, p[i].b, p[i].e, as, NULL, NULL, 0, 0};
        total += p[i].e - p[i].b;
        for (size_t j = p[i].b; j < p[i].e; j++) kbytes += r->recs[j].klen - 8;
    }
    for (size_t i = 0; i < nc; i++)
        if (cur_load(&c[i])) h[nh++] = i;
    for (size_t i = nh / 2; i-- > 0;) heap_down(h, nh, c, i);
    em__wrun out = {0};
    run_reserve(&out, total, kbytes, as);
    uint64_t last_pre = 0;
    while (nh) {
        cur *m = &c[h[0]];
        if (out.n && m->pre == last_pre &&
            key_cmp(out.keys + out.koff[out.n - 1], (uint32_t)(out.koff[out.n] - out.koff[out.n - 1]), m->k, m->kl) == 0) {
            acc_merge(s->agg, out.accs + (out.n - 1) * as, m->a);
        } else {
            run_append(&out, m->k, m->kl, m->a, as);
            last_pre = m->pre;
        }
        m->i++;
        if (!cur_load(m)) h[0] = h[--nh];
        heap_down(h, nh, c, 0);
    }
    free(c);
    free(h);
    run_release(&w->run);
    w->run = out;
}

void em__wstate_merge(em__wstate *s, const em_records *r, em__wbatch *b)
{
    const size_t as = em__acc_size(s->agg);
    prun *p = NULL;
    size_t np = 0, pcap = 0;
    *b = (em__wbatch){0, 0, 0, INT64_MIN};
    uint64_t prev_pre = 0;
    for (size_t i = 0; i < r->n; i++) {
        const em_rec *x = &r->recs[i];
        if (x->klen == 0) {
            if (x->vlen != EM__WSTATS_LEN) continue;
            const uint8_t *v = x->val;
            b->events += get64(v);
            b->late += get64(v + 8);
            b->bad += get64(v + 16);
            if (v[32] && (int64_t)get64(v + 24) > b->max_t) b->max_t = (int64_t)get64(v + 24);
            continue; /* it also ends the task's last run: the next record is not adjacent to it */
        }
        EM_ASSERT(x->klen >= 8 && x->vlen == as);
        const uint8_t *xk = x->key;
        int64_t win = (int64_t)(load_be64(xk) ^ 0x8000000000000000ULL); /* em_i64_get */
        uint64_t pre = key_prefix(xk + 8, x->klen - 8), yp = prev_pre;
        prev_pre = pre;
        if (np && p[np - 1].e == i && p[np - 1].win == win) {
            const em_rec *y = &r->recs[i - 1];
            if (yp < pre || (yp == pre && key_cmp((const uint8_t *)y->key + 8, y->klen - 8, xk + 8, x->klen - 8) < 0)) {
                p[np - 1].e = i + 1;
                continue;
            }
        }
        if (np == pcap) {
            pcap = pcap ? 2 * pcap : 64;
            p = em__realloc(p, pcap * sizeof *p);
        }
        p[np] = (prun){win, i, i + 1, np};
        np++;
    }
    qsort(p, np, sizeof *p, prun_cmp);
    for (size_t i = 0, j; i < np; i = j) {
        for (j = i + 1; j < np && p[j].win == p[i].win; j++) {}
        merge_window(s, em__wstate_win(s, p[i].win), r, p + i, j - i);
    }
    free(p);
}

/* ---- output rows ---- */

/* Writes v in decimal at d; returns the bytes written (at most 20). */
static inline size_t fmt_u64(char *d, uint64_t v)
{
    char t[20];
    size_t i = sizeof t;
    do {
        t[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    memcpy(d, t + i, sizeof t - i);
    return sizeof t - i;
}

static size_t fmt_i64(char *d, int64_t v)
{
    if (v >= 0) return fmt_u64(d, (uint64_t)v);
    *d = '-';
    return 1 + fmt_u64(d + 1, -(uint64_t)v);
}

static size_t fmt_i128(char *d, i128 v)
{
    char t[48];
    size_t i = sizeof t;
    u128 u = v < 0 ? -(u128)v : (u128)v;
    do {
        t[--i] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u);
    if (v < 0) t[--i] = '-';
    memcpy(d, t + i, sizeof t - i);
    return sizeof t - i;
}

#define VALUE_MAX 48 /* bytes of a printed value: %.17g is at most 24, an int128 at most 40 */

static size_t fmt_value(char *d, em_stream_agg agg, const uint8_t *p)
{
    if (agg == EM_STREAM_COUNT) return fmt_i64(d, (int64_t)get64(p));
    acc a;
    acc_decode(agg, p, &a);
    switch (agg) {
    case EM_STREAM_SUM:
        if (!a.nfloat) return fmt_i128(d, a.isum);
        return (size_t)snprintf(d, VALUE_MAX, "%.17g", (double)a.isum + a.fsum);
    case EM_STREAM_AVG: return (size_t)snprintf(d, VALUE_MAX, "%.17g", ((double)a.isum + a.fsum) / (double)a.n);
    default:
        if (a.kind == 1) return fmt_i64(d, a.xi);
        return (size_t)snprintf(d, VALUE_MAX, "%.17g", a.xf);
    }
}

/* A CSV field (RFC 4180): quoted when it holds a comma, a quote, CR or LF; quotes doubled. At most 2 n + 2 bytes. */
static size_t fmt_csv_field(char *d, const uint8_t *k, size_t n)
{
    static const uint8_t special[256] = {[','] = 1, ['"'] = 1, ['\r'] = 1, ['\n'] = 1};
    size_t i = 0;
    while (i < n && !special[k[i]]) i++;
    if (i == n) {
        if (n) memcpy(d, k, n);
        return n;
    }
    char *q = d;
    *q++ = '"';
    for (i = 0; i < n; i++) {
        *q++ = (char)k[i];
        if (k[i] == '"') *q++ = '"';
    }
    *q++ = '"';
    return (size_t)(q - d);
}

uint64_t em__wstate_emit(em__wstate *s, int64_t wm, em__buf *rows)
{
    const int64_t W = s->window_ms;
    const size_t as = em__acc_size(s->agg);
    uint64_t nrows = 0;
    size_t k = 0;
    for (; k < s->n && (wm == INT64_MAX || s->wins[k].start + W <= wm); k++) {
        em__win *w = &s->wins[k];
        const em__wrun *r = &w->run;
        char head[64];
        size_t hl = fmt_i64(head, w->start);
        head[hl++] = ',';
        hl += fmt_i64(head + hl, w->start + W);
        head[hl++] = ',';
        for (size_t i = 0; i < r->n; i++) {
            size_t kl = r->koff[i + 1] - r->koff[i];
            size_t need = hl + 2 * kl + 2 + 1 + VALUE_MAX + 1;
            if (rows->len + need > rows->cap) em__buf_grow(rows, need);
            char *d = (char *)rows->p + rows->len, *d0 = d;
            memcpy(d, head, hl);
            d += hl;
            d += fmt_csv_field(d, r->keys + r->koff[i], kl);
            *d++ = ',';
            d += fmt_value(d, s->agg, r->accs + i * as);
            *d++ = '\n';
            rows->len += (size_t)(d - d0);
        }
        nrows += r->n;
        run_release(&w->run);
    }
    memmove(s->wins, s->wins + k, (s->n - k) * sizeof *s->wins);
    s->n -= k;
    return nrows;
}
