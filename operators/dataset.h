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
    EM__K_MAPPART,     /* narrow: mapPartitions */
    EM__K_UNION,       /* narrow: partitions of parent, then of parent2 */
    EM__K_SAMPLE,      /* narrow: Bernoulli sample */
    EM__K_FOREACH,     /* narrow: calls filter fn for its side effect, emits nothing */
    /* wide kinds (a shuffle; parent, and parent2 for COGROUP, are the map sides): */
    EM__K_REDUCE,      /* reduceByKey / aggregateByKey / distinct: combine per key */
    EM__K_GROUP,       /* groupByKey: sorted by key, fn per key */
    EM__K_COGROUP,     /* cogroup / join: both sides sorted by key, fn per key */
    EM__K_SORT,        /* sortByKey: range partitioned from a sample, sorted */
    EM__K_REPART,      /* repartition: round robin, no order */
} em__kind;

/* Internal aggregators beyond em_agg (REDUCE nodes): keep the first value seen (distinct), and user
 * aggregateByKey (zero + seq on the map side, combine on the reduce side). */
#define EM__AGG_FIRST 100
#define EM__AGG_USER 101

struct em__split;

typedef struct em__node em__node;
struct em__node {
    int id;
    em__kind kind;
    int nparts;
    em_ctx *ctx;
    em__node *parent; /* narrow parent, or NULL for a source */
    em__node *parent2; /* UNION and COGROUP: the second input */
    int cached;        /* em_cache */
    int pinned;        /* a task of partition p runs on rank p mod size when it is alive (scheduler/driver.c):
                          the streaming engine's keyed state lives there */
    /* operator arguments */
    em_map_fn map;
    em_filter_fn filter;
    void *arg;
    int64_t from, to; /* range */
    em_combine_fn combine;
    em_combine_fn seq;    /* aggregateByKey: acc = seq(acc, value) on the map side */
    int agg;              /* em_agg, EM__AGG_*, or -1 when combine is set */
    int ascending;        /* SORT */
    double fraction;      /* SAMPLE */
    uint64_t seed;        /* SAMPLE */
    em_part_open_fn popen; /* MAPPART */
    em_part_each_fn peach;
    em_part_close_fn pclose;
    em_group_fn group;     /* GROUP */
    em_cogroup_fn cogroup; /* COGROUP */
    struct em__split *splits; /* text */
    int nsplits;
    int text_chunks;          /* text: a record is a run of whole lines (em_text_chunks), not one line */
    em__buf data;         /* parallelize: records; aggregateByKey: the zero value */
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
static inline int em__node_is_wide(const em__node *n) { return n->kind >= EM__K_REDUCE; }
/* Number of map sides of a wide node (1, or 2 for COGROUP) and side s's input. */
static inline int em__wide_sides(const em__node *n) { return n->kind == EM__K_COGROUP ? 2 : 1; }
static inline em__node *em__wide_input(const em__node *n, int side) { return side ? n->parent2 : n->parent; }
/* Map outputs of a wide node: the partitions of all its inputs, side 0's first. */
static inline int em__wide_nmaps(const em__node *n)
{
    return n->parent->nparts + (n->kind == EM__K_COGROUP ? n->parent2->nparts : 0);
}

/* An emitter is one stage of a push pipeline: push() receives a record and forwards what it makes to next. */
struct em_emitter {
    int (*push)(em_emitter *self, const em_rec *r);
    em_emitter *next;
    const em__node *node;
    void *state;
    /* Optional (NULL: push): the record (key, the em_i64_put bytes of v) without encoding v, for sinks that keep
     * int64 values natively (reduceByKey's map-side combine of COUNT and SUM). em_emit_str_i64 calls it. */
    int (*push_i64)(em_emitter *self, const void *key, uint32_t klen, int64_t v);
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

/* What a task returns for a user callback's return code rc: 0 for rc >= 0; Ember's own codes (from em_emit,
 * em_values_next) unchanged; anything else EM_EUSER with a message naming the callback and the dataset. */
#define EM__STOP_CODE (-1001)
#define EM__FETCH_FAILED_CODE (-1000)
int em__user_rc(const em__node *n, int rc, const char *what);

/* Adds a node (LOCAL); assigns its id. */
em__node *em__node_add(em_ctx *ctx, em__kind kind, em__node *parent, int nparts);
/* Node by id, or NULL. Any thread. */
em__node *em__node_get(em_ctx *ctx, int id);
void em__graph_release(em_ctx *ctx);

/* Computes partition `part` of `node` and pushes every record into sink (a narrow pipeline, no materialization).
 * Returns 0 or a negative code with em_last_error() set. Runs on the executor thread. */
int em__node_compute(em__node *node, int part, em_emitter *sink);
/* The same, ignoring em_cache on node itself. */
int em__node_compute_uncached(em__node *node, int part, em_emitter *sink);

/* Calls fn(node, part) for node and every node its partition `part` is computed from inside one task (narrow
 * ancestors, following UNION to the right side), stopping at (and including) wide nodes. */
void em__node_walk_part(em__node *node, int part, void (*fn)(em__node *n, int part, void *arg), void *arg);

/* Partition computations of the other narrow kinds (narrow.c) and of the sources (sources/). */
int em__narrow_compute(em__node *node, int part, em_emitter *sink);
int em__text_compute(const em__node *n, int part, em_emitter *sink);
int em__parallelize_compute(const em__node *n, int part, em_emitter *sink);
/* The first node in the lineage of n (inclusive) that could not be planned, or NULL. */
const em__node *em__node_find_error(const em__node *n);

#endif
