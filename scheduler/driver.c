/* driver.c — the leader's task scheduler for one action (DESIGN sections 2 and 6).
 *
 * Tasks are handed out dynamically: each live executor holds at most `depth` queued or running tasks, where depth
 * shrinks as the action nears its end (guided self-scheduling), so short tasks are pipelined (no idle round trip
 * between them) and uneven partitions still balance at the tail. The first successful attempt of a task wins;
 * later duplicates are ignored. When a rank is fenced its tasks are requeued without counting as failures; a
 * task that itself fails is retried up to --ember-max-task-failures times, then the action fails naming it.
 */
#include "operators/sorter.h"
#include "runtime/events.h"
#include "runtime/log.h"
#include "runtime/progress.h"
#include "scheduler/sched.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { T_PENDING, T_RUNNING, T_DONE };

typedef struct tstate {
    uint8_t state;
    int rank;          /* where it runs (T_RUNNING) */
    uint32_t attempts; /* attempts started */
    int failures;
    int last_failed;   /* rank of the last failed attempt */
    char ranks[64];    /* ranks it failed on, for the final message */
} tstate;

int em__op_combine(em__op op, int64_t op_arg, em__buf *acc, const void *part, size_t n, int first)
{
    em__rd r;
    em__rd_init(&r, part, n);
    if (op == EM__OP_COUNT) {
        int64_t c = em__rd_i64(&r);
        if (r.err) return EM_EINVAL;
        if (first) em__buf_i64(acc, 0);
        int64_t cur;
        memcpy(&cur, acc->p, 8);
        cur += c;
        memcpy(acc->p, &cur, 8);
        return 0;
    }
    int64_t pn = em__rd_i64(&r), pacc = em__rd_i64(&r);
    if (r.err) return EM_EINVAL;
    if (first) {
        em__buf_i64(acc, 0);
        em__buf_i64(acc, 0);
    }
    int64_t an, aacc;
    memcpy(&an, acc->p, 8);
    memcpy(&aacc, acc->p + 8, 8);
    if (pn > 0) {
        if (an == 0) aacc = pacc;
        else if (op_arg == EM_AGG_SUM || op_arg == EM_AGG_COUNT) aacc += pacc;
        else if (op_arg == EM_AGG_MIN) aacc = pacc < aacc ? pacc : aacc;
        else if (op_arg == EM_AGG_MAX) aacc = pacc > aacc ? pacc : aacc;
        an += pn;
    }
    memcpy(acc->p, &an, 8);
    memcpy(acc->p + 8, &aacc, 8);
    return 0;
}

/* ---- the plan: stages cut at shuffle boundaries (the dag of DESIGN section 1, small enough to live here) ---- */

#define MAX_STAGES 64

enum { S_RESULT, S_MAP, S_SAMPLE };

typedef struct stage {
    int kind;           /* S_RESULT, S_MAP (writes a shuffle), S_SAMPLE (samples keys for a sortByKey) */
    em__node *node;     /* partitions of this node are computed by the stage's tasks */
    em__node *wide_out; /* S_MAP: the wide node it feeds; S_SAMPLE: the sort node it samples for */
    int side;           /* S_MAP: which input of wide_out (COGROUP has two) */
    int base;           /* S_MAP: map output index of partition 0 (side 1 follows side 0's partitions) */
    int nparts;
    int ndeps;
    em__node *deps[EM__MAX_DEPS]; /* wide nodes whose shuffles this stage reads */
    int ncache;
    em__node *cache[EM__MAX_DEPS]; /* cached nodes in the stage's pipeline */
    tstate *ts;
    int *queue, qhead, qtail, qcap;
    int ndone;
    em__buf sample;     /* S_SAMPLE: keys received */
    double t0;
    int submitted, completed; /* event log and progress bar */
    char name[40];
} stage;

/* Map output tracker: which rank holds each map output of each shuffle, the bounds of each sortByKey, and which
 * rank holds each cached partition. Lives on the leader across actions, so a shuffle read by two actions is
 * written once and a cached dataset is computed once. Indexed by node id. */
typedef struct tracker {
    int n;
    int32_t **loc;    /* wide node: [nmaps] rank or -1 */
    int32_t **cloc;   /* cached node: [nparts] rank or -1 */
    em__buf **bounds; /* SORT node: the range bounds once sampled */
    uint64_t **bsize; /* wide node: [nmaps * nparts] bytes of each bucket of each map output */
} tracker;

static tracker *tracker_of(em_ctx *ctx, int id)
{
    tracker *tr = ctx->sched;
    if (!tr) tr = ctx->sched = em__calloc(1, sizeof *tr);
    if (id >= tr->n) {
        int n = id + 64;
        tr->loc = em__realloc(tr->loc, sizeof *tr->loc * (size_t)n);
        tr->cloc = em__realloc(tr->cloc, sizeof *tr->cloc * (size_t)n);
        tr->bounds = em__realloc(tr->bounds, sizeof *tr->bounds * (size_t)n);
        tr->bsize = em__realloc(tr->bsize, sizeof *tr->bsize * (size_t)n);
        for (int i = tr->n; i < n; i++) {
            tr->loc[i] = tr->cloc[i] = NULL;
            tr->bounds[i] = NULL;
            tr->bsize[i] = NULL;
        }
        tr->n = n;
    }
    return tr;
}

static int32_t *new_locs(int n)
{
    int32_t *l = em__malloc(sizeof(int32_t) * (size_t)(n ? n : 1));
    for (int i = 0; i < n; i++) l[i] = -1;
    return l;
}

static int32_t *tracker_get(em_ctx *ctx, em__node *w)
{
    tracker *tr = tracker_of(ctx, w->id);
    if (!tr->loc[w->id]) tr->loc[w->id] = new_locs(em__wide_nmaps(w));
    return tr->loc[w->id];
}

static int32_t *cache_locs(em_ctx *ctx, em__node *n)
{
    tracker *tr = tracker_of(ctx, n->id);
    if (!tr->cloc[n->id]) tr->cloc[n->id] = new_locs(n->nparts);
    return tr->cloc[n->id];
}

/* Remembers the bucket sizes a map task reported (its TASK_DONE body: one u64 per bucket). */
static void note_sizes(em_ctx *ctx, em__node *w, int map, const void *body, uint32_t blen)
{
    tracker *tr = tracker_of(ctx, w->id);
    size_t R = (size_t)w->nparts;
    if (blen != 8 * R) return;
    if (!tr->bsize[w->id]) tr->bsize[w->id] = em__calloc((size_t)em__wide_nmaps(w) * R, sizeof(uint64_t));
    memcpy(tr->bsize[w->id] + (size_t)map * R, body, 8 * R);
}

/* The rank holding the most bytes of a reduce task's input (DESIGN: reduce tasks prefer it), or -1. */
static int preferred_rank(em_ctx *ctx, const stage *s, int p, uint64_t *per_rank, int *cached)
{
    int best = -1;
    *cached = 0;
    if (s->node->pinned) { /* its home: rank p mod size, or the next live rank after it */
        for (int i = 0; i < ctx->rt.size; i++) {
            int r = (p + i) % ctx->rt.size;
            if (em__rt_is_alive(&ctx->rt, r)) {
                *cached = 1;
                return r;
            }
        }
    }
    for (int c = 0; c < s->ncache; c++) { /* a cached partition: run where it is */
        em__node *n = s->cache[c];
        tracker *tr = tracker_of(ctx, n->id);
        if (n->nparts == s->nparts && tr->cloc[n->id] && tr->cloc[n->id][p] >= 0) {
            *cached = 1;
            return tr->cloc[n->id][p];
        }
    }
    memset(per_rank, 0, sizeof(uint64_t) * (size_t)ctx->rt.size);
    for (int d = 0; d < s->ndeps; d++) {
        em__node *w = s->deps[d];
        tracker *tr = tracker_of(ctx, w->id);
        if (w->nparts != s->nparts || !tr->bsize[w->id] || !tr->loc[w->id]) continue;
        for (int m = 0; m < em__wide_nmaps(w); m++) {
            int r = tr->loc[w->id][m];
            if (r >= 0 && r < ctx->rt.size) per_rank[r] += tr->bsize[w->id][(size_t)m * (size_t)w->nparts + (size_t)p];
        }
    }
    for (int r = 0; r < ctx->rt.size; r++)
        if (per_rank[r] && (best < 0 || per_rank[r] > per_rank[best])) best = r;
    return best;
}

static em__buf *sort_bounds(em_ctx *ctx, em__node *w) { return tracker_of(ctx, w->id)->bounds[w->id]; }

void em__tracker_free(em_ctx *ctx)
{
    tracker *tr = ctx->sched;
    if (!tr) return;
    for (int i = 0; i < tr->n; i++) {
        free(tr->loc[i]);
        free(tr->cloc[i]);
        free(tr->bsize[i]);
        if (tr->bounds[i]) em__buf_release(tr->bounds[i]);
        free(tr->bounds[i]);
    }
    free(tr->loc);
    free(tr->cloc);
    free(tr->bounds);
    free(tr->bsize);
    free(tr);
    ctx->sched = NULL;
}

/* The wide nodes and cached nodes a stage computing `node` meets inside its tasks (through unions too). */
static int stage_inputs(stage *s, em__node *n)
{
    for (; n; n = n->parent) {
        if (n->cached) {
            int seen = 0;
            for (int i = 0; i < s->ncache; i++) seen |= s->cache[i] == n;
            if (!seen) {
                if (s->ncache == EM__MAX_DEPS) return em__fail(EM_EINVAL, "a stage reads more than %d cached datasets", EM__MAX_DEPS);
                s->cache[s->ncache++] = n;
            }
        }
        if (em__node_is_wide(n)) {
            for (int i = 0; i < s->ndeps; i++)
                if (s->deps[i] == n) return 0;
            if (s->ndeps == EM__MAX_DEPS) return em__fail(EM_EINVAL, "a stage reads more than %d shuffles", EM__MAX_DEPS);
            s->deps[s->ndeps++] = n;
            return 0;
        }
        if (n->parent2 && stage_inputs(s, n->parent2) < 0) return EM_EINVAL;
    }
    return 0;
}

/* Adds the stage of `kind` computing `node` (feeding wide_out's input `side`), after the stages it depends on. */
static int plan(em_ctx *ctx, stage *st, int *nst, int kind, em__node *node, em__node *wide_out, int side)
{
    for (int i = 0; i < *nst; i++)
        if (kind != S_RESULT && st[i].kind == kind && st[i].wide_out == wide_out && st[i].side == side) return i;
    stage s;
    memset(&s, 0, sizeof s);
    s.kind = kind;
    s.node = node;
    s.wide_out = wide_out;
    s.side = side;
    s.base = side ? wide_out->parent->nparts : 0;
    s.nparts = node->nparts;
    if (stage_inputs(&s, node) < 0) return EM_EINVAL;
    for (int d = 0; d < s.ndeps; d++) {
        em__node *w = s.deps[d];
        if (w->kind == EM__K_SORT && !sort_bounds(ctx, w) && plan(ctx, st, nst, S_SAMPLE, w->parent, w, 0) < 0)
            return EM_EINVAL;
        for (int sd = 0; sd < em__wide_sides(w); sd++)
            if (plan(ctx, st, nst, S_MAP, em__wide_input(w, sd), w, sd) < 0) return EM_EINVAL;
    }
    if (*nst == MAX_STAGES) return em__fail(EM_EINVAL, "lineage has more than %d stages", MAX_STAGES);
    st[*nst] = s;
    return (*nst)++;
}

static int stage_complete(em_ctx *ctx, stage *s)
{
    if (s->kind != S_MAP) return s->ndone == s->nparts;
    int32_t *loc = tracker_get(ctx, s->wide_out);
    for (int p = 0; p < s->nparts; p++)
        if (loc[s->base + p] < 0) return 0;
    return 1;
}

static int stage_ready(em_ctx *ctx, stage *st, int nst, stage *s)
{
    if (s->kind == S_MAP && s->wide_out->kind == EM__K_SORT && !sort_bounds(ctx, s->wide_out)) return 0;
    for (int d = 0; d < s->ndeps; d++)
        for (int i = 0; i < nst; i++)
            if (st[i].kind == S_MAP && st[i].wide_out == s->deps[d] && !stage_complete(ctx, &st[i])) return 0;
    return 1;
}

static int key_order(const void *a, const void *b, void *desc)
{
    const em_rec *x = a, *y = b;
    int c = em__key_cmp(x->key, x->klen, y->key, y->klen);
    return *(int *)desc ? -c : c;
}

/* Range bounds of a sortByKey from its sample: R-1 keys at even quantiles of the sorted sample. */
static void make_bounds(em_ctx *ctx, stage *s)
{
    em__node *w = s->wide_out;
    size_t n = 0, pos = 0;
    em_rec r;
    while (em__rec_next(s->sample.p, s->sample.len, &pos, &r) > 0) n++;
    em_rec *keys = em__malloc(sizeof *keys * (n ? n : 1));
    pos = 0;
    for (size_t i = 0; i < n; i++) em__rec_next(s->sample.p, s->sample.len, &pos, &keys[i]);
    int desc = !w->ascending;
    qsort_r(keys, n, sizeof *keys, key_order, &desc);
    em__buf *b = em__calloc(1, sizeof *b);
    uint32_t R = (uint32_t)w->nparts;
    if (n > 0)
        for (uint32_t i = 1; i < R; i++) {
            const em_rec *k = &keys[(size_t)i * n / R];
            em__rec_append(b, k->key, k->klen, NULL, 0);
        }
    free(keys);
    tracker_of(ctx, w->id)->bounds[w->id] = b;
    EM_LOG_I("sortByKey %d: %u ranges from a sample of %zu keys", w->id, R, n);
}

static const char *op_name(em__op op)
{
    static const char *const names[] = {"count", "reduce", "shuffle", "collect", "save", "take", "sample"};
    return (unsigned)op < sizeof names / sizeof names[0] ? names[op] : "?";
}

static const char *wide_name(const em__node *w)
{
    switch (w->kind) {
    case EM__K_REDUCE: return w->agg == EM__AGG_USER ? "aggregateByKey" : w->agg == EM__AGG_FIRST ? "distinct" : "reduceByKey";
    case EM__K_GROUP: return "groupByKey";
    case EM__K_COGROUP: return "cogroup";
    case EM__K_SORT: return "sortByKey";
    case EM__K_REPART: return "repartition";
    default: return "?";
    }
}

static void stage_name(stage *s, em__op op)
{
    if (s->kind == S_MAP) snprintf(s->name, sizeof s->name, "%s", wide_name(s->wide_out));
    else if (s->kind == S_SAMPLE) snprintf(s->name, sizeof s->name, "sortByKey sample");
    else snprintf(s->name, sizeof s->name, "%s", op_name(op));
}

/* Stage lifecycle in the event log and on the progress bar. */
static void stage_track(em_ctx *ctx, uint32_t action, stage *st, int nst, int si)
{
    stage *s = &st[si];
    if (s->completed) return;
    int running = 0, done = 0;
    for (int p = 0; p < s->nparts; p++) {
        running += s->ts[p].state == T_RUNNING;
        done += s->ts[p].state == T_DONE;
    }
    if (!s->submitted && (done == s->nparts || stage_ready(ctx, st, nst, s))) {
        s->submitted = 1;
        s->t0 = em__now_s();
        em__event("stage_submitted", "\"action\":%u,\"stage\":%d,\"name\":\"%s\",\"tasks\":%d", action, si, s->name,
                  s->nparts);
    }
    if (!s->submitted) return;
    if (done == s->nparts && stage_complete(ctx, s)) {
        s->completed = 1;
        em__progress_done(si);
        em__event("stage_completed", "\"action\":%u,\"stage\":%d,\"name\":\"%s\",\"seconds\":%.6f", action, si,
                  s->name, em__now_s() - s->t0);
        return;
    }
    em__progress_update(si, s->name, done, running, s->nparts);
}

static void enqueue(stage *s, int p)
{
    s->ts[p].state = T_PENDING;
    s->queue[s->qtail++ % s->qcap] = p;
}

static void add_locs(em__buf *b, uint32_t id, const int32_t *loc, uint32_t n)
{
    em__buf_u32(b, id);
    em__buf_u32(b, n);
    em__buf_add(b, loc, 4 * (size_t)n);
}

static void send_task(em_ctx *ctx, int rank, uint32_t action, int si, stage *s, int part, em__op op, int64_t op_arg,
                      const char *extra, size_t extra_len)
{
    em__buf b;
    em__buf_init(&b);
    uint32_t w[6] = {action, (uint32_t)si, (uint32_t)part, s->ts[part].attempts, 0, 0};
    w[4] = (uint32_t)(s->kind == S_MAP ? s->wide_out->id : s->node->id);
    if (s->kind == S_MAP) {
        op = EM__OP_SHUFFLE_MAP;
        op_arg = s->side;
        em__buf *bounds = s->wide_out->kind == EM__K_SORT ? sort_bounds(ctx, s->wide_out) : NULL;
        extra = bounds ? (const char *)bounds->p : NULL;
        extra_len = bounds ? bounds->len : 0;
    } else if (s->kind == S_SAMPLE) {
        op = EM__OP_SAMPLE;
        int per = (int)(3.0 * 20 * s->wide_out->nparts / (s->nparts ? s->nparts : 1)) + 1;
        op_arg = per < 20 ? 20 : per;
        extra = NULL;
        extra_len = 0;
    }
    w[5] = op;
    em__buf_add(&b, w, sizeof w);
    em__buf_i64(&b, op_arg);
    em__buf_u32(&b, (uint32_t)(s->ndeps + s->ncache));
    for (int d = 0; d < s->ndeps; d++)
        add_locs(&b, (uint32_t)s->deps[d]->id, tracker_get(ctx, s->deps[d]), (uint32_t)em__wide_nmaps(s->deps[d]));
    for (int c = 0; c < s->ncache; c++) {
        int32_t *cl = cache_locs(ctx, s->cache[c]);
        for (int p = 0; p < s->cache[c]->nparts; p++)
            if (cl[p] >= 0 && !em__rt_is_alive(&ctx->rt, cl[p])) cl[p] = -1;
        add_locs(&b, (uint32_t)s->cache[c]->id | EM__CACHE_ID, cl, (uint32_t)s->cache[c]->nparts);
    }
    em__buf_bytes(&b, extra, (uint32_t)extra_len);
    em__msg *m = em__msg_new(EM__MSG_TASK, b.len);
    memcpy(m->payload, b.p, b.len);
    em__buf_release(&b);
    em__send(&ctx->rt, rank, m);
}

typedef struct mark_arg {
    em_ctx *ctx;
    int rank;
} mark_arg;

static void mark_cached(em__node *n, int part, void *arg)
{
    mark_arg *ma = arg;
    if (n->cached && part < n->nparts) cache_locs(ma->ctx, n)[part] = ma->rank;
}

/* A new leader learns what the survivors hold (map outputs, cached partitions) so nothing they still have is
 * recomputed (DESIGN section 6). Ranks that do not answer within the timeout are simply not counted on. */
static void gather_inventory(em_ctx *ctx, uint32_t action)
{
    em__rt *rt = &ctx->rt;
    static uint64_t seq;
    uint64_t id = ((uint64_t)rt->rank << 48) | ++seq;
    uint8_t *answered = em__calloc((size_t)rt->size, 1);
    for (int r = 0; r < rt->size; r++) {
        if (!em__rt_is_alive(rt, r)) continue;
        em__msg *m = em__msg_new(EM__MSG_INVENTORY, 12);
        uint32_t kind = 0;
        memcpy(m->payload, &kind, 4);
        memcpy(m->payload + 4, &id, 8);
        em__send(rt, r, m);
    }
    double deadline = em__now_s() + (double)rt->cfg.timeout_ms / 1e3;
    int blocks = 0, cached = 0, ranks = 0, results = 0;
    em__msg *replay = NULL;
    for (;;) {
        int waiting = 0;
        for (int r = 0; r < rt->size; r++) waiting += em__rt_is_alive(rt, r) && !answered[r];
        if (!waiting || em__now_s() > deadline) break;
        em__msg *m = em__mbox_get(&rt->driver_mb, 50);
        if (!m) continue;
        em__rd rd;
        em__rd_init(&rd, m->payload, m->len);
        uint32_t kind = em__rd_u32(&rd);
        uint64_t rid = em__rd_u64(&rd);
        uint32_t n = em__rd_u32(&rd);
        int src = m->hdr->src;
        if (m->hdr->type != EM__MSG_INVENTORY || kind != 1 || rid != id || rd.err || answered[src]) {
            em__msg_free(m); /* a TASK_DONE of the old leader's tasks, or a stale answer */
            continue;
        }
        answered[src] = 1;
        ranks++;
        for (uint32_t i = 0; i < n && !rd.err; i++) {
            uint32_t sid = em__rd_u32(&rd), part = em__rd_u32(&rd);
            if (rd.err) break;
            em__node *w = em__node_get(ctx, (int)(sid & ~EM__CACHE_ID));
            if (!w) continue;
            if (sid & EM__CACHE_ID) {
                if (w->cached && part < (uint32_t)w->nparts) {
                    cache_locs(ctx, w)[part] = src;
                    cached++;
                }
            } else if (em__node_is_wide(w) && part < (uint32_t)em__wide_nmaps(w)) {
                tracker_get(ctx, w)[part] = src;
                blocks++;
            }
        }
        /* finished result tasks of this action: replayed as the TASK_DONE they were, so the driver takes them as
         * first successes and does not run them again */
        uint32_t ka = em__rd_u32(&rd), k = em__rd_u32(&rd);
        for (uint32_t i = 0; i < k && !rd.err && ka == action; i++) {
            uint32_t len;
            const void *p = em__rd_bytes(&rd, &len);
            if (rd.err || len < 24) break;
            em__msg *done = em__msg_new(EM__MSG_TASK_DONE, len);
            memcpy(done->payload, p, len);
            done->hdr->src = src;
            done->next = replay; /* into the driver's mailbox after this loop, which drops what it does not expect */
            replay = done;
            results++;
        }
        em__msg_free(m);
    }
    free(answered);
    while (replay) {
        em__msg *next = replay->next;
        replay->next = NULL;
        em__mbox_put(&rt->driver_mb, replay);
        replay = next;
    }
    tracker_of(ctx, 0); /* the tracker exists from now on: this rank gathers only once */
    EM_LOG_W("action %u: new leader r%d took over: %d rank(s) hold %d map output(s), %d cached partition(s) and %d "
             "finished result task(s); only what is missing is recomputed", action, rt->rank, ranks, blocks, cached, results);
    em__event("inventory", "\"action\":%u,\"ranks\":%d,\"map_outputs\":%d,\"cached_partitions\":%d,\"results\":%d",
              action, ranks, blocks, cached, results);
}

int em__driver_run(em_ctx *ctx, uint32_t action, em__node *node, em__op op, int64_t op_arg, const char *extra,
                   size_t extra_len, em__buf *result)
{
    em__rt *rt = &ctx->rt;
    if (!ctx->sched && rt->rank != 0) gather_inventory(ctx, action); /* this rank leads for the first time */
    int size = rt->size, rc = 0, nst = 0;
    stage st[MAX_STAGES];
    if (plan(ctx, st, &nst, S_RESULT, node, NULL, 0) < 0) return EM_EINVAL;
    stage *res = &st[nst - 1];
    for (int i = 0; i < nst; i++) {
        stage *s = &st[i];
        int n = s->nparts ? s->nparts : 1;
        s->ts = em__calloc((size_t)n, sizeof *s->ts);
        s->qcap = 2 * n;
        s->queue = em__malloc(sizeof(int) * (size_t)s->qcap);
        int32_t *loc = s->kind == S_MAP ? tracker_get(ctx, s->wide_out) + s->base : NULL;
        for (int p = 0; p < s->nparts; p++) {
            if (loc && loc[p] >= 0 && em__rt_is_alive(rt, loc[p])) s->ts[p].state = T_DONE; /* written before */
            else enqueue(s, p);
        }
        s->t0 = em__now_s();
        stage_name(s, op);
    }
    em__buf *parts = em__calloc((size_t)(res->nparts ? res->nparts : 1), sizeof *parts);
    int *inflight = em__calloc((size_t)size, sizeof(int));
    uint64_t *per_rank = em__calloc((size_t)size, sizeof(uint64_t));
    double next_track = 0;
    int first = 1;
    uint64_t collected = 0;
    result->len = 0;
    double t0 = em__now_s();
    EM_LOG_I("action %u: %d stage(s), %d result tasks on dataset %d", action, nst, res->nparts, node->id);

    while (res->ndone < res->nparts) {
        if (em__rt_leader(rt) != rt->rank) {
            rc = 1; /* lost the lead: the new leader redoes what is missing */
            goto out;
        }
        /* outputs lost with a fenced rank: their map tasks run again (only those) */
        for (int i = 0; i < nst; i++) {
            stage *s = &st[i];
            if (s->kind != S_MAP) continue;
            int32_t *loc = tracker_get(ctx, s->wide_out) + s->base;
            for (int p = 0; p < s->nparts; p++)
                if (loc[p] >= 0 && !em__rt_is_alive(rt, loc[p])) {
                    EM_LOG_W("action %u: map output %d of shuffle %d was on fenced r%d; recomputing it from lineage",
                             action, p, s->wide_out->id, loc[p]);
                    em__event("recompute", "\"action\":%u,\"stage\":%d,\"shuffle\":%d,\"map_part\":%d,\"lost_rank\":%d,"
                              "\"reason\":\"fenced\"", action, i, s->wide_out->id, s->base + p, loc[p]);
                    loc[p] = -1;
                    if (s->ts[p].state == T_DONE) enqueue(s, p);
                }
        }
        /* assign */
        int nexec = em__rt_nalive(rt), remaining = 0;
        if (nexec < ctx->rt.cfg.min_ranks) {
            rc = em__fail(EM_ENORANKS, "action %u: only %d of %d ranks are alive, fewer than --ember-min-ranks %lld; "
                          "giving up", action, nexec, size, (long long)ctx->rt.cfg.min_ranks);
            goto out;
        }
        for (int i = 0; i < nst; i++) remaining += st[i].qtail - st[i].qhead;
        int depth = remaining / (4 * (nexec ? nexec : 1));
        depth = (depth < 1 ? 1 : depth > 16 ? 16 : depth) + 1;
        for (int i = 0; i < nst; i++) {
            stage *s = &st[i];
            if (s->qhead == s->qtail || !stage_ready(ctx, st, nst, s)) continue;
            while (s->qhead < s->qtail) {
                int p = s->queue[s->qhead % s->qcap];
                if (s->ts[p].state != T_PENDING) {
                    s->qhead++;
                    continue;
                }
                /* the rank holding most of its input if it has room, else the least loaded live rank; a retried
                 * task avoids the rank it last failed on when it can */
                /* A task reading a cached partition may queue deeper on its holder (4x the depth): fetching the
                 * partition elsewhere costs more than waiting for it there. */
                int cached = 0;
                int best = s->ndeps || s->ncache || s->node->pinned ? preferred_rank(ctx, s, p, per_rank, &cached) : -1;
                if (best >= 0 && (!em__rt_is_alive(rt, best) || inflight[best] >= (cached ? 4 * depth : depth) ||
                                  (s->ts[p].failures && best == s->ts[p].last_failed)))
                    best = -1;
                for (int pass = 0; pass < 2 && best < 0; pass++)
                    for (int r = 0; r < size; r++) {
                        int rr = (int)((action + (uint32_t)r) % (uint32_t)size); /* rotate the tie-break */
                        if (!em__rt_is_alive(rt, rr) || inflight[rr] >= depth) continue;
                        if (pass == 0 && s->ts[p].failures && rr == s->ts[p].last_failed) continue;
                        if (best < 0 || inflight[rr] < inflight[best]) best = rr;
                    }
                if (best < 0) break;
                s->qhead++;
                s->ts[p].state = T_RUNNING;
                s->ts[p].rank = best;
                s->ts[p].attempts++;
                inflight[best]++;
                send_task(ctx, best, action, i, s, p, op, op_arg, extra, extra_len);
                em__event("task_start", "\"action\":%u,\"stage\":%d,\"part\":%d,\"rank\":%d,\"attempt\":%u", action, i,
                          p, best, s->ts[p].attempts);
            }
        }
        if (em__now_s() >= next_track) { /* O(tasks) per stage: a few times a second, not per message */
            for (int i = 0; i < nst; i++) stage_track(ctx, action, st, nst, i);
            next_track = em__now_s() + 0.1;
        }
        em__msg *m = em__mbox_get(&rt->driver_mb, 200);
        /* requeue what ran on fenced ranks */
        for (int r = 0; r < size; r++) {
            if (!inflight[r] || em__rt_is_alive(rt, r)) continue;
            int moved = 0;
            for (int i = 0; i < nst; i++)
                for (int p = 0; p < st[i].nparts; p++)
                    if (st[i].ts[p].state == T_RUNNING && st[i].ts[p].rank == r) {
                        enqueue(&st[i], p);
                        moved++;
                    }
            EM_LOG_W("action %u: r%d is gone; requeued its %d running task(s)", action, r, moved);
            inflight[r] = 0;
        }
        if (!m) continue;
        if (m->hdr->type != EM__MSG_TASK_DONE) {
            em__msg_free(m);
            continue;
        }
        em__rd rd;
        em__rd_init(&rd, m->payload, m->len);
        uint32_t a = em__rd_u32(&rd), si = em__rd_u32(&rd), p = em__rd_u32(&rd), attempt = em__rd_u32(&rd);
        int32_t status = (int32_t)em__rd_u32(&rd);
        uint32_t blen;
        const char *body = em__rd_bytes(&rd, &blen);
        em__task_stats stt;
        memset(&stt, 0, sizeof stt);
        const void *sp = em__rd_take(&rd, sizeof stt);
        if (sp) memcpy(&stt, sp, sizeof stt);
        rd.err = 0; /* the stats are optional */
        int src = m->hdr->src;
                if (rd.err || a != action || si >= (uint32_t)nst || p >= (uint32_t)st[si].nparts) {
            em__msg_free(m);
            continue;
        }
        stage *s = &st[si];
        tstate *t = &s->ts[p];
        /* The attempt running on t->rank stops counting against that rank now, whoever answered: a result
         * replayed from a new leader's inventory can finish a task that was also sent out again, and the later
         * answer of that copy finds the task done. */
        if (t->state == T_RUNNING && inflight[t->rank] > 0) inflight[t->rank]--;
        if (t->state == T_DONE) { /* a duplicate: the first success won */
            em__msg_free(m);
            continue;
        }
        if (status == 0 || status == EM__FETCH_FAILED || t->state != T_DONE) {
            /* fixed-point by hand (as %.6f and %.3f would print them): cheaper than printf's floating point */
            long long tus = stt.seconds > 0 ? (long long)(stt.seconds * 1e6 + 0.5) : 0;
            long long fus = stt.fetch_wait_ms > 0 ? (long long)(stt.fetch_wait_ms * 1e3 + 0.5) : 0;
            em__event("task_end",
                      "\"action\":%u,\"stage\":%u,\"part\":%u,\"rank\":%d,\"attempt\":%u,\"status\":\"%s\",\"seconds\":%lld.%06lld,"
                      "\"records_out\":%llu,\"bytes_out\":%llu,\"spill_bytes\":%llu,\"fetch_wait_ms\":%lld.%03lld",
                      action, si, p, src, attempt, status == 0 ? "ok" : status == EM__FETCH_FAILED ? "fetch_failed" : "failed",
                      tus / 1000000, tus % 1000000, (unsigned long long)stt.records_out, (unsigned long long)stt.bytes_out,
                      (unsigned long long)stt.spill_bytes, fus / 1000, fus % 1000);
        }
        if (status == 0) {
            mark_arg ma = {ctx, src};
            em__node_walk_part(s->kind == S_MAP ? em__wide_input(s->wide_out, s->side) : s->node, (int)p, mark_cached, &ma);
            if (s->kind == S_MAP) {
                tracker_get(ctx, s->wide_out)[s->base + (int)p] = src;
                note_sizes(ctx, s->wide_out, s->base + (int)p, body, blen);
            } else if (s->kind == S_SAMPLE) {
                em__buf_add(&s->sample, body, blen);
                if (s->ndone + 1 == s->nparts) make_bounds(ctx, s);
            } else if (op == EM__OP_COLLECT || op == EM__OP_TAKE) {
                collected += blen;
                if (collected > (uint64_t)ctx->rt.cfg.max_result) {
                    rc = em__fail(EM_ETOOBIG, "collect: the result is more than %llu bytes (--ember-max-result %lld); "
                                  "use em_save_text or raise the limit", (unsigned long long)collected,
                                  (long long)ctx->rt.cfg.max_result);
                    em__msg_free(m);
                    goto out;
                }
                em__buf_add(&parts[p], body, blen);
            } else if (op == EM__OP_SAVE) {
                char final[4096];
                const char *dir = extra;
                snprintf(final, sizeof final, "%s/part-%05u", dir, p);
                /* a result replayed by a new leader may have been committed by the old one already */
                int done_before = blen && body[blen - 1] == 0 && access(body, F_OK) != 0 && access(final, F_OK) == 0;
                if (!done_before && (blen == 0 || body[blen - 1] != 0 || rename(body, final) < 0)) {
                    rc = em__fail(EM_EIO, "save: cannot commit %.*s as %s", (int)blen, body, final);
                    em__msg_free(m);
                    goto out;
                }
            } else if ((rc = em__op_combine(op, op_arg, result, body, blen, first)) < 0) {
                rc = em__fail(EM_EINVAL, "action %u: malformed result of task %u from r%d", action, p, src);
                em__msg_free(m);
                goto out;
            } else {
                first = 0;
            }
            t->state = T_DONE;
            s->ndone++;
        } else if (status == EM__FETCH_FAILED && blen >= 12) {
            uint32_t fs, fm;
            int32_t fr;
            memcpy(&fs, body, 4);
            memcpy(&fm, body + 4, 4);
            memcpy(&fr, body + 8, 4);
            EM_LOG_W("action %u: task %u of stage %u lost its input (%.*s); rerunning the lost map output first",
                     action, p, si, (int)blen - 12, body + 12);
            for (int i = 0; i < nst; i++) {
                stage *ms = &st[i];
                if (ms->kind != S_MAP || (uint32_t)ms->wide_out->id != fs || fm < (uint32_t)ms->base ||
                    fm >= (uint32_t)(ms->base + ms->nparts))
                    continue;
                int32_t *loc = tracker_get(ctx, ms->wide_out);
                int lp = (int)fm - ms->base;
                if (loc[fm] == fr) {
                    em__event("recompute", "\"action\":%u,\"stage\":%d,\"shuffle\":%u,\"map_part\":%u,\"lost_rank\":%d,"
                              "\"reason\":\"fetch_failed\"", action, i, fs, fm, fr);
                    loc[fm] = -1;
                    if (ms->ts[lp].state == T_DONE) enqueue(ms, lp);
                }
            }
            if (++t->failures > 4 * ctx->rt.cfg.max_task_failures) {
                rc = em__fail(EM_ETASK, "task %u of stage %u (action %u) could not fetch its input %d times", p, si,
                              action, t->failures);
                em__msg_free(m);
                goto out;
            }
            enqueue(s, (int)p);
            em__event("retry", "\"action\":%u,\"stage\":%u,\"part\":%u,\"attempt\":%u", action, si, p, t->attempts + 1);
        } else {
            t->failures++;
            t->last_failed = src;
            size_t l = strlen(t->ranks);
            snprintf(t->ranks + l, sizeof t->ranks - l, "%sr%d", l ? "," : "", src);
            EM_LOG_W("action %u: task %u of stage %u failed on r%d (attempt %d of %lld): %.*s", action, p, si, src,
                     t->failures, (long long)ctx->rt.cfg.max_task_failures, (int)blen, body);
            {
                char msg[512];
                snprintf(msg, sizeof msg, "%.*s", (int)blen, body);
                em__event("task_failed", "\"action\":%u,\"stage\":%u,\"part\":%u,\"rank\":%d,\"attempt\":%u,\"error\":\"%s\"",
                          action, si, p, src, attempt, em__json_str(msg));
            }
            if (t->failures >= ctx->rt.cfg.max_task_failures) {
                rc = em__fail(EM_ETASK, "task %u of stage %u (action %u, dataset %d) failed %d times on ranks %s; last error: %.*s",
                              p, si, action, s->node->id, t->failures, t->ranks, (int)blen, body);
                em__msg_free(m);
                goto out;
            }
            enqueue(s, (int)p);
            em__event("retry", "\"action\":%u,\"stage\":%u,\"part\":%u,\"attempt\":%u", action, si, p, t->attempts + 1);
        }
        em__msg_free(m);
    }
    for (int i = 0; i < nst; i++) stage_track(ctx, action, st, nst, i);
    EM_LOG_I("action %u: done in %.3f s", action, em__now_s() - t0);
    if (op == EM__OP_COLLECT || op == EM__OP_TAKE) {
        for (int p = 0; p < res->nparts; p++) em__buf_add(result, parts[p].p, parts[p].len);
    } else if (op == EM__OP_SAVE) {
        result->len = 0;
    } else if (first) { /* no partitions at all: the op's identity */
        static const uint8_t zeros[16];
        em__op_combine(op, op_arg, result, zeros, op == EM__OP_COUNT ? 8 : 16, 1);
    }
out:
    for (int i = 0; i < nst; i++) {
        free(st[i].ts);
        free(st[i].queue);
        em__buf_release(&st[i].sample);
    }
    for (int p = 0; p < res->nparts; p++) em__buf_release(&parts[p]);
    free(parts);
    free(inflight);
    free(per_rank);
    return rc;
}
