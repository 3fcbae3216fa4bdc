/* dataset.h — the lineage graph shared by every rank: datasets are nodes numbered in creation order, so a task
 * is named by (action, stage, partition) alone and no function pointer ever crosses the wire (DESIGN section 2).
 * Also the definition of em_ctx, which ties the runtime (rt) to the graph and the scheduler state. */
#ifndef EM_OPERATORS_DATASET_H
#define EM_OPERATORS_DATASET_H

#include "ember.h"
#include "runtime/buf.h"
#include "runtime/loop.h"

#include <pthread.h>
#include <stdatomic.h>

typedef enum em__kind {
    EM__K_RANGE,
    EM__K_MAP,
    EM__K_FILTER,
    EM__K_TEXT,        /* source: lines of files */
    EM__K_PARALLELIZE, /* source: records copied from memory */
    EM__K_SOURCE,      /* source with its own compute function (csv, hdf5, the input log, ...) */
    EM__K_REDUCE,      /* wide: reduceByKey; its parent is the map side of a shuffle */
} em__kind;

struct em__split;

typedef struct em__node em__node;
struct em__node {
    int id;
    em__kind kind;
    int nparts;
    em_ctx *ctx;
    em__node *parent; /* narrow parent, or NULL for a source */
    /* operator arguments */
    em_map_fn map;
    em_filter_fn filter;
    void *arg;
    int64_t from, to; /* range */
    em_combine_fn combine;
    int agg;              /* em_agg, or -1 when combine is set */
    struct em__split *splits; /* text */
    int nsplits;
    em__buf data;         /* parallelize: records; */
    uint64_t *offs;       /* parallelize: [nparts+1] partition boundaries in data */
    char *err;            /* a source that could not be planned: actions reading it fail with this */
    int err_code;
    /* EM__K_SOURCE: computes partition `part` into sink; src is its planned state (same on every rank), freed
     * with src_free when the graph is released. */
    int (*src_compute)(const em__node *n, int part, em_emitter *sink);
    void *src;
    void (*src_free)(void *src);
};

/* Whether a node starts a new stage (its partitions come from a shuffle). */
static inline int em__node_is_wide(const em__node *n) { return n->kind == EM__K_REDUCE; }

/* An emitter is one stage of a push pipeline: push() receives a record and forwards what it makes to next. */
struct em_emitter {
    int (*push)(em_emitter *self, const em_rec *r);
    em_emitter *next;
    const em__node *node;
    void *state;
};

/* Node table: chunks of stable pointers, so the executor thread can look nodes up while main() adds more. */
#define EM__NODE_CHUNK 256
#define EM__NODE_CHUNKS 4096

struct em_ctx {
    em__rt rt;
    pthread_mutex_t graph_mu;
    em__node **chunks[EM__NODE_CHUNKS];
    _Atomic int nnodes;

    /* actions: main() announces the action it entered so the executor only runs tasks whose graph exists */
    pthread_mutex_t act_mu;
    pthread_cond_t act_cv;
    uint32_t action_seq; /* actions entered by main() on this rank */

    pthread_t executor;
    _Atomic int exec_stop;
    void *sched;  /* scheduler/driver.c state (leader) */
    void *execst; /* scheduler/executor.c state */
    int job_failed;
};

/* Adds a node (LOCAL); assigns its id. */
em__node *em__node_add(em_ctx *ctx, em__kind kind, em__node *parent, int nparts);
/* Node by id, or NULL. Any thread. */
em__node *em__node_get(em_ctx *ctx, int id);
void em__graph_release(em_ctx *ctx);

/* Computes partition `part` of `node` and pushes every record into sink (a narrow pipeline, no materialization).
 * Returns 0 or a negative code with em_last_error() set. Runs on the executor thread. */
int em__node_compute(em__node *node, int part, em_emitter *sink);

/* Per-kind partition computations (sources/, reduce.c). */
int em__text_compute(const em__node *n, int part, em_emitter *sink);
int em__parallelize_compute(const em__node *n, int part, em_emitter *sink);
/* The first node in the lineage of n (inclusive) that could not be planned, or NULL. */
const em__node *em__node_find_error(const em__node *n);

#endif
