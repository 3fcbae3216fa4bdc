/* test_loop.c — runtime/loop.c without MPI: monotonic deadlines and condition variables, mailboxes, routing of
 * message types to the mailboxes and handlers, sends to self / one rank / every live rank, the sentinel.
 *
 * The test process is rank 0 (a real em__rt with its progress thread); the other ranks are scripted by hand
 * through the fake transport (tests/unit/fakecomm.h): fake_inject puts a message from them into rank 0's inbox,
 * fake_take reads what rank 0 sent them. The failure timeout is long here, so membership never interferes. */
#include <criterion/criterion.h>

#include "ember.h"
#include "runtime/log.h"
#include "runtime/loop.h"
#include "tests/unit/fakecomm.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t ns_of(const struct timespec *ts) { return (int64_t)ts->tv_sec * 1000000000LL + ts->tv_nsec; }

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ns_of(&ts);
}

/* ---- deadlines and condition variables ---------------------------------------------------------------------- */

Test(deadline, is_the_monotonic_now_plus_the_interval_and_normalised)
{
    static const int64_t us[] = {0, 1, 999, 1000, 250000, 999999, 1000000, 1500000, 2999999, 86400000000LL};
    for (int rep = 0; rep < 200; rep++)
        for (size_t i = 0; i < sizeof us / sizeof us[0]; i++) {
            struct timespec ts;
            int64_t before = mono_ns();
            em__deadline_after(&ts, us[i]);
            int64_t after = mono_ns();
            cr_assert(ts.tv_nsec >= 0 && ts.tv_nsec < 1000000000L, "tv_nsec %ld not normalised (us=%lld)",
                      ts.tv_nsec, (long long)us[i]);
            cr_assert(ns_of(&ts) >= before + us[i] * 1000 && ns_of(&ts) <= after + us[i] * 1000,
                      "deadline for %lld us is %lld ns from now", (long long)us[i], (long long)(ns_of(&ts) - before));
        }
}

Test(deadline, now_ms_and_now_s_are_monotonic_and_agree)
{
    int64_t a = em__now_ms();
    double s = em__now_s();
    int64_t b = em__now_ms();
    cr_assert(b >= a);
    cr_assert(s * 1000 >= (double)a - 1 && s * 1000 <= (double)b + 1, "now_s %f vs now_ms %lld..%lld", s,
              (long long)a, (long long)b);
}

/* A condvar from em__cond_init waits for a deadline from em__deadline_after: if it measured time on the
 * realtime clock, a monotonic deadline would lie decades in the past and the wait would return at once. */
Test(cond, timed_wait_on_a_monotonic_deadline_waits_that_long)
{
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv;
    em__cond_init(&cv);
    struct timespec dl;
    int64_t t0 = mono_ns();
    em__deadline_after(&dl, 80000);
    pthread_mutex_lock(&mu);
    int rc = 0;
    while (rc != ETIMEDOUT) rc = pthread_cond_timedwait(&cv, &mu, &dl); /* spurious wake-ups return 0 */
    pthread_mutex_unlock(&mu);
    int64_t waited = mono_ns() - t0;
    cr_assert(waited >= 80000000LL, "timed wait returned after %lld us, deadline was 80 ms", (long long)waited / 1000);
    cr_assert(waited < 20000000000LL, "timed wait took %lld ms", (long long)waited / 1000000);
    pthread_cond_destroy(&cv);
}

typedef struct signaller {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int flag;
} signaller;

static void *signal_later(void *arg)
{
    signaller *s = arg;
    struct timespec ts = {0, 20000000L};
    nanosleep(&ts, NULL);
    pthread_mutex_lock(&s->mu);
    s->flag = 1;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

Test(cond, a_signal_wakes_a_timed_waiter_before_its_deadline)
{
    signaller s = {.mu = PTHREAD_MUTEX_INITIALIZER};
    em__cond_init(&s.cv);
    struct timespec dl;
    em__deadline_after(&dl, 30LL * 1000000); /* 30 s: only the signal can end this wait in time */
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, signal_later, &s), 0);
    int64_t t0 = mono_ns();
    pthread_mutex_lock(&s.mu);
    int rc = 0;
    while (!s.flag && rc != ETIMEDOUT) rc = pthread_cond_timedwait(&s.cv, &s.mu, &dl);
    pthread_mutex_unlock(&s.mu);
    pthread_join(th, NULL);
    cr_assert_eq(rc, 0);
    cr_assert(s.flag);
    cr_assert(mono_ns() - t0 < 15000000000LL);
    pthread_cond_destroy(&s.cv);
}

/* ---- mailboxes ---------------------------------------------------------------------------------------------- */

static em__msg *tagged(int type, uint32_t tag)
{
    em__msg *m = em__msg_new(type, sizeof tag);
    memcpy(m->payload, &tag, sizeof tag);
    return m;
}

static uint32_t tag_of(const em__msg *m)
{
    uint32_t t = 0;
    cr_assert_geq(m->len, sizeof t);
    memcpy(&t, m->payload, sizeof t);
    return t;
}

Test(mbox, is_fifo_and_a_get_times_out_when_empty)
{
    em__mbox mb;
    em__mbox_init(&mb);
    cr_assert_null(em__mbox_get(&mb, 0));
    int64_t t0 = mono_ns();
    cr_assert_null(em__mbox_get(&mb, 30));
    cr_assert_geq(mono_ns() - t0, 30000000LL, "an empty get returned before its 30 ms timeout");
    for (uint32_t i = 0; i < 100; i++) em__mbox_put(&mb, tagged(EM__MSG_TASK, i));
    for (uint32_t i = 0; i < 100; i++) {
        em__msg *m = em__mbox_get(&mb, 0);
        cr_assert_not_null(m);
        cr_assert_eq(tag_of(m), i, "message %u came out as %u", i, tag_of(m));
        cr_assert_null(m->next);
        em__msg_free(m);
    }
    cr_assert_null(em__mbox_get(&mb, 0));
    em__mbox_put(&mb, tagged(EM__MSG_TASK, 7)); /* release frees what is still queued (LeakSanitizer checks) */
    em__mbox_put(&mb, tagged(EM__MSG_TASK, 8));
    em__mbox_release(&mb);
}

typedef struct putter {
    em__mbox *mb;
    int n;
} putter;

static void *put_later(void *arg)
{
    putter *p = arg;
    for (int i = 0; i < p->n; i++) {
        struct timespec ts = {0, 1000000L};
        nanosleep(&ts, NULL);
        em__mbox_put(p->mb, tagged(EM__MSG_TASK_DONE, (uint32_t)i));
    }
    return NULL;
}

Test(mbox, a_put_from_another_thread_wakes_a_blocked_get)
{
    em__mbox mb;
    em__mbox_init(&mb);
    putter p = {&mb, 50};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, put_later, &p), 0);
    for (uint32_t i = 0; i < 50; i++) {
        em__msg *m = em__mbox_get(&mb, -1);
        cr_assert_not_null(m);
        cr_assert_eq(tag_of(m), i);
        em__msg_free(m);
    }
    pthread_join(th, NULL);
    em__mbox_release(&mb);
}

/* ---- one real rank, scripted peers -------------------------------------------------------------------------- */

static em__rt rt; /* static: the runtime's detached sentinel thread may look at it until the process exits */

static void start_rank(int n, int self, int64_t heartbeat_ms, int64_t timeout_ms)
{
    cr_assert_eq(fake_start_rank(&rt, n, self, heartbeat_ms, timeout_ms), 0, "em__rt_start: %s", em_last_error());
    cr_assert_eq(rt.rank, self);
    cr_assert_eq(rt.size, n);
}

static void stop_rank(void) { em__rt_stop(&rt); }

/* Rank 0 of 2 leads; rank 1 is scripted. 10 s before anyone is declared dead: longer than any test here. */
static void start_leader_of_two(void) { start_rank(2, 0, 20, 10000); }

static void inject_tagged(int src, int dst, int type, uint32_t tag)
{
    fake_inject(src, dst, type, 1, 0, &tag, sizeof tag);
}

/* Next message of the mailbox that is not a WAKE (membership changes post those to every mailbox). */
static em__msg *get_real(em__mbox *mb, int timeout_ms)
{
    for (;;) {
        em__msg *m = em__mbox_get(mb, timeout_ms);
        if (!m || m->hdr->type != EM__MSG_WAKE) return m;
        em__msg_free(m);
    }
}

static void expect_in(em__mbox *mb, const char *name, int type, uint32_t tag)
{
    em__msg *m = get_real(mb, 5000);
    cr_assert_not_null(m, "%s received nothing; expected %s", name, em__msg_name(type));
    cr_assert_eq(m->hdr->type, type, "%s received %s, expected %s", name, em__msg_name(m->hdr->type),
                 em__msg_name(type));
    cr_assert_eq(m->hdr->src, 1);
    cr_assert_eq(tag_of(m), tag);
    em__msg_free(m);
}

static void expect_empty(em__mbox *mb, const char *name)
{
    em__msg *m = get_real(mb, 0);
    cr_assert_null(m, "%s holds an unexpected %s", name, m ? em__msg_name(m->hdr->type) : "");
}

static void expect_all_empty(void)
{
    expect_empty(&rt.exec_mb, "exec_mb");
    expect_empty(&rt.driver_mb, "driver_mb");
    expect_empty(&rt.main_mb, "main_mb");
    expect_empty(&rt.fetch_mb, "fetch_mb");
}

Test(routing, each_received_type_reaches_its_mailbox)
{
    start_leader_of_two();
    struct { int type; em__mbox *mb; const char *name; } routes[] = {
        {EM__MSG_TASK, &rt.exec_mb, "exec_mb"},          {EM__MSG_TASK_DONE, &rt.driver_mb, "driver_mb"},
        {EM__MSG_INVENTORY, &rt.driver_mb, "driver_mb"}, {EM__MSG_ACTION_RESULT, &rt.main_mb, "main_mb"},
        {EM__MSG_BYE, &rt.main_mb, "main_mb"},           {EM__MSG_FIN, &rt.main_mb, "main_mb"},
        {EM__MSG_FETCH_RESP, &rt.fetch_mb, "fetch_mb"},
    };
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        inject_tagged(1, 0, routes[i].type, 100 + (uint32_t)i);
        expect_in(routes[i].mb, routes[i].name, routes[i].type, 100 + (uint32_t)i);
        expect_all_empty();
    }
    /* A burst keeps its order within a mailbox. */
    for (uint32_t i = 0; i < 40; i++) inject_tagged(1, 0, i % 2 ? EM__MSG_TASK : EM__MSG_FETCH_RESP, i);
    for (uint32_t i = 0; i < 40; i++)
        expect_in(i % 2 ? &rt.exec_mb : &rt.fetch_mb, "burst", i % 2 ? EM__MSG_TASK : EM__MSG_FETCH_RESP, i);
    expect_all_empty();
    stop_rank();
}

Test(routing, types_without_mailbox_or_handler_are_dropped)
{
    start_leader_of_two();
    /* FETCH_REQ has no mailbox (it needs a handler); WAKE is local only; 200 is no type at all. ELECTION_OK
     * outside an election is consumed by membership. Each is followed by a TASK marker: once the marker is in
     * exec_mb the progress thread has dispatched what came before it (one inbox, FIFO). */
    int junk[] = {EM__MSG_FETCH_REQ, EM__MSG_WAKE, EM__MSG_ELECTION_OK};
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++) {
        inject_tagged(1, 0, junk[i], 1);
        inject_tagged(1, 0, EM__MSG_TASK, 900 + (uint32_t)i);
        expect_in(&rt.exec_mb, "exec_mb", EM__MSG_TASK, 900 + (uint32_t)i);
        expect_all_empty();
    }
    cr_assert_eq(fake_delivered(1, 0, FAKE_ANY), 2 * sizeof junk / sizeof junk[0]);
    stop_rank();
}

typedef struct seen {
    em__mbox mb;
    pthread_t thread;
    _Atomic int calls;
} seen;

static void record(em__rt *r, em__msg *m, void *arg)
{
    seen *s = arg;
    cr_assert_eq(r, &rt);
    s->thread = pthread_self();
    atomic_fetch_add(&s->calls, 1);
    em__mbox_put(&s->mb, m); /* the handler owns m */
}

Test(routing, a_handler_takes_its_type_on_the_progress_thread_instead_of_the_mailbox)
{
    static seen fetch, task;
    em__mbox_init(&fetch.mb);
    em__mbox_init(&task.mb);
    em__rt_on(&rt, EM__MSG_FETCH_REQ, record, &fetch); /* before start, as the block store does */
    em__rt_on(&rt, EM__MSG_TASK, record, &task);
    start_leader_of_two();
    inject_tagged(1, 0, EM__MSG_FETCH_REQ, 41);
    inject_tagged(1, 0, EM__MSG_TASK, 42);
    inject_tagged(1, 0, EM__MSG_TASK_DONE, 43); /* no handler: still routed */
    expect_in(&fetch.mb, "FETCH_REQ handler", EM__MSG_FETCH_REQ, 41);
    expect_in(&task.mb, "TASK handler", EM__MSG_TASK, 42);
    expect_in(&rt.driver_mb, "driver_mb", EM__MSG_TASK_DONE, 43);
    expect_all_empty();
    cr_assert(pthread_equal(fetch.thread, rt.progress), "handler ran on another thread than the progress thread");
    cr_assert(pthread_equal(task.thread, rt.progress));

    /* To self: a handled type goes through the progress thread too (header filled, src = self). */
    em__send(&rt, 0, tagged(EM__MSG_FETCH_REQ, 44));
    em__msg *m = em__mbox_get(&fetch.mb, 5000);
    cr_assert_not_null(m);
    cr_assert_eq(m->hdr->src, 0);
    cr_assert_eq(m->hdr->epoch, 1);
    cr_assert_eq(tag_of(m), 44);
    em__msg_free(m);
    cr_assert_eq(atomic_load(&fetch.calls), 2);
    cr_assert_eq(fake_sent(0, FAKE_ANY, EM__MSG_FETCH_REQ), 0, "a message to self went through the transport");
    stop_rank();
    em__mbox_release(&fetch.mb);
    em__mbox_release(&task.mb);
}

Test(send, to_self_goes_straight_to_the_mailbox_and_to_a_peer_carries_the_header)
{
    start_leader_of_two();
    em__send(&rt, 0, tagged(EM__MSG_TASK, 5));
    em__msg *m = em__mbox_get(&rt.exec_mb, 0); /* the local fast path: no progress-thread hop, so no wait */
    cr_assert_not_null(m, "a TASK to self was not in exec_mb on return from em__send");
    cr_assert_eq(m->hdr->src, 0);
    cr_assert_eq(m->hdr->version, EM__PROTO_VERSION);
    em__msg_free(m);

    em__send(&rt, 1, tagged(EM__MSG_TASK_DONE, 6));
    m = fake_take(1, EM__MSG_TASK_DONE, 5000);
    cr_assert_not_null(m, "rank 1 never got the TASK_DONE");
    cr_assert_eq(m->hdr->src, 0);
    cr_assert_eq(m->hdr->epoch, 1);
    cr_assert_eq(m->hdr->leader, 0);
    cr_assert_eq(m->hdr->version, EM__PROTO_VERSION);
    cr_assert_eq(tag_of(m), 6);
    em__msg_free(m);
    cr_assert_eq(fake_sent(0, 0, FAKE_ANY), 0);
    stop_rank();
}

Test(send, to_all_reaches_every_live_rank_but_self_and_never_a_fenced_one)
{
    start_rank(3, 0, 20, 10000);
    em__send_all(&rt, tagged(EM__MSG_ACTION_RESULT, 1));
    for (int r = 1; r <= 2; r++) {
        em__msg *m = fake_take(r, EM__MSG_ACTION_RESULT, 5000);
        cr_assert_not_null(m, "r%d missed the broadcast", r);
        cr_assert_eq(tag_of(m), 1);
        em__msg_free(m);
    }
    expect_empty(&rt.main_mb, "main_mb (self is not in a broadcast)");

    em__rt_fence(&rt, 2, "test");
    cr_assert_eq(em__rt_epoch(&rt), 2);
    cr_assert_not(em__rt_is_alive(&rt, 2));
    cr_assert_eq(em__rt_nalive(&rt), 2);
    em__msg *v = fake_take(1, EM__MSG_MEMBERSHIP, 5000);
    cr_assert_not_null(v, "the survivor was not told of the fence");
    uint32_t h[4];
    memcpy(h, v->payload, 16);
    cr_assert_eq(h[1], 2);
    cr_assert_eq(h[2], 0);
    cr_assert_eq(h[3], 3);
    cr_assert(v->payload[16] && v->payload[17] && !v->payload[18]);
    em__msg_free(v);
    em__msg *w = em__mbox_get(&rt.driver_mb, 5000);
    cr_assert_not_null(w, "the driver was not woken by the membership change");
    cr_assert_eq(w->hdr->type, EM__MSG_WAKE);
    em__msg_free(w);

    uint64_t to2 = fake_sent(0, 2, FAKE_ANY);
    em__send_all(&rt, tagged(EM__MSG_ACTION_RESULT, 2));
    em__send(&rt, 2, tagged(EM__MSG_TASK, 3));
    em__msg *m = fake_take(1, EM__MSG_ACTION_RESULT, 5000);
    cr_assert_not_null(m);
    cr_assert_eq(tag_of(m), 2);
    em__msg_free(m);
    struct timespec ts = {0, 200000000L}; /* 10 heartbeats: none may go to the fenced rank either */
    nanosleep(&ts, NULL);
    cr_assert_eq(fake_sent(0, 2, FAKE_ANY), to2, "%llu messages went to a fenced rank",
                 (unsigned long long)(fake_sent(0, 2, FAKE_ANY) - to2));
    cr_assert_gt(fake_sent(0, 1, EM__MSG_HEARTBEAT), 0);
    stop_rank();
}

/* ---- the sentinel ------------------------------------------------------------------------------------------- */

/* A progress thread stuck inside a call stops heartbeating, so the others fence this rank after timeout_ms:
 * the sentinel thread must notice and leave with 75 (it cannot know whether it was fenced, so it assumes so). */
Test(sentinel, a_wedged_progress_thread_makes_the_rank_exit_75)
{
    fflush(NULL);
    pid_t parent = getpid(), pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) { /* reports through its exit status only: a Criterion assert here would not reach the runner */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(1);
        alarm(60);
        fake_setup(2);
        fake_become(1);
        em__log_setup(1, EM_LOG_ERROR);
        rt.cfg.heartbeat_ms = 20;
        rt.cfg.timeout_ms = 200;
        if (em__rt_start(&rt, NULL, NULL) < 0) _exit(2);
        fake_wedge(1, 1);
        struct timespec ts = {10, 0};
        nanosleep(&ts, NULL);
        _exit(1); /* the sentinel did not fire */
    }
    int64_t t0 = em__now_ms();
    int st = 0;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    int64_t took = em__now_ms() - t0;
    cr_assert(WIFEXITED(st), "the rank did not exit (status %#x)", st);
    cr_assert_eq(WEXITSTATUS(st), 75, "the rank exited %d, expected 75", WEXITSTATUS(st));
    cr_assert_geq(took, 200, "the sentinel fired after %lld ms, before the 200 ms timeout", (long long)took);
}
