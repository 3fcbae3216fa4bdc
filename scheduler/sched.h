/* sched.h — what the driver (leader) and the executors say to each other, and the hooks between them.
 *
 * TASK payload (leader -> executor):
 *   u32 action, u32 stage, u32 part, u32 attempt, u32 node, u32 op, i64 op_arg,
 *   u32 ndeps, ndeps x {u32 shuffle, u32 nmaps, i32 loc[nmaps]}, bytes extra (save: dir NUL sink NUL args NUL)
 * TASK_DONE payload (executor -> leader):
 *   u32 action, u32 stage, u32 part, u32 attempt, i32 status, bytes body:
 *   status 0: the result (op-specific; SHUFFLE_MAP: u64 size of each bucket; SAVE: the temporary file's path);
 *   EM__FETCH_FAILED: u32 shuffle, u32 map part, i32 rank, then the message; other errors: the message
 *   then an em__task_stats (the executor's measurements, for the event log)
 * ACTION_RESULT payload (leader -> all):
 *   u32 action, i32 status, bytes result (status 0) or error message
 */
#ifndef EM_SCHEDULER_SCHED_H
#define EM_SCHEDULER_SCHED_H

#include "operators/dataset.h"

typedef enum em__op {
    EM__OP_COUNT, /* result: i64 count */
    EM__OP_AGG,   /* op_arg: em_agg; result: i64 n, i64 acc */
    EM__OP_SHUFFLE_MAP, /* node: the wide node whose map side this computes */
    EM__OP_COLLECT,     /* result: the records, em__rec_append format */
    EM__OP_SAVE,        /* extra: dir NUL sink NUL args NUL; result: path of the temporary part file */
    EM__OP_TAKE,        /* op_arg: n; result: at most n records per task, em__rec_append format */
    EM__OP_SAMPLE,      /* op_arg: keys wanted; result: a uniform sample of the partition's keys (records, no value) */
} em__op;

#define EM__MAX_DEPS 16

/* Every Ember program carries this string (scheduler/action.c keeps it in the binary): `ember run` looks for it in
 * PROGRAM to choose the recovery launch; a script that starts an Ember job may carry it in a comment. */
#define EM__JOB_MARKER "ember-job: launch with recovery (v1)"

#include "operators/shuffle.h"

typedef struct em__task_stats {
    double seconds;
    uint64_t records_out; /* records the task produced (into its shuffle buckets or its action's sink) */
    uint64_t bytes_out;   /* shuffle bytes written, or result bytes */
    uint64_t spill_bytes; /* compressed bytes spilled to disk */
    double fetch_wait_ms; /* time spent waiting for remote shuffle data */
} em__task_stats;

typedef struct em__task {
    uint32_t action, stage, part, attempt, node, op;
    int64_t op_arg;
    int ndeps;
    em__deploc deps[2 * EM__MAX_DEPS];
    const char *extra; /* points into the message */
    uint32_t extra_len;
} em__task;

/* Unpacked deps point into the message buffer p. */
int em__task_unpack(const void *p, size_t n, em__task *t);

/* executor.c */
int em__executor_start(em_ctx *ctx);
void em__executor_stop(em_ctx *ctx);

/* driver.c: runs one action as the leader; on success fills result (the combined, op-specific bytes).
 * Returns 0 or a negative code with the message in em_last_error(). */
int em__driver_run(em_ctx *ctx, uint32_t action, em__node *node, em__op op, int64_t op_arg, const char *extra,
                   size_t extra_len, em__buf *result);
/* Combines one task's result into the action's result (op-specific). */
int em__op_combine(em__op op, int64_t op_arg, em__buf *acc, const void *part, size_t n, int first);

void em__tracker_free(em_ctx *ctx);

/* fault.c: deterministic fault injection (--ember-fault). Points where a fault may fire. */
enum { EM__FP_TASK_START, EM__FP_FETCH, EM__FP_RESULT, EM__FP_TIMER, EM__FP_SERVE };
int em__fault_init(em_ctx *ctx);
void em__fault_point(em_ctx *ctx, int point, const em__task *t);

#endif
