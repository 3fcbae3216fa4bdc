/*
 * Tests of the keyed window state's pieces that need no ranks (scheduler/keystate.c, window.c, wtask.c): the
 * checkpoint manifest round trip and its corruption errors, the windows section of a state file round trip and its
 * split by key partition (how an EMWCKPT2 checkpoint's inline state is shared out), the key partition being the log
 * partition `ember log append` chose, and a fused task's fold: sorted runs per window from a log partition's range,
 * and EM_EINVAL when that range holds a key of another partition.
 */
#include <criterion/criterion.h>

#include "ember.h"
#include "operators/sources/streamlog.h"
#include "scheduler/stream.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char tmpdir[256];
static char topic[300];
static char err[600];

static void setup(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/em-keystate-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    snprintf(topic, sizeof topic, "%s/topic", tmpdir);
}

static void teardown(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(keystate, .init = setup, .fini = teardown);

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
}

/* A manifest of 2 log partitions and 2 key partitions, sealed. */
static void manifest(em__buf *b)
{
    uint8_t offs[16], parts[24] = {0};
    put64(offs, 1234);
    put64(offs + 8, 99);
    put64(parts, 777); /* partition 0: a state file of 777 bytes, crc 0x01020304 */
    parts[8] = 4, parts[9] = 3, parts[10] = 2, parts[11] = 1;
    em__ckpt c = {.version = 3, .batch = 42, .window_ms = 10000, .slide_ms = 5000, .lateness_ms = 1000,
                  .agg = EM_STREAM_SUM, .nlog = 2, .offsets = offs, .max_seen = 1700000000000, .wm = 1699999999000,
                  .events = 10, .late = 2, .bad = 1, .rows = 5, .out_path = (const uint8_t *)"/x/out.csv",
                  .out_len = 10, .kparts = 2};
    em__ckpt_encode(&c, parts, b);
    em__ckpt_seal(b, 4096);
}

Test(keystate, manifest_round_trip)
{
    em__buf b;
    em__buf_init(&b);
    manifest(&b);
    em__ckpt c;
    cr_assert_eq(em__ckpt_parse(b.p, b.len, "ck", 7, &c), 0, "%s", em_last_error());
    cr_assert_eq(c.version, 3);
    cr_assert_eq(c.batch, 42);
    cr_assert_eq(c.out_bytes, 4096);
    cr_assert_eq(c.window_ms, 10000);
    cr_assert_eq(c.slide_ms, 5000);
    cr_assert_eq(c.lateness_ms, 1000);
    cr_assert_eq(c.agg, EM_STREAM_SUM);
    cr_assert_eq(c.nlog, 2);
    cr_assert_eq(c.offsets[0] | c.offsets[1] << 8, 1234);
    cr_assert_eq(c.offsets[8], 99);
    cr_assert_eq(c.max_seen, 1700000000000);
    cr_assert_eq(c.wm, 1699999999000);
    cr_assert_eq(c.events + c.late + c.bad + c.rows, 18);
    cr_assert_eq(c.out_len, 10);
    cr_assert_eq(memcmp(c.out_path, "/x/out.csv", 10), 0);
    cr_assert_eq(c.kparts, 2, "a version 3 manifest keeps its own key partitions, not the default");
    cr_assert_eq(c.parts[0] | c.parts[1] << 8, 777);
    cr_assert_eq(c.parts[8], 4);
    cr_assert_null(c.state);
    em__buf_release(&b);
}

Test(keystate, manifest_corrupt_or_short_is_eparse)
{
    em__buf b;
    em__buf_init(&b);
    manifest(&b);
    em__ckpt c;
    b.p[30] ^= 1;
    cr_assert_eq(em__ckpt_parse(b.p, b.len, "ck", 2, &c), EM_EPARSE);
    cr_assert(strstr(em_last_error(), "bad crc"), "%s", em_last_error());
    b.p[30] ^= 1;
    cr_assert_eq(em__ckpt_parse(b.p, 20, "ck", 2, &c), EM_EPARSE);
    cr_assert(strstr(em_last_error(), "not a windowcount checkpoint"), "%s", em_last_error());
    memcpy(b.p, "EMWCKPT9", 8);
    cr_assert_eq(em__ckpt_parse(b.p, b.len, "ck", 2, &c), EM_EPARSE);
    em__buf_release(&b);
}

/* A count state: windows 0 and 10000, keys k0..k(n-1) in each (count = the key's number + window index). */
static void count_state(em__wstate *s, int n)
{
    *s = (em__wstate){.ag = em__agg_builtin(EM_STREAM_COUNT), .window_ms = 10000};
    for (int w = 0; w < 2; w++) {
        em__win *wn = em__wstate_win(s, w * 10000);
        for (int i = n - 1; i >= 0; i--) { /* pushed out of order: seal sorts */
            char k[16];
            uint8_t a[8];
            int kl = snprintf(k, sizeof k, "k%d", i);
            put64(a, (uint64_t)(i + w));
            em__wrun_push(&wn->run, k, (uint32_t)kl, a, 8);
        }
        cr_assert_eq(em__wrun_seal(&wn->run, 8), 0);
    }
}

Test(keystate, state_section_round_trip_and_split_by_key_partition)
{
    em__wstate s, all = {.ag = em__agg_builtin(EM_STREAM_COUNT), .window_ms = 10000}, part[3];
    count_state(&s, 500);
    em__buf b;
    em__buf_init(&b);
    em__wstate_encode(&s, &b);
    const uint8_t *p = b.p;
    int64_t bad = 0;
    cr_assert_eq(em__wstate_decode(&all, &p, b.p + b.len, 0, 0, 0, &bad), 0);
    cr_assert_eq(p, b.p + b.len);
    cr_assert_eq(em__wstate_keys(&all), 1000);
    for (size_t w = 0; w < 2; w++) {
        const em__wrun *x = &s.wins[w].run, *y = &all.wins[w].run;
        cr_assert_eq(y->n, x->n);
        cr_assert_eq(memcmp(y->keys, x->keys, x->koff[x->n]), 0);
        cr_assert_eq(memcmp(y->accs, x->accs, 8 * x->n), 0);
    }
    uint64_t total = 0;
    for (int k = 0; k < 3; k++) {
        part[k] = (em__wstate){.ag = em__agg_builtin(EM_STREAM_COUNT), .window_ms = 10000};
        p = b.p;
        cr_assert_eq(em__wstate_decode(&part[k], &p, b.p + b.len, 0, 3, k, &bad), 0);
        total += em__wstate_keys(&part[k]);
        cr_assert_gt(em__wstate_keys(&part[k]), 200, "partition %d holds a third of 1000 keys, not %" PRIu64, k,
                     em__wstate_keys(&part[k]));
        for (size_t w = 0; w < part[k].n; w++) {
            const em__wrun *r = &part[k].wins[w].run;
            for (size_t i = 0; i < r->n; i++)
                cr_assert_eq(em__key_part(r->keys + r->koff[i], r->koff[i + 1] - r->koff[i], 3), k);
        }
        em__wstate_release(&part[k]);
    }
    cr_assert_eq(total, 1000, "every key in exactly one partition");
    b.len -= 3; /* cut: the lengths no longer fit */
    p = b.p;
    em__wstate cut = {.ag = em__agg_builtin(EM_STREAM_COUNT), .window_ms = 10000};
    cr_assert_eq(em__wstate_decode(&cut, &p, b.p + b.len, 0, 0, 0, &bad), -1);
    em__wstate_release(&cut);
    em__wstate_release(&all);
    em__wstate_release(&s);
    em__buf_release(&b);
}

/* Appends key/time pairs to log partition part (whatever partition the key hashes to). */
static void append(em__log_topic *t, int part, const char *const *keys, const int64_t *times, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        em__log_rec r = {0, times[i], keys[i], (uint32_t)strlen(keys[i]), "1", 1};
        cr_assert_eq(em__log_append(t, part, &r, 1, NULL, err, sizeof err), 0, "append: %s", err);
    }
}

Test(keystate, key_partition_is_the_log_partition_of_ember_log_append)
{
    em__log_topic *t;
    cr_assert_eq(em__log_create(topic, 5, 0, err, sizeof err), 0, "%s", err);
    cr_assert_eq(em__log_open(topic, &t, err, sizeof err), 0, "%s", err);
    for (int i = 0; i < 200; i++) {
        char k[16];
        int kl = snprintf(k, sizeof k, "key%d", i);
        cr_assert_eq(em__key_part(k, (size_t)kl, 5), em__log_partition_of(t, k, (size_t)kl));
    }
    em__log_close(t);
}

Test(keystate, fused_fold_gives_sorted_runs_per_window)
{
    em__log_topic *t;
    cr_assert_eq(em__log_create(topic, 2, 0, err, sizeof err), 0, "%s", err);
    cr_assert_eq(em__log_open(topic, &t, err, sizeof err), 0, "%s", err);
    /* keys of partition 0 only, in time order over two 10 s windows, some twice */
    const char *keys[64];
    int64_t times[64];
    char kb[64][16];
    size_t n = 0;
    for (int i = 0; n < 12; i++) {
        snprintf(kb[n], sizeof kb[n], "z%d", i);
        if (em__log_partition_of(t, kb[n], strlen(kb[n])) != 0) continue;
        keys[n] = kb[n];
        times[n] = 1000 * (int64_t)n * 2; /* 0 .. 22 s */
        n++;
    }
    keys[n] = keys[0], times[n] = 1500, n++; /* z-first again, window 0 */
    append(t, 0, keys, times, n);
    em__log_close(t);
    em_stream_opts o = {.log_dir = topic, .window_ms = 10000, .slide_ms = 10000, .agg = EM_STREAM_COUNT};
    em__wtask_arg a = {&o, INT64_MIN, 2, NULL};
    em__win *w;
    size_t nw;
    uint8_t st[EM__WSTATS_LEN];
    cr_assert_eq(em__wtask_fold_runs(&a, 0, 0, n, &w, &nw, st), 0, "%s", em_last_error());
    cr_assert_eq(nw, 3, "windows 0, 10000 and 20000");
    uint64_t entries = 0, events = 0;
    for (size_t i = 0; i < nw; i++) {
        cr_assert_eq(w[i].start, (int64_t)i * 10000);
        const em__wrun *r = &w[i].run;
        for (size_t j = 0; j < r->n; j++) {
            events += em__get64(r->accs + 8 * j);
            if (j)
                cr_assert_lt(em__key_cmp(r->keys + r->koff[j - 1], (uint32_t)(r->koff[j] - r->koff[j - 1]),
                                         r->keys + r->koff[j], (uint32_t)(r->koff[j + 1] - r->koff[j])), 0);
        }
        entries += r->n;
    }
    cr_assert_eq(entries, n - 1, "the repeated key is one entry");
    cr_assert_eq(events, n);
    cr_assert_eq(em__get64(st), n, "the counters record counts every event");
    em__wins_free(w, nw);
}

Test(keystate, fused_fold_of_a_key_in_the_wrong_partition_is_einval)
{
    em__log_topic *t;
    cr_assert_eq(em__log_create(topic, 2, 0, err, sizeof err), 0, "%s", err);
    cr_assert_eq(em__log_open(topic, &t, err, sizeof err), 0, "%s", err);
    const char *keys[] = {"alpha"};
    const int64_t times[] = {5};
    const int wrong = 1 - em__log_partition_of(t, "alpha", 5);
    append(t, wrong, keys, times, 1);
    em__log_close(t);
    em_stream_opts o = {.log_dir = topic, .window_ms = 10000, .slide_ms = 10000, .agg = EM_STREAM_COUNT};
    em__wtask_arg a = {&o, INT64_MIN, 2, NULL};
    em__win *w;
    size_t nw;
    uint8_t st[EM__WSTATS_LEN];
    cr_assert_eq(em__wtask_fold_runs(&a, wrong, 0, 1, &w, &nw, st), EM_EINVAL);
    cr_assert(strstr(em_last_error(), "belong to other partitions"), "%s", em_last_error());
    em__wins_free(w, nw);
}

/* ---- the sort of items, and a fused task's fold at sizes that take its big-array paths ---- */

static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* A key from a small alphabet with NUL and 0xFF bytes, lengths 0..14, many sharing their first 8 bytes. */
static uint32_t rand_key(uint64_t *s, uint8_t *k)
{
    static const uint8_t abc[] = {0, 1, 'a', 'b', 0xFF};
    uint32_t kl = (uint32_t)(rng_next(s) % 15);
    int common = rng_next(s) % 3 == 0;
    for (uint32_t i = 0; i < kl; i++) k[i] = common && i < 8 ? 'p' : abc[rng_next(s) % sizeof abc];
    return kl;
}

typedef struct wk {
    int64_t win;
    uint32_t kl;
    uint8_t k[16];
} wk;

static int wk_cmp(const void *pa, const void *pb)
{
    const wk *a = pa, *b = pb;
    if (a->win != b->win) return a->win < b->win ? -1 : 1;
    return em__key_cmp(a->k, a->kl, b->k, b->kl);
}

Test(keystate, sort_items_orders_like_qsort_by_window_then_key)
{
    static const size_t sizes[] = {0, 1, 2, 31, 33, 1000, 20000, 70000};
    for (size_t si = 0; si < sizeof sizes / sizeof *sizes; si++) {
        const size_t n = sizes[si];
        for (uint64_t seed = 1; seed <= 3; seed++) {
            uint64_t s = seed * 0x9E3779B97F4A7C15ULL + n;
            wk *want = calloc(n + 1, sizeof *want), *keys = calloc(n + 1, sizeof *keys); /* keys: the items' bytes */
            em__sitem *it = calloc(n + 1, sizeof *it);
            for (size_t i = 0; i < n; i++) {
                want[i].kl = rand_key(&s, want[i].k);
                want[i].win = seed == 3 ? (int64_t)(rng_next(&s) % 1000) * 977 - 300000 : 10000 * (int64_t)(rng_next(&s) % 2);
                keys[i] = want[i];
                it[i] = (em__sitem){(uint64_t)want[i].win ^ 0x8000000000000000ULL, em__key_prefix(keys[i].k, keys[i].kl),
                                    keys[i].k, keys[i].kl, (uint32_t)i};
            }
            em__sort_items(it, n);
            qsort(want, n, sizeof *want, wk_cmp);
            for (size_t i = 0; i < n; i++) {
                wk got = {(int64_t)(it[i].hi ^ 0x8000000000000000ULL), it[i].kl, {0}};
                memcpy(got.k, it[i].k, it[i].kl);
                cr_assert_eq(wk_cmp(&got, &want[i]), 0, "n=%zu seed=%" PRIu64 ": item %zu out of order", n, seed, i);
            }
            free(want);
            free(keys);
            free(it);
        }
    }
}

/* The fold of one log partition against a count made by qsort, for tumbling windows, a slide of half the window
 * (both: the sort mode) and a slide of a fifth (the table), with more items than one cached sort bucket. */
Test(keystate, fused_fold_of_many_events_matches_a_naive_count)
{
    enum { N = 60000 };
    em__log_topic *t;
    cr_assert_eq(em__log_create(topic, 1, 0, err, sizeof err), 0, "%s", err);
    cr_assert_eq(em__log_open(topic, &t, err, sizeof err), 0, "%s", err);
    em__log_rec *recs = calloc(N, sizeof *recs);
    uint8_t(*kb)[16] = calloc(N, sizeof *kb);
    uint64_t s = 42;
    for (size_t i = 0; i < N; i++) {
        uint32_t kl;
        if (i % 3) { /* many repeats */
            kl = (uint32_t)snprintf((char *)kb[i], sizeof kb[i], "k%d", (int)(rng_next(&s) % 3000));
        } else {
            kl = rand_key(&s, kb[i]);
        }
        recs[i] = (em__log_rec){0, (int64_t)(rng_next(&s) % 40000), (const char *)kb[i], kl, "1", 1};
    }
    cr_assert_eq(em__log_append(t, 0, recs, N, NULL, err, sizeof err), 0, "%s", err);
    em__log_close(t);
    static const int64_t slides[] = {10000, 5000, 2000};
    for (int si = 0; si < 3; si++) {
        const int64_t W = 10000, S = slides[si];
        /* naive: every (window, key) of every event, sorted, runs counted */
        wk *all = malloc(sizeof *all * N * (size_t)(W / S));
        size_t na = 0;
        for (size_t i = 0; i < N; i++)
            for (int64_t st = recs[i].time_ms / S * S; st > recs[i].time_ms - W; st -= S) {
                all[na] = (wk){st, recs[i].klen, {0}};
                memcpy(all[na].k, recs[i].key, recs[i].klen);
                na++;
            }
        qsort(all, na, sizeof *all, wk_cmp);
        em_stream_opts o = {.log_dir = topic, .window_ms = W, .slide_ms = S, .agg = EM_STREAM_COUNT};
        em__wtask_arg a = {&o, INT64_MIN, 1, NULL};
        em__win *w;
        size_t nw;
        uint8_t st[EM__WSTATS_LEN];
        cr_assert_eq(em__wtask_fold_runs(&a, 0, 0, N, &w, &nw, st), 0, "%s", em_last_error());
        size_t q = 0;
        for (size_t wi = 0; wi < nw; wi++) {
            const em__wrun *r = &w[wi].run;
            for (size_t j = 0; j < r->n; j++) {
                cr_assert_lt(q, na, "slide %" PRId64 ": more entries than the naive count", S);
                size_t e = q;
                while (e < na && wk_cmp(&all[e], &all[q]) == 0) e++;
                wk got = {w[wi].start, (uint32_t)(r->koff[j + 1] - r->koff[j]), {0}};
                memcpy(got.k, r->keys + r->koff[j], got.kl);
                cr_assert_eq(wk_cmp(&got, &all[q]), 0, "slide %" PRId64 ": window %zu entry %zu is another key", S, wi, j);
                cr_assert_eq(em__get64(r->accs + 8 * j), (uint64_t)(e - q), "slide %" PRId64 ": a wrong count", S);
                q = e;
            }
        }
        cr_assert_eq(q, na, "slide %" PRId64 ": entries missing", S);
        cr_assert_eq(em__get64(st), (uint64_t)N, "the counters record counts every event");
        em__wins_free(w, nw);
        free(all);
    }
    free(recs);
    free(kb);
}
