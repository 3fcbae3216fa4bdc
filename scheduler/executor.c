/* executor.c — the task loop every rank runs on its executor thread (DESIGN section 2).
 *
 * A task arrives as a TASK message: (action, stage, partition, attempt, node, op). The executor waits until
 * main() on this rank has entered that action (so the lineage graph up to the node exists here too), computes the
 * partition through the node's narrow pipeline into an op-specific sink, and reports TASK_DONE to whoever leads
 * now. Errors in user callbacks become a failed TASK_DONE with the message; the driver decides about retries.
 */
#include "operators/sinks/sink.h"
#include "runtime/log.h"
#include "scheduler/sched.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int em__task_unpack(const void *p, size_t n, em__task *t)
{
    em__rd r;
    em__rd_init(&r, p, n);
    t->action = em__rd_u32(&r);
    t->stage = em__rd_u32(&r);
    t->part = em__rd_u32(&r);
    t->attempt = em__rd_u32(&r);
    t->node = em__rd_u32(&r);
    t->op = em__rd_u32(&r);
    t->op_arg = em__rd_i64(&r);
    uint32_t nd = em__rd_u32(&r);
    if (nd > 2 * EM__MAX_DEPS) return EM_EINVAL;
    t->ndeps = (int)nd;
    for (uint32_t i = 0; i < nd; i++) {
        t->deps[i].shuffle = em__rd_u32(&r);
        t->deps[i].nmaps = em__rd_u32(&r);
        t->deps[i].loc = (int32_t *)em__rd_take(&r, 4 * (size_t)t->deps[i].nmaps);
    }
    t->extra = em__rd_bytes(&r, &t->extra_len);
    return r.err ? EM_EINVAL : 0;
}

/* ---- sinks: the end of a task's pipeline ---- */

typedef struct agg_state {
    int64_t n;
    int64_t acc;
    em_agg agg;
} agg_state;

static int count_push(em_emitter *self, const em_rec *r)
{
    (void)r;
    ((agg_state *)self->state)->n++;
    return 0;
}

static int agg_push(em_emitter *self, const em_rec *r)
{
    agg_state *s = self->state;
    if (s->agg == EM_AGG_COUNT) {
        s->n++;
        return 0;
    }
    if (r->vlen != 8) return em__fail(EM_ETYPE, "reduce: a record's value is %u bytes, not an int64 (8 bytes)", r->vlen);
    int64_t v = em_i64_get(r->val);
    if (s->n == 0) s->acc = s->agg == EM_AGG_SUM ? 0 : v;
    switch (s->agg) {
    case EM_AGG_SUM: s->acc += v; break;
    case EM_AGG_MIN: if (v < s->acc) s->acc = v; break;
    case EM_AGG_MAX: if (v > s->acc) s->acc = v; break;
    default: break;
    }
    s->n++;
    return 0;
}

static int collect_push(em_emitter *self, const em_rec *r)
{
    em__task_records++;
    em__rec_append(self->state, r->key, r->klen, r->val, r->vlen);
    return 0;
}

typedef struct sink_ctx {
    const em__sink_ops *ops;
    void *st;
} sink_ctx;

static int sink_push(em_emitter *self, const em_rec *r)
{
    sink_ctx *sc = self->state;
    em__task_records++;
    return sc->ops->push(sc->st, r);
}

static int run_save(em_ctx *ctx, em__node *node, const em__task *t, em__buf *out)
{
    /* extra: dir NUL sink NUL args NUL */
    const char *dir = t->extra ? t->extra : "", *sk = "", *args = "";
    if (t->extra && t->extra_len > strlen(dir) + 1) sk = dir + strlen(dir) + 1;
    if (*sk && (size_t)(sk - dir) + strlen(sk) + 1 < t->extra_len) args = sk + strlen(sk) + 1;
    const em__sink_ops *ops = em__sink_find(*sk ? sk : "text");
    if (!ops) return em__fail(EM_EINVAL, "save: unknown output format '%s'", sk);
    char path[4096];
    snprintf(path, sizeof path, "%s/_temporary", dir);
    mkdir(dir, 0755);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/_temporary/part-%05u.a%u.r%d", dir, t->part, t->attempt, ctx->rt.rank);
    void *st;
    int rc = ops->open(&st, path, (int)t->part, args);
    if (rc < 0) return rc;
    em_emitter sink = {sink_push, NULL, node, NULL, NULL};
    sink_ctx sc = {ops, st};
    sink.state = &sc;
    rc = em__node_compute(node, (int)t->part, &sink);
    int crc = ops->close(st, rc == 0);
    if (rc == 0) rc = crc;
    if (rc < 0) {
        unlink(path);
        return rc;
    }
    em__buf_add(out, path, strlen(path) + 1);
    return 0;
}

typedef struct take_state {
    em__buf *out;
    int64_t want, have;
} take_state;

static int take_push(em_emitter *self, const em_rec *r)
{
    take_state *s = self->state;
    if (s->have >= s->want) return EM__STOP;
    em__task_records++;
    em__rec_append(s->out, r->key, r->klen, r->val, r->vlen);
    return ++s->have >= s->want ? EM__STOP : 0;
}

/* Reservoir sample of the keys of a partition (for sortByKey's range bounds), seeded by the partition so a retry
 * samples the same keys. */
typedef struct sample_state {
    em__buf keys;   /* the reservoir's keys, back to back */
    uint64_t *off;  /* [want+1] */
    uint32_t *len;
    int64_t want, seen;
    uint64_t rng;
} sample_state;

static uint64_t xorshift(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int sample_push(em_emitter *self, const em_rec *r)
{
    sample_state *s = self->state;
    int64_t slot = s->seen < s->want ? s->seen : (int64_t)(xorshift(&s->rng) % (uint64_t)(s->seen + 1));
    s->seen++;
    if (slot >= s->want) return 0;
    s->off[slot] = s->keys.len; /* the replaced key's bytes stay as garbage: bounded by 2x the sample size */
    s->len[slot] = r->klen;
    em__buf_add(&s->keys, r->key, r->klen);
    if (s->keys.len > ((size_t)64 << 20)) { /* compact */
        em__buf k;
        em__buf_init(&k);
        int64_t n = s->seen < s->want ? s->seen : s->want;
        for (int64_t i = 0; i < n; i++) {
            uint64_t o = k.len;
            em__buf_add(&k, s->keys.p + s->off[i], s->len[i]);
            s->off[i] = o;
        }
        em__buf_release(&s->keys);
        s->keys = k;
    }
    return 0;
}

static int run_sample(em__node *node, const em__task *t, em__buf *out)
{
    sample_state s;
    memset(&s, 0, sizeof s);
    s.want = t->op_arg > 0 ? t->op_arg : 1;
    s.off = em__malloc(sizeof *s.off * (size_t)s.want);
    s.len = em__malloc(sizeof *s.len * (size_t)s.want);
    s.rng = 0x9E3779B97F4A7C15ULL ^ ((uint64_t)t->part + 1) * 0xD1B54A32D192ED03ULL;
    em_emitter sink = {sample_push, NULL, node, &s, NULL};
    int rc = em__node_compute(node, (int)t->part, &sink);
    int64_t n = s.seen < s.want ? s.seen : s.want;
    for (int64_t i = 0; rc == 0 && i < n; i++) em__rec_append(out, s.keys.p + s.off[i], s.len[i], NULL, 0);
    em__buf_release(&s.keys);
    free(s.off);
    free(s.len);
    return rc;
}

static int run_task(em_ctx *ctx, const em__task *t, em__buf *out)
{
    em__node *node = em__node_get(ctx, (int)t->node);
    if (!node) return em__fail(EM_EINVAL, "task names dataset %u which this rank does not have", t->node);
    em__task_deps_set((em__deploc *)t->deps, t->ndeps);
    if (t->op == EM__OP_SHUFFLE_MAP) {
        if (t->op_arg < 0 || t->op_arg >= em__wide_sides(node)) return em__fail(EM_EINVAL, "bad shuffle side");
        em__task_bounds_set(t->extra, t->extra_len);
        return em__shuffle_map(ctx, node, (int)t->op_arg, (int)t->part, out);
    }
    if (t->op == EM__OP_SAMPLE) return run_sample(node, t, out);
    if (t->op == EM__OP_TAKE) {
        take_state ts = {out, t->op_arg, 0};
        em_emitter sink = {take_push, NULL, node, &ts, NULL};
        int rc = em__node_compute(node, (int)t->part, &sink);
        return rc == EM__STOP ? 0 : rc;
    }
    if (t->op == EM__OP_SAVE) return run_save(ctx, node, t, out);
    if (t->op == EM__OP_COLLECT) {
        em_emitter sink = {collect_push, NULL, node, out, NULL};
        return em__node_compute(node, (int)t->part, &sink);
    }
    agg_state st = {0, 0, (em_agg)t->op_arg};
    em_emitter sink = {t->op == EM__OP_COUNT ? count_push : agg_push, NULL, node, &st, NULL};
    int rc = em__node_compute(node, (int)t->part, &sink);
    if (rc < 0) return rc;
    em__task_records = (uint64_t)st.n;
    if (t->op == EM__OP_COUNT) {
        em__buf_i64(out, st.n);
    } else {
        em__buf_i64(out, st.n);
        em__buf_i64(out, st.acc);
    }
    return 0;
}

/* Blocks until main() entered `action` (or the executor is stopping). */
static int wait_for_action(em_ctx *ctx, uint32_t action)
{
    pthread_mutex_lock(&ctx->act_mu);
    while (ctx->action_seq < action && !atomic_load(&ctx->exec_stop)) {
        struct timespec ts;
        em__deadline_after(&ts, 50 * 1000);
        pthread_cond_timedwait(&ctx->act_cv, &ctx->act_mu, &ts);
    }
    int ok = ctx->action_seq >= action;
    pthread_mutex_unlock(&ctx->act_mu);
    return ok;
}

static void *executor_main(void *arg)
{
    em_ctx *ctx = arg;
    em__rt *rt = &ctx->rt;
    em__buf out;
    em__buf_init(&out);
    while (!atomic_load(&ctx->exec_stop)) {
        em__msg *m = em__mbox_get(&rt->exec_mb, 100);
        if (!m) continue;
        if (m->hdr->type != EM__MSG_TASK) {
            em__msg_free(m);
            continue;
        }
        em__task t;
        if (em__task_unpack(m->payload, m->len, &t) < 0) {
            EM_LOG_W("dropped a malformed TASK from r%d", m->hdr->src);
            em__msg_free(m);
            continue;
        }
        if (!wait_for_action(ctx, t.action)) {
            em__msg_free(m);
            break;
        }
        em__fault_point(ctx, EM__FP_TASK_START, &t);
        out.len = 0;
        em__set_error("");
        em__task_records = em__task_bytes_out = em__task_spilled = 0;
        em__task_fetch_wait = 0;
        double t0 = em__now_s();
        int rc = run_task(ctx, &t, &out);
        EM_LOG_D("task a%u s%u p%u attempt %u: %s in %.3f ms", t.action, t.stage, t.part, t.attempt,
                 rc < 0 ? em_err_name(rc) : "ok", (em__now_s() - t0) * 1e3);
        if (rc == EM__FETCH_FAILED) { /* body: which output was lost, then the message */
            out.len = 0;
            em__buf_u32(&out, em__last_fetch_fail.shuffle);
            em__buf_u32(&out, em__last_fetch_fail.map_part);
            em__buf_u32(&out, (uint32_t)em__last_fetch_fail.rank);
            em__buf_add(&out, em_last_error(), strlen(em_last_error()));
        }
        const char *err = rc < 0 && rc != EM__FETCH_FAILED ? em_last_error() : NULL;
        size_t blen = err ? strlen(err) : out.len;
        /* after the body: how the task went, for the event log */
        em__task_stats stt = {em__now_s() - t0, em__task_records, t.op == EM__OP_SHUFFLE_MAP ? em__task_bytes_out : out.len,
                              em__task_spilled, em__task_fetch_wait * 1e3};
        em__msg *d = em__msg_new(EM__MSG_TASK_DONE, 24 + blen + sizeof stt);
        memcpy(d->payload + 24 + blen, &stt, sizeof stt);
        uint32_t w[4] = {t.action, t.stage, t.part, t.attempt};
        int32_t status = rc;
        uint32_t len32 = (uint32_t)blen;
        memcpy(d->payload, w, 16);
        memcpy(d->payload + 16, &status, 4);
        memcpy(d->payload + 20, &len32, 4);
        if (blen) memcpy(d->payload + 24, err ? (const void *)err : out.p, blen);
        if (rc == 0 && t.op != EM__OP_SHUFFLE_MAP) em__result_keep(t.action, d->payload, d->len);
        em__fault_point(ctx, EM__FP_RESULT, &t);
        em__send(rt, em__rt_leader(rt), d);
        em__msg_free(m); /* t's deps and extra pointed into it */
    }
    em__buf_release(&out);
    em__ctab_spare_free();
    return NULL;
}

int em__executor_start(em_ctx *ctx)
{
    if (pthread_create(&ctx->executor, NULL, executor_main, ctx) != 0)
        return em__fail(EM_ECOMM, "cannot start the executor thread");
    return 0;
}

void em__executor_stop(em_ctx *ctx)
{
    atomic_store(&ctx->exec_stop, 1);
    pthread_mutex_lock(&ctx->act_mu);
    pthread_cond_broadcast(&ctx->act_cv);
    pthread_mutex_unlock(&ctx->act_mu);
    em__mbox_put(&ctx->rt.exec_mb, em__msg_new(EM__MSG_WAKE, 0)); /* not its 100 ms poll: every job's exit waited */
    pthread_join(ctx->executor, NULL);
}
