/*
 * Tests of the combine table (operators/combine.c) against a naive table written here (a list of distinct keys
 * searched linearly): random keys of 0..20 bytes drawn from a small alphabet with NUL and 0xFF bytes, so keys of
 * up to 12 bytes (matched by their slot prefix alone) and longer ones (also compared in the arena) collide
 * often, added through both em__ctab_add (encoded values) and em__ctab_add_i64, for COUNT and SUM on the map
 * side and SUM on the reduce side, with a limit small enough that the table is drained several times.
 */
#include <criterion/criterion.h>

#include "operators/dataset.h"
#include "operators/shuffle.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng_state;
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

enum { MAXK = 20, NKEYS = 3000 };

typedef struct nkey {
    uint8_t k[MAXK];
    uint32_t kl;
    int64_t sum;
    int64_t got; /* what the table reported */
} nkey;

typedef struct naive {
    nkey *keys;
    size_t n;
} naive;

static nkey *naive_find(naive *nv, const uint8_t *k, uint32_t kl)
{
    for (size_t i = 0; i < nv->n; i++)
        if (nv->keys[i].kl == kl && memcmp(nv->keys[i].k, k, kl) == 0) return &nv->keys[i];
    return NULL;
}

static size_t bytes_seen; /* bytes of the records collect saw (u32 klen, u32 vlen, key, value) */

/* Sums what the table hands out into the naive table's `got` (a key drained twice is added up twice). */
static int collect(const em_rec *r, void *arg)
{
    naive *nv = arg;
    bytes_seen += 8 + (size_t)r->klen + r->vlen;
    nkey *e = naive_find(nv, r->key, r->klen);
    cr_assert(e, "the table returned a key that was never added (%u bytes)", r->klen);
    cr_assert_eq(r->vlen, 8);
    e->got += em_i64_get(r->val);
    return 0;
}

static void random_key(uint8_t *k, uint32_t *kl)
{
    static const uint8_t alpha[] = {0, 'a', 'b', 0xff};
    *kl = (uint32_t)(rnd() % (MAXK + 1));
    for (uint32_t i = 0; i < *kl; i++) k[i] = alpha[rnd() % sizeof alpha];
}

static void run_presized(int agg, int map_side, size_t limit, uint64_t seed, size_t presize)
{
    rng_state = seed;
    em__node w;
    memset(&w, 0, sizeof w);
    w.id = 7;
    w.agg = agg;
    em__ctab t;
    em__ctab_init(&t, &w, map_side, limit);
    if (presize) {
        em__ctab_presize(&t, presize);
        cr_assert_geq(t.cap, 2 * presize, "presized to %zu slots", t.cap);
    }
    naive nv = {calloc(NKEYS * 4, sizeof(nkey)), 0};
    /* A pool of keys, so that most adds hit a key seen before. */
    uint8_t pool[NKEYS][MAXK];
    uint32_t plen[NKEYS];
    for (int i = 0; i < NKEYS; i++) random_key(pool[i], &plen[i]);
    int drains = 0;
    for (int i = 0; i < 60000; i++) {
        int p = (int)(rnd() % NKEYS);
        int64_t v = (int64_t)(rnd() % 2001) - 1000;
        if (rnd() % 50 == 0) v = rnd() % 2 ? INT64_MAX : INT64_MIN; /* wraps like the int64 sum */
        int64_t counted = agg == EM_AGG_COUNT && map_side ? 1 : v;
        nkey *e = naive_find(&nv, pool[p], plen[p]);
        if (!e) {
            e = &nv.keys[nv.n++];
            memcpy(e->k, pool[p], plen[p]);
            e->kl = plen[p];
        }
        e->sum = (int64_t)((uint64_t)e->sum + (uint64_t)counted);
        int rc;
        if (rnd() % 2) {
            rc = em__ctab_add_i64(&t, pool[p], plen[p], v);
        } else {
            uint8_t b[8];
            em_i64_put(b, v);
            rc = em__ctab_add(&t, pool[p], plen[p], b, 8);
        }
        cr_assert(rc == 0 || rc == 1, "add %d: %d", i, rc);
        if (rc == 1 && em__ctab_full(&t)) {
            cr_assert_eq(em__ctab_drain(&t, collect, &nv), 0);
            drains++;
        }
    }
    cr_assert_eq(em__ctab_flush(&t), 0);
    size_t rec_bytes = t.rec_bytes; /* what the map side sizes its buckets from */
    bytes_seen = 0;
    cr_assert_eq(em__ctab_each(&t, collect, &nv), 0);
    cr_assert_eq(bytes_seen, rec_bytes, "records of %zu bytes, the table counted %zu", bytes_seen, rec_bytes);
    if (limit < ((size_t)1 << 20)) cr_assert_gt(drains, 0, "the limit was meant to force drains");
    for (size_t i = 0; i < nv.n; i++)
        cr_assert_eq(nv.keys[i].got, nv.keys[i].sum, "key %zu (%u bytes): table %lld, naive %lld", i,
                     nv.keys[i].kl, (long long)nv.keys[i].got, (long long)nv.keys[i].sum);
    em__ctab_release(&t);
    free(nv.keys);
}

static void run(int agg, int map_side, size_t limit, uint64_t seed) { run_presized(agg, map_side, limit, seed, 0); }

Test(combine, count_map_side)
{
    for (uint64_t s = 1; s <= 3; s++) run(EM_AGG_COUNT, 1, (size_t)64 << 20, s);
}

Test(combine, sum_map_side)
{
    for (uint64_t s = 1; s <= 3; s++) run(EM_AGG_SUM, 1, (size_t)64 << 20, s);
}

Test(combine, sum_reduce_side)
{
    for (uint64_t s = 1; s <= 3; s++) run(EM_AGG_SUM, 0, (size_t)64 << 20, s);
}

Test(combine, drained_when_full)
{
    for (uint64_t s = 1; s <= 3; s++) {
        run(EM_AGG_COUNT, 1, 16 << 10, s);
        run(EM_AGG_SUM, 0, 16 << 10, s);
    }
}

/* A table presized for far more entries than it gets works like any other, and the thread's next table starts at
 * the size those entries needed, not at the presized one. */
Test(combine, presized)
{
    run_presized(EM_AGG_SUM, 1, (size_t)64 << 20, 1, 100000); /* NKEYS distinct keys at most */
    em__node w;
    memset(&w, 0, sizeof w);
    w.agg = EM_AGG_SUM;
    em__ctab t;
    em__ctab_init(&t, &w, 1, (size_t)64 << 20);
    cr_assert(t.cap >= 2 * NKEYS && t.cap < 200000, "the next table starts with %zu slots", t.cap);
    em__ctab_presize(&t, 100000); /* the hint wins */
    cr_assert_lt(t.cap, 200000);
    em__ctab_release(&t);
}
