/* operators.c — every operator of include/ember.h against a naive single-process implementation written here
 * (plain arrays, qsort, nested loops: no Ember code path), on random data from many seeds.
 *
 *     mpirun -np N build/tests/mpi/operators [-d DIR] SEED_FROM SEED_TO [CHECK...]
 *
 * Every rank generates the same data from a seed, builds the same datasets and calls the same actions in the
 * same order; every rank checks what it got (all ranks get the same results, so control flow never diverges).
 * The leader prints one line per check over all seeds, as soon as that check is done:
 *     PASS: NAME np=N seeds A..B          or          FAIL: NAME np=N seed S (K of M seeds): what went wrong
 * CHECK names restrict the run to those checks ("spill" runs only when named). DIR (default /tmp) receives the files of the foreach check.
 * Lines that tests/mpi/operators.sh compares across runs:
 *     SAMPLE seed=S f=F n=N k=K fp=X      the exact sample of (seed, fraction): must be the same at every np
 *     CALLS rank=R cached=C plain=P       map invocations on this rank in the cache check (every rank prints)
 *     CALLS want cached=C plain=P         what the sums over ranks must be (leader)
 * Exit status: 0 when every check passed on every rank.
 *
 * The data of a seed: keys drawn from a pool of short byte strings over an alphabet holding 0x00 (so keys
 * contain NUL bytes, are empty, or are prefixes of each other); a shape chosen by the seed: empty input, 1..3
 * records spread over many partitions (empty partitions), one hot key holding ~90% of the records, or a random
 * size. The "big" check uses records of 70 KiB and ~5 MiB (a fetch moves at most 4 MiB per chunk).
 */
#include "ember.h"

#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- records owned by the test, and the naive toolbox ------------------------------------------------------ */

typedef struct rec {
    uint8_t *k, *v;
    uint32_t kl, vl;
} rec;
typedef struct recs {
    rec *r;
    size_t n, cap;
} recs;

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        fprintf(stderr, "operators: out of memory (%zu bytes)\n", n);
        exit(3);
    }
    return p;
}

static void rs_add(recs *s, const void *k, uint32_t kl, const void *v, uint32_t vl)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 64;
        rec *r = realloc(s->r, s->cap * sizeof *r);
        if (!r) exit(3);
        s->r = r;
    }
    rec *r = &s->r[s->n++];
    r->k = xmalloc(kl);
    r->v = xmalloc(vl);
    if (kl) memcpy(r->k, k, kl);
    if (vl) memcpy(r->v, v, vl);
    r->kl = kl;
    r->vl = vl;
}

static void rs_free(recs *s)
{
    for (size_t i = 0; i < s->n; i++) {
        free(s->r[i].k);
        free(s->r[i].v);
    }
    free(s->r);
    memset(s, 0, sizeof *s);
}

/* Byte strings in byte order, a proper prefix first. */
static int bytes_cmp(const void *a, uint32_t al, const void *b, uint32_t bl)
{
    int c = al && bl ? memcmp(a, b, al < bl ? al : bl) : 0; /* an empty string may come as NULL */
    return c ? c : (al > bl) - (al < bl);
}
static int rec_cmp(const void *pa, const void *pb)
{
    const rec *a = pa, *b = pb;
    int c = bytes_cmp(a->k, a->kl, b->k, b->kl);
    return c ? c : bytes_cmp(a->v, a->vl, b->v, b->vl);
}
static int key_eq(const rec *a, const rec *b) { return a->kl == b->kl && !memcmp(a->k, b->k, a->kl); }

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}
static uint32_t get32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static void put64(uint8_t *p, int64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)((uint64_t)v >> (56 - 8 * i));
}
static int64_t get64(const uint8_t *p)
{
    uint64_t u = 0;
    for (int i = 0; i < 8; i++) u = u << 8 | p[i];
    return (int64_t)u;
}

/* A growing byte buffer. */
typedef struct bbuf {
    uint8_t *p;
    size_t n, cap;
} bbuf;
static void bb_add(bbuf *b, const void *p, size_t n)
{
    if (b->n + n > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + n) c *= 2;
        uint8_t *q = realloc(b->p, c);
        if (!q) exit(3);
        b->p = q;
        b->cap = c;
    }
    if (n) memcpy(b->p + b->n, p, n);
    b->n += n;
}
static void bb_u32(bbuf *b, uint32_t v)
{
    uint8_t x[4];
    put32(x, v);
    bb_add(b, x, 4);
}

static uint64_t fnv(const void *p, size_t n, uint64_t h)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}
static uint64_t rhash(const void *k, uint32_t kl, const void *v, uint32_t vl)
{
    uint64_t h = fnv(v, vl, fnv(k, kl, 0xcbf29ce484222325ULL) ^ 0x5bd1e995);
    return h ^ h >> 29;
}

/* splitmix64 */
static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
static uint64_t below(uint64_t *s, uint64_t n) { return n ? rnd(s) % n : 0; }

/* Printable form of some bytes for failure messages (rotating buffers, so several fit in one printf). */
static const char *hex(const void *p, size_t n)
{
    static char bufs[6][80];
    static int next;
    char *o = bufs[next++ % 6];
    size_t m = n < 20 ? n : 20, w = 0;
    for (size_t i = 0; i < m; i++) w += (size_t)snprintf(o + w, 80 - w, "%02x", ((const uint8_t *)p)[i]);
    if (n > m) snprintf(o + w, 80 - w, "..(%zu bytes)", n);
    else if (!n) snprintf(o, 80, "(empty)");
    return o;
}

/* ---- checks, failures and the leader's report ---------------------------------------------------------------- */

static em_ctx *g_ctx;
static int g_rank, g_np;
static const char *g_dir = "/tmp";
static int magic; /* every callback gets &magic as arg and fails without it: arg must reach the callback */
#define ARG ((void *)&magic)

typedef struct check {
    const char *name;
    void (*fn)(uint64_t seed);
    int once; /* 1: run for the first seed only; 2: the same, and only when named on the command line */
    int on, failed, runs;
    uint64_t fseed;
    char why[700];
} check;
static check *cur;
static uint64_t cur_seed;
static const char *cur_shape = ""; /* the shape of the seed's first input, for failure messages */
static int seed_failed;

static void failf(const char *fmt, ...)
{
    va_list ap;
    if (!seed_failed++) {
        if (!cur->failed++) {
            cur->fseed = cur_seed;
            int n = snprintf(cur->why, sizeof cur->why, "[%s] ", cur_shape);
            va_start(ap, fmt);
            vsnprintf(cur->why + n, sizeof cur->why - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
}

/* Actions with failures reported; a failed action leaves *out empty. */
static int collect(em_ds *d, recs *out, const char *what)
{
    em_records r;
    memset(out, 0, sizeof *out);
    int rc = em_collect(d, &r);
    if (rc < 0) {
        failf("%s: em_collect: %s: %s", what, em_err_name(rc), em_last_error());
        return rc;
    }
    for (size_t i = 0; i < r.n; i++) rs_add(out, r.recs[i].key, r.recs[i].klen, r.recs[i].val, r.recs[i].vlen);
    em_records_free(&r);
    return 0;
}
static int take(em_ds *d, size_t n, recs *out, const char *what)
{
    em_records r;
    memset(out, 0, sizeof *out);
    int rc = em_take(d, n, &r);
    if (rc < 0) {
        failf("%s: em_take(%zu): %s: %s", what, n, em_err_name(rc), em_last_error());
        return rc;
    }
    for (size_t i = 0; i < r.n; i++) rs_add(out, r.recs[i].key, r.recs[i].klen, r.recs[i].val, r.recs[i].vlen);
    em_records_free(&r);
    return 0;
}
static int count(em_ds *d, int64_t *n, const char *what)
{
    int rc = em_count(d, n);
    if (rc < 0) failf("%s: em_count: %s: %s", what, em_err_name(rc), em_last_error());
    return rc;
}

static void rs_sort(recs *s)
{
    if (s->n) qsort(s->r, s->n, sizeof *s->r, rec_cmp);
}

/* Multiset equality (sorts both). Returns 1 when equal. */
static int same(const char *what, recs *want, recs *got)
{
    rs_sort(want);
    rs_sort(got);
    size_t i = 0;
    while (i < want->n && i < got->n && !rec_cmp(&want->r[i], &got->r[i])) i++;
    if (i == want->n && i == got->n) return 1;
    const rec *w = i < want->n ? &want->r[i] : NULL, *g = i < got->n ? &got->r[i] : NULL;
    failf("%s: want %zu records, got %zu; first difference in sorted order at %zu: want %s%s%s%s, got %s%s%s%s", what,
          want->n, got->n, i, w ? "key " : "nothing", w ? hex(w->k, w->kl) : "", w ? " val " : "",
          w ? hex(w->v, w->vl) : "", g ? "key " : "nothing", g ? hex(g->k, g->kl) : "", g ? " val " : "",
          g ? hex(g->v, g->vl) : "");
    return 0;
}

/* Two sequences equal, order included. */
static int same_seq(const char *what, const recs *want, const recs *got)
{
    size_t i = 0;
    while (i < want->n && i < got->n && !rec_cmp(&want->r[i], &got->r[i])) i++;
    if (i == want->n && i == got->n) return 1;
    failf("%s: want %zu records, got %zu, first difference at position %zu", what, want->n, got->n, i);
    return 0;
}

static void rs_copy(recs *dst, const recs *src)
{
    memset(dst, 0, sizeof *dst);
    for (size_t i = 0; i < src->n; i++) rs_add(dst, src->r[i].k, src->r[i].kl, src->r[i].v, src->r[i].vl);
}

static em_ds *par(const recs *s, int nparts)
{
    em_rec *a = xmalloc(s->n * sizeof *a);
    for (size_t i = 0; i < s->n; i++) a[i] = (em_rec){.key = s->r[i].k, .klen = s->r[i].kl, .val = s->r[i].v, .vlen = s->r[i].vl};
    em_ds *d = em_parallelize(g_ctx, a, s->n, nparts);
    free(a);
    return d;
}

/* ---- data ------------------------------------------------------------------------------------------------------ */

enum vmode { V_I64, V_F64, V_BYTES, V_INDEX, V_TINY };
#define POOL 128
typedef struct pkey {
    uint8_t b[8];
    uint32_t n;
} pkey;
static const uint8_t alpha[] = {0, 1, 'a', 'b', 'z', 0x7f, 0x80, 0xff};

typedef struct input {
    recs r;
    int nparts;
    const char *shape;
} input;

/* The records of (seed, salt). Keys come from a pool that depends on the seed only, so inputs of one seed with
 * different salts share some keys; even salts draw from pool[0, np), odd ones from pool[np/2, np/2 + np). */
static void gen(uint64_t seed, int salt, enum vmode vm, input *in)
{
    pkey pool[POOL];
    uint64_t ps = seed * 1000003u + 17, s = seed * 0x100000001B3ULL ^ ((uint64_t)salt + 1) * 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < POOL; i++) {
        pool[i].n = (uint32_t)below(&ps, 7);
        for (uint32_t j = 0; j < pool[i].n; j++) pool[i].b[j] = alpha[below(&ps, sizeof alpha)];
    }
    int npool = 1 + (int)below(&ps, 40), start = (salt % 2) * npool / 2, hot = 0;
    size_t n;
    memset(in, 0, sizeof *in);
    switch ((seed + (uint64_t)salt) % 6) {
    case 0: n = 0, in->nparts = 1 + (int)below(&s, 4), in->shape = "empty"; break;
    case 1: n = 1 + below(&s, 3), in->nparts = 5 + (int)below(&s, 12), in->shape = "tiny"; break;
    case 2: n = 300 + below(&s, 700), in->nparts = 1 + (int)below(&s, 9), hot = 1, in->shape = "hot key"; break;
    default: n = below(&s, 1500), in->nparts = 1 + (int)below(&s, 9), in->shape = "random"; break;
    }
    if (salt == 0) cur_shape = in->shape;
    for (size_t i = 0; i < n; i++) {
        const pkey *k = hot && below(&s, 10) < 9 ? &pool[0] : &pool[start + (int)below(&s, (uint64_t)npool)];
        uint8_t v[16];
        uint32_t vl = 8;
        switch (vm) {
        case V_I64: em_i64_put(v, (int64_t)below(&s, 2000001) - 1000000); break;
        case V_F64: em_f64_put(v, (double)((int64_t)below(&s, 2000001) - 1000000) / 8.0); break; /* sums are exact */
        case V_INDEX: em_i64_put(v, (int64_t)i); break;
        case V_BYTES:
            vl = (uint32_t)below(&s, 13);
            for (uint32_t j = 0; j < vl; j++) v[j] = alpha[below(&s, sizeof alpha)];
            break;
        case V_TINY:
            vl = (uint32_t)below(&s, 3);
            for (uint32_t j = 0; j < vl; j++) v[j] = below(&s, 2) ? 'x' : 0;
            break;
        }
        rs_add(&in->r, k->b, k->n, v, vl);
    }
}

/* Output partitions for a wide operator: 0 (the default) or 1..8. */
static int nout(uint64_t seed, int salt)
{
    uint64_t s = seed * 31 + (uint64_t)salt * 7 + 5;
    return (int)below(&s, 9);
}

/* ---- map / flatMap, filter -------------------------------------------------------------------------------------- */

/* flatMap rule: rhash % 4 outputs; output i: key = [i] ++ key, value = value ++ [i, i]. */
static int fm_count(const void *k, uint32_t kl, const void *v, uint32_t vl) { return (int)(rhash(k, kl, v, vl) % 4); }
static void fm_out(const void *k, uint32_t kl, const void *v, uint32_t vl, int i, uint8_t *kb, uint8_t *vb)
{
    kb[0] = (uint8_t)i;
    memcpy(kb + 1, k, kl);
    memcpy(vb, v, vl);
    vb[vl] = vb[vl + 1] = (uint8_t)i;
}
static int fm_cb(const em_rec *in, em_emitter *out, void *arg)
{
    uint8_t kb[64], vb[64];
    if (arg != ARG || in->klen > 60 || in->vlen > 60) return -1;
    for (int i = 0, c = fm_count(in->key, in->klen, in->val, in->vlen); i < c; i++) {
        fm_out(in->key, in->klen, in->val, in->vlen, i, kb, vb);
        int rc = em_emit(out, kb, in->klen + 1, vb, in->vlen + 2);
        if (rc < 0) return rc;
    }
    return 0;
}

static void chk_map(uint64_t seed)
{
    input in;
    recs want = {0}, got = {0};
    gen(seed, 0, V_BYTES, &in);
    for (size_t i = 0; i < in.r.n; i++) {
        const rec *r = &in.r.r[i];
        uint8_t kb[64], vb[64];
        for (int j = 0, c = fm_count(r->k, r->kl, r->v, r->vl); j < c; j++) {
            fm_out(r->k, r->kl, r->v, r->vl, j, kb, vb);
            rs_add(&want, kb, r->kl + 1, vb, r->vl + 2);
        }
    }
    em_ds *m = em_map(par(&in.r, in.nparts), fm_cb, ARG);
    if (em_ds_partitions(m) != in.nparts) failf("em_map has %d partitions, its parent %d", em_ds_partitions(m), in.nparts);
    if (collect(m, &got, "flatMap") == 0) same("flatMap", &want, &got);
    rs_free(&got);
    rs_free(&want);
    rs_free(&in.r);
}

static int keep_cb(const em_rec *in, void *arg)
{
    if (arg != ARG) return -1;
    return rhash(in->key, in->klen, in->val, in->vlen) % 3 != 0;
}
static int none_cb(const em_rec *in, void *arg)
{
    (void)in;
    return arg == ARG ? 0 : -1;
}

static void chk_filter(uint64_t seed)
{
    input in;
    recs want = {0}, got = {0};
    int64_t n;
    gen(seed, 0, V_BYTES, &in);
    for (size_t i = 0; i < in.r.n; i++)
        if (rhash(in.r.r[i].k, in.r.r[i].kl, in.r.r[i].v, in.r.r[i].vl) % 3 != 0)
            rs_add(&want, in.r.r[i].k, in.r.r[i].kl, in.r.r[i].v, in.r.r[i].vl);
    em_ds *src = par(&in.r, in.nparts);
    if (collect(em_filter(src, keep_cb, ARG), &got, "filter") == 0) same("filter", &want, &got);
    if (count(em_filter(src, none_cb, ARG), &n, "filter dropping all") == 0 && n != 0)
        failf("filter dropping every record: count %" PRId64, n);
    rs_free(&got);
    rs_free(&want);
    rs_free(&in.r);
}

/* ---- mapPartitions ---------------------------------------------------------------------------------------------- */

/* each() emits the record with value 'E' ++ part ++ value; close() emits ("\xff\xff\xff", 'C' ++ part ++ count).
 * So in partition order the output reads: E(p0)* C(p0) E(p1)* C(p1) ... with C's count = the E's before it. */
typedef struct mp_state {
    int part;
    int64_t count;
} mp_state;
static const uint8_t mp_close_key[] = {0xff, 0xff, 0xff};

static void *mp_open(int part, void *arg)
{
    if (arg != ARG) return NULL;
    mp_state *s = xmalloc(sizeof *s);
    s->part = part;
    s->count = 0;
    return s;
}
static int mp_each(void *st, const em_rec *in, em_emitter *out, void *arg)
{
    mp_state *s = st;
    uint8_t vb[80];
    if (!s || arg != ARG || in->vlen > 64) return -1;
    s->count++;
    vb[0] = 'E';
    put32(vb + 1, (uint32_t)s->part);
    memcpy(vb + 5, in->val, in->vlen);
    return em_emit(out, in->key, in->klen, vb, in->vlen + 5);
}
static int mp_close(void *st, em_emitter *out, void *arg)
{
    mp_state *s = st;
    uint8_t vb[13];
    if (!s || arg != ARG) return -1;
    vb[0] = 'C';
    put32(vb + 1, (uint32_t)s->part);
    put64(vb + 5, s->count);
    free(s);
    return em_emit(out, mp_close_key, sizeof mp_close_key, vb, sizeof vb);
}
/* Without open: state is NULL; records pass unchanged. */
static int mp_each_null(void *st, const em_rec *in, em_emitter *out, void *arg)
{
    if (st || arg != ARG) return -1;
    return em_emit(out, in->key, in->klen, in->val, in->vlen);
}
static int mp_close_null(void *st, em_emitter *out, void *arg)
{
    (void)out;
    return st || arg != ARG ? -1 : 0;
}

/* Checks the E/C layout of a tagged collect; strips it into *plain (the records as each() saw them) and the
 * per-partition counts into counts[nparts] (may be NULL). Returns 1 when the layout is right. */
static int mp_untag(const char *what, const recs *got, int nparts, recs *plain, int64_t *counts)
{
    int part = 0;
    int64_t inpart = 0;
    memset(plain, 0, sizeof *plain);
    for (size_t i = 0; i < got->n; i++) {
        const rec *r = &got->r[i];
        if (r->vl < 5 || (r->v[0] != 'E' && r->v[0] != 'C')) {
            failf("%s: record %zu is not from each() or close(): val %s", what, i, hex(r->v, r->vl));
            return 0;
        }
        int p = (int)get32(r->v + 1);
        if (p != part) {
            failf("%s: record %zu comes from partition %d while partition %d is not closed (%d partitions)", what, i,
                  p, part, nparts);
            return 0;
        }
        if (r->v[0] == 'E') {
            inpart++;
            rs_add(plain, r->k, r->kl, r->v + 5, r->vl - 5);
        } else {
            if (r->vl != 13 || get64(r->v + 5) != inpart) {
                failf("%s: close() of partition %d counted %" PRId64 " records, each() emitted %" PRId64, what, p,
                      r->vl == 13 ? get64(r->v + 5) : -1, inpart);
                return 0;
            }
            if (counts) counts[p] = inpart;
            part++;
            inpart = 0;
        }
    }
    if (part != nparts || inpart) {
        failf("%s: %d partitions closed, want %d", what, part, nparts);
        return 0;
    }
    return 1;
}

static void chk_map_partitions(uint64_t seed)
{
    input in;
    recs got = {0}, plain = {0};
    gen(seed, 0, V_BYTES, &in);
    em_ds *src = par(&in.r, in.nparts);
    em_ds *mp = em_map_partitions(src, mp_open, mp_each, mp_close, ARG);
    if (em_ds_partitions(mp) != in.nparts) failf("mapPartitions has %d partitions, its parent %d", em_ds_partitions(mp), in.nparts);
    if (collect(mp, &got, "mapPartitions") == 0 && mp_untag("mapPartitions", &got, in.nparts, &plain, NULL))
        same("mapPartitions records", &in.r, &plain);
    rs_free(&plain);
    rs_free(&got);
    if (collect(em_map_partitions(src, NULL, mp_each_null, mp_close_null, ARG), &got, "mapPartitions open=NULL") == 0)
        same("mapPartitions open=NULL", &in.r, &got);
    rs_free(&got);
    rs_free(&in.r);
}

/* ---- union ------------------------------------------------------------------------------------------------------- */

static void tagged(uint64_t seed, int salt, uint8_t tag, input *in)
{
    input raw;
    gen(seed, salt, V_BYTES, &raw);
    *in = raw;
    memset(&in->r, 0, sizeof in->r);
    for (size_t i = 0; i < raw.r.n; i++) {
        uint8_t v[20];
        v[0] = tag;
        memcpy(v + 1, raw.r.r[i].v, raw.r.r[i].vl);
        rs_add(&in->r, raw.r.r[i].k, raw.r.r[i].kl, v, raw.r.r[i].vl + 1);
    }
    rs_free(&raw.r);
}

static void naive_count_by_key(const recs *in, recs *out)
{
    recs s = {0};
    rs_copy(&s, in);
    rs_sort(&s);
    memset(out, 0, sizeof *out);
    for (size_t i = 0, j; i < s.n; i = j) {
        for (j = i; j < s.n && key_eq(&s.r[i], &s.r[j]); j++) {}
        uint8_t v[8];
        em_i64_put(v, (int64_t)(j - i));
        rs_add(out, s.r[i].k, s.r[i].kl, v, 8);
    }
    rs_free(&s);
}

static void chk_union(uint64_t seed)
{
    input a, b;
    recs want = {0}, got = {0}, cnt = {0};
    tagged(seed, 0, 'a', &a);
    tagged(seed, 1, 'b', &b);
    em_ds *da = par(&a.r, a.nparts), *db = par(&b.r, b.nparts), *u = em_union(da, db);
    if (em_ds_partitions(u) != a.nparts + b.nparts)
        failf("union of %d and %d partitions has %d", a.nparts, b.nparts, em_ds_partitions(u));
    rs_copy(&want, &a.r);
    for (size_t i = 0; i < b.r.n; i++) rs_add(&want, b.r.r[i].k, b.r.r[i].kl, b.r.r[i].v, b.r.r[i].vl);
    if (collect(u, &got, "union") == 0) {
        size_t last_a = 0, first_b = got.n;
        for (size_t i = 0; i < got.n; i++) {
            if (got.r[i].vl && got.r[i].v[0] == 'a') last_a = i + 1;
            if (got.r[i].vl && got.r[i].v[0] == 'b' && first_b == got.n) first_b = i;
        }
        if (last_a > first_b) failf("union: a record of a at %zu after one of b at %zu", last_a - 1, first_b);
        same("union", &want, &got);
    }
    rs_free(&got);
    /* union through a shuffle: records per key */
    naive_count_by_key(&want, &cnt);
    if (collect(em_reduce_by_key_agg(u, EM_AGG_COUNT, nout(seed, 1)), &got, "count by key of a union") == 0)
        same("count by key of a union", &cnt, &got);
    rs_free(&got);
    rs_free(&cnt);
    rs_free(&want);
    /* a with itself: every record twice; a with an empty dataset: a */
    rs_copy(&want, &a.r);
    for (size_t i = 0; i < a.r.n; i++) rs_add(&want, a.r.r[i].k, a.r.r[i].kl, a.r.r[i].v, a.r.r[i].vl);
    if (collect(em_union(da, da), &got, "union with itself") == 0) same("union with itself", &want, &got);
    rs_free(&got);
    recs none = {0};
    em_ds *u2 = em_union(par(&none, 3), da);
    if (em_ds_partitions(u2) != 3 + a.nparts) failf("union of empty 3 partitions and %d: %d partitions", a.nparts, em_ds_partitions(u2));
    if (collect(u2, &got, "union with an empty dataset") == 0) same("union with an empty dataset", &a.r, &got);
    rs_free(&got);
    rs_free(&want);
    rs_free(&a.r);
    rs_free(&b.r);
}

/* ---- sample ------------------------------------------------------------------------------------------------------ */

#define SAMPLE_PARTS 7 /* fixed whatever np: the sample is seeded by (seed, partition) */

static void chk_sample(uint64_t seed)
{
    static const double fr[] = {0.0, 0.1, 0.5, 1.0};
    input in;
    gen(seed, 0, V_INDEX, &in); /* values are the record's index: every record is distinct */
    em_ds *src = par(&in.r, SAMPLE_PARTS);
    size_t n = in.r.n;
    char *seen = xmalloc(n);
    for (size_t f = 0; f < sizeof fr / sizeof *fr; f++) {
        uint64_t sseed = seed * 1315423911u + (uint64_t)(fr[f] * 1000);
        recs got = {0}, again = {0}, other = {0};
        char what[64];
        snprintf(what, sizeof what, "sample(%.2f)", fr[f]);
        if (collect(em_sample(src, fr[f], sseed), &got, what) < 0) continue;
        /* a subset of the input, without repeats */
        memset(seen, 0, n);
        int ok = 1;
        for (size_t i = 0; i < got.n && ok; i++) {
            const rec *r = &got.r[i];
            int64_t ix = r->vl == 8 ? em_i64_get(r->v) : -1;
            if (ix < 0 || (size_t)ix >= n || seen[ix] || rec_cmp(r, &in.r.r[ix])) {
                failf("%s: record %zu (key %s val %s) is not an input record or repeats one", what, i, hex(r->k, r->kl),
                      hex(r->v, r->vl));
                ok = 0;
            } else {
                seen[ix] = 1;
            }
        }
        /* size within 6 standard deviations of n * f; exactly 0 or n at the ends */
        double mean = (double)n * fr[f], sd = sqrt((double)n * fr[f] * (1 - fr[f]));
        if (fabs((double)got.n - mean) > 6 * sd + 1 || (fr[f] == 0 && got.n) || (fr[f] == 1 && got.n != n))
            failf("%s of %zu records kept %zu (expected %.1f +- %.1f)", what, n, got.n, mean, 6 * sd + 1);
        /* the same seed again: the same records in the same order */
        if (fr[f] > 0 && fr[f] < 1 && collect(em_sample(src, fr[f], sseed), &again, what) == 0) same_seq("the same sample twice", &got, &again);
        rs_free(&again);
        /* another seed: another sample (2^-n chance of equality at f = 0.5) */
        if (fr[f] == 0.5 && n >= 100 && collect(em_sample(src, fr[f], sseed + 1000), &other, what) == 0) {
            rs_sort(&got);
            rs_sort(&other);
            if (got.n == other.n) {
                size_t i = 0;
                while (i < got.n && !rec_cmp(&got.r[i], &other.r[i])) i++;
                if (i == got.n) failf("%s: seeds %" PRIu64 " and %" PRIu64 " gave the same sample", what, sseed, sseed + 1000);
            }
            rs_free(&other);
        }
        /* the fingerprint that operators.sh compares across np */
        uint64_t fp = 0xcbf29ce484222325ULL;
        for (size_t i = 0; i < n; i++)
            if (seen[i]) fp = fnv(&i, sizeof i, fp);
        if (em_is_leader(g_ctx))
            printf("SAMPLE seed=%" PRIu64 " f=%.2f n=%zu k=%zu fp=%016" PRIx64 "\n", seed, fr[f], n, got.n, fp);
        rs_free(&got);
    }
    free(seen);
    rs_free(&in.r);
}

/* ---- reduceByKey ------------------------------------------------------------------------------------------------- */

static int sum_cb(const void *a, uint32_t al, const void *b, uint32_t bl, em_value *out, void *arg)
{
    uint8_t v[8];
    if (arg != ARG || al != 8 || bl != 8) return -1;
    em_i64_put(v, em_i64_get(a) + em_i64_get(b));
    return em_value_set(out, v, 8);
}

/* XOR of the values, the shorter one padded with zeros: associative, commutative, any length. */
static _Thread_local bbuf xor_buf;
static void xor_into(uint8_t *dst, const uint8_t *src, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++) dst[i] ^= src[i];
}
static int xor_cb(const void *a, uint32_t al, const void *b, uint32_t bl, em_value *out, void *arg)
{
    uint32_t n = al > bl ? al : bl;
    if (arg != ARG) return -1;
    if (xor_buf.cap < n) {
        uint8_t *p = realloc(xor_buf.p, n);
        if (!p) return -1;
        xor_buf.p = p;
        xor_buf.cap = n;
    }
    memset(xor_buf.p, 0, n);
    xor_into(xor_buf.p, a, al);
    xor_into(xor_buf.p, b, bl);
    return em_value_set(out, xor_buf.p, n);
}

/* Naive reduce: one record per key, its values folded by f over the values in sorted order. */
typedef void (*fold_fn)(bbuf *acc, int first, const rec *r);
static void naive_reduce(const recs *in, fold_fn f, recs *out)
{
    recs s = {0};
    bbuf acc = {0};
    rs_copy(&s, in);
    rs_sort(&s);
    memset(out, 0, sizeof *out);
    for (size_t i = 0, j; i < s.n; i = j) {
        acc.n = 0;
        for (j = i; j < s.n && key_eq(&s.r[i], &s.r[j]); j++) f(&acc, j == i, &s.r[j]);
        rs_add(out, s.r[i].k, s.r[i].kl, acc.p, (uint32_t)acc.n);
    }
    free(acc.p);
    rs_free(&s);
}
static void fold_sum(bbuf *acc, int first, const rec *r)
{
    if (first) bb_add(acc, r->v, 8);
    else em_i64_put(acc->p, em_i64_get(acc->p) + em_i64_get(r->v));
}
static void fold_xor(bbuf *acc, int first, const rec *r)
{
    (void)first;
    while (acc->n < r->vl) bb_add(acc, "", 1);
    xor_into(acc->p, r->v, r->vl);
}

static void chk_reduce_by_key(uint64_t seed)
{
    input in;
    recs want = {0}, got = {0};
    gen(seed, 0, V_I64, &in);
    naive_reduce(&in.r, fold_sum, &want);
    em_ds *r = em_reduce_by_key(par(&in.r, in.nparts), sum_cb, ARG, nout(seed, 0));
    if (nout(seed, 0) && em_ds_partitions(r) != nout(seed, 0)) failf("reduceByKey: %d partitions, asked for %d", em_ds_partitions(r), nout(seed, 0));
    if (collect(r, &got, "reduceByKey sum") == 0) same("reduceByKey sum", &want, &got);
    rs_free(&got);
    rs_free(&want);
    rs_free(&in.r);
    gen(seed, 1, V_BYTES, &in);
    naive_reduce(&in.r, fold_xor, &want);
    if (collect(em_reduce_by_key(par(&in.r, in.nparts), xor_cb, ARG, nout(seed, 1)), &got, "reduceByKey xor") == 0)
        same("reduceByKey xor of variable-length values", &want, &got);
    rs_free(&got);
    rs_free(&want);
    rs_free(&in.r);
}

/* ---- reduceByKey with built-in aggregators ------------------------------------------------------------------------ */

static const char *const agg_name[] = {"COUNT", "SUM", "MIN", "MAX", "MEAN", "SUM_F64", "MIN_F64", "MAX_F64", "MEAN_F64"};

/* The naive aggregate of n values (int64 or double), as the output bytes. Sums of doubles are exact here
 * (values are multiples of 1/8 below 2^20), so only MEAN is compared with a tolerance. */
static void naive_agg(em_agg agg, const rec *r, size_t n, uint8_t out[8])
{
    int64_t s = 0, mn = INT64_MAX, mx = INT64_MIN;
    double fs = 0, fmn = INFINITY, fmx = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        if (agg >= EM_AGG_SUM_F64) {
            double x = em_f64_get(r[i].v);
            fs += x;
            fmn = x < fmn ? x : fmn;
            fmx = x > fmx ? x : fmx;
        } else if (agg != EM_AGG_COUNT) {
            int64_t x = em_i64_get(r[i].v);
            s += x;
            mn = x < mn ? x : mn;
            mx = x > mx ? x : mx;
        }
    }
    switch (agg) {
    case EM_AGG_COUNT: em_i64_put(out, (int64_t)n); break;
    case EM_AGG_SUM: em_i64_put(out, s); break;
    case EM_AGG_MIN: em_i64_put(out, mn); break;
    case EM_AGG_MAX: em_i64_put(out, mx); break;
    case EM_AGG_MEAN: em_f64_put(out, (double)s / (double)n); break;
    case EM_AGG_SUM_F64: em_f64_put(out, fs); break;
    case EM_AGG_MIN_F64: em_f64_put(out, fmn); break;
    case EM_AGG_MAX_F64: em_f64_put(out, fmx); break;
    case EM_AGG_MEAN_F64: em_f64_put(out, fs / (double)n); break;
    }
}

static void chk_agg_one(uint64_t seed, em_agg agg, enum vmode vm, const char *what)
{
    input in;
    recs s = {0}, want = {0}, got = {0};
    gen(seed, (int)agg, vm, &in);
    rs_copy(&s, &in.r);
    rs_sort(&s);
    for (size_t i = 0, j; i < s.n; i = j) {
        uint8_t v[8];
        for (j = i; j < s.n && key_eq(&s.r[i], &s.r[j]); j++) {}
        naive_agg(agg, &s.r[i], j - i, v);
        rs_add(&want, s.r[i].k, s.r[i].kl, v, 8);
    }
    if (collect(em_reduce_by_key_agg(par(&in.r, in.nparts), agg, nout(seed, (int)agg)), &got, what) == 0) {
        int mean = agg == EM_AGG_MEAN || agg == EM_AGG_MEAN_F64;
        if (mean) { /* same keys; values within 1e-9 relative */
            rs_sort(&want);
            rs_sort(&got);
            int ok = want.n == got.n;
            if (!ok) failf("%s: %zu keys, want %zu", what, got.n, want.n);
            for (size_t i = 0; ok && i < got.n; i++) {
                double w = em_f64_get(want.r[i].v), g = got.r[i].vl == 8 ? em_f64_get(got.r[i].v) : NAN;
                if (!key_eq(&want.r[i], &got.r[i]) || !(fabs(w - g) <= 1e-9 * fmax(1, fabs(w)))) {
                    failf("%s: key %s: want %.17g, got %.17g (vlen %u)", what, hex(want.r[i].k, want.r[i].kl), w, g, got.r[i].vl);
                    ok = 0;
                }
            }
        } else {
            same(what, &want, &got);
        }
    }
    rs_free(&got);
    rs_free(&want);
    rs_free(&s);
    rs_free(&in.r);
}

static void chk_reduce_by_key_agg(uint64_t seed)
{
    for (int agg = EM_AGG_COUNT; agg <= EM_AGG_MEAN_F64; agg++) {
        char what[64];
        snprintf(what, sizeof what, "reduceByKey %s", agg_name[agg]);
        chk_agg_one(seed, (em_agg)agg, agg >= EM_AGG_SUM_F64 ? V_F64 : V_I64, what);
    }
    chk_agg_one(seed, EM_AGG_COUNT, V_BYTES, "reduceByKey COUNT of values that are not int64");
}

/* ---- aggregateByKey ---------------------------------------------------------------------------------------------- */

/* acc = (count, sum of value bytes, longest value length), zero = (0, 0, -1); the value is any byte string. */
static int abk_seq(const void *a, uint32_t al, const void *b, uint32_t bl, em_value *out, void *arg)
{
    const uint8_t *acc = a, *v = b;
    uint8_t o[24];
    int64_t sum = 0;
    if (arg != ARG || al != 24) return -1;
    for (uint32_t i = 0; i < bl; i++) sum += v[i];
    put64(o, get64(acc) + 1);
    put64(o + 8, get64(acc + 8) + sum);
    put64(o + 16, get64(acc + 16) > (int64_t)bl ? get64(acc + 16) : (int64_t)bl);
    return em_value_set(out, o, 24);
}
static int abk_comb(const void *a, uint32_t al, const void *b, uint32_t bl, em_value *out, void *arg)
{
    const uint8_t *x = a, *y = b;
    uint8_t o[24];
    if (arg != ARG || al != 24 || bl != 24) return -1;
    put64(o, get64(x) + get64(y));
    put64(o + 8, get64(x + 8) + get64(y + 8));
    put64(o + 16, get64(x + 16) > get64(y + 16) ? get64(x + 16) : get64(y + 16));
    return em_value_set(out, o, 24);
}
static void fold_abk(bbuf *acc, int first, const rec *r)
{
    if (first) {
        uint8_t z[24];
        put64(z, 0), put64(z + 8, 0), put64(z + 16, -1);
        bb_add(acc, z, 24);
    }
    int64_t sum = 0;
    for (uint32_t i = 0; i < r->vl; i++) sum += r->v[i];
    put64(acc->p, get64(acc->p) + 1);
    put64(acc->p + 8, get64(acc->p + 8) + sum);
    if ((int64_t)r->vl > get64(acc->p + 16)) put64(acc->p + 16, r->vl);
}

static void chk_aggregate_by_key(uint64_t seed)
{
    input in;
    recs want = {0}, got = {0};
    uint8_t zero[24];
    put64(zero, 0), put64(zero + 8, 0), put64(zero + 16, -1);
    gen(seed, 0, V_BYTES, &in);
    naive_reduce(&in.r, fold_abk, &want);
    em_ds *d = em_aggregate_by_key(par(&in.r, in.nparts), zero, 24, abk_seq, abk_comb, ARG, nout(seed, 0));
    if (collect(d, &got, "aggregateByKey") == 0) same("aggregateByKey", &want, &got);
    rs_free(&got);
    rs_free(&want);
    rs_free(&in.r);
}

/* ---- groupByKey and cogroup ------------------------------------------------------------------------------------- */

/* The values of one key, copied out of an em_values stream, then encoded sorted: [n] ([len] bytes)*. */
typedef struct vlist {
    bbuf data;
    size_t *off;
    uint32_t *len;
    size_t n, cap;
} vlist;
typedef struct span {
    const uint8_t *p;
    uint32_t n;
} span;
static int span_cmp(const void *a, const void *b)
{
    const span *x = a, *y = b;
    return bytes_cmp(x->p, x->n, y->p, y->n);
}
static int vl_drain(vlist *l, em_values *it)
{
    const void *v;
    uint32_t n;
    int rc;
    while ((rc = em_values_next(it, &v, &n)) == 1) {
        if (l->n == l->cap) {
            l->cap = l->cap ? 2 * l->cap : 16;
            l->off = realloc(l->off, l->cap * sizeof *l->off);
            l->len = realloc(l->len, l->cap * sizeof *l->len);
            if (!l->off || !l->len) return -1;
        }
        l->off[l->n] = l->data.n;
        l->len[l->n++] = n;
        bb_add(&l->data, v, n);
    }
    return rc;
}
static void vl_encode(vlist *l, bbuf *out)
{
    span *s = xmalloc(l->n * sizeof *s);
    for (size_t i = 0; i < l->n; i++) s[i] = (span){l->data.p + l->off[i], l->len[i]};
    qsort(s, l->n, sizeof *s, span_cmp);
    bb_u32(out, (uint32_t)l->n);
    for (size_t i = 0; i < l->n; i++) {
        bb_u32(out, s[i].n);
        bb_add(out, s[i].p, s[i].n);
    }
    free(s);
}
static void vl_free(vlist *l)
{
    free(l->data.p);
    free(l->off);
    free(l->len);
    memset(l, 0, sizeof *l);
}

static int group_cb(const void *key, uint32_t klen, em_values *vals, em_emitter *out, void *arg)
{
    vlist l = {0};
    bbuf enc = {0};
    int rc = arg == ARG ? vl_drain(&l, vals) : -1;
    if (rc == 0) {
        vl_encode(&l, &enc);
        rc = em_emit(out, key, klen, enc.p, (uint32_t)enc.n);
    }
    vl_free(&l);
    free(enc.p);
    return rc;
}
static int cogroup_cb(const void *key, uint32_t klen, em_values *a, em_values *b, em_emitter *out, void *arg)
{
    vlist la = {0}, lb = {0};
    bbuf enc = {0};
    int rc = arg == ARG ? vl_drain(&la, a) : -1;
    if (rc == 0) rc = vl_drain(&lb, b);
    if (rc == 0) {
        vl_encode(&la, &enc);
        vl_encode(&lb, &enc);
        rc = em_emit(out, key, klen, enc.p, (uint32_t)enc.n);
    }
    vl_free(&la);
    vl_free(&lb);
    free(enc.p);
    return rc;
}

/* Naive: the values of key run s[i, j) of a sorted copy, encoded as vl_encode does. */
static void enc_run(const rec *r, size_t n, bbuf *out)
{
    bb_u32(out, (uint32_t)n);
    for (size_t i = 0; i < n; i++) {
        bb_u32(out, r[i].vl);
        bb_add(out, r[i].v, r[i].vl);
    }
}

/* mapPartitions after a grouping: flags a partition whose keys are not strictly increasing (keys in byte order
 * within a partition, one call per key) with an extra record (ORDER_KEY, position). */
static const uint8_t order_key[] = {0xff, 0xff, 0xff, 'o', 'r', 'd', 'e', 'r'};
typedef struct ord_state {
    bbuf last;
    int have;
    int64_t pos, bad;
} ord_state;
static void *ord_open(int part, void *arg)
{
    (void)part;
    if (arg != ARG) return NULL;
    ord_state *s = xmalloc(sizeof *s);
    memset(s, 0, sizeof *s);
    s->bad = -1;
    return s;
}
static int ord_each(void *st, const em_rec *in, em_emitter *out, void *arg)
{
    ord_state *s = st;
    if (!s || arg != ARG) return -1;
    if (s->have && bytes_cmp(s->last.p, (uint32_t)s->last.n, in->key, in->klen) >= 0 && s->bad < 0) s->bad = s->pos;
    s->last.n = 0;
    bb_add(&s->last, in->key, in->klen);
    s->have = 1;
    s->pos++;
    return em_emit(out, in->key, in->klen, in->val, in->vlen);
}
static int ord_close(void *st, em_emitter *out, void *arg)
{
    ord_state *s = st;
    uint8_t v[8];
    int rc = 0;
    if (!s || arg != ARG) return -1;
    if (s->bad >= 0) {
        em_i64_put(v, s->bad);
        rc = em_emit(out, order_key, sizeof order_key, v, 8);
    }
    free(s->last.p);
    free(s);
    return rc;
}
static int order_flagged(const char *what, const recs *got)
{
    for (size_t i = 0; i < got->n; i++)
        if (got->r[i].kl == sizeof order_key && !memcmp(got->r[i].k, order_key, sizeof order_key)) {
            failf("%s: keys within a partition are not strictly increasing (at position %" PRId64 " of a partition)",
                  what, em_i64_get(got->r[i].v));
            return 1;
        }
    return 0;
}

/* Naive groupByKey with group_cb: one record per key, its values as a sorted list. */
static void naive_group(const recs *in, recs *want)
{
    recs s = {0};
    bbuf enc = {0};
    rs_copy(&s, in);
    rs_sort(&s);
    memset(want, 0, sizeof *want);
    for (size_t i = 0, j; i < s.n; i = j) {
        for (j = i; j < s.n && key_eq(&s.r[i], &s.r[j]); j++) {}
        enc.n = 0;
        enc_run(&s.r[i], j - i, &enc);
        rs_add(want, s.r[i].k, s.r[i].kl, enc.p, (uint32_t)enc.n);
    }
    free(enc.p);
    rs_free(&s);
}

static void chk_group_by_key(uint64_t seed)
{
    input in;
    recs want = {0}, got = {0};
    gen(seed, 0, V_BYTES, &in);
    naive_group(&in.r, &want);
    em_ds *g = em_group_by_key(par(&in.r, in.nparts), group_cb, ARG, nout(seed, 0));
    if (nout(seed, 0) && em_ds_partitions(g) != nout(seed, 0)) failf("groupByKey: %d partitions, asked for %d", em_ds_partitions(g), nout(seed, 0));
    if (collect(em_map_partitions(g, ord_open, ord_each, ord_close, ARG), &got, "groupByKey") == 0 &&
        !order_flagged("groupByKey", &got))
        same("groupByKey (values as sorted lists)", &want, &got);
    rs_free(&got);
    rs_free(&want);
    rs_free(&in.r);
}

static void cogroup_case(uint64_t seed, const input *a, const input *b, const char *what)
{
    recs sa = {0}, sb = {0}, want = {0}, got = {0};
    bbuf enc = {0};
    rs_copy(&sa, &a->r);
    rs_copy(&sb, &b->r);
    rs_sort(&sa);
    rs_sort(&sb);
    for (size_t i = 0, j = 0; i < sa.n || j < sb.n;) { /* merge the two sorted key runs */
        int c = i == sa.n ? 1 : j == sb.n ? -1 : bytes_cmp(sa.r[i].k, sa.r[i].kl, sb.r[j].k, sb.r[j].kl);
        const rec *k = c <= 0 ? &sa.r[i] : &sb.r[j];
        size_t i2 = i, j2 = j;
        if (c <= 0)
            while (i2 < sa.n && key_eq(&sa.r[i2], k)) i2++;
        if (c >= 0)
            while (j2 < sb.n && key_eq(&sb.r[j2], k)) j2++;
        enc.n = 0;
        enc_run(&sa.r[i], i2 - i, &enc);
        enc_run(&sb.r[j], j2 - j, &enc);
        rs_add(&want, k->k, k->kl, enc.p, (uint32_t)enc.n);
        i = i2, j = j2;
    }
    em_ds *cg = em_cogroup(par(&a->r, a->nparts), par(&b->r, b->nparts), cogroup_cb, ARG, nout(seed, 2));
    if (collect(em_map_partitions(cg, ord_open, ord_each, ord_close, ARG), &got, what) == 0 && !order_flagged(what, &got))
        same(what, &want, &got);
    free(enc.p);
    rs_free(&got);
    rs_free(&want);
    rs_free(&sa);
    rs_free(&sb);
}

static void chk_cogroup(uint64_t seed)
{
    input a, b, e = {.nparts = 2};
    gen(seed, 0, V_BYTES, &a);
    gen(seed, 1, V_BYTES, &b);
    cogroup_case(seed, &a, &b, "cogroup");
    cogroup_case(seed, &e, &b, "cogroup with an empty left side");
    cogroup_case(seed, &a, &e, "cogroup with an empty right side");
    rs_free(&a.r);
    rs_free(&b.r);
}

/* ---- join ------------------------------------------------------------------------------------------------------ */

/* A joined value in the test's own encoding: per side a flag (0 NULL, 1 string), its length and bytes. */
static void join_enc(bbuf *o, const rec *a, const rec *b)
{
    const rec *side[2] = {a, b};
    for (int i = 0; i < 2; i++) {
        uint8_t f = side[i] != NULL;
        bb_add(o, &f, 1);
        bb_u32(o, side[i] ? side[i]->vl : 0);
        if (side[i]) bb_add(o, side[i]->v, side[i]->vl);
    }
}

static const char *const join_name[] = {"INNER", "LEFT", "RIGHT", "FULL"};

/* Naive join by nested loops, values in join_enc form. */
static void naive_join(const recs *a, const recs *b, int kind, recs *want)
{
    bbuf o = {0};
    int left = kind == EM_JOIN_LEFT || kind == EM_JOIN_FULL, right = kind == EM_JOIN_RIGHT || kind == EM_JOIN_FULL;
    memset(want, 0, sizeof *want);
    for (size_t i = 0; i < a->n; i++) {
        int matched = 0;
        for (size_t j = 0; j < b->n; j++)
            if (key_eq(&a->r[i], &b->r[j])) {
                o.n = 0;
                join_enc(&o, &a->r[i], &b->r[j]);
                rs_add(want, a->r[i].k, a->r[i].kl, o.p, (uint32_t)o.n);
                matched = 1;
            }
        if (!matched && left) {
            o.n = 0;
            join_enc(&o, &a->r[i], NULL);
            rs_add(want, a->r[i].k, a->r[i].kl, o.p, (uint32_t)o.n);
        }
    }
    for (size_t j = 0; right && j < b->n; j++) {
        int matched = 0;
        for (size_t i = 0; i < a->n && !matched; i++) matched = key_eq(&a->r[i], &b->r[j]);
        if (!matched) {
            o.n = 0;
            join_enc(&o, NULL, &b->r[j]);
            rs_add(want, b->r[j].k, b->r[j].kl, o.p, (uint32_t)o.n);
        }
    }
    free(o.p);
}

/* Decodes join output (values: 2-field tuples of strings or NULL) into join_enc form. Returns 1 when every
 * value is such a tuple. */
static int join_decode(const char *what, const recs *got, recs *dec)
{
    bbuf o = {0};
    int ok = 1;
    memset(dec, 0, sizeof *dec);
    for (size_t i = 0; i < got->n && ok; i++) {
        const rec *r = &got->r[i];
        rec side[2];
        uint8_t *copy[2] = {NULL, NULL};
        int isnull[2] = {0, 0};
        int nf = em_tup_count(r->v, r->vl);
        if (nf != 2) {
            failf("%s: value of record %zu is not a 2-field tuple (em_tup_count %d): %s", what, i, nf, hex(r->v, r->vl));
            ok = 0;
        }
        for (int s = 0; s < 2 && ok; s++) {
            em_field f;
            int rc = em_tup_get(r->v, r->vl, s, &f);
            if (rc < 0 || (f.type != EM_F_STR && f.type != EM_F_NULL)) {
                failf("%s: field %d of record %zu: %s, type %d", what, s, i, em_err_name(rc), rc < 0 ? -1 : (int)f.type);
                ok = 0;
            } else if (f.type == EM_F_NULL) {
                isnull[s] = 1;
            } else { /* copy at once: a string with NUL bytes lives in a per-thread buffer */
                copy[s] = xmalloc(f.len);
                if (f.len) memcpy(copy[s], f.str, f.len);
                side[s] = (rec){.v = copy[s], .vl = (uint32_t)f.len};
            }
        }
        if (ok) {
            o.n = 0;
            join_enc(&o, isnull[0] ? NULL : &side[0], isnull[1] ? NULL : &side[1]);
            rs_add(dec, r->k, r->kl, o.p, (uint32_t)o.n);
        }
        free(copy[0]);
        free(copy[1]);
    }
    free(o.p);
    return ok;
}

static void chk_join(uint64_t seed)
{
    input a, b;
    gen(seed, 0, V_BYTES, &a);
    gen(seed, 1, V_BYTES, &b);
    if (a.r.n) /* a few records of a's most common key on b's side, so a hot key meets matches */
        for (int i = 0; i < 3; i++) rs_add(&b.r, a.r.r[0].k, a.r.r[0].kl, &"hot"[i], (uint32_t)i);
    em_ds *da = par(&a.r, a.nparts), *db = par(&b.r, b.nparts);
    for (int kind = EM_JOIN_INNER; kind <= EM_JOIN_FULL; kind++) {
        recs want = {0}, got = {0}, dec = {0};
        char what[64];
        snprintf(what, sizeof what, "join %s", join_name[kind]);
        naive_join(&a.r, &b.r, kind, &want);
        if (collect(em_join(da, db, (em_join_kind)kind, nout(seed, kind)), &got, what) == 0 && join_decode(what, &got, &dec))
            same(what, &want, &dec);
        rs_free(&dec);
        rs_free(&got);
        rs_free(&want);
    }
    rs_free(&a.r);
    rs_free(&b.r);
}

/* ---- distinct ----------------------------------------------------------------------------------------------------- */

static void chk_distinct(uint64_t seed)
{
    input in;
    recs want = {0}, s = {0}, got = {0};
    int64_t n;
    gen(seed, 0, V_TINY, &in); /* values of 0..2 bytes over {0, 'x'}: many repeated records */
    rs_copy(&s, &in.r);
    rs_sort(&s);
    for (size_t i = 0; i < s.n; i++)
        if (i == 0 || rec_cmp(&s.r[i - 1], &s.r[i])) rs_add(&want, s.r[i].k, s.r[i].kl, s.r[i].v, s.r[i].vl);
    em_ds *d = em_distinct(par(&in.r, in.nparts), nout(seed, 0));
    if (collect(d, &got, "distinct") == 0) same("distinct", &want, &got);
    if (count(d, &n, "distinct") == 0 && (size_t)n != want.n) failf("distinct: count %" PRId64 ", want %zu", n, want.n);
    rs_free(&got);
    rs_free(&want);
    rs_free(&s);
    rs_free(&in.r);
}

/* ---- sortByKey -------------------------------------------------------------------------------------------------- */

/* mapPartitions after the sort tags each record's value with its partition: 'E' ++ part ++ value (mp_each). */
static void sort_case(uint64_t seed, const input *in, int asc, int numeric, const char *what)
{
    int np = nout(seed, asc + 2 * numeric);
    em_ds *s = em_sort_by_key(par(&in->r, in->nparts), asc, np);
    recs got = {0}, plain = {0};
    int parts = em_ds_partitions(s);
    if (np && parts != np) failf("%s: %d partitions, asked for %d", what, parts, np);
    if (collect(em_map_partitions(s, mp_open, mp_each, mp_close, ARG), &got, what) < 0 ||
        !mp_untag(what, &got, parts, &plain, NULL)) {
        rs_free(&got);
        rs_free(&plain);
        return;
    }
    /* keys in order along the collect (partition order), and no key in two partitions */
    const rec *prev = NULL;
    int prev_part = -1;
    for (size_t i = 0, j = 0; i < got.n; i++) {
        const rec *r = &got.r[i];
        if (r->v[0] != 'E') continue;
        const rec *p = &plain.r[j++];
        int part = (int)get32(r->v + 1);
        if (prev) {
            int c = bytes_cmp(prev->k, prev->kl, p->k, p->kl);
            if (asc ? c > 0 : c < 0) {
                failf("%s: key %s after %s (record %zu)", what, hex(p->k, p->kl), hex(prev->k, prev->kl), j - 1);
                break;
            }
            if (c == 0 && part != prev_part) {
                failf("%s: key %s in partitions %d and %d", what, hex(p->k, p->kl), prev_part, part);
                break;
            }
            if (numeric == 1 && (asc ? em_i64_get(prev->k) > em_i64_get(p->k) : em_i64_get(prev->k) < em_i64_get(p->k))) {
                failf("%s: %" PRId64 " after %" PRId64, what, em_i64_get(p->k), em_i64_get(prev->k));
                break;
            }
            if (numeric == 2 && (asc ? em_f64_get(prev->k) > em_f64_get(p->k) : em_f64_get(prev->k) < em_f64_get(p->k))) {
                failf("%s: %g after %g", what, em_f64_get(p->k), em_f64_get(prev->k));
                break;
            }
        }
        prev = p;
        prev_part = part;
    }
    recs want = {0};
    rs_copy(&want, &in->r);
    same(what, &want, &plain);
    rs_free(&want);
    rs_free(&plain);
    rs_free(&got);
}

static void chk_sort_by_key(uint64_t seed)
{
    input in, num;
    gen(seed, 0, V_BYTES, &in);
    /* numeric keys: int64 (em_i64_put) and doubles (em_f64_put) of both signs, with repeats */
    for (int kind = 1; kind <= 2; kind++) {
        uint64_t s = seed * 77 + (uint64_t)kind;
        gen(seed, kind, V_BYTES, &num);
        for (size_t i = 0; i < num.r.n; i++) {
            uint8_t k[8];
            int64_t x = below(&s, 4) ? (int64_t)rnd(&s) : (int64_t)below(&s, 5) - 2;
            if (kind == 1) em_i64_put(k, x);
            else em_f64_put(k, below(&s, 8) ? (double)x / 1e6 : below(&s, 2) ? -0.0 : INFINITY);
            free(num.r.r[i].k);
            num.r.r[i].k = xmalloc(8);
            memcpy(num.r.r[i].k, k, 8);
            num.r.r[i].kl = 8;
        }
        if (kind == 1) sort_case(seed, &num, 1, kind, "sortByKey int64 ascending");
        else sort_case(seed, &num, 0, kind, "sortByKey double descending");
        rs_free(&num.r);
    }
    sort_case(seed, &in, 1, 0, "sortByKey bytes ascending");
    sort_case(seed, &in, 0, 0, "sortByKey bytes descending");
    rs_free(&in.r);
}

/* ---- repartition ---------------------------------------------------------------------------------------------- */

static void repart_case(const input *in, int nparts, const char *what)
{
    recs got = {0}, plain = {0};
    int64_t *sizes = xmalloc((size_t)nparts * sizeof *sizes);
    em_ds *r = em_repartition(par(&in->r, in->nparts), nparts);
    if (em_ds_partitions(r) != nparts) failf("%s: %d partitions, asked for %d", what, em_ds_partitions(r), nparts);
    else if (collect(em_map_partitions(r, mp_open, mp_each, mp_close, ARG), &got, what) == 0) {
        if (mp_untag(what, &got, nparts, &plain, sizes)) {
            recs want = {0};
            rs_copy(&want, &in->r);
            same(what, &want, &plain);
            rs_free(&want);
            /* evenly: within 5 standard deviations of a random spread, plus one per input partition */
            double mean = (double)in->r.n / nparts, tol = 5 * sqrt(mean) + in->nparts + 1;
            for (int p = 0; p < nparts && in->r.n >= (size_t)(10 * nparts); p++)
                if (fabs((double)sizes[p] - mean) > tol) {
                    failf("%s: partition %d of %d holds %" PRId64 " of %zu records (mean %.1f)", what, p, nparts,
                          sizes[p], in->r.n, mean);
                    break;
                }
        }
        rs_free(&plain);
        rs_free(&got);
    }
    free(sizes);
}

static void chk_repartition(uint64_t seed)
{
    input in;
    gen(seed, 0, V_BYTES, &in);
    repart_case(&in, 1 + (int)(seed % 9), "repartition");
    rs_free(&in.r);
    /* one hot key (and identical records): no key decides where a record goes */
    gen(seed, 0, V_BYTES, &in);
    for (size_t i = 0; i < in.r.n; i++) in.r.r[i].kl = in.r.r[i].vl = 0;
    repart_case(&in, 2 + (int)(seed % 5), "repartition of identical records");
    rs_free(&in.r);
}

/* ---- cache ------------------------------------------------------------------------------------------------------ */

/* Map invocations on this rank (the executor may run on its own thread). */
static _Atomic int64_t calls_cached, calls_plain;
static int64_t want_cached, want_plain;
static int counted_cached(const em_rec *in, em_emitter *out, void *arg)
{
    if (arg != ARG) return -1;
    atomic_fetch_add(&calls_cached, 1);
    return em_emit(out, in->key, in->klen, in->val, in->vlen);
}
static int counted_plain(const em_rec *in, em_emitter *out, void *arg)
{
    if (arg != ARG) return -1;
    atomic_fetch_add(&calls_plain, 1);
    return em_emit(out, in->key, in->klen, in->val, in->vlen);
}

static void chk_cache(uint64_t seed)
{
    input in;
    recs got = {0}, got2 = {0};
    int64_t n1 = -1, n2 = -1;
    gen(seed, 0, V_BYTES, &in);
    em_ds *src = par(&in.r, in.nparts);
    em_ds *c = em_map(src, counted_cached, ARG);
    if (em_cache(c) != c) failf("em_cache does not return its dataset");
    /* four actions on the cached dataset: the map runs once per record in all */
    if (count(c, &n1, "cached, first action") == 0 && (size_t)n1 != in.r.n)
        failf("cached dataset: count %" PRId64 ", want %zu", n1, in.r.n);
    if (collect(c, &got, "cached, second action") == 0) same("cached dataset, second action", &in.r, &got);
    if (count(em_filter(c, keep_cb, ARG), &n2, "cached, third action") == 0) {
        size_t k = 0;
        for (size_t i = 0; i < in.r.n; i++) k += rhash(in.r.r[i].k, in.r.r[i].kl, in.r.r[i].v, in.r.r[i].vl) % 3 != 0;
        if ((size_t)n2 != k) failf("filter of a cached dataset: count %" PRId64 ", want %zu", n2, k);
    }
    /* a self-join reads the cached partitions for both sides: records per key squared */
    size_t pairs = 0;
    for (size_t i = 0; i < in.r.n; i++)
        for (size_t j = 0; j < in.r.n; j++) pairs += key_eq(&in.r.r[i], &in.r.r[j]);
    if (count(em_join(c, c, EM_JOIN_INNER, nout(seed, 0)), &n2, "self-join of a cached dataset") == 0 && (size_t)n2 != pairs)
        failf("self-join of a cached dataset: count %" PRId64 ", want %zu", n2, pairs);
    want_cached += (int64_t)in.r.n;
    /* the control: without em_cache two actions run the map twice (so the counter can see a recompute) */
    em_ds *p = em_map(src, counted_plain, ARG);
    if (count(p, &n1, "uncached") == 0 && collect(p, &got2, "uncached") == 0) same("uncached dataset", &in.r, &got2);
    want_plain += 2 * (int64_t)in.r.n;
    rs_free(&got);
    rs_free(&got2);
    rs_free(&in.r);
}

/* ---- take ----------------------------------------------------------------------------------------------------- */

static int sparse_cb(const em_rec *in, void *arg)
{
    if (arg != ARG) return -1;
    return rhash(in->key, in->klen, in->val, in->vlen) % 10 == 0;
}

static void take_prefixes(em_ds *d, const recs *all, int sparse, const char *what)
{
    size_t ns[] = {1, all->n / 2, all->n + 5, 0, all->n};
    for (size_t i = 0; i < (sparse ? 3 : 5); i++) {
        recs got = {0}, want = {0};
        char w[96];
        snprintf(w, sizeof w, "%s: take(%zu) of %zu", what, ns[i], all->n);
        for (size_t j = 0; j < ns[i] && j < all->n; j++) rs_add(&want, all->r[j].k, all->r[j].kl, all->r[j].v, all->r[j].vl);
        if (take(d, ns[i], &got, w) == 0) same_seq(w, &want, &got);
        rs_free(&got);
        rs_free(&want);
    }
}

static void chk_take(uint64_t seed)
{
    input in;
    recs all = {0};
    gen(seed, 0, V_BYTES, &in);
    em_ds *src = par(&in.r, in.nparts);
    /* the first records in partition order, as collect lists them; also past empty partitions */
    if (collect(src, &all, "collect before take") == 0) take_prefixes(src, &all, 0, "parallelize");
    rs_free(&all);
    em_ds *sparse = em_filter(src, sparse_cb, ARG);
    if (collect(sparse, &all, "collect before take") == 0) take_prefixes(sparse, &all, 1, "sparse filter");
    rs_free(&all);
    /* of a sorted dataset: the smallest keys (naive sort of the input) */
    recs sorted = {0}, got = {0};
    rs_copy(&sorted, &in.r);
    rs_sort(&sorted);
    size_t k = sorted.n / 3 + 1;
    if (take(em_sort_by_key(src, 1, nout(seed, 0)), k, &got, "take of sortByKey") == 0) {
        if (got.n != (k < sorted.n ? k : sorted.n)) failf("take(%zu) of sortByKey of %zu records: %zu", k, sorted.n, got.n);
        for (size_t i = 0; i < got.n && i < sorted.n; i++)
            if (bytes_cmp(got.r[i].k, got.r[i].kl, sorted.r[i].k, sorted.r[i].kl)) {
                failf("take(%zu) of sortByKey: key %zu is %s, want %s", k, i, hex(got.r[i].k, got.r[i].kl), hex(sorted.r[i].k, sorted.r[i].kl));
                break;
            }
    }
    rs_free(&got);
    rs_free(&sorted);
    rs_free(&in.r);
}

/* ---- foreach ---------------------------------------------------------------------------------------------------- */

/* Appends the record to DIR/foreach.RANK as one line "hex(key) hex(val)"; write(2) with O_APPEND is visible to
 * the leader as soon as the action returns. */
static int fe_cb(const em_rec *in, void *arg)
{
    char path[512];
    bbuf line = {0};
    if (arg != ARG) return -1;
    snprintf(path, sizeof path, "%s/foreach.%d", g_dir, g_rank);
    for (int s = 0; s < 2; s++) {
        const uint8_t *p = s ? in->val : in->key;
        uint32_t n = s ? in->vlen : in->klen;
        for (uint32_t i = 0; i < n; i++) {
            char h[3];
            snprintf(h, sizeof h, "%02x", p[i]);
            bb_add(&line, h, 2);
        }
        bb_add(&line, s ? "\n" : " ", 1);
    }
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT, 0644), rc = -1;
    if (fd >= 0 && write(fd, line.p, line.n) == (ssize_t)line.n) rc = 0;
    if (fd >= 0) close(fd);
    free(line.p);
    return rc;
}

static uint32_t unhex(const char *s, size_t n, uint8_t *out)
{
    for (size_t i = 0; i + 1 < n; i += 2) {
        unsigned x;
        sscanf(s + i, "%2x", &x);
        out[i / 2] = (uint8_t)x;
    }
    return (uint32_t)(n / 2);
}

static void chk_foreach(uint64_t seed)
{
    input in;
    char path[512];
    gen(seed, 0, V_BYTES, &in);
    for (int r = 0; em_is_leader(g_ctx) && r < g_np; r++) { /* leftovers of an earlier run (no task runs yet) */
        snprintf(path, sizeof path, "%s/foreach.%d", g_dir, r);
        unlink(path);
    }
    int rc = em_foreach(par(&in.r, in.nparts), fe_cb, ARG);
    if (rc < 0) failf("em_foreach: %s: %s", em_err_name(rc), em_last_error());
    else if (em_is_leader(g_ctx)) { /* the union of every rank's file: the leader sees them all (one host) */
        recs got = {0};
        for (int r = 0; r < g_np; r++) {
            snprintf(path, sizeof path, "%s/foreach.%d", g_dir, r);
            FILE *f = fopen(path, "r");
            char line[256];
            while (f && fgets(line, sizeof line, f)) {
                uint8_t k[64], v[64];
                char *sp = strchr(line, ' ');
                if (!sp) continue;
                uint32_t kl = unhex(line, (size_t)(sp - line), k), vl = unhex(sp + 1, strcspn(sp + 1, "\n"), v);
                rs_add(&got, k, kl, v, vl);
            }
            if (f) fclose(f);
            unlink(path);
        }
        same("foreach side effects", &in.r, &got);
        rs_free(&got);
    }
    rs_free(&in.r);
}

/* ---- collect, count, reduce_i64 ----------------------------------------------------------------------------- */

static void chk_actions(uint64_t seed)
{
    input in;
    recs got = {0};
    int64_t n, v;
    gen(seed, 0, V_I64, &in);
    em_ds *d = par(&in.r, in.nparts);
    if (em_ds_partitions(d) != in.nparts) failf("parallelize: %d partitions, asked for %d", em_ds_partitions(d), in.nparts);
    if (collect(d, &got, "collect") == 0) same("collect", &in.r, &got);
    rs_free(&got);
    if (count(d, &n, "count") == 0 && (size_t)n != in.r.n) failf("count: %" PRId64 ", want %zu", n, in.r.n);
    int64_t s = 0, mn = INT64_MAX, mx = INT64_MIN;
    for (size_t i = 0; i < in.r.n; i++) {
        int64_t x = em_i64_get(in.r.r[i].v);
        s += x, mn = x < mn ? x : mn, mx = x > mx ? x : mx;
    }
    static const em_agg aggs[] = {EM_AGG_COUNT, EM_AGG_SUM, EM_AGG_MIN, EM_AGG_MAX};
    int64_t want[] = {(int64_t)in.r.n, s, mn, mx};
    for (int i = 0; i < 4; i++) {
        int rc = em_reduce_i64(d, aggs[i], &v);
        if (in.r.n == 0 && i >= 2) {
            if (rc != EM_EINVAL) failf("reduce_i64 %s of an empty dataset: %s, want EM_EINVAL", agg_name[aggs[i]], em_err_name(rc));
        } else if (rc < 0 || v != want[i]) {
            failf("reduce_i64 %s: %s, %" PRId64 ", want %" PRId64, agg_name[aggs[i]], em_err_name(rc), v, want[i]);
        }
    }
    rs_free(&in.r);
}

/* ---- big records, and data that spills ---------------------------------------------------------------------------------------------- */

/* reduceByKey (xor), sortByKey and distinct of d (whose records are *in), each into 2 partitions. */
static void wide_checks(em_ds *d, const recs *in, const char *data)
{
    recs want = {0}, got = {0};
    char what[96];
    snprintf(what, sizeof what, "reduceByKey of %s", data);
    naive_reduce(in, fold_xor, &want);
    if (collect(em_reduce_by_key(d, xor_cb, ARG, 2), &got, what) == 0) same(what, &want, &got);
    rs_free(&got);
    rs_free(&want);
    snprintf(what, sizeof what, "sortByKey of %s", data);
    if (collect(em_sort_by_key(d, 0, 2), &got, what) == 0) {
        for (size_t i = 1; i < got.n; i++)
            if (bytes_cmp(got.r[i - 1].k, got.r[i - 1].kl, got.r[i].k, got.r[i].kl) < 0) {
                failf("%s: descending order broken at %zu", what, i);
                break;
            }
        rs_copy(&want, in);
        same(what, &want, &got);
        rs_free(&want);
    }
    rs_free(&got);
    snprintf(what, sizeof what, "distinct of %s", data);
    rs_copy(&want, in);
    rs_sort(&want);
    size_t u = 0;
    for (size_t i = 0; i < want.n; i++) {
        if (u && !rec_cmp(&want.r[u - 1], &want.r[i])) {
            free(want.r[i].k);
            free(want.r[i].v);
        } else {
            want.r[u++] = want.r[i];
        }
    }
    want.n = u;
    if (collect(em_distinct(d, 2), &got, what) == 0) same(what, &want, &got);
    rs_free(&got);
    rs_free(&want);
}

/* A few records above a page (70 KiB) and above a fetch chunk (~5 MiB), keys included, mixed with small ones,
 * through narrow and wide operators. */
static void chk_big(uint64_t seed)
{
    static const uint32_t vsz[] = {70 << 10, (5 << 20) + 3, 17, (5 << 20) + 1001, 0, 70 << 10};
    static const uint32_t ksz[] = {3, 3, 3, 70 << 10, 5, 3};
    recs in = {0}, want = {0}, got = {0};
    uint64_t s = seed;
    for (int i = 0; i < 6; i++) {
        uint8_t *k = xmalloc(ksz[i]), *v = xmalloc(vsz[i]);
        for (uint32_t j = 0; j < ksz[i]; j++) k[j] = (uint8_t)(j % 251);
        if (ksz[i] == 3) k[2] = (uint8_t)(i % 2); /* two keys of 3 bytes, each with records of every size */
        for (uint32_t j = 0; j < vsz[i]; j++) v[j] = (uint8_t)rnd(&s);
        rs_add(&in, k, ksz[i], v, vsz[i]);
        free(k);
        free(v);
    }
    em_ds *d = par(&in, 3);
    if (collect(d, &got, "collect of big records") == 0) same("collect of big records", &in, &got);
    rs_free(&got);
    if (collect(em_repartition(d, 2), &got, "repartition of big records") == 0) same("repartition of big records", &in, &got);
    rs_free(&got);
    wide_checks(d, &in, "big records");
    /* groupByKey: lists of big values */
    naive_group(&in, &want);
    if (collect(em_group_by_key(d, group_cb, ARG, 2), &got, "groupByKey of big records") == 0) same("groupByKey of big records", &want, &got);
    rs_free(&got);
    rs_free(&want);
    /* join with a side of small values for the same keys: ~5 MiB values in the tuples */
    recs small = {0}, dec = {0};
    for (size_t i = 0; i < in.n; i++) rs_add(&small, in.r[i].k, in.r[i].kl, "s\0", 2);
    naive_join(&in, &small, EM_JOIN_FULL, &want);
    if (collect(em_join(d, par(&small, 2), EM_JOIN_FULL, 2), &got, "join of big records") == 0 &&
        join_decode("join of big records", &got, &dec)) {
        same("join of big records", &want, &dec);
        rs_free(&dec);
    }
    rs_free(&small);
    rs_free(&got);
    rs_free(&want);
    rs_free(&in);
}

/* 60000 records (~2 MB), 90% of them under one key: past the task memory budget when run with a small
 * --ember-memory (operators.sh: 4M, so 1 MiB per task), so shuffles, sorts and groups spill to disk. Run only
 * when named. */
static void chk_spill(uint64_t seed)
{
    recs in = {0}, want = {0}, got = {0}, small = {0}, dec = {0};
    uint64_t s = seed * 99991;
    uint8_t keys[5000][10], klen[5000], v[24];
    for (int i = 0; i < 5000; i++) {
        klen[i] = (uint8_t)(1 + below(&s, 10));
        for (int j = 0; j < klen[i]; j++) keys[i][j] = alpha[below(&s, sizeof alpha)];
    }
    for (int i = 0; i < 60000; i++) {
        uint32_t vl = (uint32_t)below(&s, 25);
        for (uint32_t j = 0; j < vl; j++) v[j] = (uint8_t)rnd(&s);
        int k = (int)below(&s, 5000);
        if (below(&s, 10) < 9) rs_add(&in, "hot\0", 4, v, vl);
        else rs_add(&in, keys[k], klen[k], v, vl);
    }
    em_ds *d = par(&in, 4);
    wide_checks(d, &in, "data past the memory budget");
    naive_group(&in, &want);
    if (collect(em_group_by_key(d, group_cb, ARG, 3), &got, "groupByKey past the memory budget") == 0)
        same("groupByKey past the memory budget", &want, &got);
    rs_free(&got);
    rs_free(&want);
    rs_add(&small, "hot\0", 4, "h", 1);
    for (int i = 0; i < 50; i++) rs_add(&small, keys[i], klen[i], "s", 1);
    naive_join(&in, &small, EM_JOIN_LEFT, &want);
    if (collect(em_join(d, par(&small, 2), EM_JOIN_LEFT, 3), &got, "join past the memory budget") == 0 &&
        join_decode("join past the memory budget", &got, &dec)) {
        same("join past the memory budget", &want, &dec);
        rs_free(&dec);
    }
    rs_free(&got);
    rs_free(&want);
    rs_free(&small);
    rs_free(&in);
}

/* ---- main ----------------------------------------------------------------------------------------------------- */

#define CHECK(name, once) {#name, chk_##name, once, 0, 0, 0, 0, ""}
static check checks[] = {
    CHECK(actions, 0),
    CHECK(map, 0),
    CHECK(filter, 0),
    CHECK(map_partitions, 0),
    CHECK(union, 0),
    CHECK(sample, 0),
    CHECK(reduce_by_key, 0),
    CHECK(reduce_by_key_agg, 0),
    CHECK(aggregate_by_key, 0),
    CHECK(group_by_key, 0),
    CHECK(cogroup, 0),
    CHECK(join, 0),
    CHECK(distinct, 0),
    CHECK(sort_by_key, 0),
    CHECK(repartition, 0),
    CHECK(cache, 0),
    CHECK(take, 0),
    CHECK(foreach, 0),
    CHECK(big, 1),
    CHECK(spill, 2),
};
#define NCHECKS ((int)(sizeof checks / sizeof *checks))

int main(int argc, char **argv)
{
    if (em_init(&argc, &argv, &g_ctx) < 0) return 2;
    g_rank = em_rank(g_ctx);
    g_np = em_size(g_ctx);
    int a = 1;
    if (a + 1 < argc && !strcmp(argv[a], "-d")) g_dir = argv[a + 1], a += 2;
    if (argc - a < 2) {
        if (em_is_leader(g_ctx)) fprintf(stderr, "usage: operators [-d DIR] SEED_FROM SEED_TO [CHECK...]\n");
        return em_finalize(g_ctx, 2);
    }
    uint64_t from = strtoull(argv[a], NULL, 10), to = strtoull(argv[a + 1], NULL, 10);
    for (int i = 0; i < NCHECKS; i++) checks[i].on = argc - a == 2 && checks[i].once < 2;
    for (int j = a + 2; j < argc; j++) {
        int found = 0;
        for (int i = 0; i < NCHECKS; i++)
            if (!strcmp(argv[j], checks[i].name)) checks[i].on = found = 1;
        if (!found) {
            if (em_is_leader(g_ctx)) fprintf(stderr, "operators: no check named '%s'\n", argv[j]);
            return em_finalize(g_ctx, 2);
        }
    }
    int bad = 0;
    for (int i = 0; i < NCHECKS; i++) {
        cur = &checks[i];
        if (!cur->on) continue;
        for (cur_seed = from; cur_seed <= to; cur_seed++) {
            seed_failed = 0;
            cur_shape = "";
            cur->fn(cur_seed);
            cur->runs++;
            if (cur->once) break;
        }
        bad |= cur->failed != 0;
        if (em_is_leader(g_ctx)) {
            if (cur->failed)
                printf("FAIL: %s np=%d seed %" PRIu64 " (%d of %d seeds): %s\n", cur->name, g_np, cur->fseed, cur->failed,
                       cur->runs, cur->why);
            else if (cur->once)
                printf("PASS: %s np=%d seed %" PRIu64 "\n", cur->name, g_np, from);
            else
                printf("PASS: %s np=%d seeds %" PRIu64 "..%" PRIu64 "\n", cur->name, g_np, from, to);
            fflush(stdout);
        } else if (cur->failed) {
            fprintf(stderr, "r%d: FAIL: %s seed %" PRIu64 ": %s\n", g_rank, cur->name, cur->fseed, cur->why);
        }
    }
    printf("CALLS rank=%d cached=%" PRId64 " plain=%" PRId64 "\n", g_rank, atomic_load(&calls_cached),
           atomic_load(&calls_plain));
    if (em_is_leader(g_ctx)) printf("CALLS want cached=%" PRId64 " plain=%" PRId64 "\n", want_cached, want_plain);
    fflush(stdout);
    return em_finalize(g_ctx, bad);
}
