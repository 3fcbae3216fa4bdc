/*
 * stream.h — internals of the streaming engine (shared DESIGN.md §7). The public API, and the semantics users see,
 * are the em_stream_* section of include/ember.h; this header is the seam between its two files:
 *
 *   scheduler/wtask.c    the per-task stage: events read from the log aggregated into sorted partials per
 *                        (window, key).
 *   scheduler/window.c   numbers and accumulators, the window state of one key partition (one sorted run of keys
 *                        per open window) that partials are merged into, closed windows as row records, and the
 *                        CSV rows of closed windows merged across key partitions.
 *   scheduler/keystate.c the window state partitioned by key: each rank keeps the key partitions whose home it is;
 *                        the batch and close tasks that update them; the checkpoint's format (manifest and
 *                        per-partition state files).
 *   scheduler/stream.c   the micro-batch driver: agreeing on batch boundaries, running a batch, the exactly-once
 *                        commit, follow mode and stopping.
 *
 * Accumulators are kept encoded everywhere (task tables, partial records, the state, the checkpoint), little-endian,
 * em__agg's size bytes:
 *
 *   aggregate  bytes  fields
 *   count      8      n (events)
 *   sum, avg   40     n (numbers), nfloat (numbers that were not integers), isum low 64 bits, isum high 64 bits
 *                     (isum: the integers' sum, exact in 128 bits), fsum (IEEE bits: the other numbers' sum)
 *   min, max   17     n, kind (1 byte: 0 none, 1 integer, 2 double), the integer or the double's bits
 *   user       acc_size  the user's bytes (em_stream_combine), as its functions left them
 *
 * Partial records (one task's output, then collected by every rank), grouped by key partition (em__key_part), in
 * (window, key bytes) order within a group:
 *
 *   key    10 bytes  2 bytes key partition (big-endian), em_i64_put(window start)
 *   value  1 byte    flags: bit 0 set when this record continues the previous record's run (same task, same key
 *                    partition, same window)
 *          entries   until the value ends (about 64 KiB of them): LEB128 key length, the key, the accumulator
 *
 * so one record carries many (window, key) entries: collecting 1M partials costs a few hundred records, not 1M.
 * Last, one record with an empty key: the task's counters (EM__WSTATS_LEN bytes).
 *
 * Row records (a batch or close task's closed windows, collected by every rank) have the same value layout with an
 * 8-byte key (em_i64_put(window start)); each task emits its windows in start order, then its counters record
 * (EM__KSTATS_LEN bytes, keystate.c).
 */
#ifndef EM_SCHEDULER_STREAM_H
#define EM_SCHEDULER_STREAM_H

#include "ember.h"

#include "operators/sources/streamlog.h"
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
static inline void em__put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t em__get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
/* The checkpoint's and state files' fields through the runtime's bounds-checked reader (em__rd, runtime/buf.h):
 * past the end they read 0 and set r->err. LEB128: at most 10 bytes. */
static inline uint64_t em__rd_le64(em__rd *r)
{
    const uint8_t *q = em__rd_take(r, 8);
    return q ? em__get64(q) : 0;
}
static inline uint32_t em__rd_le32(em__rd *r)
{
    const uint8_t *q = em__rd_take(r, 4);
    return q ? em__get32(q) : 0;
}
static inline uint64_t em__rd_leb(em__rd *r)
{
    uint64_t v = 0;
    for (int sh = 0; sh < 64; sh += 7) {
        const uint8_t *q = em__rd_take(r, 1);
        if (!q) return 0;
        v |= (uint64_t)(*q & 127) << sh;
        if (!(*q & 128)) return v;
    }
    r->err = 1;
    return 0;
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

/* The hash of a key's bytes: the task tables' hash (wtask.c). */
static inline uint64_t em__hash_key(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ (n * 0xC2B2AE3D27D4EB4FULL);
    while (n >= 8) {
        uint64_t w = em__load64(b);
        h = (h ^ (w * 0xBF58476D1CE4E5B9ULL)) * 0x94D049BB133111EBULL;
        h ^= h >> 29;
        b += 8;
        n -= 8;
    }
    /* the last 0..7 bytes, as overlapping loads (the length is already in h) */
    uint64_t w = n >= 4 ? (uint64_t)em__load32(b) << 32 | em__load32(b + n - 4)
               : n ? (uint64_t)b[0] << 16 | (uint64_t)b[n / 2] << 8 | b[n - 1] : 0;
    h = (h ^ (w * 0xBF58476D1CE4E5B9ULL)) * 0x94D049BB133111EBULL;
    h ^= h >> 31;
    return h;
}

#define EM__KPARTS_MAX 65535 /* key partitions of the window state (log partitions) */

/* The key partition of a key: the log partition `ember log append` puts it in (em__log_hash mod K, K = the log's
 * partitions), so that a task reading log partition p meets only keys of key partition p. */
static inline int em__key_part(const void *key, size_t klen, int K)
{
    return K > 1 ? (int)(em__log_hash(key, klen) % (uint64_t)K) : 0;
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

/* A query's aggregate: a built-in one, or the user's combine function (EM_STREAM_USER). */
typedef struct em__agg {
    em_stream_agg kind;
    size_t size;                   /* bytes of an encoded accumulator */
    const em_stream_combine *user; /* kind == EM_STREAM_USER: the functions */
} em__agg;
em__agg em__agg_builtin(em_stream_agg kind);
em__agg em__agg_of(const em_stream_opts *o); /* o->combine checked (em_stream_run) when o->agg is EM_STREAM_USER */
/* Adds one value to the encoded accumulator p of a built-in aggregate (count: v is not read). */
void em__acc_add(em_stream_agg agg, uint8_t *p, const em__num *v);
/* p := the user's merge of p and q (copied to aligned memory for the call). */
void em__acc_merge_user(const em__agg *ag, uint8_t *p, const uint8_t *q);

/* ---- the task: events -> partial aggregates per (window start, key) (wtask.c) ---- */

/* What a batch's tasks read: fixed when the batch's datasets are built, kept until the query ends (a task of the
 * batch may still be referenced by the engine until then). */
typedef struct em__wtask_arg {
    const em_stream_opts *o;
    int64_t wm; /* watermark at the start of the batch */
    int kparts; /* key partitions of the window state */
    struct em__wtask_arg *next;
} em__wtask_arg;

/* The partials of the log ranges [from, to) (split as em__log_source does): a log source folding its raw records
 * into task tables, or, with o->transform, records transformed then aggregated in an em_map_partitions. LOCAL. */
em_ds *em__wtask_dataset(em_ctx *ctx, em__wtask_arg *b, const uint64_t *from, const uint64_t *to, uint64_t split);
struct em__win;
/* The partials of log partition log_part's records [from, to) (no transform), here and now, as runs, one per window (by start; *wins malloc'd, em__wins_free), and the counters record's
 * bytes (EM__WSTATS_LEN) in wstats: no encoding for a collect. Fails with EM_EINVAL when a key belongs to another
 * key partition than log_part (a log not written by `ember log append`), or with the log's error. LOCAL. */
int em__wtask_fold_runs(const em__wtask_arg *b, int log_part, uint64_t from, uint64_t to, struct em__win **wins,
                        size_t *nwins, uint8_t *wstats);

/* ---- the window state of one key partition (window.c) ---- */

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
    em__agg ag;
    int64_t window_ms;
    em__win *wins; /* open windows by start */
    size_t n, cap;
} em__wstate;

/* A batch's counters, summed over its tasks. */
typedef struct em__wbatch {
    uint64_t events, late, bad;
    int64_t max_t; /* INT64_MIN: none */
} em__wbatch;

/* A run of partial records: records [b, e) of one collect, of one key partition and window, one block each (see
 * above), whose entries are in strictly increasing key order across the blocks. */
typedef struct em__prun {
    int64_t win;
    size_t b, e;
    size_t seq; /* collect order */
    int k;      /* key partition */
} em__prun;

void em__wstate_release(em__wstate *s);
/* The number of (window, key) entries. */
uint64_t em__wstate_keys(const em__wstate *s);
/* The window starting at `start`, inserted empty if absent. */
em__win *em__wstate_win(em__wstate *s, int64_t start);
/* Indexes a batch's collected partial records r (K key partitions): *runs (malloc'd; NULL when none) sorted by
 * (key partition, window, collect order); the runs of partition k are (*runs)[first[k], first[k + 1]) (first: K + 1
 * entries, malloc'd). Sums the counters records into *b. LOCAL. */
void em__partials_index(const em_records *r, int K, em__prun **runs, size_t **first, em__wbatch *b);
/* Merges the partial runs p[0, n) of records r (sorted by window, then collect order) into the state: the runs of
 * a window are combined in collect order, so the state does not depend on where or how often this runs. LOCAL. */
void em__wstate_merge(em__wstate *s, const em_records *r, const em__prun *p, size_t n);
/* Takes every window with end <= wm (all of them when wm == INT64_MAX) out of the state: *closed gets them (by
 * start, malloc'd; NULL when none), *nrows their number of keys (the rows they will make). Returns how many. LOCAL. */
size_t em__wstate_close(em__wstate *s, int64_t wm, em__win **closed, uint64_t *nrows);
/* Frees closed windows (em__wins_free(NULL, 0) is a no-op). */
void em__wins_free(em__win *w, size_t n);
/* Emits closed windows w[0, n) as row records (see above). Returns 0 or em_emit's error. */
int em__wins_emit(const em__agg *ag, const em__win *w, size_t n, em_emitter *out);
/* Appends the CSV rows of the row records in r (records with an 8-byte key; the others are skipped) to `rows`, in
 * output order: windows by start, and the rows of one window (one run per key partition, disjoint keys) merged by
 * key. Touches nothing but its arguments (the commit thread runs it). LOCAL. */
void em__rows_text(const em__agg *ag, int64_t window_ms, const em_records *r, em__buf *rows);

/* The windows section of a state file (or of an EMWCKPT1/2 checkpoint, drawn in keystate.c): appends s to b. */
void em__wstate_encode(const em__wstate *s, em__buf *b);
/* Reads a windows section from *p (advanced past it; v1: EMWCKPT1's wider fields) into s, keeping only the keys of
 * key partition k of K when K > 0. Returns 0, -1 (the lengths do not fit the bytes) or -2 (a key twice in a
 * window; *bad_win is that window). LOCAL. */
int em__wstate_decode(em__wstate *s, const uint8_t **p, const uint8_t *end, int v1, int K, int k, int64_t *bad_win);

/* Building a run from a checkpoint: append entries in any order, then seal (sorts; -1 if a key is there twice).
 * em__wrun_reserve makes room for n more entries and kbytes more key bytes first. */
void em__wrun_reserve(em__wrun *r, size_t n, size_t kbytes, size_t as);
void em__wrun_push(em__wrun *r, const void *key, uint32_t klen, const uint8_t *a, size_t as);
/* Merges the sorted run of window pw (a fused task's partials, em__wtask_fold_runs) into the state. LOCAL. */
void em__wstate_merge_run(em__wstate *s, em__win *pw);
int em__wrun_seal(em__wrun *r, size_t as);

/* ---- the window state partitioned by key (keystate.c) ---- */

#define EM__KSTATS_LEN 72 /* a batch or close task's counters record, see keystate.c */

/* The checkpoint as read from its bytes (keystate.c draws the format). Pointers point into those bytes. */
typedef struct em__ckpt {
    int version;                 /* 1, 2 (the state inline) or 3 (per-partition state files) */
    uint64_t batch, out_bytes;
    int64_t window_ms, slide_ms, lateness_ms;
    uint32_t agg, nlog;          /* aggregate, log partitions */
    const uint8_t *offsets;      /* nlog little-endian u64 */
    int64_t max_seen, wm;
    uint64_t events, late, bad, rows;
    const uint8_t *out_path;     /* not NUL-terminated */
    uint32_t out_len;
    int kparts;                  /* key partitions (versions 1, 2: the caller's) */
    const uint8_t *parts;        /* version 3: kparts x (u64 size, u32 crc32) of the state files */
    const uint8_t *state, *state_end; /* versions 1, 2: the windows section */
} em__ckpt;

/* Parses and checks (magic, crc, lengths) a checkpoint's bytes; `path` names it in messages; kparts_default: the
 * key partitions of a version 1 or 2 checkpoint. Returns 0 or EM_EPARSE with the message set. LOCAL. */
int em__ckpt_parse(const uint8_t *p, size_t n, const char *path, int kparts_default, em__ckpt *c);
/* A version 3 checkpoint's bytes; the output length at EM__CK_OUT_BYTES and the crc are set by em__ckpt_seal. */
#define EM__CK_OUT_BYTES 16
void em__ckpt_encode(const em__ckpt *c, const uint8_t *part_size_crc, em__buf *b);
void em__ckpt_seal(em__buf *b, uint64_t out_bytes);
/* CHECKPOINT/state/<batch>.<k>: the state file of key partition k after `batch`. malloc'd. */
char *em__state_path(const char *ckdir, uint64_t batch, int k);
/* Reads a whole file into b (keystate.c). Returns 0, EM_ENOENT, or EM_EIO with the message set. */
int em__read_file(const char *path, em__buf *b);

/* The keyed state of one query on this rank: the partitions whose tasks ran here last, and what the batches the
 * checkpoint on disk does not cover yet were (their log ranges, or their collected partials; every rank keeps those,
 * so that any rank can rebuild any partition: checkpoint + those batches). */
typedef struct em__kstore em__kstore;
em__kstore *em__kstore_new(em_ctx *ctx, const em_stream_opts *o, int kparts, const char *ckdir, const char *ckpt_path);
void em__kstore_free(em__kstore *ks);
/* Keeps batch `batch`'s collected records r with their em__partials_index (all three moved from the caller; r NULL:
 * a batch without events, e.g. the final flush) and the watermark after it. Main thread, between actions. LOCAL. */
void em__kstore_add(em__kstore *ks, uint64_t batch, int64_t wm, em_records *r, em__prun *runs, size_t *first);
/* Forgets the batches <= c (the checkpoint on disk covers them). LOCAL. */
void em__kstore_trim(em__kstore *ks, int64_t c);
/* The close dataset of `batch` (kept by em__kstore_add): partition k merges the batch's partials of key partition k
 * into the state, takes out the windows the watermark closed (their row records), writes the state file, and ends
 * with its counters record. Its tasks prefer the rank of their partition's home (em_cache-like placement), where
 * the state is; anywhere else they rebuild it. LOCAL (lazy). */
em_ds *em__kstore_close_ds(em__kstore *ks, uint64_t batch);
/* Keeps fused batch `batch`: its log ranges from[p], to[p] (p < K: K is the log's partitions) and the watermark at
 * its start (it closes windows and drops late events). Main thread, between actions. LOCAL. */
void em__kstore_add_fused(em__kstore *ks, uint64_t batch, int64_t wm0, const uint64_t *from, const uint64_t *to);
/* The batch dataset of fused batch `batch` (used when the log partitions are the key partitions: no transform):
 * partition p closes the windows the watermark at the batch's start closes (row records), reads its log range and
 * merges it into the state, writes the state file and emits its counters record (with the events' counters and
 * largest time). No partials travel: one action per batch. Partition 0 first emits what poll(poll_arg, sink) emits.
 * Pinned like the close dataset; a task elsewhere rebuilds the state by reading the kept batches' ranges again.
 * LOCAL (lazy). */
em_ds *em__kstore_batch_ds(em__kstore *ks, uint64_t batch, int (*poll)(void *arg, em_emitter *sink), void *poll_arg);
/* The counters record of a close or batch task, decoded. */
typedef struct em__kstats {
    int k, rank;       /* key partition, the rank that ran the task (holds the partition now) */
    uint64_t keys;     /* (window, key) entries left in the state */
    uint64_t rows;     /* rows of the closed windows */
    uint64_t size;     /* bytes of the state file (0: none, the state is empty) */
    uint32_t crc;      /* its crc32 */
    uint64_t events, late, bad; /* batch dataset: of the task's log range */
    int64_t max_t;     /* largest event time seen (INT64_MIN: none) */
} em__kstats;
/* Decodes the counters record x of a close task: 1, 0 when x is not one. */
int em__kstats_get(const em_rec *x, em__kstats *st);

#endif
