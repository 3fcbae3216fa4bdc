/* driver.c — the leader's task scheduler for one action (DESIGN sections 2 and 6).
 *
 * Tasks are handed out dynamically: each live executor holds at most `depth` queued or running tasks, where depth
 * shrinks as the action nears its end (guided self-scheduling), so short tasks are pipelined (no idle round trip
 * between them) and uneven partitions still balance at the tail. The first successful attempt of a task wins;
 * later duplicates are ignored. When a rank is fenced its tasks are requeued without counting as failures; a
 * task that itself fails is retried up to --ember-max-task-failures times, then the action fails naming it.
 */
#include "runtime/log.h"
#include "scheduler/sched.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

#define MAX_STAGES 32

typedef struct stage {
    em__node *node;     /* partitions of this node are computed by the stage's tasks */
    em__node *wide_out; /* shuffle map stage: the wide node it feeds; NULL: the result stage */
    int nparts;
    int ndeps;
    em__node *deps[8]; /* wide nodes whose shuffles this stage reads */
    tstate *ts;
    int *queue, qhead, qtail, qcap;
    int ndone;
} stage;

/* Map output tracker: which rank holds each map output of each shuffle. Lives on the leader across actions, so
 * a shuffle read by two actions is written once. */
typedef struct tracker {
    int nshuf;
    int32_t **loc; /* [node id] -> [nmaps] rank or -1 */
    int *nmaps;
} tracker;

static int32_t *tracker_get(em_ctx *ctx, em__node *w)
{
    tracker *tr = ctx->sched;
    if (!tr) tr = ctx->sched = em__calloc(1, sizeof *tr);
    if (w->id >= tr->nshuf) {
        int n = w->id + 64;
        tr->loc = em__realloc(tr->loc, sizeof *tr->loc * (size_t)n);
        tr->nmaps = em__realloc(tr->nmaps, sizeof *tr->nmaps * (size_t)n);
        for (int i = tr->nshuf; i < n; i++) {
            tr->loc[i] = NULL;
            tr->nmaps[i] = 0;
        }
        tr->nshuf = n;
    }
    if (!tr->loc[w->id]) {
        int nm = w->parent->nparts;
        tr->loc[w->id] = em__malloc(sizeof(int32_t) * (size_t)(nm ? nm : 1));
        for (int i = 0; i < nm; i++) tr->loc[w->id][i] = -1;
        tr->nmaps[w->id] = nm;
    }
    return tr->loc[w->id];
}

void em__tracker_free(em_ctx *ctx)
{
    tracker *tr = ctx->sched;
    if (!tr) return;
    for (int i = 0; i < tr->nshuf; i++) free(tr->loc[i]);
    free(tr->loc);
    free(tr->nmaps);
    free(tr);
    ctx->sched = NULL;
}

/* Adds the stage computing `node` (feeding wide_out, or the result) after the stages it depends on. */
static int plan(stage *st, int *nst, em__node *node, em__node *wide_out)
{
    for (int i = 0; i < *nst; i++)
        if (wide_out && st[i].wide_out == wide_out) return i;
    stage s;
    memset(&s, 0, sizeof s);
    s.node = node;
    s.wide_out = wide_out;
    s.nparts = node->nparts;
    for (em__node *n = node; n; n = n->parent)
        if (em__node_is_wide(n)) {
            if (s.ndeps == 8) return em__fail(EM_EINVAL, "a stage reads more than 8 shuffles");
            s.deps[s.ndeps++] = n;
            if (plan(st, nst, n->parent, n) < 0) return EM_EINVAL;
            break;
        }
    if (*nst == MAX_STAGES) return em__fail(EM_EINVAL, "lineage has more than %d stages", MAX_STAGES);
    st[*nst] = s;
    return (*nst)++;
}

static int stage_complete(em_ctx *ctx, stage *s)
{
    if (!s->wide_out) return s->ndone == s->nparts;
    int32_t *loc = tracker_get(ctx, s->wide_out);
    for (int p = 0; p < s->nparts; p++)
        if (loc[p] < 0) return 0;
    return 1;
}

static int stage_ready(em_ctx *ctx, stage *st, int nst, stage *s)
{
    for (int d = 0; d < s->ndeps; d++)
        for (int i = 0; i < nst; i++)
            if (st[i].wide_out == s->deps[d] && !stage_complete(ctx, &st[i])) return 0;
    return 1;
}

static void enqueue(stage *s, int p)
{
    s->ts[p].state = T_PENDING;
    s->queue[s->qtail++ % s->qcap] = p;
}

static void send_task(em_ctx *ctx, int rank, uint32_t action, int si, stage *s, int part, em__op op, int64_t op_arg,
                      const char *extra, size_t extra_len)
{
    em__buf b;
    em__buf_init(&b);
    uint32_t w[6] = {action, (uint32_t)si, (uint32_t)part, s->ts[part].attempts, 0, 0};
    w[4] = (uint32_t)(s->wide_out ? s->wide_out->id : s->node->id);
    w[5] = s->wide_out ? EM__OP_SHUFFLE_MAP : op;
    em__buf_add(&b, w, sizeof w);
    em__buf_i64(&b, op_arg);
    em__buf_u32(&b, (uint32_t)s->ndeps);
    for (int d = 0; d < s->ndeps; d++) {
        int32_t *loc = tracker_get(ctx, s->deps[d]);
        uint32_t nm = (uint32_t)s->deps[d]->parent->nparts;
        em__buf_u32(&b, (uint32_t)s->deps[d]->id);
        em__buf_u32(&b, nm);
        em__buf_add(&b, loc, 4 * (size_t)nm);
    }
    em__buf_bytes(&b, extra, s->wide_out ? 0 : (uint32_t)extra_len);
    em__msg *m = em__msg_new(EM__MSG_TASK, b.len);
    memcpy(m->payload, b.p, b.len);
    em__buf_release(&b);
    em__send(&ctx->rt, rank, m);
}

int em__driver_run(em_ctx *ctx, uint32_t action, em__node *node, em__op op, int64_t op_arg, const char *extra,
                   size_t extra_len, em__buf *result)
{
    em__rt *rt = &ctx->rt;
    int size = rt->size, rc = 0, nst = 0;
    stage st[MAX_STAGES];
    if (plan(st, &nst, node, NULL) < 0) return EM_EINVAL;
    stage *res = &st[nst - 1];
    for (int i = 0; i < nst; i++) {
        stage *s = &st[i];
        int n = s->nparts ? s->nparts : 1;
        s->ts = em__calloc((size_t)n, sizeof *s->ts);
        s->qcap = 2 * n;
        s->queue = em__malloc(sizeof(int) * (size_t)s->qcap);
        int32_t *loc = s->wide_out ? tracker_get(ctx, s->wide_out) : NULL;
        for (int p = 0; p < s->nparts; p++) {
            if (loc && loc[p] >= 0 && em__rt_is_alive(rt, loc[p])) s->ts[p].state = T_DONE; /* written before */
            else enqueue(s, p);
        }
    }
    em__buf *parts = em__calloc((size_t)(res->nparts ? res->nparts : 1), sizeof *parts);
    int *inflight = em__calloc((size_t)size, sizeof(int));
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
            if (!s->wide_out) continue;
            int32_t *loc = tracker_get(ctx, s->wide_out);
            for (int p = 0; p < s->nparts; p++)
                if (loc[p] >= 0 && !em__rt_is_alive(rt, loc[p])) {
                    EM_LOG_W("action %u: map output %d of shuffle %d was on fenced r%d; recomputing it from lineage",
                             action, p, s->wide_out->id, loc[p]);
                    loc[p] = -1;
                    if (s->ts[p].state == T_DONE) enqueue(s, p);
                }
        }
        /* assign */
        int nexec = em__rt_nalive(rt), remaining = 0;
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
                /* the least loaded live rank; a retried task avoids the rank it last failed on when it can */
                int best = -1;
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
            }
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
        int src = m->hdr->src;
        (void)attempt;
        if (rd.err || a != action || si >= (uint32_t)nst || p >= (uint32_t)st[si].nparts) {
            em__msg_free(m);
            continue;
        }
        stage *s = &st[si];
        tstate *t = &s->ts[p];
        if (t->state == T_RUNNING && t->rank == src && inflight[src] > 0) inflight[src]--;
        if (t->state == T_DONE) { /* a duplicate: the first success won */
            em__msg_free(m);
            continue;
        }
        if (status == 0) {
            if (s->wide_out) {
                tracker_get(ctx, s->wide_out)[p] = src;
            } else if (op == EM__OP_COLLECT) {
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
                if (blen == 0 || body[blen - 1] != 0 || rename(body, final) < 0) {
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
            for (int i = 0; i < nst; i++)
                if (st[i].wide_out && (uint32_t)st[i].wide_out->id == fs && fm < (uint32_t)st[i].nparts) {
                    int32_t *loc = tracker_get(ctx, st[i].wide_out);
                    if (loc[fm] == fr) {
                        loc[fm] = -1;
                        if (st[i].ts[fm].state == T_DONE) enqueue(&st[i], (int)fm);
                    }
                }
            if (++t->failures > 4 * ctx->rt.cfg.max_task_failures) {
                rc = em__fail(EM_ETASK, "task %u of stage %u (action %u) could not fetch its input %d times", p, si,
                              action, t->failures);
                em__msg_free(m);
                goto out;
            }
            enqueue(s, (int)p);
        } else {
            t->failures++;
            t->last_failed = src;
            size_t l = strlen(t->ranks);
            snprintf(t->ranks + l, sizeof t->ranks - l, "%sr%d", l ? "," : "", src);
            EM_LOG_W("action %u: task %u of stage %u failed on r%d (attempt %d of %lld): %.*s", action, p, si, src,
                     t->failures, (long long)ctx->rt.cfg.max_task_failures, (int)blen, body);
            if (t->failures >= ctx->rt.cfg.max_task_failures) {
                rc = em__fail(EM_ETASK, "task %u of stage %u (action %u, dataset %d) failed %d times on ranks %s; last error: %.*s",
                              p, si, action, s->node->id, t->failures, t->ranks, (int)blen, body);
                em__msg_free(m);
                goto out;
            }
            enqueue(s, (int)p);
        }
        em__msg_free(m);
    }
    EM_LOG_I("action %u: done in %.3f s", action, em__now_s() - t0);
    if (op == EM__OP_COLLECT) {
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
    }
    for (int p = 0; p < res->nparts; p++) em__buf_release(&parts[p]);
    free(parts);
    free(inflight);
    return rc;
}
