/* window.c — the state of event-time windows in the streaming engine (shared DESIGN.md §7; semantics in the
 * em_stream_* section of include/ember.h, formats in scheduler/stream.h): numbers and accumulators, the window
 * state of one key partition (one sorted run of keys per open window; keystate.c keeps the partitions), the merge
 * of a batch's partials into it, closed windows as row records, and the CSV rows of closed windows. The per-task
 * stage that makes the partials is wtask.c.
 *
 * Why runs (1M distinct keys per window is the benchmark's case): a batch's partials for a window arrive as runs
 * sorted by key (one per task and key partition; wtask.c sorts them in the tasks, in parallel), so merging them into
 * the state is a k-way merge (sequential memory, no hashing of the keys again), and a closed window is already in
 * key order: its rows are the merge of one sorted run per key partition (disjoint keys), no sort.
 */
#include "scheduler/stream.h"

#include "operators/sources/csvparse.h"
#include "runtime/log.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NUM_MAX 127 /* bytes: a longer value is not a number */

static const char *const agg_names[] = {"count", "sum", "min", "max", "avg", "user"};

int em_stream_agg_parse(const char *name)
{
    for (int i = 0; i <= EM_STREAM_AVG; i++)
        if (name && strcmp(name, agg_names[i]) == 0) return i;
    return -1;
}

const char *em_stream_agg_name(em_stream_agg agg) { return (unsigned)agg <= EM_STREAM_USER ? agg_names[agg] : "?"; }

/* ---- numbers and accumulators ---- */

__extension__ typedef __int128 i128;
__extension__ typedef unsigned __int128 u128;

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

/* Grammar (the e2e test's python3 check implements the same):
 *   integer = [+-]? digits                                (within int64; larger ones are read as doubles)
 *   decimal = [+-]? (digits [. digits*] | . digits) ([eE] [+-]? digits)?   finite after rounding
 * at most NUM_MAX bytes, no spaces. Returns 0 or -1. */
int em__num_parse(const char *s, size_t n, em__num *out)
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
            *out = (em__num){1, v, 0};
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
    *out = (em__num){0, 0, f};
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

em__agg em__agg_builtin(em_stream_agg kind)
{
    EM_ASSERT((unsigned)kind <= EM_STREAM_AVG);
    return (em__agg){kind, kind == EM_STREAM_COUNT ? 8 : kind == EM_STREAM_SUM || kind == EM_STREAM_AVG ? 40 : 17,
                     NULL};
}

em__agg em__agg_of(const em_stream_opts *o)
{
    if (o->agg != EM_STREAM_USER) return em__agg_builtin(o->agg);
    return (em__agg){EM_STREAM_USER, o->combine->acc_size, o->combine};
}

static void acc_encode(em_stream_agg agg, const acc *a, uint8_t *p)
{
    em__put64(p, (uint64_t)a->n);
    if (agg == EM_STREAM_SUM || agg == EM_STREAM_AVG) {
        em__put64(p + 8, (uint64_t)a->nfloat);
        em__put64(p + 16, (uint64_t)a->isum);
        em__put64(p + 24, (uint64_t)(a->isum >> 64));
        em__put64(p + 32, dbits(a->fsum));
    } else if (agg != EM_STREAM_COUNT) {
        p[8] = (uint8_t)a->kind;
        em__put64(p + 9, a->kind == 2 ? dbits(a->xf) : (uint64_t)a->xi);
    }
}

static void acc_decode(em_stream_agg agg, const uint8_t *p, acc *a)
{
    memset(a, 0, sizeof *a);
    a->n = (int64_t)em__get64(p);
    if (agg == EM_STREAM_SUM || agg == EM_STREAM_AVG) {
        a->nfloat = (int64_t)em__get64(p + 8);
        a->isum = (i128)(((u128)em__get64(p + 24) << 64) | em__get64(p + 16));
        a->fsum = bitsd(em__get64(p + 32));
    } else if (agg != EM_STREAM_COUNT) {
        a->kind = p[8];
        if (a->kind == 2) a->xf = bitsd(em__get64(p + 9));
        else a->xi = (int64_t)em__get64(p + 9);
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

void em__acc_add(em_stream_agg agg, uint8_t *p, const em__num *v)
{
    if (agg == EM_STREAM_COUNT) {
        em__put64(p, em__get64(p) + 1);
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

void em__acc_merge_user(const em__agg *ag, uint8_t *p, const uint8_t *q)
{
    _Alignas(16) uint8_t a[EM_STREAM_ACC_MAX], b[EM_STREAM_ACC_MAX];
    memcpy(a, p, ag->size);
    memcpy(b, q, ag->size);
    ag->user->merge(a, b, ag->user->arg);
    memcpy(p, a, ag->size);
}

/* p += q, both encoded. */
static inline void acc_merge(const em__agg *ag, uint8_t *p, const uint8_t *q)
{
    const em_stream_agg agg = ag->kind;
    if (agg == EM_STREAM_COUNT) {
        em__put64(p, em__get64(p) + em__get64(q));
        return;
    }
    if (agg == EM_STREAM_USER) {
        em__acc_merge_user(ag, p, q);
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

/* Appends (key, acc). */
static inline void run_append(em__wrun *r, const uint8_t *k, uint32_t kl, const uint8_t *a, size_t as)
{
    if (r->n == r->cap || r->koff[r->n] + kl > r->kcap) run_reserve(r, r->n + 1, kl, as);
    size_t o = r->koff[r->n];
    if (kl) memcpy(r->keys + o, k, kl);
    memcpy(r->accs + r->n * as, a, as);
    r->koff[++r->n] = o + kl;
}

void em__wrun_reserve(em__wrun *r, size_t n, size_t kbytes, size_t as)
{
    run_reserve(r, r->n + n, (r->koff ? r->koff[r->n] : 0) + kbytes, as);
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
        sorted = em__key_cmp(r->keys + r->koff[i - 1], (uint32_t)(r->koff[i] - r->koff[i - 1]), r->keys + r->koff[i],
                         (uint32_t)(r->koff[i + 1] - r->koff[i])) < 0;
    if (sorted) return 0;
    em__sitem *it = em__malloc(r->n * sizeof *it);
    for (size_t i = 0; i < r->n; i++) {
        const uint8_t *k = r->keys + r->koff[i];
        uint32_t kl = (uint32_t)(r->koff[i + 1] - r->koff[i]);
        it[i] = (em__sitem){0, em__key_prefix(k, kl), k, kl, (uint32_t)i};
    }
    em__sort_items(it, r->n);
    em__wrun s = {0};
    run_reserve(&s, r->n, r->koff[r->n], as);
    int rc = 0;
    for (size_t i = 0; i < r->n; i++) {
        if (i && em__key_cmp(it[i - 1].k, it[i - 1].kl, it[i].k, it[i].kl) == 0) rc = -1;
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

static int prun_cmp(const void *pa, const void *pb)
{
    const em__prun *a = pa, *b = pb;
    if (a->k != b->k) return a->k < b->k ? -1 : 1;
    if (a->win != b->win) return a->win < b->win ? -1 : 1;
    return (a->seq > b->seq) - (a->seq < b->seq);
}

/* A cursor of the k-way merge: over the state's run (recs == NULL) or over the blocks of a partial run. */
typedef struct cur {
    const em__wrun *run;
    const em_rec *recs;
    size_t i, end, as;           /* entry (state) or record (partials) index, and its end */
    const uint8_t *pos, *vend;   /* partials: the next entry in block i, the block's end */
    const uint8_t *k, *a;
    uint32_t kl;
    uint64_t pre; /* em__key_prefix(k, kl): most comparisons end there */
} cur;

/* Moves c to its next entry (the first one after cur_start); 0 at the end. */
static inline int cur_load(cur *c)
{
    if (c->recs) {
        while (c->pos == c->vend) {
            if (++c->i >= c->end) return 0;
            const em_rec *x = &c->recs[c->i];
            c->pos = (const uint8_t *)x->val + 1;
            c->vend = (const uint8_t *)x->val + x->vlen;
        }
        uint32_t kl = 0;
        for (int sh = 0;; sh += 7) {
            EM_ASSERT(c->pos < c->vend && sh < 35);
            uint8_t b = *c->pos++;
            kl |= (uint32_t)(b & 127) << sh;
            if (!(b & 128)) break;
        }
        EM_ASSERT((size_t)(c->vend - c->pos) >= kl + c->as);
        uint64_t pre = em__key_prefix(c->pos, kl);
        /* partials come sorted from em__wtask_finish: a merge relies on it */
        EM_ASSERT(!c->k || pre > c->pre || (pre == c->pre && em__key_cmp(c->k, c->kl, c->pos, kl) < 0));
        c->k = c->pos;
        c->kl = kl;
        c->a = c->pos + kl;
        c->pos += kl + c->as;
        c->pre = pre;
        return 1;
    }
    if (c->i >= c->end) return 0;
    c->k = c->run->keys + c->run->koff[c->i];
    c->kl = (uint32_t)(c->run->koff[c->i + 1] - c->run->koff[c->i]);
    c->a = c->run->accs + c->i * c->as;
    c->pre = em__key_prefix(c->k, c->kl);
    c->i++;
    return 1;
}

/* A cursor over partial records [b, e), before its first entry. */
static cur cur_partials(const em_rec *recs, size_t b, size_t e, size_t as)
{
    cur c = {0};
    c.recs = recs;
    c.i = b;
    c.end = e;
    c.as = as;
    c.pos = (const uint8_t *)recs[b].val + 1;
    c.vend = (const uint8_t *)recs[b].val + recs[b].vlen;
    return c;
}

/* Heap order: key, then cursor index (so equal keys combine in collect order, the state first). */
static inline int cur_less(const cur *c, size_t x, size_t y)
{
    if (c[x].pre != c[y].pre) return c[x].pre < c[y].pre;
    int r = em__key_cmp(c[x].k, c[x].kl, c[y].k, c[y].kl);
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
static void merge_window(em__wstate *s, em__win *w, const em_records *r, const em__prun *p, size_t np)
{
    const size_t as = s->ag.size;
    size_t nc = np + 1, bytes = 0;
    cur *c = em__calloc(nc, sizeof *c);
    size_t *h = em__malloc(nc * sizeof *h), nh = 0;
    c[0] = (cur){0};
    c[0].run = &w->run;
    c[0].end = w->run.n;
    c[0].as = as;
    for (size_t i = 0; i < np; i++) {
        c[i + 1] = cur_partials(r->recs, p[i].b, p[i].e, as);
        for (size_t j = p[i].b; j < p[i].e; j++) bytes += r->recs[j].vlen;
    }
    for (size_t i = 0; i < nc; i++)
        if (cur_load(&c[i])) h[nh++] = i;
    for (size_t i = nh / 2; i-- > 0;) heap_down(h, nh, c, i);
    em__wrun out = {0};
    /* room for the state and, at most, one entry per (1 + as) bytes of partials (run_append grows if needed) */
    run_reserve(&out, w->run.n + bytes / (1 + as), (w->run.n ? w->run.koff[w->run.n] : 0) + bytes, as);
    uint64_t last_pre = 0;
    while (nh) {
        cur *m = &c[h[0]];
        const size_t o = out.n ? out.koff[out.n - 1] : 0, ol = out.n ? out.koff[out.n] - o : 0;
        if (out.n && m->pre == last_pre && em__key_cmp(out.keys + o, (uint32_t)ol, m->k, m->kl) == 0) {
            acc_merge(&s->ag, out.accs + (out.n - 1) * as, m->a);
        } else {
            run_append(&out, m->k, m->kl, m->a, as);
            last_pre = m->pre;
        }
        if (!cur_load(m)) h[0] = h[--nh];
        heap_down(h, nh, c, 0);
    }
    free(c);
    free(h);
    run_release(&w->run);
    w->run = out;
}

void em__wstate_merge_run(em__wstate *s, em__win *pw)
{
    const size_t as = s->ag.size;
    em__win *w = em__wstate_win(s, pw->start);
    const em__wrun *a = &w->run, *b = &pw->run;
    if (!a->n) { /* a new window: the partials are its run */
        run_release(&w->run);
        w->run = pw->run;
        memset(&pw->run, 0, sizeof pw->run);
        return;
    }
    em__wrun out = {0};
    run_reserve(&out, a->n + b->n, a->koff[a->n] + (b->n ? b->koff[b->n] : 0), as);
    size_t i = 0, j = 0;
    /* a two-way merge, the state first on equal keys (as merge_window) */
    while (i < a->n || j < b->n) {
        const uint8_t *ak = a->keys + (i < a->n ? a->koff[i] : 0), *bk = b->keys + (j < b->n ? b->koff[j] : 0);
        uint32_t al = i < a->n ? (uint32_t)(a->koff[i + 1] - a->koff[i]) : 0;
        uint32_t bl = j < b->n ? (uint32_t)(b->koff[j + 1] - b->koff[j]) : 0;
        int c = i == a->n ? 1 : j == b->n ? -1 : em__key_cmp(ak, al, bk, bl);
        if (c < 0) {
            run_append(&out, ak, al, a->accs + i * as, as);
            i++;
        } else if (c > 0) {
            run_append(&out, bk, bl, b->accs + j * as, as);
            j++;
        } else {
            run_append(&out, ak, al, a->accs + i * as, as);
            acc_merge(&s->ag, out.accs + (out.n - 1) * as, b->accs + j * as);
            i++;
            j++;
        }
    }
    run_release(&w->run);
    w->run = out;
}

/* The window of a partial or row record: em_i64_get of the key's last 8 bytes. */
static int64_t rec_win(const em_rec *x)
{
    return (int64_t)(em__load_be64((const uint8_t *)x->key + x->klen - 8) ^ 0x8000000000000000ULL);
}

/* Appends record i (key of klen bytes: the partial or row layout of stream.h) to the runs: it continues the last
 * run when its flag says so and that run is of the same partition and window and ends just before it. */
static void runs_add(em__prun **p, size_t *np, size_t *pcap, const em_records *r, size_t i, int k)
{
    const em_rec *x = &r->recs[i];
    int64_t win = rec_win(x);
    if ((((const uint8_t *)x->val)[0] & 1) && *np && (*p)[*np - 1].e == i && (*p)[*np - 1].win == win &&
        (*p)[*np - 1].k == k) {
        (*p)[*np - 1].e = i + 1;
        return;
    }
    if (*np == *pcap) {
        *pcap = *pcap ? 2 * *pcap : 64;
        *p = em__realloc(*p, *pcap * sizeof **p);
    }
    (*p)[*np] = (em__prun){win, i, i + 1, *np, k};
    (*np)++;
}

void em__partials_index(const em_records *r, int K, em__prun **runs, size_t **first, em__wbatch *b)
{
    em__prun *p = NULL;
    size_t np = 0, pcap = 0;
    *b = (em__wbatch){0, 0, 0, INT64_MIN};
    for (size_t i = 0; r && i < r->n; i++) {
        const em_rec *x = &r->recs[i];
        if (x->klen == 0) {
            if (x->vlen != EM__WSTATS_LEN) continue;
            const uint8_t *v = x->val;
            b->events += em__get64(v);
            b->late += em__get64(v + 8);
            b->bad += em__get64(v + 16);
            if (v[32] && (int64_t)em__get64(v + 24) > b->max_t) b->max_t = (int64_t)em__get64(v + 24);
            continue; /* it also ends the task's last run: the next record is not adjacent to it */
        }
        if (x->klen == 1) continue; /* the poll's record, collected with the batch (stream.c) */
        EM_ASSERT(x->klen == 10 && x->vlen >= 1);
        const uint8_t *kb = x->key;
        int k = kb[0] << 8 | kb[1];
        EM_ASSERT(k < K);
        runs_add(&p, &np, &pcap, r, i, k);
    }
    if (np) qsort(p, np, sizeof *p, prun_cmp);
    size_t *f = em__calloc((size_t)K + 1, sizeof *f);
    for (size_t i = 0; i < np; i++) f[p[i].k + 1]++;
    for (int k = 0; k < K; k++) f[k + 1] += f[k];
    *runs = p;
    *first = f;
}

void em__wstate_merge(em__wstate *s, const em_records *r, const em__prun *p, size_t np)
{
    for (size_t i = 0, j; i < np; i = j) {
        for (j = i + 1; j < np && p[j].win == p[i].win; j++) {}
        merge_window(s, em__wstate_win(s, p[i].win), r, p + i, j - i);
    }
}

uint64_t em__wstate_keys(const em__wstate *s)
{
    uint64_t n = 0;
    for (size_t w = 0; w < s->n; w++) n += s->wins[w].run.n;
    return n;
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

#define VALUE_MAX 48 /* bytes of a printed built-in value: %.17g is at most 24, an int128 at most 40 */
#define USER_VALUE_MAX (2 * EM_STREAM_VALUE_MAX + 2) /* a user's value, quoted */

/* The user's value of the accumulator p, as a CSV field: at most USER_VALUE_MAX bytes. */
static size_t fmt_user(char *d, const em__agg *ag, const uint8_t *p)
{
    _Alignas(16) uint8_t a[EM_STREAM_ACC_MAX];
    char v[EM_STREAM_VALUE_MAX];
    memcpy(a, p, ag->size);
    size_t n = ag->user->format(a, v, sizeof v, ag->user->arg);
    return em__csv_quote(d, v, n < sizeof v ? n : sizeof v);
}

static size_t fmt_value(char *d, const em__agg *ag, const uint8_t *p)
{
    const em_stream_agg agg = ag->kind;
    if (agg == EM_STREAM_COUNT) return fmt_i64(d, (int64_t)em__get64(p));
    if (agg == EM_STREAM_USER) return fmt_user(d, ag, p);
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

size_t em__wstate_close(em__wstate *s, int64_t wm, em__win **closed, uint64_t *nrows)
{
    const int64_t W = s->window_ms;
    size_t k = 0;
    uint64_t nr = 0;
    while (k < s->n && (wm == INT64_MAX || s->wins[k].start + W <= wm)) nr += s->wins[k++].run.n;
    *closed = NULL;
    *nrows = nr;
    if (!k) return 0;
    *closed = em__malloc(k * sizeof **closed);
    memcpy(*closed, s->wins, k * sizeof **closed);
    memmove(s->wins, s->wins + k, (s->n - k) * sizeof *s->wins);
    s->n -= k;
    return k;
}

void em__wins_free(em__win *w, size_t n)
{
    for (size_t i = 0; i < n; i++) run_release(&w[i].run);
    free(w);
}

#define ROW_BLOCK 65536 /* bytes of entries in a row record (as wtask.c's partial records) */

int em__wins_emit(const em__agg *ag, const em__win *w, size_t n, em_emitter *out)
{
    const size_t as = ag->size;
    em__buf blk;
    em__buf_init(&blk);
    int rc = 0;
    uint8_t wk[8];
    for (size_t k = 0; k < n && rc >= 0; k++) {
        const em__wrun *r = &w[k].run;
        if (!r->n) continue;
        em_i64_put(wk, w[k].start);
        blk.len = 0;
        em__buf_grow(&blk, ROW_BLOCK + 16 + as);
        blk.p[blk.len++] = 0; /* the first block of this window */
        for (size_t i = 0; i < r->n && rc >= 0; i++) {
            if (blk.len > ROW_BLOCK) {
                rc = em_emit(out, wk, 8, blk.p, (uint32_t)blk.len);
                blk.len = 0;
                blk.p[blk.len++] = 1; /* continues it */
            }
            const size_t kl = r->koff[i + 1] - r->koff[i];
            em__buf_grow(&blk, 10 + kl + as);
            uint8_t *d = blk.p + blk.len;
            for (size_t v = kl;; v >>= 7) { /* LEB128 */
                *d++ = (uint8_t)((v & 127) | (v > 127 ? 128 : 0));
                if (v <= 127) break;
            }
            if (kl) memcpy(d, r->keys + r->koff[i], kl);
            d += kl;
            memcpy(d, r->accs + i * as, as);
            blk.len = (size_t)(d + as - blk.p);
        }
        if (rc >= 0) rc = em_emit(out, wk, 8, blk.p, (uint32_t)blk.len);
    }
    em__buf_release(&blk);
    return rc;
}

/* The runs of the row records of r (8-byte keys), sorted by (window, collect order). */
static em__prun *row_runs(const em_records *r, size_t *np)
{
    em__prun *p = NULL;
    size_t pcap = 0;
    *np = 0;
    for (size_t i = 0; i < r->n; i++)
        if (r->recs[i].klen == 8 && r->recs[i].vlen >= 1) runs_add(&p, np, &pcap, r, i, 0);
    if (*np) qsort(p, *np, sizeof *p, prun_cmp);
    return p;
}

void em__rows_text(const em__agg *ag, int64_t window_ms, const em_records *r, em__buf *rows)
{
    const int64_t W = window_ms;
    const size_t as = ag->size, vmax = ag->kind == EM_STREAM_USER ? USER_VALUE_MAX : VALUE_MAX;
    size_t np;
    em__prun *p = row_runs(r, &np);
    /* One reservation for every row: an upper bound (pages never written are never touched), so the buffer is not
     * grown and copied as the rows come. Per entry at least 1 + as bytes of records. */
    size_t bytes = 0;
    for (size_t i = 0; i < r->n; i++)
        if (r->recs[i].klen == 8) bytes += r->recs[i].vlen;
    if (bytes) em__buf_grow(rows, bytes / (1 + as) * (64 + 4 + vmax) + 2 * bytes);
    cur *c = em__malloc((np ? np : 1) * sizeof *c);
    size_t *h = em__malloc((np ? np : 1) * sizeof *h);
    for (size_t i = 0, j; i < np; i = j) {
        for (j = i + 1; j < np && p[j].win == p[i].win; j++) {}
        const int64_t start = p[i].win;
        char head[64];
        size_t hl = fmt_i64(head, start);
        head[hl++] = ',';
        hl += fmt_i64(head + hl, start + W);
        head[hl++] = ',';
        size_t nh = 0;
        for (size_t q = i; q < j; q++) {
            c[q - i] = cur_partials(r->recs, p[q].b, p[q].e, as);
            if (cur_load(&c[q - i])) h[nh++] = q - i;
        }
        for (size_t q = nh / 2; q-- > 0;) heap_down(h, nh, c, q);
        while (nh) {
            cur *m = &c[h[0]];
            size_t need = hl + 2 * (size_t)m->kl + 2 + 1 + vmax + 1;
            if (rows->len + need > rows->cap) em__buf_grow(rows, need);
            char *d = (char *)rows->p + rows->len, *d0 = d;
            memcpy(d, head, hl);
            d += hl;
            d += em__csv_quote(d, m->k, m->kl);
            *d++ = ',';
            d += fmt_value(d, ag, m->a);
            *d++ = '\n';
            rows->len += (size_t)(d - d0);
            if (!cur_load(m)) h[0] = h[--nh];
            if (nh > 1) heap_down(h, nh, c, 0);
        }
    }
    free(c);
    free(h);
    free(p);
}

/* ---- the windows section of a state file ---- */

static uint8_t *put_leb(uint8_t *d, uint64_t v)
{
    for (; v > 127; v >>= 7) *d++ = (uint8_t)(v | 128);
    *d++ = (uint8_t)v;
    return d;
}

void em__wstate_encode(const em__wstate *s, em__buf *b)
{
    const size_t as = s->ag.size;
    const int is_count = s->ag.kind == EM_STREAM_COUNT;
    size_t need = 8;
    for (size_t w = 0; w < s->n; w++) {
        const em__wrun *r = &s->wins[w].run;
        need += 16 + r->n * (5 + (as > 10 ? as : 10)) + (r->n ? r->koff[r->n] : 0);
    }
    em__buf_grow(b, need);
    uint8_t *d = b->p + b->len; /* room was made above: no bounds check per key */
    em__put64(d, s->n);
    d += 8;
    for (size_t w = 0; w < s->n; w++) {
        const em__wrun *r = &s->wins[w].run;
        em__put64(d, (uint64_t)s->wins[w].start);
        em__put64(d + 8, r->n);
        d += 16;
        for (size_t i = 0; i < r->n; i++) {
            size_t kl = r->koff[i + 1] - r->koff[i];
            d = put_leb(d, kl);
            if (kl) memcpy(d, r->keys + r->koff[i], kl);
            d += kl;
            if (is_count) {
                d = put_leb(d, em__get64(r->accs + i * 8));
            } else {
                memcpy(d, r->accs + i * as, as);
                d += as;
            }
        }
    }
    b->len = (size_t)(d - b->p);
}

int em__wstate_decode(em__wstate *s, const uint8_t **p, const uint8_t *end, int v1, int K, int k, int64_t *bad_win)
{
    const size_t as = s->ag.size;
    em__rd r;
    em__rd_init(&r, *p, (size_t)(end - *p));
    uint64_t nw = em__rd_le64(&r);
    for (uint64_t i = 0; i < nw && !r.err; i++) {
        int64_t start = (int64_t)em__rd_le64(&r);
        uint64_t nk = em__rd_le64(&r);
        em__win *wn = NULL;
        for (uint64_t j = 0; j < nk && !r.err; j++) {
            uint64_t kl = v1 ? em__rd_le32(&r) : em__rd_leb(&r);
            if (kl > UINT32_MAX) r.err = 1;
            const uint8_t *kp = em__rd_take(&r, (size_t)kl), *ap;
            uint8_t cnt[8];
            if (!v1 && s->ag.kind == EM_STREAM_COUNT) {
                em__put64(cnt, em__rd_leb(&r));
                ap = cnt;
            } else {
                ap = em__rd_take(&r, as);
            }
            if (r.err) break;
            if (K > 1 && em__key_part(kp, (size_t)kl, K) != k) continue;
            if (!wn) wn = em__wstate_win(s, start);
            em__wrun_push(&wn->run, kp, (uint32_t)kl, ap, as);
        }
        if (!r.err && wn && em__wrun_seal(&wn->run, as) < 0) {
            *bad_win = start;
            return -2;
        }
    }
    if (r.err) return -1;
    *p = r.p;
    return 0;
}
