/* loop.c — the progress thread: outbox, receive + dispatch, timers (DESIGN section 6; shaped like Redis' ae.c).
 *
 * Only this thread calls comm.c after start-up. It never runs user code and never blocks on a peer, so it keeps
 * heartbeating while the executor thread is busy. When idle it sleeps on the outbox condition variable with a
 * short, growing timeout (20 us up to 1 ms): a rank with nothing to do must not spin, because ranks are often
 * oversubscribed (4 ranks on 2 cores), yet a posted message wakes it at once.
 */
#include "runtime/loop.h"

#include "ember.h"
#include "runtime/log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

int64_t em__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

double em__now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void em__cond_init(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
}

/* ---- mailboxes ---- */

void em__mbox_init(em__mbox *mb)
{
    pthread_mutex_init(&mb->mu, NULL);
    em__cond_init(&mb->cv);
    mb->head = mb->tail = NULL;
}

void em__mbox_release(em__mbox *mb)
{
    for (em__msg *m = mb->head, *n; m; m = n) {
        n = m->next;
        em__msg_free(m);
    }
    mb->head = mb->tail = NULL;
    pthread_mutex_destroy(&mb->mu);
    pthread_cond_destroy(&mb->cv);
}

void em__mbox_put(em__mbox *mb, em__msg *m)
{
    m->next = NULL;
    pthread_mutex_lock(&mb->mu);
    if (mb->tail) mb->tail->next = m;
    else mb->head = m;
    mb->tail = m;
    pthread_cond_signal(&mb->cv);
    pthread_mutex_unlock(&mb->mu);
}

void em__deadline_after(struct timespec *ts, int64_t us)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += us / 1000000;
    ts->tv_nsec += (long)(us % 1000000) * 1000;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

em__msg *em__mbox_get(em__mbox *mb, int timeout_ms)
{
    struct timespec dl;
    if (timeout_ms >= 0) em__deadline_after(&dl, (int64_t)timeout_ms * 1000);
    pthread_mutex_lock(&mb->mu);
    while (!mb->head) {
        int rc = timeout_ms < 0 ? pthread_cond_wait(&mb->cv, &mb->mu) : pthread_cond_timedwait(&mb->cv, &mb->mu, &dl);
        if (rc == ETIMEDOUT) break;
    }
    em__msg *m = mb->head;
    if (m) {
        mb->head = m->next;
        if (!mb->head) mb->tail = NULL;
        m->next = NULL;
    }
    pthread_mutex_unlock(&mb->mu);
    return m;
}

/* ---- routing ---- */

static em__mbox *route(em__rt *rt, int type)
{
    switch (type) {
    case EM__MSG_TASK: return &rt->exec_mb;
    case EM__MSG_TASK_DONE:
    case EM__MSG_INVENTORY: return &rt->driver_mb;
    case EM__MSG_ACTION_RESULT:
    case EM__MSG_BYE:
    case EM__MSG_FIN: return &rt->main_mb;
    case EM__MSG_FETCH_RESP: return &rt->fetch_mb;
    default: return NULL;
    }
}

/* Runs on the progress thread for every message received or sent to self through the outbox. */
static void dispatch(em__rt *rt, em__msg *m)
{
    if (em__mem_on_msg(rt, m)) return;
    int type = m->hdr->type;
    if (type < EM__MSG_NTYPES && rt->handlers[type]) {
        rt->handlers[type](rt, m, rt->handler_arg[type]);
        return;
    }
    em__mbox *mb = type < EM__MSG_NTYPES ? route(rt, type) : NULL;
    if (mb) {
        em__mbox_put(mb, m);
        return;
    }
    EM_LOG_D("dropped %s from r%d", em__msg_name(type), m->hdr->src);
    em__msg_free(m);
}

void em__rt_on(em__rt *rt, int type, em__handler h, void *arg)
{
    rt->handler_arg[type] = arg;
    rt->handlers[type] = h;
}

static void fill_header(em__rt *rt, em__msg *m)
{
    pthread_mutex_lock(&rt->mu);
    m->hdr->epoch = rt->epoch;
    m->hdr->leader = rt->leader;
    pthread_mutex_unlock(&rt->mu);
    m->hdr->src = rt->rank;
    m->hdr->version = EM__PROTO_VERSION;
}

void em__send(em__rt *rt, int dst, em__msg *m)
{
    fill_header(rt, m);
    m->dst = dst;
    int type = m->hdr->type;
    /* Local fast path: straight into the mailbox, no progress-thread hop (driver <-> own executor). */
    if (dst == rt->rank && !rt->handlers[type] && route(rt, type)) {
        em__mbox_put(route(rt, type), m);
        return;
    }
    m->next = NULL;
    pthread_mutex_lock(&rt->out_mu);
    if (rt->out_tail) rt->out_tail->next = m;
    else rt->out_head = m;
    rt->out_tail = m;
    pthread_cond_signal(&rt->out_cv);
    pthread_mutex_unlock(&rt->out_mu);
}

void em__send_all(em__rt *rt, em__msg *m)
{
    int last = -1;
    for (int r = 0; r < rt->size; r++)
        if (r != rt->rank && em__rt_is_alive(rt, r)) last = r;
    for (int r = 0; r < last; r++) { /* copies for all but the last destination, which gets m itself */
        if (r == rt->rank || !em__rt_is_alive(rt, r)) continue;
        em__msg *c = em__msg_new(m->hdr->type, m->len);
        memcpy(c->payload, m->payload, m->len);
        em__send(rt, r, c);
    }
    if (last >= 0) em__send(rt, last, m);
    else em__msg_free(m);
}

/* ---- the loop ---- */

static int drain_outbox(em__rt *rt)
{
    pthread_mutex_lock(&rt->out_mu);
    em__msg *m = rt->out_head;
    rt->out_head = rt->out_tail = NULL;
    pthread_mutex_unlock(&rt->out_mu);
    int n = 0;
    while (m) {
        em__msg *next = m->next;
        m->next = NULL;
        if (m->dst == rt->rank) dispatch(rt, m);
        else if (em__rt_is_alive(rt, m->dst) || m->hdr->type == EM__MSG_ELECTION) em__comm_send(m->dst, m);
        else em__msg_free(m); /* never talk to a fenced rank */
        m = next;
        n++;
    }
    return n;
}

static int alive_cb(void *arg, int rank) { return em__rt_is_alive(arg, rank); }

static void *progress_main(void *arg)
{
    em__rt *rt = arg;
    prctl(PR_SET_TIMERSLACK, 1000UL, 0, 0, 0); /* 1 us: our sleeps are short on purpose */
    int64_t idle_us = 20;
    atomic_store(&rt->loop_tick, em__now_ms());
    while (!atomic_load(&rt->stop)) {
        int64_t now = em__now_ms();
        int64_t prev = atomic_exchange(&rt->loop_tick, now);
        if (now - prev > rt->cfg.timeout_ms && rt->size > 1) {
            /* We were stopped (SIGSTOP) or starved longer than the failure timeout: the others have fenced us.
             * Do not write anything; leave (DESIGN section 6). */
            EM_LOG_W("progress loop stalled for %lld ms (> timeout %lld ms): assuming this rank was fenced; exiting",
                     (long long)(now - prev), (long long)rt->cfg.timeout_ms);
            atomic_store(&rt->fenced, 1);
            _exit(75);
        }
        int activity = drain_outbox(rt);
        for (em__msg *m; activity < 256 && (m = em__comm_poll());) {
            dispatch(rt, m);
            activity++;
        }
        int sending = em__comm_progress(); /* large messages need MPI to be called often to move along */
        if (sending) em__comm_drop_dead(alive_cb, rt);
        em__mem_tick(rt, now);
        if (activity) {
            idle_us = 20;
            continue;
        }
        if (sending) idle_us = 20;
        struct timespec dl;
        em__deadline_after(&dl, idle_us);
        pthread_mutex_lock(&rt->out_mu);
        if (!rt->out_head && !atomic_load(&rt->stop)) pthread_cond_timedwait(&rt->out_cv, &rt->out_mu, &dl);
        pthread_mutex_unlock(&rt->out_mu);
        if (idle_us < 1000) idle_us *= 2;
    }
    /* Flush what is still queued (the final FIN / results), bounded. */
    int64_t until = em__now_ms() + 2000;
    drain_outbox(rt);
    while (em__comm_progress() > 0 && em__now_ms() < until) {
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

/* The sentinel: if the progress thread itself stops making rounds (stuck inside a call, or the process was
 * SIGSTOPped), the rest of the job fences this rank after timeout_ms; from then on nothing this rank does may
 * count, so it leaves. Without this a rank whose progress thread hangs would live forever and keep mpirun
 * from exiting. */
static void *sentinel_main(void *arg)
{
    em__rt *rt = arg;
    for (;;) {
        struct timespec ts = {rt->cfg.heartbeat_ms / 1000, (rt->cfg.heartbeat_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        if (atomic_load(&rt->stop)) return NULL;
        int64_t stale = em__now_ms() - atomic_load(&rt->loop_tick);
        if (stale > rt->cfg.timeout_ms + rt->cfg.heartbeat_ms) {
            EM_LOG_W("progress thread silent for %lld ms (> timeout): this rank is fenced by now; exiting", (long long)stale);
            atomic_store(&rt->fenced, 1);
            _exit(75);
        }
    }
}

int em__rt_start(em__rt *rt, int *argc, char ***argv)
{
    int rc;
    rt->t0_ms = em__now_ms();
    if ((rc = em__comm_init(argc, argv, &rt->rank, &rt->size)) < 0) return rc;
    pthread_mutex_init(&rt->mu, NULL);
    pthread_mutex_init(&rt->out_mu, NULL);
    em__cond_init(&rt->out_cv);
    em__mbox_init(&rt->exec_mb);
    em__mbox_init(&rt->driver_mb);
    em__mbox_init(&rt->main_mb);
    em__mbox_init(&rt->fetch_mb);
    em__mem_init(rt);
    atomic_store(&rt->loop_tick, em__now_ms());
    if (pthread_create(&rt->progress, NULL, progress_main, rt) != 0)
        return em__fail(EM_ECOMM, "cannot start the progress thread");
    pthread_t sentinel;
    if (rt->size > 1 && pthread_create(&sentinel, NULL, sentinel_main, rt) == 0) pthread_detach(sentinel);
    return 0;
}

void em__rt_stop(em__rt *rt)
{
    atomic_store(&rt->stop, 1);
    pthread_mutex_lock(&rt->out_mu);
    pthread_cond_signal(&rt->out_cv);
    pthread_mutex_unlock(&rt->out_mu);
    pthread_join(rt->progress, NULL);
    em__mbox_release(&rt->exec_mb);
    em__mbox_release(&rt->driver_mb);
    em__mbox_release(&rt->main_mb);
    em__mbox_release(&rt->fetch_mb);
    free(rt->alive);
    free(rt->last_heard);
    free(rt->pids);
    free(rt->same_host);
    free(rt->departed);
}
