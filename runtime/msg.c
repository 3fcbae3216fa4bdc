/* msg.c — messages of the runtime protocol: allocation and names (runtime/comm.h). No MPI here, so the runtime's
 * unit tests link it with their fake transport (tests/unit/fakecomm.c) instead of comm.c. */
#include "runtime/comm.h"
#include "runtime/buf.h"
#include "runtime/log.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static const char *msg_names[] = {
#define EM__MSG_NAME(name) #name,
    EM__MSG_TYPES(EM__MSG_NAME)
#undef EM__MSG_NAME
};

const char *em__msg_name(int type) { return type >= 0 && type < EM__MSG_NTYPES ? msg_names[type] : "UNKNOWN"; }

/* Big messages (shuffle chunks, results) come from a small pool of recycled buffers: on these VMs the first touch of
 * fresh pages (a new malloc of megabytes is a new mapping) can cost more than moving the bytes. With the in-place read
 * of whole buckets (shuffle.c) it took word count's 1 GB reduce stage from 0.9 s to 0.3 s. At most POOL_N buffers for
 * POOL_MIN..POOL_MAX bytes are kept, POOL_BYTES in all: a reduce task has up to 4 fetches in flight, and its rank
 * serves as many to others at the same time, each a buffer on each side. Those shuffle chunks (FETCH_RESP) are whole
 * huge pages (em__huge_alloc): a new one costs one fault and its zeroing, not one fault per 4 KiB (0.75 MB of fresh
 * 4 KiB pages took the progress thread 2 to 7 ms to fill, while the reduce task waited for them). */
#define POOL_MIN ((size_t)256 << 10)
#define POOL_MAX (((size_t)4 << 20) + ((size_t)64 << 10))
#define POOL_N 8
#define POOL_BYTES ((size_t)16 << 20) /* and at most this much memory */
#define HUGE ((size_t)2 << 20)
static struct {
    pthread_mutex_t mu;
    em__msg *free[POOL_N];
    int n;
    size_t bytes;
} pool = {PTHREAD_MUTEX_INITIALIZER, {NULL}, 0, 0};

static em__msg *pool_take(size_t bytes)
{
    em__msg *m = NULL;
    pthread_mutex_lock(&pool.mu);
    int best = -1;
    for (int i = 0; i < pool.n; i++)
        if (pool.free[i]->cap >= bytes && (best < 0 || pool.free[i]->cap < pool.free[best]->cap)) best = i;
    if (best >= 0) {
        m = pool.free[best];
        pool.free[best] = pool.free[--pool.n];
        pool.bytes -= m->cap;
    }
    pthread_mutex_unlock(&pool.mu);
    return m;
}

em__msg *em__msg_new(int type, size_t len)
{
    size_t bytes = sizeof(em__msg) + sizeof(em__msghdr) + len;
    em__msg *m = NULL;
    const int poolable = bytes >= POOL_MIN && bytes <= POOL_MAX;
    if (poolable) m = pool_take(bytes);
    if (m) {
        /* a recycled buffer */
    } else if (poolable && type == EM__MSG_FETCH_RESP) { /* shuffle chunks, sent and received */
        size_t cap = (bytes + HUGE - 1) & ~(HUGE - 1);
        m = em__huge_alloc(cap);
        m->cap = cap;
        m->huge = 1;
    } else {
        /* Other big messages (results, streaming partials) come and go in numbers the pool cannot hold: malloc
         * reuses its memory (munmap would not), and a huge page each would be zeroed for a few hundred KB (it made
         * windowcount 10% slower). Sizes of one kind round up alike, so a freed buffer fits the next one. */
        size_t cap = bytes >= POOL_MIN ? (bytes + ((size_t)64 << 10) - 1) & ~(((size_t)64 << 10) - 1) : bytes;
        m = em__malloc(cap);
        m->cap = cap;
        m->huge = 0;
    }
    size_t cap = m->cap;
    int huge = m->huge;
    memset(m, 0, sizeof *m + sizeof(em__msghdr));
    m->cap = cap;
    m->huge = huge;
    m->hdr = (em__msghdr *)m->data;
    m->payload = m->data + sizeof(em__msghdr);
    m->len = len;
    m->hdr->version = EM__PROTO_VERSION;
    m->hdr->type = (uint8_t)type;
    return m;
}

void em__msg_free(em__msg *m)
{
    if (m && m->cap >= POOL_MIN && m->cap <= POOL_MAX + HUGE) { /* kept if the pool has room */
        pthread_mutex_lock(&pool.mu);
        if (pool.n < POOL_N && pool.bytes + m->cap <= POOL_BYTES) {
            pool.bytes += m->cap;
            pool.free[pool.n++] = m;
            m = NULL;
        }
        pthread_mutex_unlock(&pool.mu);
    }
    if (m && m->huge) em__huge_free(m, m->cap);
    else free(m);
}
