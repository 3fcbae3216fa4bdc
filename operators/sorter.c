/* sorter.c — in-memory sort with spill to zlib-compressed runs and a k-way merge (see sorter.h).
 *
 * In memory, each record has an index entry {first 16 key bytes big-endian, offset and key length}: comparisons
 * of keys up to 16 bytes (an int64 or a short tuple: a 9-byte key shared by many records is the join's common case)
 * end in the entry without touching the records; longer keys fall back to memcmp when their 16 bytes tie. An 8-byte
 * prefix sent most comparisons of int64 tuple keys to the records (the tag byte leaves 7 bytes of the number). A run file is the sorted records in em__rec format, gzip-compressed at level 1 (fast; shuffle data
 * compresses 3-5x), deleted when the sorter is released. The merge picks the smallest head among the runs and
 * the in-memory remainder by a linear scan: runs are few (each holds a budget's worth of data). */
#include "operators/sorter.h"

#include "operators/shuffle.h"
#include "runtime/log.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

struct em__run {
    char *path;
    gzFile f;
    em__buf cur; /* the head record's key and value bytes */
    em_rec head;
    int have, eof;
};

void em__sorter_init(em__sorter *s, size_t budget, const char *tmpdir, int desc)
{
    memset(s, 0, sizeof *s);
    s->budget = budget < ((size_t)1 << 20) ? (size_t)1 << 20 : budget;
    s->desc = desc;
    const char *d = tmpdir && *tmpdir ? tmpdir : getenv("TMPDIR");
    s->dir = em__strdup(d && *d ? d : "/tmp");
    s->last = -2;
}

#define OFF_MASK ((UINT64_C(1) << 56) - 1)

/* The index entry of a key stored at offset off. */
static void ix_set(uint64_t *e, const void *k, uint32_t kl, size_t off)
{
    uint8_t b[16] = {0};
    if (kl) memcpy(b, k, kl < 16 ? kl : 16);
    uint64_t v = 0, w = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | b[i], w = w << 8 | b[8 + i];
    e[0] = v;
    e[1] = w;
    e[2] = (uint64_t)off | (uint64_t)(kl < 17 ? kl : 17) << 56;
}

static int ix_cmp(const void *a, const void *b, void *arg)
{
    const uint64_t *x = a, *y = b;
    const em__sorter *s = arg;
    int c;
    if (x[0] != y[0]) {
        c = x[0] < y[0] ? -1 : 1;
    } else if (x[1] != y[1]) {
        c = x[1] < y[1] ? -1 : 1;
    } else if ((x[2] >> 56) <= 16 && (y[2] >> 56) <= 16) {
        /* Both keys are in their entries, zero-padded: equal bytes, so the shorter sorts first. */
        c = (x[2] >> 56 > y[2] >> 56) - (x[2] >> 56 < y[2] >> 56);
    } else {
        uint32_t xl, yl;
        size_t xo = x[2] & OFF_MASK, yo = y[2] & OFF_MASK;
        memcpy(&xl, s->mem.p + xo, 4);
        memcpy(&yl, s->mem.p + yo, 4);
        c = em__key_cmp(s->mem.p + xo + 8, xl, s->mem.p + yo + 8, yl);
    }
    return s->desc ? -c : c;
}

static void sort_mem(em__sorter *s)
{
    if (s->n > 1) qsort_r(s->ix, s->n, sizeof *s->ix, ix_cmp, s);
}

static _Atomic unsigned run_seq;

static int spill(em__sorter *s)
{
    sort_mem(s);
    char path[4096];
    snprintf(path, sizeof path, "%s/ember-run-%d-%u.gz", s->dir, (int)getpid(), atomic_fetch_add(&run_seq, 1));
    gzFile f = gzopen(path, "wb1");
    if (!f) return em__fail(EM_EIO, "spill: cannot create %s: %s", path, strerror(errno));
    int ok = 1;
    for (size_t i = 0; i < s->n && ok; i++) {
        const uint8_t *p = s->mem.p + (s->ix[i][2] & OFF_MASK);
        uint32_t kl, vl;
        memcpy(&kl, p, 4);
        memcpy(&vl, p + 4, 4);
        ok = gzwrite(f, p, 8 + kl + vl) == (int)(8 + kl + vl);
    }
    if (gzclose(f) != Z_OK || !ok) {
        unlink(path);
        return em__fail(EM_EIO, "spill: cannot write %s (disk full?)", path);
    }
    em__run *r = em__calloc(1, sizeof *r);
    r->path = em__strdup(path);
    s->runs = em__realloc(s->runs, sizeof *s->runs * (size_t)(s->nruns + 1));
    s->runs[s->nruns++] = r;
    struct stat st;
    if (stat(path, &st) == 0) s->spilled += (uint64_t)st.st_size;
    EM_LOG_D("spilled %zu records (%zu bytes in memory) to %s", s->n, s->mem.len, path);
    s->mem.len = 0;
    s->n = 0;
    return 0;
}

int em__sorter_add(em__sorter *s, const em_rec *r)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 1024;
        s->ix = em__realloc(s->ix, sizeof *s->ix * s->cap);
    }
    ix_set(s->ix[s->n], r->key, r->klen, s->mem.len);
    s->n++;
    em__rec_append(&s->mem, r->key, r->klen, r->val, r->vlen);
    if (s->mem.len + sizeof *s->ix * s->n > s->budget && s->n > 1) return spill(s);
    return 0;
}

/* Reads the next record of a run into its head. Returns 1, 0 at its end, EM_EIO. */
static int run_advance(em__run *r)
{
    uint32_t h[2];
    int n = gzread(r->f, h, 8);
    if (n == 0) {
        r->have = 0;
        r->eof = 1;
        return 0;
    }
    if (n != 8) return em__fail(EM_EIO, "spill file %s is damaged", r->path);
    r->cur.len = 0;
    em__buf_grow(&r->cur, (size_t)h[0] + h[1]);
    if (h[0] + h[1] && gzread(r->f, r->cur.p, h[0] + h[1]) != (int)(h[0] + h[1]))
        return em__fail(EM_EIO, "spill file %s is damaged", r->path);
    r->head = (em_rec){r->cur.p, r->cur.p + h[0], h[0], h[1]};
    r->have = 1;
    return 1;
}

int em__sorter_finish(em__sorter *s)
{
    sort_mem(s);
    for (int i = 0; i < s->nruns; i++) {
        em__run *r = s->runs[i];
        if (!(r->f = gzopen(r->path, "rb"))) return em__fail(EM_EIO, "cannot reopen spill file %s", r->path);
        gzbuffer(r->f, 256 * 1024);
        int rc = run_advance(r);
        if (rc < 0) return rc;
    }
    s->reading = 1;
    s->mpos = 0;
    s->last = -2;
    return 0;
}

static void mem_rec(const em__sorter *s, size_t i, em_rec *r)
{
    size_t pos = s->ix[i][2] & OFF_MASK;
    em__rec_next(s->mem.p, s->mem.len, &pos, r);
}

int em__sorter_next(em__sorter *s, em_rec *out)
{
    if (s->last >= 0) { /* the run whose head we returned moves on now that the caller is done with it */
        int rc = run_advance(s->runs[s->last]);
        if (rc < 0) return rc;
    } else if (s->last == -1) {
        s->mpos++;
    }
    int best = -2;
    em_rec b, m;
    if (s->mpos < s->n) {
        /* Sorted order visits the records at random: ask for one a few places ahead (a cache miss per record
         * was the largest cost of reading a big sorted partition). */
        if (s->mpos + 8 < s->n) __builtin_prefetch(s->mem.p + (s->ix[s->mpos + 8][2] & OFF_MASK));
        mem_rec(s, s->mpos, &m);
        b = m;
        best = -1;
    }
    for (int i = 0; i < s->nruns; i++) {
        em__run *r = s->runs[i];
        if (!r->have) continue;
        int c = best == -2 ? -1 : em__key_cmp(r->head.key, r->head.klen, b.key, b.klen);
        if (s->desc && best != -2) c = -c;
        if (c < 0) {
            b = r->head;
            best = i;
        }
    }
    s->last = best;
    if (best == -2) return 0;
    *out = b;
    return 1;
}

void em__sorter_release(em__sorter *s)
{
    for (int i = 0; i < s->nruns; i++) {
        em__run *r = s->runs[i];
        if (r->f) gzclose(r->f);
        unlink(r->path);
        free(r->path);
        em__buf_release(&r->cur);
        free(r);
    }
    free(s->runs);
    free(s->ix);
    free(s->dir);
    em__buf_release(&s->mem);
    memset(s, 0, sizeof *s);
}
