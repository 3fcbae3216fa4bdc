/* test_membership.c — runtime/membership.c without MPI: heartbeats, fencing with epochs, the bully election and
 * what a fenced rank does (DESIGN section 6).
 *
 * Two kinds of tests, both over the fake transport (tests/unit/fakecomm.h):
 *   scripted   the test process is one real rank; the test plays the others message by message (deterministic);
 *   cluster    every rank is a forked process running the real runtime; the test breaks links, stops processes
 *              and asserts on the views the ranks publish.
 * Cluster tests assert on eventual states with generous deadlines, never on exact timings: the only timing checked
 * is a lower bound that the code guarantees (nobody is fenced before timeout_ms of silence) and a loose upper one. */
#include <criterion/criterion.h>

#include "ember.h"
#include "runtime/log.h"
#include "runtime/loop.h"
#include "tests/unit/fakecomm.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Cluster timings: short enough for a fast suite, long enough that a loaded 2-core machine (several ranks,
 * Criterion running tests in parallel, other builds) never starves a rank for a whole timeout. */
#define HB 25       /* ms */
#define TIMEOUT 500 /* ms */
#define EVENTUALLY 15000 /* ms: deadline for an eventual state */
/* Every wait in these tests is bounded, so they carry no Criterion .timeout: with tests running in parallel
 * (--jobs 2) Criterion 2.4.1's runner leaks 48 bytes for them, which fails the sanitizer build. */

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- scripted: one real rank ---------------------------------------------------------------------------------- */

static em__rt rt; /* static: the runtime's detached sentinel thread may look at it until the process exits */

static void start_rank(int n, int self, int64_t heartbeat_ms, int64_t timeout_ms)
{
    cr_assert_eq(fake_start_rank(&rt, n, self, heartbeat_ms, timeout_ms), 0, "em__rt_start: %s", em_last_error());
}

/* src sends a view message (HEARTBEAT / MEMBERSHIP / COORDINATOR) to dst. alive: one char per rank, '1' live. */
static void send_view(int src, int dst, int type, uint32_t epoch, int leader, const char *alive)
{
    uint8_t a[FAKE_MAXR], buf[128];
    int n = (int)strlen(alive);
    for (int i = 0; i < n; i++) a[i] = alive[i] == '1';
    char host[32];
    snprintf(host, sizeof host, "fakehost%d", src);
    size_t len = fake_view(buf, sizeof buf, 0, epoch, leader, n, a, host);
    fake_inject(src, dst, type, epoch, leader, buf, len);
}

/* Sends a TASK marker from src and waits until the rank under test has dispatched it: everything src injected
 * before has been handled by then (one inbox, FIFO). Returns 0, or -1 if it never came (no Criterion assert here:
 * forked children call it too). */
static int try_sync_with(int src, int dst, uint32_t tag)
{
    fake_inject(src, dst, EM__MSG_TASK, em__rt_epoch(&rt), em__rt_leader(&rt), &tag, sizeof tag);
    for (;;) {
        em__msg *m = em__mbox_get(&rt.exec_mb, 10000);
        if (!m) return -1;
        uint32_t t = 0;
        int ok = m->hdr->type == EM__MSG_TASK && m->len == sizeof t;
        if (ok) memcpy(&t, m->payload, sizeof t);
        em__msg_free(m);
        if (ok && t == tag) return 0;
    }
}

static void sync_with(int src, int dst, uint32_t tag)
{
    cr_assert_eq(try_sync_with(src, dst, tag), 0, "the marker from r%d never arrived", src);
}

/* A child forked by a test: never outlives it, and reports through its exit status only (a Criterion assert in a
 * forked child does not reach the runner). */
static void child_guard(pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);
    alarm(60);
}

static void expect_view(uint32_t epoch, int leader, const char *alive)
{
    cr_assert_eq(em__rt_epoch(&rt), epoch, "epoch %u, expected %u", em__rt_epoch(&rt), epoch);
    cr_assert_eq(em__rt_leader(&rt), leader, "leader r%d, expected r%d", em__rt_leader(&rt), leader);
    for (int r = 0; alive[r]; r++)
        cr_assert_eq(em__rt_is_alive(&rt, r), alive[r] == '1', "r%d alive=%d, expected %c", r,
                     em__rt_is_alive(&rt, r), alive[r]);
}

Test(scripted, an_executor_adopts_only_newer_views)
{
    start_rank(3, 1, 20, 10000);
    expect_view(1, 0, "111");
    send_view(0, 1, EM__MSG_MEMBERSHIP, 3, 0, "110");
    sync_with(0, 1, 1);
    expect_view(3, 0, "110");
    send_view(0, 1, EM__MSG_MEMBERSHIP, 2, 0, "111"); /* older epoch */
    send_view(0, 1, EM__MSG_HEARTBEAT, 3, 0, "111");  /* same epoch, same leader */
    sync_with(0, 1, 2);
    expect_view(3, 0, "110");
    send_view(0, 1, EM__MSG_HEARTBEAT, 4, 0, "111"); /* the leader's heartbeat carries a newer view */
    sync_with(0, 1, 3);
    expect_view(4, 0, "111");
    em__rt_stop(&rt);
}

Test(scripted, messages_from_a_fenced_rank_are_dropped)
{
    start_rank(3, 1, 20, 10000);
    send_view(0, 1, EM__MSG_MEMBERSHIP, 2, 0, "110"); /* the leader fenced r2 */
    sync_with(0, 1, 1);
    expect_view(2, 0, "110");
    int changes = atomic_load(&rt.leader_changes);
    /* r2 resumes believing it leads, with old and new epochs alike. */
    uint32_t tag = 77;
    fake_inject(2, 1, EM__MSG_TASK, 1, 2, &tag, sizeof tag);
    fake_inject(2, 1, EM__MSG_ACTION_RESULT, 1, 2, &tag, sizeof tag);
    send_view(2, 1, EM__MSG_HEARTBEAT, 1, 0, "111");
    send_view(2, 1, EM__MSG_HEARTBEAT, 9, 2, "111");
    send_view(2, 1, EM__MSG_MEMBERSHIP, 9, 2, "111");
    send_view(2, 1, EM__MSG_COORDINATOR, 2, 2, "011"); /* its own election, on its stale epoch */
    send_view(2, 1, EM__MSG_COORDINATOR, 1, 2, "011");
    fake_inject(2, 1, EM__MSG_ELECTION, 1, 2, NULL, 0);
    sync_with(0, 1, 2);
    expect_view(2, 0, "110");
    cr_assert_eq(atomic_load(&rt.leader_changes), changes);
    cr_assert_not(atomic_load(&rt.fenced));
    em__msg *m = em__mbox_get(&rt.main_mb, 0);
    while (m && m->hdr->type == EM__MSG_WAKE) {
        em__msg_free(m);
        m = em__mbox_get(&rt.main_mb, 0);
    }
    cr_assert_null(m, "a %s from the fenced rank reached the main thread", m ? em__msg_name(m->hdr->type) : "");
    cr_assert_eq(fake_sent(1, 2, EM__MSG_ELECTION_OK), 0, "the fenced rank's ELECTION was answered");
    cr_assert_eq(fake_delivered(2, 1, FAKE_ANY), 8, "the stale messages were not all delivered (test is void)");
    em__rt_stop(&rt);
}

Test(scripted, a_rank_that_learns_it_was_fenced_exits_75)
{
    fflush(NULL);
    pid_t parent = getpid(), pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        child_guard(parent);
        fake_setup(3);
        fake_become(1);
        em__log_setup(1, EM_LOG_ERROR);
        rt.cfg.heartbeat_ms = 20;
        rt.cfg.timeout_ms = 10000; /* neither the sentinel nor an election can end this process */
        if (em__rt_start(&rt, NULL, NULL) < 0) _exit(2);
        send_view(0, 1, EM__MSG_MEMBERSHIP, 2, 0, "111");
        if (try_sync_with(0, 1, 1) < 0 || em__rt_epoch(&rt) != 2) _exit(3);
        send_view(0, 1, EM__MSG_MEMBERSHIP, 1, 0, "101"); /* older epoch: not adopted, not fatal */
        if (try_sync_with(0, 1, 2) < 0 || atomic_load(&rt.fenced)) _exit(4);
        send_view(0, 1, EM__MSG_MEMBERSHIP, 3, 0, "101");
        sleep_ms(10000);
        _exit(5);
    }
    int st = 0;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st), "the rank did not exit (status %#x)", st);
    cr_assert_eq(WEXITSTATUS(st), 75, "the fenced rank exited %d, expected 75", WEXITSTATUS(st));
}

Test(scripted, the_leader_answers_an_election_with_ok_and_its_view)
{
    start_rank(3, 0, 20, 10000);
    fake_inject(2, 0, EM__MSG_ELECTION, 1, 0, NULL, 0);
    em__msg *ok = fake_take(2, EM__MSG_ELECTION_OK, 5000);
    cr_assert_not_null(ok, "no ELECTION_OK");
    em__msg_free(ok);
    em__msg *v = fake_take(2, EM__MSG_MEMBERSHIP, 5000);
    cr_assert_not_null(v, "the leader did not tell the candidate who leads");
    uint32_t h[4];
    memcpy(h, v->payload, 16);
    cr_assert_eq(h[1], 1);
    cr_assert_eq(h[2], 0);
    em__msg_free(v);
    cr_assert_eq(em__rt_leader(&rt), 0);
    em__rt_stop(&rt);
}

Test(scripted, a_candidate_defers_to_a_lower_rank_that_answers)
{
    /* r0 (scripted) never heartbeats: r2 suspects it after the timeout and asks r1, then waits timeout / 2 for an
     * answer. A long timeout, so that this test answers in time even on a loaded machine. */
    start_rank(3, 2, 20, 1000);
    em__msg *e = fake_take(1, EM__MSG_ELECTION, 10000);
    cr_assert_not_null(e, "r2 never asked r1 in an election");
    em__msg_free(e);
    fake_inject(1, 2, EM__MSG_ELECTION_OK, 1, 0, NULL, 0);
    /* r2 now waits up to 2 timeouts from when it read the OK for r1's COORDINATOR; it must not lead meanwhile. */
    int64_t until = em__now_ms() + 1500;
    while (em__now_ms() < until) {
        send_view(1, 2, EM__MSG_HEARTBEAT, 0, 0, ""); /* r1 is alive */
        cr_assert_neq(em__rt_leader(&rt), 2, "r2 took the lead although r1 answered");
        sleep_ms(10);
    }
    send_view(1, 2, EM__MSG_COORDINATOR, 2, 1, "011");
    sync_with(1, 2, 1);
    expect_view(2, 1, "011");
    cr_assert_eq(fake_sent(2, FAKE_ANY, EM__MSG_COORDINATOR), 0);
    em__rt_stop(&rt);
}

Test(scripted, a_candidate_that_no_lower_rank_answers_leads)
{
    start_rank(3, 2, 20, 300);
    em__msg *e = fake_take(1, EM__MSG_ELECTION, 10000);
    cr_assert_not_null(e, "r2 never asked r1 in an election");
    em__msg_free(e);
    em__msg *c = fake_take(1, EM__MSG_COORDINATOR, 10000); /* r1 says nothing: r2 leads after timeout / 2 */
    cr_assert_not_null(c, "r2 never announced itself");
    uint32_t h[4];
    memcpy(h, c->payload, 16);
    cr_assert_eq(h[1], 2, "COORDINATOR epoch %u", h[1]);
    cr_assert_eq(h[2], 2);
    cr_assert_eq(c->payload[16], 0, "the lost leader is still in the new view");
    em__msg_free(c);
    cr_assert_eq(em__rt_leader(&rt), 2);
    cr_assert_eq(fake_sent(2, 0, EM__MSG_COORDINATOR), 0, "COORDINATOR sent to the lost leader");
    em__rt_stop(&rt);
}

Test(scripted, silence_after_bye_is_not_a_failure)
{
    start_rank(3, 0, 20, 300);
    fake_inject(1, 0, EM__MSG_BYE, 1, 0, NULL, 0);
    em__msg *m = em__mbox_get(&rt.main_mb, 5000);
    while (m && m->hdr->type == EM__MSG_WAKE) {
        em__msg_free(m);
        m = em__mbox_get(&rt.main_mb, 5000);
    }
    cr_assert_not_null(m);
    cr_assert_eq(m->hdr->type, EM__MSG_BYE, "main_mb got %s", em__msg_name(m->hdr->type));
    em__msg_free(m);
    /* Neither r1 nor r2 says anything more: r2 is fenced after the timeout, r1 (departed) is not. */
    int64_t until = em__now_ms() + EVENTUALLY;
    while (em__rt_is_alive(&rt, 2) && em__now_ms() < until) sleep_ms(5);
    cr_assert_not(em__rt_is_alive(&rt, 2), "the silent rank was never fenced");
    sleep_ms(600);
    cr_assert(em__rt_is_alive(&rt, 1), "a rank that said BYE was fenced for its silence");
    cr_assert_eq(em__rt_epoch(&rt), 2);
    em__rt_stop(&rt);
}

/* ---- clusters of forked ranks --------------------------------------------------------------------------------- */

static void cluster_fini(void) { fake_cluster_stop(); }

/* Waits until every rank in `live` (a string of '0'/'1', one per rank) publishes the view (leader, live set) and
 * all of them the same epoch; returns that epoch. */
static uint32_t wait_view(const char *live, int leader)
{
    int n = (int)strlen(live);
    int64_t until = em__now_ms() + EVENTUALLY;
    char why[256] = "";
    while (em__now_ms() < until) {
        uint32_t epoch = 0;
        int ok = 1;
        for (int r = 0; r < n && ok; r++) {
            if (live[r] != '1') continue;
            fake_board b = fake_board_get(r);
            if (!b.running) snprintf(why, sizeof why, "r%d is not running", r), ok = 0;
            else if (b.leader != leader) snprintf(why, sizeof why, "r%d follows r%d", r, b.leader), ok = 0;
            else if (epoch && b.epoch != epoch) snprintf(why, sizeof why, "r%d at epoch %u vs %u", r, b.epoch, epoch), ok = 0;
            for (int k = 0; k < n && ok; k++)
                if (b.alive[k] != (live[k] == '1'))
                    snprintf(why, sizeof why, "r%d sees r%d alive=%d", r, k, b.alive[k]), ok = 0;
            epoch = b.epoch;
        }
        if (ok) return epoch;
        sleep_ms(5);
    }
    cr_assert_fail("no convergence on leader r%d with live set %s within %d ms: %s", leader, live, EVENTUALLY, why);
    return 0;
}

/* Start-up view plus heartbeats delivered both ways between the leader and every rank: before this, the leader's
 * "last heard" of a rank is its own start time, not a message. */
static void wait_started(const char *live)
{
    cr_assert_eq(wait_view(live, 0), 1);
    int n = (int)strlen(live);
    int64_t until = em__now_ms() + EVENTUALLY;
    for (int r = 1; r < n; r++)
        while ((fake_delivered(r, 0, EM__MSG_HEARTBEAT) < 2 || fake_delivered(0, r, EM__MSG_HEARTBEAT) < 2) &&
               em__now_ms() < until)
            sleep_ms(2);
    for (int r = 1; r < n; r++) {
        cr_assert_geq(fake_delivered(r, 0, EM__MSG_HEARTBEAT), 2, "no heartbeats r%d -> r0", r);
        cr_assert_geq(fake_delivered(0, r, EM__MSG_HEARTBEAT), 2, "no heartbeats r0 -> r%d", r);
    }
}

/* After convergence: for `ms`, among the live ranks exactly one leads, and every view stays what it was. */
static void assert_stable_single_leader(const char *live, int leader, uint32_t epoch, int ms)
{
    int n = (int)strlen(live);
    int64_t until = em__now_ms() + ms;
    do {
        int leaders = 0;
        for (int r = 0; r < n; r++) {
            if (live[r] != '1') continue;
            fake_board b = fake_board_get(r);
            cr_assert(b.running, "r%d stopped running", r);
            leaders += b.leader == r;
            cr_assert_eq(b.leader, leader, "r%d now follows r%d", r, b.leader);
            cr_assert_eq(b.epoch, epoch, "r%d moved to epoch %u", r, b.epoch);
            cr_assert_eq(b.elect_state, EM__ELECT_NONE, "r%d is electing after convergence", r);
        }
        cr_assert_eq(leaders, 1, "%d ranks believe they lead", leaders);
        sleep_ms(3);
    } while (em__now_ms() < until);
}

Test(cluster, heartbeats_keep_everyone_alive, .fini = cluster_fini)
{
    fake_cluster_start(4, HB, TIMEOUT);
    wait_started("1111");
    uint64_t before = fake_delivered(FAKE_ANY, FAKE_ANY, EM__MSG_HEARTBEAT);
    assert_stable_single_leader("1111", 0, 1, 4 * TIMEOUT);
    for (int r = 1; r < 4; r++) {
        cr_assert_gt(fake_delivered(r, 0, EM__MSG_HEARTBEAT), 10, "few heartbeats r%d -> leader", r);
        cr_assert_gt(fake_delivered(0, r, EM__MSG_HEARTBEAT), 10, "few heartbeats leader -> r%d", r);
        cr_assert_eq(fake_sent(r, FAKE_ANY, EM__MSG_ELECTION), 0, "r%d started an election", r);
    }
    cr_assert_gt(fake_delivered(FAKE_ANY, FAKE_ANY, EM__MSG_HEARTBEAT), before);
    cr_assert_eq(fake_sent(FAKE_ANY, FAKE_ANY, EM__MSG_MEMBERSHIP), 0, "a rank was fenced");
}

Test(cluster, a_silent_rank_is_fenced_after_the_timeout_and_every_survivor_learns, .fini = cluster_fini)
{
    fake_cluster_start(4, HB, TIMEOUT);
    wait_started("1111");
    fake_isolate(2, FAKE_DROP);
    int64_t t_fenced = 0, t_learned = 0;
    int64_t until = em__now_ms() + EVENTUALLY;
    while ((!t_fenced || !t_learned) && em__now_ms() < until) {
        int64_t now = em__now_ms();
        if (!t_fenced && !fake_board_get(0).alive[2]) t_fenced = now;
        if (!t_learned && !fake_board_get(1).alive[2] && !fake_board_get(3).alive[2]) t_learned = now;
        sleep_ms(1);
    }
    cr_assert(t_fenced && t_learned, "r2 was not fenced everywhere within %d ms", EVENTUALLY);
    cr_assert_eq(wait_view("1101", 0), 2, "one fence, one new epoch");
    /* Lower bound (guaranteed by the code): not before timeout_ms of silence since the leader last heard r2.
     * Upper bound: timeout + one heartbeat, plus a second of slack for a loaded machine. */
    int64_t heard = fake_last_delivered_ms(2, 0);
    cr_assert_geq(t_fenced - heard, TIMEOUT, "fenced %lld ms after last hearing from r2 (timeout %d)",
                  (long long)(t_fenced - heard), TIMEOUT);
    cr_assert_leq(t_learned - heard, TIMEOUT + HB + 1000, "survivors learned %lld ms after r2 went silent",
                  (long long)(t_learned - heard));
    assert_stable_single_leader("1101", 0, 2, 2 * TIMEOUT);
}

Test(cluster, a_silent_leader_is_replaced_by_the_lowest_live_rank, .fini = cluster_fini)
{
    fake_cluster_start(4, HB, TIMEOUT);
    wait_started("1111");
    fake_isolate(0, FAKE_DROP);
    uint32_t e = wait_view("0111", 1);
    cr_assert_eq(e, 2, "one election, one new epoch (got %u)", e);
    for (int r = 1; r < 4; r++) cr_assert_eq(fake_board_get(r).leader_changes, 1, "r%d changed leader more than once", r);
    assert_stable_single_leader("0111", 1, e, 2 * TIMEOUT);
}

/* All survivors suspect the leader within a few ms of each other, so their elections run concurrently; every inbox
 * delivers in random order. Two ranks lost at once: the lowest of the rest wins. */
Test(cluster, concurrent_elections_with_reordered_messages_converge_on_one_leader, .fini = cluster_fini)
{
    fake_cluster_start(6, HB, TIMEOUT);
    wait_started("111111");
    for (int r = 0; r < 6; r++) fake_reorder(r, 1);
    fake_isolate(0, FAKE_DROP);
    fake_isolate(1, FAKE_DROP);
    uint32_t e = wait_view("001111", 2);
    cr_assert_gt(fake_sent(3, FAKE_ANY, EM__MSG_ELECTION) + fake_sent(4, FAKE_ANY, EM__MSG_ELECTION) +
                     fake_sent(5, FAKE_ANY, EM__MSG_ELECTION), 0, "no concurrent candidates: the test is void");
    assert_stable_single_leader("001111", 2, e, 2 * TIMEOUT);
}

/* r1 wins the election (at once: no live rank below it) but dies before anyone hears its COORDINATOR: nothing it
 * sends but ELECTION_OK gets through. r2 and r3, told by r1 to wait for it, time out and elect r2. */
Test(cluster, the_new_leader_dies_during_the_election_and_the_next_lowest_wins, .fini = cluster_fini)
{
    fake_cluster_start(4, HB, TIMEOUT);
    wait_started("1111");
    fake_set(1, FAKE_ANY, FAKE_ANY, FAKE_DROP);
    fake_set(1, FAKE_ANY, EM__MSG_ELECTION_OK, FAKE_PASS);
    fake_isolate(0, FAKE_DROP);
    int64_t until = em__now_ms() + EVENTUALLY;
    while ((fake_board_get(1).leader != 1 || !fake_delivered(1, 2, EM__MSG_ELECTION_OK) ||
            !fake_delivered(1, 3, EM__MSG_ELECTION_OK)) && em__now_ms() < until)
        sleep_ms(1);
    cr_assert_eq(fake_board_get(1).leader, 1, "r1 never elected itself");
    cr_assert(fake_delivered(1, 2, EM__MSG_ELECTION_OK) && fake_delivered(1, 3, EM__MSG_ELECTION_OK),
              "r1 did not answer both candidates");
    fake_isolate(1, FAKE_DROP);
    for (int r = 2; r < 4; r++) cr_assert_neq(fake_board_get(r).leader, 1, "r%d heard of r1's victory", r);
    uint32_t e = wait_view("0011", 2);
    assert_stable_single_leader("0011", 2, e, 2 * TIMEOUT);
}

/* A SIGSTOPped executor: the leader fences it; messages it sent before the stop and arrive late are dropped,
 * as are the claims of a rank that resumed believing it leads; once resumed it notices its own stall and exits 75
 * without having disturbed anyone. */
Test(cluster, a_stopped_rank_is_fenced_its_stale_messages_dropped_and_it_exits_75_on_resume, .fini = cluster_fini)
{
    fake_cluster_start(3, HB, TIMEOUT);
    wait_started("111");
    fake_set(2, FAKE_ANY, FAKE_ANY, FAKE_HOLD); /* its last messages will arrive late */
    int64_t until = em__now_ms() + EVENTUALLY;
    while (fake_sent(2, FAKE_ANY, EM__MSG_HEARTBEAT) < 8 + fake_delivered(2, FAKE_ANY, EM__MSG_HEARTBEAT) &&
           em__now_ms() < until)
        sleep_ms(5);
    fake_stop(2);
    uint32_t e = wait_view("110", 0);
    cr_assert_eq(e, 2);
    int changes0 = fake_board_get(0).leader_changes, changes1 = fake_board_get(1).leader_changes;

    /* What a resumed rank in the middle of its own election would say (epoch 1 was its last). */
    send_view(2, 1, EM__MSG_COORDINATOR, 2, 2, "011");
    send_view(2, 0, EM__MSG_MEMBERSHIP, 3, 2, "001");
    send_view(2, 1, EM__MSG_HEARTBEAT, 3, 2, "011");
    uint64_t before = fake_delivered(2, FAKE_ANY, FAKE_ANY);
    fake_set(2, FAKE_ANY, FAKE_ANY, FAKE_PASS);
    int late = fake_release(2, FAKE_ANY);
    cr_assert_geq(late, 8, "only %d held messages", late);
    until = em__now_ms() + EVENTUALLY;
    while (fake_delivered(2, FAKE_ANY, FAKE_ANY) < before + (uint64_t)late && em__now_ms() < until) sleep_ms(5);
    cr_assert_geq(fake_delivered(2, FAKE_ANY, FAKE_ANY), before + (uint64_t)late, "the late messages were not read");
    assert_stable_single_leader("110", 0, e, 2 * TIMEOUT);
    cr_assert_eq(fake_board_get(0).leader_changes, changes0);
    cr_assert_eq(fake_board_get(1).leader_changes, changes1);

    fake_cont(2);
    int st = fake_wait_exit(2, EVENTUALLY);
    cr_assert_neq(st, -1, "the resumed rank is still running");
    cr_assert(WIFEXITED(st), "the resumed rank did not exit (status %#x)", st);
    cr_assert_eq(WEXITSTATUS(st), 75, "the resumed rank exited %d, expected 75", WEXITSTATUS(st));
    assert_stable_single_leader("110", 0, e, 2 * TIMEOUT);
}

/* On one host the leader SIGKILLs a rank it fences: a stopped rank would otherwise keep mpirun waiting. */
Test(cluster, a_fenced_rank_on_the_leaders_host_is_killed, .fini = cluster_fini)
{
    fake_cluster_start(3, HB, TIMEOUT);
    for (int r = 0; r < 3; r++) fake_set_host(r, "samehost");
    wait_started("111");
    sleep_ms(8 * HB); /* heartbeats carry the new host name and the pid */
    fake_stop(2);
    int st = fake_wait_exit(2, EVENTUALLY);
    cr_assert_neq(st, -1, "the fenced rank is still there");
    cr_assert(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL, "the fenced rank ended with status %#x, not SIGKILL", st);
    cr_assert_eq(wait_view("110", 0), 2);
}
