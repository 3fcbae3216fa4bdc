/* loop.h — the per-rank runtime: the progress thread that owns all MPI traffic and timers, the mailboxes through
 * which it hands messages to the other threads, and the membership state (DESIGN sections 2 and 6).
 *
 * Threads of a rank:
 *   main       the job's main(): builds datasets, runs actions; on the leader it is the driver (scheduler)
 *   executor   runs tasks (scheduler/executor.c)
 *   progress   this file: sends the outbox, receives and dispatches, heartbeats, failure detection,
 *              elections, and serves block fetches through a registered handler. It never runs user code,
 *              so heartbeats continue while a map callback runs for minutes.
 */
#ifndef EM_RUNTIME_LOOP_H
#define EM_RUNTIME_LOOP_H

#include "runtime/comm.h"
#include "runtime/config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/types.h>

/* A thread-safe FIFO of messages with a blocking get. */
typedef struct em__mbox {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    em__msg *head, *tail;
} em__mbox;

void em__mbox_init(em__mbox *mb);
void em__mbox_release(em__mbox *mb);
void em__mbox_put(em__mbox *mb, em__msg *m);
/* Next message, waiting up to timeout_ms (-1: forever); NULL on timeout. */
em__msg *em__mbox_get(em__mbox *mb, int timeout_ms);

typedef struct em__rt em__rt;
/* A handler runs on the progress thread and takes ownership of m. */
typedef void (*em__handler)(em__rt *rt, em__msg *m, void *arg);

enum { EM__ELECT_NONE, EM__ELECT_RUNNING, EM__ELECT_WAITING };

struct em__rt {
    int rank;
    int size;
    em__config cfg;
    int64_t t0_ms; /* start time, monotonic ms */

    /* Membership, guarded by mu. A fenced rank is never readmitted. */
    pthread_mutex_t mu;
    uint32_t epoch;
    int leader;
    uint8_t *alive;       /* [size] */
    int64_t *last_heard;  /* [size] monotonic ms of the last message from each rank */
    int32_t *pids;        /* [size] from heartbeats, for killing fenced ranks on this host */
    uint8_t *same_host;   /* [size] */
    uint8_t *departed;    /* [size] said BYE/FIN: silence from it is expected, not a failure */
    int64_t next_hb;      /* ms: when the next heartbeat is due */
    int elect_state;
    int64_t elect_deadline; /* ms */
    _Atomic int fenced;     /* this rank learned it was fenced: it must not write output */
    _Atomic int leader_changes;

    /* Mailboxes of the other threads. */
    em__mbox exec_mb;   /* TASK */
    em__mbox driver_mb; /* TASK_DONE, INVENTORY, WAKE on membership change */
    em__mbox main_mb;   /* ACTION_RESULT, BYE, FIN, WAKE */
    em__mbox fetch_mb;  /* FETCH_RESP */

    /* Outbox: any thread appends, the progress thread sends. */
    pthread_mutex_t out_mu;
    pthread_cond_t out_cv;
    em__msg *out_head, *out_tail;

    em__handler handlers[EM__MSG_NTYPES];
    void *handler_arg[EM__MSG_NTYPES];

    pthread_t progress;
    _Atomic int stop;
    _Atomic int64_t loop_tick; /* ms of the progress loop's last iteration */
};

int64_t em__now_ms(void);
/* A condition variable whose timed waits use CLOCK_MONOTONIC (deadlines from em__now_ms-style clocks). */
void em__cond_init(pthread_cond_t *cv);
/* ts = now (CLOCK_MONOTONIC) + us microseconds: a deadline for timed waits on em__cond_init condvars. */
void em__deadline_after(struct timespec *ts, int64_t us);
double em__now_s(void);

/* Starts the runtime on this rank: MPI, config already loaded into rt->cfg by the caller. */
int em__rt_start(em__rt *rt, int *argc, char ***argv);
/* Stops the progress thread after the outbox drained (bounded wait) and releases everything but MPI. */
void em__rt_stop(em__rt *rt);

/* Queues m for dst (header filled here with type, epoch, src, leader). A message to this rank is delivered
 * through the local dispatch without MPI. Takes ownership of m. Any thread. */
void em__send(em__rt *rt, int dst, em__msg *m);
/* Sends to every live rank but this one (a copy each). Takes ownership of m. */
void em__send_all(em__rt *rt, em__msg *m);

/* Registers a progress-thread handler for a message type (before start or from the progress thread). */
void em__rt_on(em__rt *rt, int type, em__handler h, void *arg);

/* Membership snapshot. */
int em__rt_leader(em__rt *rt);
uint32_t em__rt_epoch(em__rt *rt);
int em__rt_is_alive(em__rt *rt, int r);
int em__rt_nalive(em__rt *rt);
/* Declares r dead (leader only; also used by the driver when a rank reports a fatal failure). */
void em__rt_fence(em__rt *rt, int r, const char *why);

/* membership.c, called by the loop with rt->mu NOT held */
int em__mem_on_msg(em__rt *rt, em__msg *m); /* returns 1 if m was consumed or must be dropped */
void em__mem_tick(em__rt *rt, int64_t now);
void em__mem_init(em__rt *rt);

#endif
