/* comm.h — typed messages between ranks. runtime/comm.c is the ONLY file that includes <mpi.h> (STYLE rule 7).
 *
 * Every message is one contiguous buffer: a fixed header followed by the payload.
 *
 *   offset size field
 *   0      1    version   EM__PROTO_VERSION; other versions are dropped with a warning
 *   1      1    type      one of EM__MSG_TYPES
 *   2      2    reserved  0
 *   4      4    epoch     sender's membership epoch when the message was built
 *   8      4    src       sender rank
 *   12     4    leader    the leader the sender believes in
 *   16     ...  payload   type-specific, packed with runtime/pack.h
 *
 * After start-up only nonblocking point-to-point calls are used (Isend/Test, Improbe/Mrecv): MPI never reports a
 * dead peer, so nothing may wait on one (DESIGN section 6).
 */
#ifndef EM_RUNTIME_COMM_H
#define EM_RUNTIME_COMM_H

#include <stddef.h>
#include <stdint.h>

#define EM__PROTO_VERSION 1

/* The one list of message types: generates the enum, names for logs and the dispatch table in loop.c. */
#define EM__MSG_TYPES(X)                                                     \
    X(HEARTBEAT)     /* every rank <-> leader: liveness, pid, host */        \
    X(MEMBERSHIP)    /* leader -> all: new epoch and the live set */         \
    X(TASK)          /* leader -> executor: run one task */                  \
    X(TASK_DONE)     /* executor -> leader: result or failure of a task */   \
    X(ACTION_RESULT) /* leader -> all: the result of a collective action */  \
    X(FETCH_REQ)     /* reducer -> block owner: send a chunk of a block */   \
    X(FETCH_RESP)    /* owner -> reducer: the chunk, or "lost" */            \
    X(ELECTION)      /* candidate -> lower ranks: are you alive? */          \
    X(ELECTION_OK)   /* lower rank -> candidate: I am, stand down */         \
    X(COORDINATOR)   /* new leader -> all: I lead from this epoch */         \
    X(INVENTORY)     /* survivor -> new leader: what I hold */               \
    X(BYE)           /* rank -> leader: I reached em_finalize */             \
    X(FIN)           /* leader -> all: everyone is done, exit */             \
    X(WAKE)          /* local only: wake a waiting thread */

enum {
#define EM__MSG_ENUM(name) EM__MSG_##name,
    EM__MSG_TYPES(EM__MSG_ENUM)
#undef EM__MSG_ENUM
    EM__MSG_NTYPES
};

typedef struct em__msghdr {
    uint8_t version;
    uint8_t type;
    uint16_t reserved;
    uint32_t epoch;
    int32_t src;
    int32_t leader;
} em__msghdr;

typedef struct em__msg {
    struct em__msg *next; /* queue link, owned by whichever queue holds the message */
    int dst;
    size_t len;       /* payload bytes */
    size_t cap;       /* bytes allocated for the whole message (msg.c's pool) */
    int huge;         /* allocated as whole huge pages (msg.c's pool sizes) */
    uint8_t *payload; /* = data + sizeof(em__msghdr) */
    em__msghdr *hdr;  /* = data */
    _Alignas(16) uint8_t data[];
} em__msg;

const char *em__msg_name(int type);
/* A message with room for `len` payload bytes; header filled by the sender (loop.c). Never fails (OOM exits). */
em__msg *em__msg_new(int type, size_t len);
void em__msg_free(em__msg *m);

/* Start-up: MPI_Init_thread(MULTIPLE), MPI_ERRORS_RETURN, a private duplicate of the world communicator.
 * Returns 0 or EM_ECOMM. */
int em__comm_init(int *argc, char ***argv, int *rank, int *size);
/* Start-up only (a collective): pid of every rank and whether it runs on this host. */
void em__comm_peer_info(int32_t *pids, uint8_t *same_host);
/* Sends m to dst without blocking; comm owns m from now on and frees it once the send completed. */
int em__comm_send(int dst, em__msg *m);
/* Fault injection (scheduler/fault.c, during=serve): called with a message's type and payload bytes right after
 * its send has started. NULL: not called. */
extern void (*em__comm_send_hook)(int type, size_t len);
/* Completes finished sends; returns how many sends and receives are still in flight. */
int em__comm_progress(void);
/* A received message or NULL when none is waiting. Never blocks: a message still arriving is delivered by a later
 * call; a sender's messages come in the order they were sent. */
em__msg *em__comm_poll(void);
/* Gives up the messages still arriving from ranks that alive(arg, rank) says are dead (their senders died
 * mid-transfer; without this, later messages of those senders would wait behind them for good). */
void em__comm_drop_dead(int (*alive)(void *arg, int rank), void *arg);
/* Host name of this process (for heartbeats and same-host decisions). */
const char *em__comm_host(void);
/* Ends MPI (MPI_Finalize, returns 1; it may hang after failures: callers arm the watchdog first), or, when `status`
 * is 0 and the launch allows it (see comm.c), returns 0 without: the caller then exits, which ends MPI for this
 * rank without the ~60 ms of MPI_Finalize. Either way no MPI call may follow. */
int em__comm_finalize(int status);

#endif
