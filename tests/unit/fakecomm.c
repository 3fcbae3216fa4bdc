/* fakecomm.c — runtime/comm.h over shared memory, for unit tests without MPI (see fakecomm.h; STYLE "Tests").
 *
 * The fabric is one MAP_SHARED mapping made before the ranks fork, guarded by one process-shared robust mutex
 * (a rank SIGKILLed while holding it must not wedge the others). Every rank has an inbox of fixed-size slots;
 * a slot is free, ready (deliverable) or held (waits for fake_release). Delivery takes the ready slot with the
 * lowest send sequence number (FIFO across senders, like one MPI receive queue), or a random ready slot when the
 * inbox is reordered. Sends never block and always "succeed", as MPI sends to a dead peer do (DESIGN section 6).
 */
#include "tests/unit/fakecomm.h"

#include "ember.h"
#include "runtime/log.h"
#include "runtime/loop.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define FAKE_SLOTS 256
#define FAKE_SLOT_BYTES 1024 /* header + payload; membership messages need 16 + 16 + n + host */

enum { SLOT_FREE, SLOT_READY, SLOT_HELD };
enum { CMD_NONE, CMD_STOP };

typedef struct slot {
    uint8_t state;
    uint8_t type;
    int16_t src;
    uint32_t len; /* bytes in data: header + payload */
    uint64_t seq;
    _Alignas(16) uint8_t data[FAKE_SLOT_BYTES];
} slot;

typedef struct fabric {
    pthread_mutex_t mu;
    int n;
    uint64_t seq;
    uint64_t rng;
    uint8_t mode[FAKE_MAXR][FAKE_MAXR][EM__MSG_NTYPES];
    uint8_t reorder[FAKE_MAXR];
    _Atomic int wedge[FAKE_MAXR];
    char host[FAKE_MAXR][32];
    pid_t pid[FAKE_MAXR];
    uint64_t sent[FAKE_MAXR][FAKE_MAXR][EM__MSG_NTYPES];
    uint64_t dropped[FAKE_MAXR][FAKE_MAXR][EM__MSG_NTYPES];
    uint64_t delivered[FAKE_MAXR][FAKE_MAXR][EM__MSG_NTYPES];
    int64_t last_delivered[FAKE_MAXR][FAKE_MAXR];
    /* cluster harness */
    _Atomic int ready;
    _Atomic int cmd[FAKE_MAXR];
    int64_t heartbeat_ms, timeout_ms;
    fake_board board[FAKE_MAXR];
    slot inbox[FAKE_MAXR][FAKE_SLOTS];
} fabric;

static fabric *fab;
static int me = -1;
/* Parent side of the cluster: the children forked by this process and their wait status once reaped. Only these
 * are ever signalled or waited for (fab->pid of a scripted rank is the test process itself). */
static pid_t child[FAKE_MAXR];
static int reaped[FAKE_MAXR], wstatus[FAKE_MAXR];

static void fab_lock(void)
{
    if (pthread_mutex_lock(&fab->mu) == EOWNERDEAD) pthread_mutex_consistent(&fab->mu);
}

static void fab_unlock(void) { pthread_mutex_unlock(&fab->mu); }

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

void fake_setup(int n)
{
    EM_ASSERT(n >= 1 && n <= FAKE_MAXR);
    fab = mmap(NULL, sizeof *fab, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    EM_ASSERT(fab != MAP_FAILED);
    memset(fab, 0, sizeof *fab);
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_setpshared(&ma, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&ma, PTHREAD_MUTEX_ROBUST);
    pthread_mutex_init(&fab->mu, &ma);
    pthread_mutexattr_destroy(&ma);
    fab->n = n;
    fab->rng = 0x9e3779b97f4a7c15ULL;
    for (int r = 0; r < FAKE_MAXR; r++) {
        snprintf(fab->host[r], sizeof fab->host[r], "fakehost%d", r);
        fab->board[r].leader = -1;
        child[r] = 0;
        reaped[r] = 0;
        wstatus[r] = 0;
    }
    me = -1;
}

void fake_become(int r)
{
    EM_ASSERT(fab && r >= 0 && r < fab->n);
    me = r;
    fab_lock();
    fab->pid[r] = getpid();
    fab_unlock();
}

void fake_set_host(int r, const char *host)
{
    fab_lock();
    snprintf(fab->host[r], sizeof fab->host[r], "%s", host);
    fab_unlock();
}

static int match(int want, int v) { return want == FAKE_ANY || want == v; }

void fake_set(int src, int dst, int type, int mode)
{
    fab_lock();
    for (int s = 0; s < FAKE_MAXR; s++)
        for (int d = 0; d < FAKE_MAXR; d++)
            for (int t = 0; t < EM__MSG_NTYPES; t++)
                if (match(src, s) && match(dst, d) && match(type, t)) fab->mode[s][d][t] = (uint8_t)mode;
    fab_unlock();
}

void fake_isolate(int r, int mode)
{
    fake_set(r, FAKE_ANY, FAKE_ANY, mode);
    fake_set(FAKE_ANY, r, FAKE_ANY, mode);
}

int fake_release(int src, int dst)
{
    int k = 0;
    fab_lock();
    for (int d = 0; d < fab->n; d++) {
        if (!match(dst, d)) continue;
        for (int i = 0; i < FAKE_SLOTS; i++) {
            slot *s = &fab->inbox[d][i];
            if (s->state == SLOT_HELD && match(src, s->src)) {
                s->state = SLOT_READY;
                k++;
            }
        }
    }
    fab_unlock();
    return k;
}

void fake_reorder(int dst, int on)
{
    fab_lock();
    fab->reorder[dst] = (uint8_t)on;
    fab_unlock();
}

void fake_wedge(int r, int on) { atomic_store(&fab->wedge[r], on); }

/* Caller holds the lock. Counts, applies the link mode, copies into a free slot of dst. */
static void enqueue(int src, int dst, const uint8_t *data, size_t total)
{
    int type = ((const em__msghdr *)data)->type;
    EM_ASSERT(src >= 0 && src < fab->n && dst >= 0 && dst < fab->n && type < EM__MSG_NTYPES);
    fab->sent[src][dst][type]++;
    int mode = fab->mode[src][dst][type];
    if (mode == FAKE_DROP) {
        fab->dropped[src][dst][type]++;
        return;
    }
    if (total > FAKE_SLOT_BYTES) {
        fab->dropped[src][dst][type]++;
        fprintf(stderr, "fakecomm: %s of %zu bytes r%d -> r%d is larger than a slot (%d); dropped\n",
                em__msg_name(type), total, src, dst, FAKE_SLOT_BYTES);
        return;
    }
    for (int i = 0; i < FAKE_SLOTS; i++) {
        slot *s = &fab->inbox[dst][i];
        if (s->state != SLOT_FREE) continue;
        s->type = (uint8_t)type;
        s->src = (int16_t)src;
        s->len = (uint32_t)total;
        s->seq = ++fab->seq;
        memcpy(s->data, data, total);
        s->state = mode == FAKE_HOLD ? SLOT_HELD : SLOT_READY; /* last: a rank killed mid-copy leaves it free */
        return;
    }
    /* A rank nobody reads (a scripted peer the test ignores) fills up: lose the message as a dead peer would. */
    fab->dropped[src][dst][type]++;
}

/* Caller holds the lock. The next ready slot of dst (of `type` unless FAKE_ANY), or NULL. */
static slot *pick(int dst, int type)
{
    slot *best = NULL;
    int nready = 0;
    for (int i = 0; i < FAKE_SLOTS; i++) {
        slot *s = &fab->inbox[dst][i];
        if (s->state != SLOT_READY || !match(type, s->type)) continue;
        nready++;
        if (!best || s->seq < best->seq) best = s;
    }
    if (!fab->reorder[dst] || nready < 2) return best;
    fab->rng ^= fab->rng << 13; /* xorshift64 */
    fab->rng ^= fab->rng >> 7;
    fab->rng ^= fab->rng << 17;
    int k = (int)(fab->rng % (uint64_t)nready);
    for (int i = 0; i < FAKE_SLOTS; i++) {
        slot *s = &fab->inbox[dst][i];
        if (s->state == SLOT_READY && match(type, s->type) && k-- == 0) return s;
    }
    return best;
}

/* Caller holds the lock. */
static em__msg *take_slot(int dst, slot *s)
{
    em__msg *m = em__msg_new(0, s->len - sizeof(em__msghdr));
    memcpy(m->data, s->data, s->len);
    fab->delivered[s->src][dst][s->type]++;
    fab->last_delivered[s->src][dst] = em__now_ms();
    s->state = SLOT_FREE;
    return m;
}

void fake_inject(int src, int dst, int type, uint32_t epoch, int leader, const void *payload, size_t len)
{
    em__msg *m = em__msg_new(type, len);
    if (len) memcpy(m->payload, payload, len);
    m->hdr->epoch = epoch;
    m->hdr->src = src;
    m->hdr->leader = leader;
    fab_lock();
    enqueue(src, dst, m->data, sizeof(em__msghdr) + len);
    fab_unlock();
    em__msg_free(m);
}

em__msg *fake_take(int dst, int type, int timeout_ms)
{
    int64_t until = em__now_ms() + timeout_ms;
    for (;;) {
        fab_lock();
        slot *s = pick(dst, type);
        em__msg *m = s ? take_slot(dst, s) : NULL;
        fab_unlock();
        if (m || em__now_ms() >= until) return m;
        sleep_ms(1);
    }
}

size_t fake_view(uint8_t *buf, size_t cap, uint32_t pid, uint32_t epoch, int leader, int n, const uint8_t *alive,
                 const char *host)
{
    size_t hl = strlen(host) + 1, len = 16 + (size_t)n + hl;
    EM_ASSERT(len <= cap);
    uint32_t h[4] = {pid, epoch, (uint32_t)leader, (uint32_t)n};
    memcpy(buf, h, 16);
    if (n) memcpy(buf + 16, alive, (size_t)n);
    memcpy(buf + 16 + n, host, hl);
    return len;
}

static uint64_t sum(uint64_t (*c)[FAKE_MAXR][EM__MSG_NTYPES], int src, int dst, int type)
{
    uint64_t t = 0;
    fab_lock();
    for (int s = 0; s < FAKE_MAXR; s++)
        for (int d = 0; d < FAKE_MAXR; d++)
            for (int k = 0; k < EM__MSG_NTYPES; k++)
                if (match(src, s) && match(dst, d) && match(type, k)) t += c[s][d][k];
    fab_unlock();
    return t;
}

uint64_t fake_sent(int src, int dst, int type) { return sum(fab->sent, src, dst, type); }
uint64_t fake_dropped(int src, int dst, int type) { return sum(fab->dropped, src, dst, type); }
uint64_t fake_delivered(int src, int dst, int type) { return sum(fab->delivered, src, dst, type); }

int64_t fake_last_delivered_ms(int src, int dst)
{
    fab_lock();
    int64_t t = fab->last_delivered[src][dst];
    fab_unlock();
    return t;
}

/* ---- runtime/comm.h ---- */

/* em__msg_name, em__msg_new and em__msg_free live in runtime/msg.c (shared with the fake transport). */

int em__comm_init(int *argc, char ***argv, int *rank, int *size)
{
    (void)argc;
    (void)argv;
    if (!fab || me < 0) return em__fail(EM_ECOMM, "fakecomm: fake_setup and fake_become come before em__rt_start");
    *rank = me;
    *size = fab->n;
    return 0;
}

void em__comm_peer_info(int32_t *pids, uint8_t *same_host)
{
    fab_lock();
    for (int r = 0; r < fab->n; r++) {
        pids[r] = fab->pid[r];
        same_host[r] = strcmp(fab->host[r], fab->host[me]) == 0;
    }
    fab_unlock();
}

int em__comm_send(int dst, em__msg *m)
{
    if (dst < 0 || dst >= fab->n) {
        em__msg_free(m);
        return EM_EINVAL;
    }
    fab_lock();
    enqueue(m->hdr->src, dst, m->data, sizeof(em__msghdr) + m->len);
    fab_unlock();
    em__msg_free(m); /* copied: the send completed at once */
    return 0;
}

int em__comm_progress(void) { return 0; }

em__msg *em__comm_poll(void)
{
    while (atomic_load(&fab->wedge[me])) sleep_ms(1);
    fab_lock();
    slot *s = pick(me, FAKE_ANY);
    em__msg *m = s ? take_slot(me, s) : NULL;
    fab_unlock();
    return m;
}

const char *em__comm_host(void) { return me >= 0 ? fab->host[me] : "fakehost"; }

void em__comm_drop_dead(int (*alive)(void *arg, int rank), void *arg)
{
    (void)alive;
    (void)arg; /* a fake message arrives whole */
}

int em__comm_finalize(int status)
{
    (void)status;
    return 1;
}

/* ---- a cluster of forked ranks ---- */

static void publish(int r, em__rt *rt, int running)
{
    fake_board b = {.running = running, .pid = getpid(), .at_ms = em__now_ms()};
    pthread_mutex_lock(&rt->mu);
    b.epoch = rt->epoch;
    b.leader = rt->leader;
    for (int i = 0; i < rt->size && i < FAKE_MAXR; i++) b.alive[i] = rt->alive[i];
    b.elect_state = rt->elect_state;
    pthread_mutex_unlock(&rt->mu);
    b.fenced = atomic_load(&rt->fenced);
    b.leader_changes = atomic_load(&rt->leader_changes);
    fab_lock();
    fab->board[r] = b;
    fab_unlock();
}

static _Noreturn void child_main(int r, pid_t parent)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlive the test */
    if (getppid() != parent) _exit(1);
    alarm(120);
    fake_become(r);
    const char *lv = getenv("EMBER_LOG");
    em__log_setup(r, lv && *lv ? em__log_parse_level(lv) : EM_LOG_ERROR);
    /* Start together, as MPI_Init does: a rank started late must not look silent to the others. */
    atomic_fetch_add(&fab->ready, 1);
    for (int i = 0; i < 20000 && atomic_load(&fab->ready) < fab->n; i++) sleep_ms(1);
    static em__rt rt; /* static: the detached sentinel thread may look at it until the process exits */
    rt.cfg.heartbeat_ms = fab->heartbeat_ms;
    rt.cfg.timeout_ms = fab->timeout_ms;
    if (em__rt_start(&rt, NULL, NULL) < 0) _exit(90);
    for (;;) {
        publish(r, &rt, 1);
        if (atomic_load(&fab->cmd[r]) == CMD_STOP) {
            publish(r, &rt, 0);
            em__rt_stop(&rt);
            _exit(0);
        }
        sleep_ms(2);
    }
}

void fake_cluster_start(int n, int64_t heartbeat_ms, int64_t timeout_ms)
{
    fake_setup(n);
    fab->heartbeat_ms = heartbeat_ms;
    fab->timeout_ms = timeout_ms;
    pid_t parent = getpid();
    fflush(NULL);
    for (int r = 0; r < n; r++) {
        pid_t pid = fork();
        EM_ASSERT(pid >= 0);
        if (pid == 0) child_main(r, parent);
        child[r] = pid;
        fab_lock();
        fab->pid[r] = pid;
        fab_unlock();
    }
    int64_t until = em__now_ms() + 20000;
    for (int r = 0; r < n; r++)
        while (!fake_board_get(r).running && em__now_ms() < until) sleep_ms(1);
}

fake_board fake_board_get(int r)
{
    fab_lock();
    fake_board b = fab->board[r];
    fab_unlock();
    return b;
}

pid_t fake_pid(int r) { return child[r]; }

int fake_wait_exit(int r, int timeout_ms)
{
    int64_t until = em__now_ms() + timeout_ms;
    if (child[r] <= 0) return -1;
    while (!reaped[r]) {
        int st = 0;
        pid_t p = waitpid(child[r], &st, WNOHANG);
        if (p == child[r]) {
            reaped[r] = 1;
            wstatus[r] = st;
            fab_lock();
            fab->board[r].running = 0;
            fab_unlock();
            break;
        }
        if (p < 0 || em__now_ms() >= until) return -1;
        sleep_ms(2);
    }
    return wstatus[r];
}

void fake_stop(int r)
{
    EM_ASSERT(child[r] > 0 && !reaped[r]);
    fab_lock(); /* while we hold it, r is not inside the fabric */
    EM_ASSERT(kill(child[r], SIGSTOP) == 0);
    int st = 0;
    pid_t p;
    while ((p = waitpid(child[r], &st, WUNTRACED)) == child[r] && !WIFSTOPPED(st) && !WIFEXITED(st) &&
           !WIFSIGNALED(st)) {
    }
    if (p == child[r] && !WIFSTOPPED(st)) {
        reaped[r] = 1;
        wstatus[r] = st;
    }
    fab_unlock();
}

void fake_cont(int r)
{
    if (child[r] > 0 && !reaped[r]) kill(child[r], SIGCONT);
}

void fake_cluster_stop(void)
{
    if (!fab) return;
    for (int r = 0; r < fab->n; r++) {
        atomic_store(&fab->cmd[r], CMD_STOP);
        fake_cont(r);
    }
    for (int r = 0; r < fab->n; r++) {
        if (child[r] <= 0 || reaped[r]) continue;
        if (fake_wait_exit(r, 5000) == -1) {
            kill(child[r], SIGKILL);
            fake_wait_exit(r, 5000);
        }
    }
}

int fake_start_rank(em__rt *rt, int n, int self, int64_t heartbeat_ms, int64_t timeout_ms)
{
    fake_setup(n);
    fake_become(self);
    const char *lv = getenv("EMBER_LOG");
    em__log_setup(self, lv && *lv ? em__log_parse_level(lv) : EM_LOG_ERROR);
    rt->cfg.heartbeat_ms = heartbeat_ms;
    rt->cfg.timeout_ms = timeout_ms;
    return em__rt_start(rt, NULL, NULL);
}
