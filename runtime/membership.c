/* membership.c — heartbeats, the failure detector, epochs and fencing, and the bully election (DESIGN section 6).
 *
 * Runs on the progress thread only (em__rt_fence may also be called by the driver; everything is under rt->mu).
 * Heartbeats go every heartbeat_ms from every rank to the leader and from the leader to every rank. The leader's
 * heartbeat carries its view (epoch, leader, live set), so a rank that missed a MEMBERSHIP message catches up.
 * Silence for timeout_ms means dead:
 *   - the leader fences a silent executor: new epoch, the rank's messages dropped for good, SIGKILL if it runs on
 *     this host (a SIGSTOPped rank would otherwise keep mpirun alive), every survivor told;
 *   - an executor that loses the leader starts a bully election: ELECTION to every lower live rank; an answer
 *     (ELECTION_OK) means a lower rank will lead, so wait for its COORDINATOR; no answer within timeout/2 means
 *     this rank leads: it bumps the epoch and announces COORDINATOR. Concurrent elections converge because a view
 *     is adopted when its (epoch, -leader) is larger: the lowest live rank wins.
 *
 * Heartbeat / MEMBERSHIP / COORDINATOR payload:
 *   offset size field
 *   0      4    pid of the sender
 *   4      4    epoch of the view (0 in an executor's heartbeat: no view)
 *   8      4    leader of the view
 *   12     4    n = number of ranks (0: no view)
 *   16     n    alive[n], one byte per rank
 *   16+n   ..   host name, NUL-terminated
 */
#include "ember.h"
#include "runtime/buf.h"
#include "runtime/events.h"
#include "runtime/log.h"
#include "runtime/loop.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void em__mem_init(em__rt *rt)
{
    int n = rt->size;
    rt->alive = em__calloc((size_t)n, 1);
    rt->last_heard = em__calloc((size_t)n, sizeof *rt->last_heard);
    rt->pids = em__calloc((size_t)n, sizeof *rt->pids);
    rt->same_host = em__calloc((size_t)n, 1);
    rt->departed = em__calloc((size_t)n, 1);
    int64_t now = em__now_ms();
    for (int r = 0; r < n; r++) {
        rt->alive[r] = 1;
        rt->last_heard[r] = now;
    }
    em__comm_peer_info(rt->pids, rt->same_host);
    rt->same_host[rt->rank] = 1;
    rt->pids[rt->rank] = (int32_t)getpid();
    rt->epoch = 1;
    rt->leader = 0;
    em__log_set_leader(rt->rank == 0);
    em__events_set_leader(rt->rank == 0);
}

int em__rt_leader(em__rt *rt)
{
    pthread_mutex_lock(&rt->mu);
    int l = rt->leader;
    pthread_mutex_unlock(&rt->mu);
    return l;
}

uint32_t em__rt_epoch(em__rt *rt)
{
    pthread_mutex_lock(&rt->mu);
    uint32_t e = rt->epoch;
    pthread_mutex_unlock(&rt->mu);
    return e;
}

int em__rt_is_alive(em__rt *rt, int r)
{
    if (r < 0 || r >= rt->size) return 0;
    pthread_mutex_lock(&rt->mu);
    int a = rt->alive[r];
    pthread_mutex_unlock(&rt->mu);
    return a;
}

int em__rt_nalive(em__rt *rt)
{
    pthread_mutex_lock(&rt->mu);
    int n = 0;
    for (int r = 0; r < rt->size; r++) n += rt->alive[r];
    pthread_mutex_unlock(&rt->mu);
    return n;
}

/* Caller holds rt->mu. A view message: see the table above. */
static em__msg *view_msg(em__rt *rt, int type, int with_view)
{
    const char *host = em__comm_host();
    size_t hl = strlen(host) + 1;
    size_t n = with_view ? (size_t)rt->size : 0;
    em__msg *m = em__msg_new(type, 16 + n + hl);
    uint32_t hdr[4] = {(uint32_t)getpid(), with_view ? rt->epoch : 0, (uint32_t)rt->leader, (uint32_t)n};
    memcpy(m->payload, hdr, 16);
    if (n) memcpy(m->payload + 16, rt->alive, n);
    memcpy(m->payload + 16 + n, host, hl);
    return m;
}

static void wake(em__rt *rt)
{
    em__mbox_put(&rt->driver_mb, em__msg_new(EM__MSG_WAKE, 0));
    em__mbox_put(&rt->main_mb, em__msg_new(EM__MSG_WAKE, 0));
    em__mbox_put(&rt->fetch_mb, em__msg_new(EM__MSG_WAKE, 0));
}

/* Broadcast a view to every live rank; caller does NOT hold rt->mu. */
static void announce(em__rt *rt, int type)
{
    pthread_mutex_lock(&rt->mu);
    em__msg *m = view_msg(rt, type, 1);
    pthread_mutex_unlock(&rt->mu);
    em__send_all(rt, m);
}

void em__rt_fence(em__rt *rt, int r, const char *why)
{
    pthread_mutex_lock(&rt->mu);
    if (!rt->alive[r] || r == rt->rank) {
        pthread_mutex_unlock(&rt->mu);
        return;
    }
    rt->alive[r] = 0;
    rt->epoch++;
    int kill_it = rt->same_host[r] && rt->pids[r] > 0;
    pid_t pid = rt->pids[r];
    uint32_t e = rt->epoch;
    long long silent = (long long)(em__now_ms() - rt->last_heard[r]);
    pthread_mutex_unlock(&rt->mu);
    EM_LOG_W("fenced r%d (%s); epoch is now %u, %d ranks live", r, why, e, em__rt_nalive(rt));
    em__event("rank_fenced", "\"victim\":%d,\"epoch\":%u,\"reason\":\"%s\",\"silent_ms\":%lld", r, e, em__json_str(why),
              silent);
    if (kill_it) kill(pid, SIGKILL); /* a stopped rank would otherwise keep mpirun waiting; it is out for good */
    announce(rt, EM__MSG_MEMBERSHIP);
    wake(rt);
}

/* When this rank started its current election, and the silence that made it start (for the event log). */
static int64_t elect_started_ms, elect_silent_ms;

static void become_leader(em__rt *rt, int64_t now)
{
    pthread_mutex_lock(&rt->mu);
    int old = rt->leader;
    uint32_t old_epoch = rt->epoch;
    rt->alive[old] = old == rt->rank;
    /* The old leader may be stopped or stuck rather than dead: on this host, make sure it is gone for good so it
     * never acts on stale beliefs and mpirun can exit (it is fenced either way). */
    if (old != rt->rank && rt->same_host[old] && rt->pids[old] > 0) kill(rt->pids[old], SIGKILL);
    rt->epoch++;
    atomic_fetch_add(&rt->leader_changes, 1); /* before the new leader is visible: "kill:leader" faults must see it */
    rt->leader = rt->rank;
    rt->elect_state = EM__ELECT_NONE;
    for (int r = 0; r < rt->size; r++) rt->last_heard[r] = now; /* everyone gets a full timeout to show up */
    uint32_t e = rt->epoch;
    pthread_mutex_unlock(&rt->mu);
    em__log_set_leader(1);
    em__events_set_leader(1);
    EM_LOG_W("elected leader after r%d was lost; epoch is now %u", old, e);
    /* Only the leader writes the event log, so the winner records the election after the fact: the candidates
     * that lost, and this rank while it was one, were not leading. */
    em__event("election_start", "\"candidate\":%d,\"previous_leader\":%d,\"epoch\":%u,\"silent_ms\":%lld", rt->rank,
              old, old_epoch, (long long)elect_silent_ms);
    if (old != rt->rank)
        em__event("rank_fenced", "\"victim\":%d,\"epoch\":%u,\"reason\":\"leader lost, replaced by election\","
                  "\"silent_ms\":%lld", old, e, (long long)elect_silent_ms);
    em__event("leader_elected", "\"leader\":%d,\"epoch\":%u,\"previous_leader\":%d,\"elapsed_ms\":%lld", rt->rank, e,
              old, (long long)(now - elect_started_ms));
    announce(rt, EM__MSG_COORDINATOR);
    wake(rt);
}

static void start_election(em__rt *rt, int64_t now)
{
    int lower = 0;
    pthread_mutex_lock(&rt->mu);
    if (rt->elect_state == EM__ELECT_NONE) {
        elect_started_ms = now;
        elect_silent_ms = now - rt->last_heard[rt->leader];
    }
    rt->elect_state = EM__ELECT_RUNNING;
    rt->elect_deadline = now + rt->cfg.timeout_ms / 2;
    int n = rt->size, me = rt->rank;
    uint8_t *alive = em__malloc((size_t)n);
    memcpy(alive, rt->alive, (size_t)n);
    pthread_mutex_unlock(&rt->mu);
    for (int r = 0; r < me; r++) {
        if (!alive[r]) continue;
        em__send(rt, r, em__msg_new(EM__MSG_ELECTION, 0));
        lower++;
    }
    free(alive);
    if (!lower) become_leader(rt, now);
}

/* Adopts a view if it is newer: larger epoch, or the same epoch with a lower leader. Caller holds rt->mu.
 * Returns 1 if adopted. */
static int adopt_view(em__rt *rt, const uint8_t *p, size_t len, int64_t now)
{
    if (len < 16) return 0;
    uint32_t h[4];
    memcpy(h, p, 16);
    uint32_t e = h[1];
    int l = (int)h[2];
    if (h[3] != (uint32_t)rt->size || len < 16 + (size_t)rt->size) return 0;
    if (e < rt->epoch || (e == rt->epoch && l >= rt->leader)) return 0;
    const uint8_t *alive = p + 16;
    if (!alive[rt->rank]) {
        atomic_store(&rt->fenced, 1);
        pthread_mutex_unlock(&rt->mu);
        EM_LOG_W("the leader r%d fenced this rank (epoch %u); exiting without writing output", l, e);
        _exit(75);
    }
    int changed = l != rt->leader;
    if (changed) atomic_fetch_add(&rt->leader_changes, 1); /* before the new leader is visible (see above) */
    rt->epoch = e;
    rt->leader = l;
    memcpy(rt->alive, alive, (size_t)rt->size);
    rt->last_heard[l] = now;
    rt->elect_state = EM__ELECT_NONE;
    if (changed) {
        em__log_set_leader(l == rt->rank);
        em__events_set_leader(l == rt->rank);
    }
    return 1;
}

int em__mem_on_msg(em__rt *rt, em__msg *m)
{
    int src = m->hdr->src, type = m->hdr->type;
    if (src < 0 || src >= rt->size) {
        em__msg_free(m);
        return 1;
    }
    int64_t now = em__now_ms();
    pthread_mutex_lock(&rt->mu);
    if (!rt->alive[src] && type != EM__MSG_COORDINATOR) {
        /* Fenced for good: whatever it says is ignored (a resumed SIGSTOPped rank may still believe it leads). */
        pthread_mutex_unlock(&rt->mu);
        EM_LOG_D("dropped %s from fenced r%d (epoch %u)", em__msg_name(type), src, m->hdr->epoch);
        em__msg_free(m);
        return 1;
    }
    rt->last_heard[src] = now;
    int adopted = 0, reply_ok = 0;
    switch (type) {
    case EM__MSG_HEARTBEAT:
        if (m->len >= 16) {
            uint32_t h[4];
            memcpy(h, m->payload, 16);
            rt->pids[src] = (int32_t)h[0];
            size_t off = 16 + h[3];
            if (off < m->len) rt->same_host[src] = strncmp((const char *)m->payload + off, em__comm_host(), m->len - off) == 0;
            if (h[3]) adopted = adopt_view(rt, m->payload, m->len, now);
        }
        break;
    case EM__MSG_MEMBERSHIP:
    case EM__MSG_COORDINATOR:
        adopted = adopt_view(rt, m->payload, m->len, now);
        if (type == EM__MSG_COORDINATOR && adopted) EM_LOG_W("r%d leads from epoch %u", rt->leader, rt->epoch);
        break;
    case EM__MSG_ELECTION: reply_ok = 1; break;
    case EM__MSG_ELECTION_OK:
        if (rt->elect_state == EM__ELECT_RUNNING) {
            rt->elect_state = EM__ELECT_WAITING;
            rt->elect_deadline = now + 2 * rt->cfg.timeout_ms;
        }
        break;
    case EM__MSG_BYE:
    case EM__MSG_FIN:
        rt->departed[src] = 1;
        pthread_mutex_unlock(&rt->mu);
        return 0; /* also routed to the main thread */
    default:
        pthread_mutex_unlock(&rt->mu);
        return 0;
    }
    int leading = rt->leader == rt->rank;
    pthread_mutex_unlock(&rt->mu);
    if (reply_ok) {
        em__send(rt, src, em__msg_new(EM__MSG_ELECTION_OK, 0));
        if (leading) { /* tell the candidate who leads */
            pthread_mutex_lock(&rt->mu);
            em__msg *v = view_msg(rt, EM__MSG_MEMBERSHIP, 1);
            pthread_mutex_unlock(&rt->mu);
            em__send(rt, src, v);
        }
    }
    if (adopted) wake(rt);
    em__msg_free(m);
    return 1;
}

void em__mem_tick(em__rt *rt, int64_t now)
{
    if (rt->size == 1) return;
    pthread_mutex_lock(&rt->mu);
    int me = rt->rank, leader = rt->leader, state = rt->elect_state;
    int64_t timeout = rt->cfg.timeout_ms;
    int hb_due = now >= rt->next_hb;
    if (hb_due) rt->next_hb = now + rt->cfg.heartbeat_ms;
    em__msg *hb = hb_due ? view_msg(rt, EM__MSG_HEARTBEAT, leader == me) : NULL;
    int suspect_leader = leader != me && state == EM__ELECT_NONE && !rt->departed[leader] &&
                         now - rt->last_heard[leader] > timeout;
    int elect_done = state == EM__ELECT_RUNNING && now > rt->elect_deadline;
    int elect_retry = state == EM__ELECT_WAITING && now > rt->elect_deadline;
    int dead[64], ndead = 0;
    if (leader == me)
        for (int r = 0; r < rt->size && ndead < 64; r++)
            if (r != me && rt->alive[r] && !rt->departed[r] && now - rt->last_heard[r] > timeout) dead[ndead++] = r;
    if (suspect_leader) {
        EM_LOG_W("leader r%d silent for %lld ms (timeout %lld ms): starting an election", leader,
                 (long long)(now - rt->last_heard[leader]), (long long)timeout);
        rt->alive[leader] = 0;
    }
    pthread_mutex_unlock(&rt->mu);

    if (hb) {
        if (leader == me) em__send_all(rt, hb);
        else em__send(rt, leader, hb);
    }
    for (int i = 0; i < ndead; i++) {
        char why[96];
        snprintf(why, sizeof why, "silent for more than %lld ms", (long long)timeout);
        em__rt_fence(rt, dead[i], why);
    }
    if (suspect_leader || elect_retry) start_election(rt, now);
    else if (elect_done) become_leader(rt, now);
}
