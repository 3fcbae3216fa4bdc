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

static void send_task(em_ctx *ctx, int rank, uint32_t action, int part, uint32_t attempt, em__node *node, em__op op,
                      int64_t op_arg)
{
    em__task t = {action, 0, (uint32_t)part, attempt, (uint32_t)node->id, op, op_arg};
    em__msg *m = em__msg_new(EM__MSG_TASK, 32);
    em__buf b = {m->payload, 0, 32};
    em__task_pack(&b, &t);
    EM_ASSERT(b.p == m->payload && b.len == 32);
    em__send(&ctx->rt, rank, m);
}

int em__driver_run(em_ctx *ctx, uint32_t action, em__node *node, em__op op, int64_t op_arg, em__buf *result)
{
    em__rt *rt = &ctx->rt;
    int n = node->nparts, size = rt->size, rc = 0;
    tstate *ts = em__calloc((size_t)(n ? n : 1), sizeof *ts);
    int *queue = em__malloc(sizeof(int) * (size_t)(n ? n : 1) * 2);
    int qhead = 0, qtail = 0, qcap = 2 * (n ? n : 1);
    int *inflight = em__calloc((size_t)size, sizeof(int));
    for (int p = 0; p < n; p++) queue[qtail++] = p;
    int ndone = 0, first = 1;
    result->len = 0;
    double t0 = em__now_s();
    EM_LOG_I("action %u: %d tasks on dataset %d", action, n, node->id);

    while (ndone < n) {
        if (em__rt_leader(rt) != rt->rank) {
            rc = 1; /* lost the lead: the new leader redoes what is missing */
            goto out;
        }
        /* assign */
        int nexec = em__rt_nalive(rt);
        int remaining = qtail - qhead;
        int depth = remaining / (4 * (nexec ? nexec : 1));
        depth = (depth < 1 ? 1 : depth > 16 ? 16 : depth) + 1;
        while (qhead < qtail) {
            int best = -1;
            for (int r = 0; r < size; r++) {
                int rr = (int)((action + (uint32_t)r) % (uint32_t)size); /* rotate the tie-break */
                if (!em__rt_is_alive(rt, rr) || inflight[rr] >= depth) continue;
                if (best < 0 || inflight[rr] < inflight[best]) best = rr;
            }
            if (best < 0) break;
            int p = queue[qhead++ % qcap];
            if (ts[p].state == T_DONE) continue;
            ts[p].state = T_RUNNING;
            ts[p].rank = best;
            ts[p].attempts++;
            inflight[best]++;
            send_task(ctx, best, action, p, ts[p].attempts, node, op, op_arg);
        }
        em__msg *m = em__mbox_get(&rt->driver_mb, 200);
        /* requeue what ran on fenced ranks */
        for (int r = 0; r < size; r++) {
            if (!inflight[r] || em__rt_is_alive(rt, r)) continue;
            int moved = 0;
            for (int p = 0; p < n; p++)
                if (ts[p].state == T_RUNNING && ts[p].rank == r) {
                    ts[p].state = T_PENDING;
                    queue[qtail++ % qcap] = p;
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
        uint32_t a = em__rd_u32(&rd), stage = em__rd_u32(&rd), p = em__rd_u32(&rd), attempt = em__rd_u32(&rd);
        int32_t status = (int32_t)em__rd_u32(&rd);
        uint32_t blen;
        const void *body = em__rd_bytes(&rd, &blen);
        int src = m->hdr->src;
        (void)stage;
        (void)attempt;
        if (rd.err || a != action || p >= (uint32_t)n) {
            if (!rd.err && a > action) EM_LOG_W("TASK_DONE for future action %u from r%d", a, src);
            em__msg_free(m);
            continue;
        }
        tstate *t = &ts[p];
        if (t->state == T_RUNNING && t->rank == src && inflight[src] > 0) inflight[src]--;
        if (t->state == T_DONE) { /* a duplicate: first success won */
            em__msg_free(m);
            continue;
        }
        if (status == 0) {
            if ((rc = em__op_combine(op, op_arg, result, body, blen, first)) < 0) {
                rc = em__fail(EM_EINVAL, "action %u: malformed result of task %u from r%d", action, p, src);
                em__msg_free(m);
                goto out;
            }
            first = 0;
            t->state = T_DONE;
            ndone++;
        } else {
            t->failures++;
            size_t l = strlen(t->ranks);
            snprintf(t->ranks + l, sizeof t->ranks - l, "%sr%d", l ? "," : "", src);
            EM_LOG_W("action %u: task %u (stage 0) failed on r%d (attempt %d of %lld): %.*s", action, p, src,
                     t->failures, (long long)ctx->rt.cfg.max_task_failures, (int)blen, (const char *)body);
            if (t->failures >= ctx->rt.cfg.max_task_failures) {
                rc = em__fail(EM_ETASK, "task %u of stage 0 (action %u, dataset %d) failed %d times on ranks %s; last error: %.*s",
                              p, action, node->id, t->failures, t->ranks, (int)blen, (const char *)body);
                em__msg_free(m);
                goto out;
            }
            t->state = T_PENDING;
            queue[qtail++ % qcap] = (int)p;
        }
        em__msg_free(m);
    }
    EM_LOG_I("action %u: %d tasks done in %.3f s", action, n, em__now_s() - t0);
    if (first) { /* no partitions at all: the op's identity */
        static const uint8_t zeros[16];
        em__op_combine(op, op_arg, result, zeros, op == EM__OP_COUNT ? 8 : 16, 1);
    }
out:
    free(ts);
    free(queue);
    free(inflight);
    return rc;
}
