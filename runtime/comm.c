/* comm.c — the only file that talks to MPI (DESIGN sections 2 and 6, STYLE rule 7).
 *
 * Only the progress thread (loop.c) calls into this file after start-up, so MPI sees one thread at a time even
 * though we ask for MPI_THREAD_MULTIPLE (which Open MPI 4.1 provides) to stay free to change that.
 * Sends are MPI_Isend of the whole message buffer, kept until MPI_Test says done. Receives are
 * MPI_Improbe + MPI_Imrecv into a buffer of the exact size, completed by MPI_Test on later polls. No call here
 * blocks on a peer: a blocking MPI_Mrecv of a message whose sender died mid-transfer never returns (seen in CI:
 * Open MPI's single-copy read from a killed rank failed, `Read -1, ... errno = 3`, ob1 asked the dead sender to
 * push the data instead, and the receiving rank's progress thread stayed in MPI_Mrecv until its sentinel fenced
 * it).
 */
#include "runtime/comm.h"

#include "ember.h"
#include "runtime/log.h"

#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static MPI_Comm comm = MPI_COMM_NULL;
static char hostname[MPI_MAX_PROCESSOR_NAME + 1];

typedef struct pending {
    MPI_Request req;
    em__msg *msg;
} pending;
static pending *sends;
static int nsends, capsends;

/* Receives matched and started but not complete yet (a message above the eager limit is fetched in steps), in the
 * order they were matched. A sender's messages are delivered in that order; other senders' are not held up. */
typedef struct inbound {
    MPI_Request req;
    em__msg *msg;
    int src;
    int state; /* 0: in flight, 1: complete, -1: failed */
} inbound;
static inbound *recvs;
static int nrecvs, caprecvs;

void (*em__comm_send_hook)(int type, size_t len);

/* em__msg_name, em__msg_new and em__msg_free live in runtime/msg.c (shared with the fake transport). */

int em__comm_init(int *argc, char ***argv, int *rank, int *size)
{
    int provided = 0, inited = 0;
    MPI_Initialized(&inited);
    if (!inited && MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided) != MPI_SUCCESS)
        return em__fail(EM_ECOMM, "MPI_Init_thread failed");
    if (!inited && provided < MPI_THREAD_MULTIPLE)
        EM_LOG_W("MPI provides thread level %d, not MPI_THREAD_MULTIPLE; only the progress thread calls MPI", provided);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    /* The one collective after MPI_Init: at start-up every rank is alive by definition. */
    if (MPI_Comm_dup(MPI_COMM_WORLD, &comm) != MPI_SUCCESS) return em__fail(EM_ECOMM, "MPI_Comm_dup failed");
    MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
    MPI_Comm_rank(comm, rank);
    MPI_Comm_size(comm, size);
    int len = 0;
    MPI_Get_processor_name(hostname, &len);
    hostname[len] = 0;
    return 0;
}

const char *em__comm_host(void) { return hostname; }

void em__comm_peer_info(int32_t *pids, uint8_t *same_host)
{
    /* Start-up only (every rank is alive by definition): each rank's pid and a hash of its host name, so that any
     * rank that becomes leader later can SIGKILL a fenced rank on its own host without having heard from it. */
    int size = 0;
    MPI_Comm_size(comm, &size);
    uint64_t mine[2] = {(uint64_t)getpid(), 1469598103934665603ULL};
    for (const char *p = hostname; *p; p++) mine[1] = (mine[1] ^ (uint8_t)*p) * 1099511628211ULL;
    uint64_t *all = em__malloc(sizeof(uint64_t) * 2 * (size_t)size);
    if (MPI_Allgather(mine, 2, MPI_UINT64_T, all, 2, MPI_UINT64_T, comm) == MPI_SUCCESS)
        for (int r = 0; r < size; r++) {
            pids[r] = (int32_t)all[2 * r];
            same_host[r] = all[2 * r + 1] == mine[1];
        }
    free(all);
}

int em__comm_send(int dst, em__msg *m)
{
    if (nsends == capsends) {
        capsends = capsends ? 2 * capsends : 64;
        sends = em__realloc(sends, (size_t)capsends * sizeof *sends);
    }
    size_t total = sizeof(em__msghdr) + m->len;
    if (total > (size_t)INT32_MAX) {
        EM_LOG_E("message %s of %zu bytes is too large to send", em__msg_name(m->hdr->type), total);
        em__msg_free(m);
        return EM_EINVAL;
    }
    int rc = MPI_Isend(m->data, (int)total, MPI_BYTE, dst, m->hdr->type, comm, &sends[nsends].req);
    if (rc != MPI_SUCCESS) {
        EM_LOG_W("MPI_Isend of %s to r%d failed (%d)", em__msg_name(m->hdr->type), dst, rc);
        em__msg_free(m);
        return EM_ECOMM;
    }
    sends[nsends++].msg = m;
    if (em__comm_send_hook) em__comm_send_hook(m->hdr->type, m->len);
    return 0;
}

int em__comm_progress(void)
{
    /* receives in flight count too: the loop keeps polling often while one is */
    for (int i = 0; i < nsends;) {
        int done = 0;
        if (MPI_Test(&sends[i].req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) done = 1; /* error: give up on it */
        if (done) {
            em__msg_free(sends[i].msg);
            sends[i] = sends[--nsends];
        } else {
            i++;
        }
    }
    return nsends + nrecvs;
}

/* m as received from src, or NULL (freed) when its header is not ours. */
static em__msg *checked(em__msg *m, int src)
{
    if (m->hdr->version != EM__PROTO_VERSION || m->hdr->src != src) {
        EM_LOG_W("dropped a message from r%d: protocol version %d, expected %d", src, m->hdr->version,
                 EM__PROTO_VERSION);
        em__msg_free(m);
        return NULL;
    }
    return m;
}

/* The first complete receive with no earlier one from its sender still in flight, taken out; NULL if none. */
static em__msg *take_ready(void)
{
    for (int i = 0; i < nrecvs; i++) {
        inbound *x = &recvs[i];
        if (x->state == 0) {
            int done = 0;
            if (MPI_Test(&x->req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS) x->state = -1;
            else x->state = done;
        }
        if (x->state == 0) continue;
        int behind = 0; /* an earlier receive from the same sender is still in flight */
        for (int j = 0; j < i && !behind; j++) behind = recvs[j].src == x->src;
        if (behind) continue;
        em__msg *m = x->msg;
        int src = x->src, failed = x->state < 0;
        memmove(&recvs[i], &recvs[i + 1], (size_t)(nrecvs - i - 1) * sizeof *recvs);
        nrecvs--;
        i--;
        if (failed) {
            em__msg_free(m);
            continue;
        }
        if ((m = checked(m, src))) return m;
    }
    return NULL;
}

em__msg *em__comm_poll(void)
{
    em__msg *m = nrecvs ? take_ready() : NULL;
    while (!m) {
        int flag = 0;
        MPI_Message mm;
        MPI_Status st;
        if (MPI_Improbe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm, &flag, &mm, &st) != MPI_SUCCESS || !flag) return NULL;
        int count = 0;
        MPI_Get_count(&st, MPI_BYTE, &count);
        if (count < (int)sizeof(em__msghdr)) { /* eager (tiny): complete on arrival */
            char junk[sizeof(em__msghdr)];
            MPI_Mrecv(junk, count, MPI_BYTE, &mm, MPI_STATUS_IGNORE);
            EM_LOG_W("dropped a %d-byte message from r%d: shorter than a header", count, st.MPI_SOURCE);
            continue;
        }
        if (nrecvs == caprecvs) {
            caprecvs = caprecvs ? 2 * caprecvs : 16;
            recvs = em__realloc(recvs, (size_t)caprecvs * sizeof *recvs);
        }
        inbound *x = &recvs[nrecvs];
        x->msg = em__msg_new(st.MPI_TAG, (size_t)count - sizeof(em__msghdr)); /* the tag is the type */
        x->src = st.MPI_SOURCE;
        x->state = 0;
        if (MPI_Imrecv(x->msg->data, count, MPI_BYTE, &mm, &x->req) != MPI_SUCCESS) {
            em__msg_free(x->msg);
            continue;
        }
        nrecvs++;
        m = take_ready();
        if (!m) return NULL; /* in flight: a later poll delivers it */
    }
    return m;
}

void em__comm_drop_dead(int (*alive)(void *arg, int rank), void *arg)
{
    for (int i = 0; i < nrecvs;) {
        if (recvs[i].state == 0 && !alive(arg, recvs[i].src)) {
            /* Its request stays with MPI, which may still write into the buffer: both are left to the exit. */
            EM_LOG_W("gave up a %zu-byte message from r%d, which died while sending it", recvs[i].msg->len,
                     recvs[i].src);
            memmove(&recvs[i], &recvs[i + 1], (size_t)(nrecvs - i - 1) * sizeof *recvs);
            nrecvs--;
        } else {
            i++;
        }
    }
}

/* Whether the process may leave without MPI_Finalize: mpirun was told a rank may exit without it
 * (orte_allowed_exit_without_sync, part of `ember run`'s recovery recipe, reaches the ranks as OMPI_MCA_*), and all
 * traffic is in shared memory (`ember run` on one host: btl self,vader), where a message whose send has completed
 * is in the receiver's queue already, so nothing in flight dies with this process. Over TCP a send's completion
 * only means the socket took it. */
static int may_skip_finalize(void)
{
    const char *sync = getenv("OMPI_MCA_orte_allowed_exit_without_sync"), *btl = getenv("OMPI_MCA_btl");
    return sync && strcmp(sync, "1") == 0 && btl && strcmp(btl, "self,vader") == 0;
}

int em__comm_finalize(int status)
{
    /* Sends that never completed went to dead ranks: leave their buffers to the process exit. */
    free(sends);
    sends = NULL;
    nsends = capsends = 0;
    if (status == 0 && may_skip_finalize()) {
        EM_LOG_D("leaving without MPI_Finalize (ember run on one host)");
        return 0;
    }
    MPI_Finalize();
    return 1;
}
