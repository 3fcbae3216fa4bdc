/*
 * stream.h — internals of the streaming engine (shared DESIGN.md §7). The public API, and the semantics users see,
 * are the em_stream_* section of include/ember.h; this header is the seam between its two files:
 *
 *   scheduler/window.c   windows and their state: numbers and accumulators, the per-task aggregation of events into
 *                        partials per (window, key), the replicated window state (one sorted run of keys per open
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
 * Partial records (one task's output, then collected by every rank):
 *   key = em_i64_put(window start) then the event key, value = the encoded accumulator; in (window, key bytes)
 *   order within a task. Last, one record with an empty key: the task's counters (EM__WSTATS_LEN bytes).
 */
#ifndef EM_SCHEDULER_STREAM_H
#define EM_SCHEDULER_STREAM_H

#include "ember.h"

#include "runtime/buf.h"

#include <stddef.h>
#include <stdint.h>

#define EM__STREAM_MAX_DURATION ((int64_t)1 << 61) /* ms: window, slide, lateness (window arithmetic in range) */
#define EM__STREAM_MAX_TIME ((int64_t)1 << 62)     /* ms: event times beyond +-2^62 are counted as bad */
#define EM__STREAM_MAX_WINDOWS_PER_EVENT 10000     /* window / slide */
#define EM__WSTATS_LEN 41 /* u64 events, u64 late, u64 bad, i64 max time, u8 has max time, u64 0 (unused) */

size_t em__acc_size(em_stream_agg agg);

/* ---- the task: events -> partial aggregates per (window start, key) ---- */

typedef struct em__wtask em__wtask;

/* A task's table. `wm` is the watermark at the start of the batch; `part` the log partition the task reads (-1:
 * unknown); o->log_dir names the log in messages. LOCAL. */
em__wtask *em__wtask_new(const em_stream_opts *o, int64_t wm, int64_t part);
/* Adds one event (bytes borrowed). The partition and `off` name it in the message if it is bad (or, when `rec` is
 * not NULL, the tuple fields [2] and [3] of rec->val do). Never fails: bad and late events are counted. LOCAL. */
void em__wtask_add(em__wtask *t, int64_t time_ms, const void *key, uint32_t klen, const void *val, uint32_t vlen,
                   int64_t off, const em_rec *rec);
/* Emits the partials in (window, key) order, then the counters record; frees t (also when out is NULL: nothing is
 * emitted). Returns 0 or em_emit's error. LOCAL. */
int em__wtask_finish(em__wtask *t, em_emitter *out);

/* ---- the replicated window state ---- */

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
/* Appends the rows of every window with end <= wm (all of them when wm == INT64_MAX) to `rows`, in output order,
 * and drops those windows. Returns the number of rows. LOCAL. */
uint64_t em__wstate_emit(em__wstate *s, int64_t wm, em__buf *rows);

/* Building a run from a checkpoint: append entries in any order, then seal (sorts; -1 if a key is there twice). */
void em__wrun_push(em__wrun *r, const void *key, uint32_t klen, const uint8_t *a, size_t as);
int em__wrun_seal(em__wrun *r, size_t as);

#endif
