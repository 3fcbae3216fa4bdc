/* store.c — the per-rank block store: the output of map tasks (and cached partitions) by (store id, partition),
 * R buckets each, in memory up to a budget and past it spilled to local disk as zlib runs; the results of the
 * current action's result tasks; and the inventory of both that a new leader asks for (DESIGN sections 5 and 6).
 * Buckets reach other ranks through operators/fetch.c.
 */
#include "operators/store.h"

#include "operators/fetch.h"
#include "runtime/log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <zlib.h>
#include <string.h>

/* ---- block store ----
 * Map outputs stay in memory until the store holds --ember-memory / 2 bytes; later outputs are written to local
 * disk, each bucket zlib-compressed on its own (so one bucket can be read or served without the others), and
 * deleted when the store is dropped. Serving a bucket to another rank sends either its raw bytes or its zlib
 * form: the zlib form when the block is on disk (it is already compressed) or when the fetcher asks for it
 * (--ember-compress zlib, or auto between hosts); a compressed in-memory bucket is kept for the next chunk. */

#define STORE_HASH 4096
static struct {
    pthread_mutex_t mu;
    em__block *tab[STORE_HASH];
    em__rt *rt;
    uint64_t mem;    /* bytes of in-memory blocks */
    uint64_t budget; /* beyond it, new blocks go to disk */
    const char *dir;
    uint64_t spilled;
} store = {PTHREAD_MUTEX_INITIALIZER, {0}, NULL, 0, 0, NULL, 0};

static size_t store_slot(uint32_t s, uint32_t m) { return (size_t)(em__hash(&(uint64_t){(uint64_t)s << 32 | m}, 8) % STORE_HASH); }

/* Frees a block's bucket buffers (and their slab). */
static void block_free_bufs(em__block *b)
{
    for (uint32_t i = 0; b->bufs && i < b->nbuckets; i++)
        if (!em__in_slab(b->slab, b->slab_bytes, b->bufs[i].p)) em__buf_release(&b->bufs[i]);
    free(b->bufs);
    b->bufs = NULL;
    em__huge_free(b->slab, b->slab_bytes);
    b->slab = NULL;
}

/* Caller holds store.mu. */
static void block_unref(em__block *b)
{
    if (--b->refs > 0) return;
    store.mem -= b->bytes;
    em__buf_release(&b->data);
    block_free_bufs(b);
    if (b->zcache)
        for (uint32_t i = 0; i < b->nbuckets; i++) em__buf_release(&b->zcache[i]);
    free(b->zcache);
    if (b->path) unlink(b->path);
    free(b->path);
    free(b->zoffs);
    free(b->offs);
    free(b);
}

void em__block_unref(em__block *b)
{
    pthread_mutex_lock(&store.mu);
    block_unref(b);
    pthread_mutex_unlock(&store.mu);
}

/* Caller holds store.mu; returns a referenced block or NULL. */
static em__block *store_get_locked(uint32_t s, uint32_t m)
{
    for (em__block *b = store.tab[store_slot(s, m)]; b; b = b->next)
        if (b->shuffle == s && b->map_part == m) {
            b->refs++;
            return b;
        }
    return NULL;
}

em__block *em__store_get(uint32_t s, uint32_t m)
{
    pthread_mutex_lock(&store.mu);
    em__block *b = store_get_locked(s, m);
    pthread_mutex_unlock(&store.mu);
    return b;
}

static void zlib_bucket(const uint8_t *p, size_t n, em__buf *out)
{
    uLongf zl = compressBound((uLong)n);
    out->len = 0;
    em__buf_grow(out, zl);
    if (compress2(out->p, &zl, p, (uLong)n, 1) != Z_OK) EM_ASSERT(!"compress2 failed");
    out->len = zl;
}

/* Writes the block's buckets compressed to a file and drops them from memory; on failure it stays in memory. */
static void block_to_disk(em__block *b)
{
    static _Atomic unsigned seq;
    char path[4096];
    snprintf(path, sizeof path, "%s/ember-blk-%d-%u.z", store.dir, (int)getpid(), atomic_fetch_add(&seq, 1));
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        EM_LOG_W("cannot spill a shuffle block to %s: %s; keeping it in memory", path, strerror(errno));
        return;
    }
    uint64_t *zoffs = em__malloc(sizeof *zoffs * (b->nbuckets + 1));
    em__buf z;
    em__buf_init(&z);
    int ok = 1;
    zoffs[0] = 0;
    for (uint32_t i = 0; i < b->nbuckets && ok; i++) {
        zlib_bucket(em__block_bucket(b, i), b->offs[i + 1] - b->offs[i], &z);
        ok = write(fd, z.p, z.len) == (ssize_t)z.len;
        zoffs[i + 1] = zoffs[i] + z.len;
    }
    em__buf_release(&z);
    if (close(fd) != 0 || !ok) {
        EM_LOG_W("cannot spill a shuffle block to %s (disk full?); keeping it in memory", path);
        unlink(path);
        free(zoffs);
        return;
    }
    store.spilled += zoffs[b->nbuckets];
    em__task_spilled += zoffs[b->nbuckets];
    b->path = em__strdup(path);
    b->zoffs = zoffs;
    em__buf_release(&b->data);
    block_free_bufs(b);
    b->bytes = 0;
}

static void store_insert(em__block *b)
{
    uint32_t shuffle = b->shuffle, map_part = b->map_part;
    pthread_mutex_lock(&store.mu);
    int spill = store.budget && store.mem + b->bytes > store.budget && !(shuffle & EM__CACHE_ID);
    pthread_mutex_unlock(&store.mu);
    if (spill) block_to_disk(b); /* outside the lock: fetches keep being served meanwhile */
    pthread_mutex_lock(&store.mu);
    store.mem += b->bytes;
    em__block **pp = &store.tab[store_slot(shuffle, map_part)];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->shuffle == shuffle && (*pp)->map_part == map_part) { /* a re-run replaces the old output */
            em__block *old = *pp;
            *pp = old->next;
            block_unref(old);
            break;
        }
    b->next = store.tab[store_slot(shuffle, map_part)];
    store.tab[store_slot(shuffle, map_part)] = b;
    pthread_mutex_unlock(&store.mu);
}

void em__store_put(uint32_t shuffle, uint32_t map_part, em__buf *data, uint64_t *offs, uint32_t nbuckets)
{
    em__block *b = em__calloc(1, sizeof *b);
    *b = (em__block){.shuffle = shuffle, .map_part = map_part, .nbuckets = nbuckets, .refs = 1, .data = *data,
                     .offs = offs, .bytes = data->len};
    em__buf_init(data);
    store_insert(b);
}

void em__store_put_buckets(uint32_t shuffle, uint32_t map_part, em__buf *bufs, uint32_t nbuckets, uint8_t *slab,
                           size_t slab_bytes)
{
    em__block *b = em__calloc(1, sizeof *b);
    *b = (em__block){.shuffle = shuffle, .map_part = map_part, .nbuckets = nbuckets, .refs = 1, .bufs = bufs,
                     .slab = slab, .slab_bytes = slab_bytes};
    b->offs = em__malloc(sizeof(uint64_t) * (nbuckets + 1));
    b->offs[0] = 0;
    for (uint32_t i = 0; i < nbuckets; i++) b->offs[i + 1] = b->offs[i] + bufs[i].len;
    b->bytes = b->offs[nbuckets];
    store_insert(b);
}

int em__store_has(uint32_t shuffle, uint32_t map_part)
{
    em__block *b = em__store_get(shuffle, map_part);
    if (b) em__block_unref(b);
    return b != NULL;
}

int em__block_read_z(const em__block *b, uint32_t bk, em__buf *out)
{
    size_t n = b->zoffs[bk + 1] - b->zoffs[bk];
    out->len = 0;
    em__buf_grow(out, n);
    int fd = open(b->path, O_RDONLY);
    ssize_t r = fd < 0 ? -1 : pread(fd, out->p, n, (off_t)b->zoffs[bk]);
    if (fd >= 0) close(fd);
    if (r != (ssize_t)n) return em__fail(EM_EIO, "cannot read the spilled shuffle block %s", b->path);
    out->len = n;
    return 0;
}

const em__buf *em__block_zlib(em__block *b, uint32_t bk)
{
    pthread_mutex_lock(&store.mu);
    if (!b->zcache) b->zcache = em__calloc(b->nbuckets, sizeof *b->zcache);
    if (!b->zcache[bk].p) zlib_bucket(em__block_bucket(b, bk), b->offs[bk + 1] - b->offs[bk], &b->zcache[bk]);
    pthread_mutex_unlock(&store.mu);
    return &b->zcache[bk];
}

/* ---- results of the current action's result tasks, kept until the next action so that a new leader can
 * collect them instead of running the tasks again (DESIGN section 6) ---- */
static struct {
    pthread_mutex_t mu;
    em__buf recs; /* TASK_DONE payloads: u32 len + bytes each */
    uint32_t action, n;
} kept = {PTHREAD_MUTEX_INITIALIZER, {NULL, 0, 0}, 0, 0};

void em__result_keep(uint32_t action, const void *payload, size_t len)
{
    pthread_mutex_lock(&kept.mu);
    if (action != kept.action) { /* a new action: the old results are of no use any more */
        kept.recs.len = 0;
        kept.n = 0;
        kept.action = action;
    }
    em__buf_bytes(&kept.recs, payload, (uint32_t)len);
    kept.n++;
    pthread_mutex_unlock(&kept.mu);
}

void em__results_drop(void)
{
    pthread_mutex_lock(&kept.mu);
    em__buf_release(&kept.recs);
    kept.n = 0;
    pthread_mutex_unlock(&kept.mu);
}

/* INVENTORY: u32 kind (0 request, 1 answer), u64 id; an answer adds u32 n, n x {u32 store id, u32 part}: every
 * block this rank holds; then u32 action, u32 k, k x {u32 len, TASK_DONE payload}: the results of result tasks
 * of that action it finished. Served on the progress thread; answers go to the driver's mailbox. */
static void on_inventory(em__rt *rt, em__msg *m, void *arg)
{
    (void)arg;
    uint32_t kind = 1;
    uint64_t id = 0;
    if (m->len >= 12) {
        memcpy(&kind, m->payload, 4);
        memcpy(&id, m->payload + 4, 8);
    }
    if (kind != 0) {
        em__mbox_put(&rt->driver_mb, m);
        return;
    }
    int src = m->hdr->src;
    em__msg_free(m);
    em__buf b;
    em__buf_init(&b);
    em__buf_u32(&b, 1);
    em__buf_u64(&b, id);
    em__buf_u32(&b, 0);
    uint32_t n = 0;
    pthread_mutex_lock(&store.mu);
    for (size_t i = 0; i < STORE_HASH; i++)
        for (em__block *bl = store.tab[i]; bl; bl = bl->next, n++) {
            em__buf_u32(&b, bl->shuffle);
            em__buf_u32(&b, bl->map_part);
        }
    pthread_mutex_unlock(&store.mu);
    memcpy(b.p + 12, &n, 4);
    pthread_mutex_lock(&kept.mu);
    em__buf_u32(&b, kept.action);
    em__buf_u32(&b, kept.n);
    em__buf_add(&b, kept.recs.p, kept.recs.len);
    pthread_mutex_unlock(&kept.mu);
    em__msg *r = em__msg_new(EM__MSG_INVENTORY, b.len);
    memcpy(r->payload, b.p, b.len);
    em__buf_release(&b);
    em__send(rt, src, r);
}

void em__store_init(em__rt *rt)
{
    em__rt_on(rt, EM__MSG_INVENTORY, on_inventory, NULL);
    store.rt = rt;
    store.budget = (uint64_t)rt->cfg.memory / 2;
    const char *d = rt->cfg.tmpdir && *rt->cfg.tmpdir ? rt->cfg.tmpdir : getenv("TMPDIR");
    store.dir = d && *d ? d : "/tmp";
    em__rt_on(rt, EM__MSG_FETCH_REQ, em__fetch_serve, NULL);
}

void em__store_drop_all(void)
{
    pthread_mutex_lock(&store.mu);
    for (size_t i = 0; i < STORE_HASH; i++)
        while (store.tab[i]) {
            em__block *b = store.tab[i];
            store.tab[i] = b->next;
            block_unref(b);
        }
    pthread_mutex_unlock(&store.mu);
}

uint64_t em__store_spilled(void) { return store.spilled; }

