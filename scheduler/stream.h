/*
 * stream.h — internals of the streaming engine (shared DESIGN.md §7). The public API, and the semantics users see,
 * are the em_stream_* section of include/ember.h; this header is the seam between its two files:
 *
 *   scheduler/wtask.c    the per-task stage: events read from the log aggregated into sorted partials per
 *                        (window, key).
 *   scheduler/window.c   numbers and accumulators, the replicated window state (one sorted run of keys per open
 *                        window) that partials are merged into, and the output rows of closed windows.
 *   scheduler/stream.c   the micro-batch driver: agreeing on batch boundaries, running a batch, the checkpoint and
 *                        the exactly-once commit, follow mode and stopping.
 *
 * Accumulators are kept encoded everywhere (task tables, partial records, the state, the checkpoint), little-endian,
 * em__acc_size(agg) bytes:
 *
 *   aggregate  bytes  fields
 *   count      8      n (events)
 *   sum, avg   40     n (numbers), nfloat (numbers that were not integers), isum low 64 bits, isum high 64 bits
 *                     (isum: the integers' sum, exact in 128 bits), fsum (IEEE bits: the other numbers' sum)
 *   min, max   17     n, kind (1 byte: 0 none, 1 integer, 2 double), the integer or the double's bits
 *
 * Partial records (one task's output, then collected by every rank), in (window, key bytes) order within a task:
 *
 *   key    8 bytes   em_i64_put(window start)
 *   value  1 byte    flags: bit 0 set when this record continues the previous record's run (same task, same window)
 *          entries   until the value ends (about 64 KiB of them): LEB128 key length, the key, the accumulator
 *
 * so one record carries many (window, key) entries: collecting 1M partials costs a few hundred records, not 1M.
 * Last, one record with an empty key: the task's counters (EM__WSTATS_LEN bytes).
 */
#ifndef EM_SCHEDULER_STREAM_H
#define EM_SCHEDULER_STREAM_H

#include "ember.h"

#include "runtime/buf.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define EM__STREAM_MAX_DURATION ((int64_t)1 << 61) /* ms: window, slide, lateness (window arithmetic in range) */
#define EM__STREAM_MAX_TIME ((int64_t)1 << 62)     /* ms: event times beyond +-2^62 are counted as bad */
#define EM__STREAM_MAX_WINDOWS_PER_EVENT 10000     /* window / slide */
#define EM__WSTATS_LEN 41 /* u64 events, u64 late, u64 bad, i64 max time, u8 has max time, u64 0 (unused) */

/* ---- bytes and key order (window.c and wtask.c) ---- */

static inline uint64_t em__load64(const uint8_t *p) /* native byte order */
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}
static inline uint32_t em__load32(const uint8_t *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}
/* Little-endian fields (encoded accumulators, the counters record). */
static inline void em__put64(uint8_t *p, uint64_t v)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    memcpy(p, &v, 8);
#else
    for (int i = 0; i < 8; i++) p[i] = (uint8_t)(v >> (8 * i));
#endif
}
static inline uint64_t em__get64(const uint8_t *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return em__load64(p);
#else
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v |= (uint64_t)p[i] << (8 * i);
    return v;
#endif
}
static inline uint64_t em__load_be64(const uint8_t *p)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    return __builtin_bswap64(em__load64(p));
#else
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = v << 8 | p[i];
    return v;
#endif
}

/* Output order of keys: bytes (memcmp), then the shorter first. */
static inline int em__key_cmp(const uint8_t *a, uint32_t al, const uint8_t *b, uint32_t bl)
{
    uint32_t n = al < bl ? al : bl;
    int c = n ? memcmp(a, b, n) : 0;
    return c ? c : (al > bl) - (al < bl);
}

/* The first 8 key bytes, big-endian, zero-padded: their order is the keys' order except between keys whose first
 * 8 bytes (padded) are equal, which then need em__key_cmp. */
static inline uint64_t em__key_prefix(const uint8_t *k, uint32_t kl)
{
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    if (kl >= 8) return __builtin_bswap64(em__load64(k));
    if (kl >= 4) /* two overlapping 4-byte loads: bytes 0..3 and kl-4..kl-1 */
        return (uint64_t)__builtin_bswap32(em__load32(k)) << 32 |
               (uint64_t)__builtin_bswap32(em__load32(k + kl - 4)) << (8 * (8 - kl));
#endif
    uint64_t v = 0;
    uint32_t n = kl < 8 ? kl : 8;
    for (uint32_t i = 0; i < n; i++) v |= (uint64_t)k[i] << (56 - 8 * i);
    return v;
}

/* An item to sort by (hi, lo, then the full key). */
typedef struct em__sitem {
    uint64_t hi, lo; /* hi: window start with its sign bit flipped (unsigned order); lo: em__key_prefix */
    const uint8_t *k;
    uint32_t kl;
    uint32_t idx;
} em__sitem;
void em__sort_items(em__sitem *it, size_t n); /* wtask.c */

/* ---- numbers and accumulators (window.c) ---- */

/* A parsed value: an integer literal that fits int64 is kept exact; any other decimal number is a double. */
typedef struct em__num {
    int is_int;
    int64_t i;
    double f;
} em__num;
/* The grammar is in window.c. Returns 0, or -1: not a number. */
int em__num_parse(const char *s, size_t n, em__num *out);
size_t em__acc_size(em_stream_agg agg);
/* Adds one value to the encoded accumulator p (count: v is not read). */
void em__acc_add(em_stream_agg agg, uint8_t *p, const em__num *v);

/* ---- the task: events -> partial aggregates per (window start, key) (wtask.c) ---- */

/* What a batch's tasks read: fixed when the batch's datasets are built, kept until the query ends (a task of the
 * batch may still be referenced by the engine until then). */
typedef struct em__wtask_arg {
    const em_stream_opts *o;
    int64_t wm; /* watermark at the start of the batch */
    struct em__wtask_arg *next;
} em__wtask_arg;

/* The partials of the log ranges [from, to) (split as em__log_source does): a log source folding its raw records
 * into task tables, or, with o->transform, records transformed then aggregated in an em_map_partitions. LOCAL. */
em_ds *em__wtask_dataset(em_ctx *ctx, em__wtask_arg *b, const uint64_t *from, const uint64_t *to, uint64_t split);

/* ---- the replicated window state (window.c) ---- */

/* One window's keys, sorted by key bytes (memcmp, then the shorter first), no key twice. */
typedef struct em__wrun {
    size_t n, cap;
    size_t *koff;    /* n + 1 offsets into keys: key i is keys[koff[i], koff[i + 1]) */
    uint8_t *keys;
    size_t kcap;
    uint8_t *accs;   /* n encoded accumulators */
} em__wrun;

typedef struct em__win {
    int64_t start; /* ms */
    em__wrun run;
} em__win;

typedef struct em__wstate {
    em_stream_agg agg;
    int64_t window_ms;
    em__win *wins; /* open windows by start */
    size_t n, cap;
} em__wstate;

/* A batch's counters, summed over its tasks. */
typedef struct em__wbatch {
    uint64_t events, late, bad;
    int64_t max_t; /* INT64_MIN: none */
} em__wbatch;

void em__wstate_release(em__wstate *s);
/* The window starting at `start`, inserted empty if absent. */
em__win *em__wstate_win(em__wstate *s, int64_t start);
/* Merges the collected partial records of a batch into the state (runs of a window combined in collect order, so
 * every rank gets the same state) and sums the counters into *b. LOCAL. */
void em__wstate_merge(em__wstate *s, const em_records *r, em__wbatch *b);
/* Takes every window with end <= wm (all of them when wm == INT64_MAX) out of the state: *closed gets them (by
 * start, malloc'd; NULL when none), *nrows their number of keys (the rows they will make). Returns how many. LOCAL. */
size_t em__wstate_close(em__wstate *s, int64_t wm, em__win **closed, uint64_t *nrows);
/* Appends the rows of closed windows w[0, n) to `rows`, in output order. Touches nothing but its arguments (the
 * commit thread runs it). LOCAL. */
void em__wins_rows(em_stream_agg agg, int64_t window_ms, const em__win *w, size_t n, em__buf *rows);
/* Frees closed windows (em__wins_free(NULL, 0) is a no-op). */
void em__wins_free(em__win *w, size_t n);

/* Building a run from a checkpoint: append entries in any order, then seal (sorts; -1 if a key is there twice). */
void em__wrun_push(em__wrun *r, const void *key, uint32_t klen, const uint8_t *a, size_t as);
int em__wrun_seal(em__wrun *r, size_t as);

#endif
