/* logsrc.h — the input log as a dataset source (shared DESIGN.md §7): ranges of offsets of a topic's partitions
 * (operators/sources/streamlog.h) read by tasks like any other source. Internal: the streaming engine
 * (scheduler/stream.c) builds one of these per micro-batch. */
#ifndef EM_OPERATORS_SOURCES_LOGSRC_H
#define EM_OPERATORS_SOURCES_LOGSRC_H

#include "ember.h"

#include "operators/sources/streamlog.h"

#include <stdint.h>

/*
 * Records of partition p of the topic at `dir` with offsets [from[p], to[p]) for every partition p (from and to
 * have em__log_partitions() entries). One dataset partition per non-empty range, in log partition order; a range
 * of more than `split` records (0: never) is cut into pieces of at most `split` consecutive offsets.
 *
 * Each record (in offset order within a piece):
 *     key   = the event's key bytes
 *     value = a tuple (em_tup): [0] int64 event time (ms since the epoch), [1] string: the event's value,
 *             [2] int64 log partition, [3] int64 offset
 * The partition and offset let a later stage name the event in a message ("partition 3 offset 41").
 *
 * A topic that cannot be opened, or from/to out of order, fails the first action that reads the dataset with the
 * error naming the directory (EM_ENOENT, EM_EPARSE, EM_EINVAL). A task that meets a torn or corrupt record before
 * its range ends fails with EM_EPARSE and the log's message (file, offset, byte). LOCAL (lazy; opens the topic's
 * metadata once to plan).
 */
em_ds *em__log_source(em_ctx *ctx, const char *dir, const uint64_t *from, const uint64_t *to, uint64_t split);

/*
 * A fold over the raw records of each piece, run inside the source's task instead of making records: for dataset
 * partition `part` (log partition `log_part`, `nrec` records), state = open(part, log_part, nrec, arg);
 * each(state, rec) for every record
 * in offset order (rec borrowed, as in em__log_read; a negative return fails the task with it); then
 * close(state, out) emits the partition's records into `out` and frees the state. close is called exactly once per
 * open, with out == NULL when the read failed (free only). This skips building a tuple per event and the pipeline
 * of an em_map_partitions behind the source: the streaming engine's per-event cost is mostly here.
 */
typedef struct em__log_fold {
    void *(*open)(int part, int log_part, uint64_t nrec, void *arg);
    int (*each)(void *state, const em__log_rec *rec);
    int (*close)(void *state, em_emitter *out);
    void *arg; /* must stay valid until the graph is released */
} em__log_fold;

/* Like em__log_source, but each partition's records are the output of `fold` (copied) over its piece. LOCAL. */
em_ds *em__log_source_fold(em_ctx *ctx, const char *dir, const uint64_t *from, const uint64_t *to, uint64_t split,
                           const em__log_fold *fold);

/* The log partition and offsets [*from, *to) that dataset partition `part` of a log source reads. Returns 0, or
 * EM_EINVAL if ds is not a log source or part is out of range. LOCAL. */
int em__log_source_range(const em_ds *ds, int part, int *log_part, uint64_t *from, uint64_t *to);

#endif
