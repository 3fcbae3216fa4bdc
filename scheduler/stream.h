/*
 * stream.h — the micro-batch streaming engine (shared DESIGN.md §7): a windowed aggregation over the input log
 * (operators/sources/streamlog.h), event-time tumbling or sliding windows, a watermark with allowed lateness,
 * append output to a CSV file, and exactly-once checkpoints.
 *
 * Internal for now: include/ember.h belongs to another engineer; these prototypes are meant to move there as
 * em_stream_* once reviewed (jobs/windowcount.c is the only caller today).
 *
 * Semantics (the README's "Streaming (windowcount)" section says the same for users):
 *   - Windows are [start, start + window) with start a multiple of `slide` (counted from the epoch, so windows
 *     line up across runs); an event at time t belongs to every window with start <= t < start + window
 *     (one window when slide == window: tumbling).
 *   - The watermark is the largest event time seen so far minus `lateness` (none before the first event). It
 *     only moves between micro-batches. A window is closed when its end <= watermark.
 *   - An event adds to each of its windows that is still open at the start of its batch; an event all of whose
 *     windows are closed is late: dropped and counted. Late-ness is decided against the watermark at the start
 *     of the batch, so which events are late depends on batch boundaries (as in Spark).
 *   - After each batch every newly closed window is written once, as `window_start,window_end,key,value` rows
 *     ordered by (window_end, window_start, key bytes). Because the watermark never goes back, the whole output
 *     file is in that order too.
 */
#ifndef EM_SCHEDULER_STREAM_H
#define EM_SCHEDULER_STREAM_H

#include "ember.h"

#include <stdint.h>

/* The aggregate of a window's values per key. COUNT counts events and ignores values; the others read the event's
 * value as a number (an integer literal, kept exact; or a decimal number, kept as a double). */
typedef enum em__wagg { EM__WAGG_COUNT, EM__WAGG_SUM, EM__WAGG_MIN, EM__WAGG_MAX, EM__WAGG_AVG } em__wagg;
/* "count", "sum", ... -> em__wagg, or -1. And back. LOCAL. */
int em__wagg_parse(const char *name);
const char *em__wagg_name(em__wagg agg);

typedef struct em__stream_opts {
    const char *log_dir;        /* the topic */
    const char *checkpoint_dir; /* created if missing; must be on a file system every rank sees */
    const char *out_path;       /* the CSV output, appended by the leader */
    int64_t window_ms, slide_ms; /* 0 < slide_ms <= window_ms; slide_ms == window_ms: tumbling */
    int64_t lateness_ms;         /* >= 0 */
    em__wagg agg;
    int until_end;     /* 1: process what the log holds at start-up, then stop; 0: follow the log */
    int flush;         /* with until_end: at the end move the watermark to +infinity and emit every open window */
    int64_t trigger_ms;          /* follow mode: at most one batch per trigger interval when idle */
    uint64_t max_batch_events;   /* a batch reads at most this many records (0: no limit) */
    /* Optional: applied to each batch's events (records as em__log_source makes them) before windowing, e.g. an
     * em_filter or an em_map that keeps that record shape. NULL: none. Must build the same graph on every rank. */
    em_ds *(*transform)(em_ds *events, void *arg);
    void *transform_arg;
} em__stream_opts;

typedef struct em__stream_stats {
    uint64_t batches;   /* batches committed by this run */
    uint64_t events;    /* totals since the query began (restored from the checkpoint) */
    uint64_t late;      /* events dropped because all their windows were closed */
    uint64_t bad;       /* events whose value is not a number (sum/min/max/avg), or time out of range */
    uint64_t rows;      /* output rows written */
    int64_t watermark;  /* INT64_MIN: none yet */
    int resumed;        /* 1: started from an existing checkpoint */
} em__stream_stats;

/*
 * Runs the query until the log's end at start-up (until_end) or until em__stream_request_stop() was called on any
 * rank (follow mode; the current batch is committed first). Every rank must call it with the same options.
 * COLLECTIVE (runs actions). Restarting with the same checkpoint directory resumes exactly once: the output file is
 * cut back to the length recorded in the checkpoint, then the batches after it are replayed from the log.
 * Returns 0 and fills *st (may be NULL), or a negative code with em_last_error() set:
 *   EM_ENOENT  the log directory is not a topic;   EM_EINVAL  bad options, or a checkpoint written by a different
 *   query (window, slide, lateness, aggregate, partition count or output file differ);  EM_EPARSE  a corrupt
 *   checkpoint;  EM_EIO  the checkpoint directory cannot be created;  or an action's error (EM_ETASK, ...).
 * An I/O error while the leader writes the output or a checkpoint ends the leader's process (_exit(1)): the
 * survivors elect a new leader that retries the commit from its replica of the state (see stream.c).
 */
int em__stream_run(em_ctx *ctx, const em__stream_opts *o, em__stream_stats *st);

/* Asks the running query to stop after its current batch. Async-signal-safe (call it from SIGINT/SIGTERM
 * handlers); any rank may call it. LOCAL. */
void em__stream_request_stop(void);

#endif
