/* fakecomm.h — a fake transport for unit tests: runtime/comm.h implemented over shared memory, no MPI.
 *
 * One rank per process. A test maps the fabric (fake_setup) and then either
 *   - forks a cluster of real ranks (fake_cluster_start): each child runs em__rt_start / the progress thread /
 *     membership exactly as under mpirun, and publishes its view on a board the test reads (fake_board_get); or
 *   - makes the test process itself one real rank (fake_become + em__rt_start) and plays the other ranks by hand
 *     (fake_inject / fake_take): scripted peers, fully deterministic.
 *
 * Why processes and not one em__rt per thread: the runtime ends a rank that learns it was fenced, and a rank whose
 * loop stalled, with _exit(75); a leader SIGKILLs a fenced rank on its own host; a SIGSTOPped rank is the failure
 * the epochs exist for. Only a process can be stopped, killed or exit on its own while the others carry on, and
 * comm.h has no context argument, so one rank per process also needs no change to the runtime.
 *
 * Faults, set from any process at any time on links (src, dst, message type), FAKE_ANY as a wildcard:
 *   FAKE_PASS  deliver (the default)
 *   FAKE_DROP  lose the message at send time: with every link of a rank dropped it looks dead (fake_isolate)
 *   FAKE_HOLD  keep it until fake_release, then deliver it in send order: a stopped or slow rank whose old-epoch
 *              messages arrive after the others moved on
 * fake_reorder(dst, 1) delivers the messages waiting for dst in random order instead of send order.
 * fake_wedge(r, 1) blocks r's progress thread inside em__comm_poll (a progress thread stuck in a call).
 */
#ifndef EM_TESTS_FAKECOMM_H
#define EM_TESTS_FAKECOMM_H

#include "runtime/comm.h"
#include "runtime/loop.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define FAKE_MAXR 8
#define FAKE_ANY (-1)

enum { FAKE_PASS, FAKE_DROP, FAKE_HOLD };

/* Maps a fresh fabric for n ranks (n <= FAKE_MAXR); every link FAKE_PASS, host of rank r "fakehost<r>" (so no
 * rank is on another's host: nobody gets SIGKILLed by a leader unless a test gives two ranks the same host). */
void fake_setup(int n);
/* This process is rank r from now on: em__comm_init returns r. Call before em__rt_start. */
void fake_become(int r);
void fake_set_host(int r, const char *host);
/* fake_setup(n), fake_become(self), logging at $EMBER_LOG (default errors only), then em__rt_start(rt) with these
 * failure-detection times: this process is one real rank. Returns em__rt_start's result. */
int fake_start_rank(em__rt *rt, int n, int self, int64_t heartbeat_ms, int64_t timeout_ms);

void fake_set(int src, int dst, int type, int mode);
/* Every link from and to r (both directions, all types). */
void fake_isolate(int r, int mode);
/* Held messages src -> dst become deliverable, in send order; returns how many. */
int fake_release(int src, int dst);
void fake_reorder(int dst, int on);
void fake_wedge(int r, int on);

/* Scripted peers: put a message from src into dst's inbox (links apply), or take one sent to dst (a rank that
 * no process runs). type FAKE_ANY takes the oldest; others of other types stay queued. NULL after timeout_ms. */
void fake_inject(int src, int dst, int type, uint32_t epoch, int leader, const void *payload, size_t len);
em__msg *fake_take(int dst, int type, int timeout_ms);
/* A view payload as membership.c writes it (HEARTBEAT / MEMBERSHIP / COORDINATOR); returns its length. */
size_t fake_view(uint8_t *buf, size_t cap, uint32_t pid, uint32_t epoch, int leader, int n, const uint8_t *alive,
                 const char *host);

/* Counters over links, FAKE_ANY as a wildcard. */
uint64_t fake_sent(int src, int dst, int type);
uint64_t fake_dropped(int src, int dst, int type);
uint64_t fake_delivered(int src, int dst, int type);
/* em__now_ms of the last delivery src -> dst (0: never). */
int64_t fake_last_delivered_ms(int src, int dst);

/* ---- a cluster of forked ranks ---- */

typedef struct fake_board {
    int running;   /* em__rt_start returned and the rank has not left */
    pid_t pid;
    uint32_t epoch;
    int leader;
    uint8_t alive[FAKE_MAXR];
    int elect_state;
    int fenced;
    int leader_changes;
    int64_t at_ms; /* when this view was published */
} fake_board;

/* fake_setup(n), then forks n ranks with these timings; returns once every rank runs. */
void fake_cluster_start(int n, int64_t heartbeat_ms, int64_t timeout_ms);
fake_board fake_board_get(int r);
pid_t fake_pid(int r);
/* Waits up to timeout_ms for rank r's process to end; returns its wait status, or -1 if it still runs. */
int fake_wait_exit(int r, int timeout_ms);
/* SIGSTOP / SIGCONT rank r's process. fake_stop returns once it is stopped, and never stops it while it holds the
 * fabric lock (a rank stopped there would stop every rank). */
void fake_stop(int r);
void fake_cont(int r);
/* Stops every rank still running (em__rt_stop, then exit 0; SIGKILL if that takes over 5 s) and reaps them. */
void fake_cluster_stop(void);

#endif
