/* fetch.c — moving buckets of the block store between ranks (DESIGN section 5): the owner serves FETCH_REQ from
 * its progress thread (so serving never waits for its executor), in chunks of up to 4 MiB (less 4 KiB), raw or
 * zlib; a reduce task pulls the buckets it needs with a bounded number of requests in flight, or reads them
 * straight from the store when they are its own. If an owner is fenced, the fetch fails with EM__FETCH_FAILED
 * naming the lost output, and the driver re-runs that map task from lineage.
 */
#include "operators/fetch.h"

#include "operators/store.h"
#include "runtime/log.h"

#include <stdlib.h>
#include <zlib.h>
#include <string.h>

_Thread_local em__fetch_fail em__last_fetch_fail;
void (*em__fetch_hook)(void);

static int unzlib(const uint8_t *z, size_t zn, size_t raw, em__buf *out)
{
    size_t at = out->len;
    em__buf_grow(out, raw);
    uLongf dl = (uLongf)raw;
    if (raw && (uncompress(out->p + at, &dl, z, (uLong)zn) != Z_OK || dl != raw))
        return em__fail(EM_ECOMM, "a compressed shuffle bucket is damaged");
    out->len = at + raw;
    return 0;
}

/* ---- serving a bucket: the owner's side, on its progress thread ---- */

/* FETCH_REQ: u64 id, u32 shuffle, u32 map_part, u32 bucket, u64 offset, u32 flags (1: zlib welcome)
 * FETCH_RESP: u64 id, i32 status (0, or -1 = no such output), u64 size of what is sent (raw or zlib bytes),
 *             u32 encoding (0 raw, 1 zlib), u64 raw size, then the chunk bytes [offset, offset + chunk) */
#define FETCH_CHUNK (((size_t)4 << 20) - 4096) /* with the headers, a message of exactly 2 huge pages (msg.c) */
#define RESP_HDR 32

void em__fetch_serve(em__rt *rt, em__msg *m, void *arg)
{
    (void)arg;
    em__rd r;
    em__rd_init(&r, m->payload, m->len);
    uint64_t id = em__rd_u64(&r);
    uint32_t s = em__rd_u32(&r), mp = em__rd_u32(&r), bk = em__rd_u32(&r);
    uint64_t off = em__rd_u64(&r);
    uint32_t flags = em__rd_u32(&r);
    int src = m->hdr->src;
    em__msg_free(m);
    if (r.err) return;
    em__block *b = em__store_get(s, mp);
    int32_t status = b && bk < b->nbuckets ? 0 : -1;
    uint64_t raw = status ? 0 : b->offs[bk + 1] - b->offs[bk];
    uint32_t enc = 0;
    const uint8_t *src_bytes = NULL;
    uint64_t size = raw;
    em__buf disk;
    em__buf_init(&disk);
    if (status == 0 && b->path) {
        if (em__block_read_z(b, bk, &disk) < 0) status = -1;
        enc = 1;
        src_bytes = disk.p;
        size = disk.len;
    } else if (status == 0 && (flags & 1) && raw > 0) {
        const em__buf *z = em__block_zlib(b, bk);
        enc = 1;
        src_bytes = z->p;
        size = z->len;
    } else if (status == 0) {
        src_bytes = em__block_bucket(b, bk);
    }
    size_t n = status || off >= size ? 0 : (size - off < FETCH_CHUNK ? size - off : FETCH_CHUNK);
    em__msg *resp = em__msg_new(EM__MSG_FETCH_RESP, RESP_HDR + n);
    memcpy(resp->payload, &id, 8);
    memcpy(resp->payload + 8, &status, 4);
    memcpy(resp->payload + 12, &size, 8);
    memcpy(resp->payload + 20, &enc, 4);
    memcpy(resp->payload + 24, &raw, 8);
    if (n) memcpy(resp->payload + RESP_HDR, src_bytes + off, n);
    em__buf_release(&disk);
    if (b) em__block_unref(b);
    em__send(rt, src, resp);
}

/* ---- fetching one bucket of one map output ---- */

int em__fetch_failed(uint32_t s, uint32_t m, int rank)
{
    em__last_fetch_fail = (em__fetch_fail){s, m, rank};
    em__fail(EM__FETCH_FAILED, "fetch of %s %u output %u from r%d failed: the rank is gone",
             s & EM__CACHE_ID ? "cached dataset" : "shuffle", s & ~EM__CACHE_ID, m, rank);
    return EM__FETCH_FAILED;
}

static _Atomic uint64_t fetch_ids;

/* Fetches bucket `bucket` of the map outputs maps[0..n) of store id s from their owners, with up to
 * FETCH_INFLIGHT requests outstanding (DESIGN section 5: a bounded number in flight), calling done() with each
 * whole bucket (decompressed) as it completes, in completion order. */
#define FETCH_INFLIGHT 4

typedef struct fetch_one {
    uint32_t m;
    int owner;
    uint64_t id, off, size, raw;
    uint32_t enc;
    em__buf got;
    int got_huge; /* got is a huge-page mapping (got_room) */
    int active;
} fetch_one;

/* Room for n bytes in all in f->got, its contents kept. From 2 MiB up it is a mapping of huge pages: a bucket that
 * comes in many chunks is copied into fresh memory, which costs one fault per 4 KiB page otherwise (about 3 ms per
 * MB in these VMs, against 1 for huge pages; the shuffle benchmark went from 0.25-0.29 to 0.38-0.48 GB/s). Kept for
 * the next bucket of this slot. */
static void got_room(fetch_one *f, size_t n)
{
    if (n <= f->got.cap) return;
    em__buf old = f->got;
    int old_huge = f->got_huge;
    if (n < ((size_t)2 << 20)) {
        em__buf_init(&f->got);
        em__buf_grow(&f->got, n);
        f->got_huge = 0;
    } else {
        n = (n + ((size_t)2 << 20) - 1) & ~(((size_t)2 << 20) - 1);
        f->got = (em__buf){em__huge_alloc(n), 0, n};
        f->got_huge = 1;
    }
    em__buf_add(&f->got, old.p, old.len);
    if (old_huge) em__huge_free(old.p, old.cap);
    else em__buf_release(&old);
}

static void fetch_send(em__rt *rt, fetch_one *f, uint32_t s, uint32_t bucket, uint32_t flags)
{
    f->id = atomic_fetch_add(&fetch_ids, 1) + ((uint64_t)rt->rank << 48);
    em__msg *req = em__msg_new(EM__MSG_FETCH_REQ, 32);
    memcpy(req->payload, &f->id, 8);
    memcpy(req->payload + 8, &s, 4);
    memcpy(req->payload + 12, &f->m, 4);
    memcpy(req->payload + 16, &bucket, 4);
    memcpy(req->payload + 20, &f->off, 8);
    memcpy(req->payload + 28, &flags, 4);
    em__send(rt, f->owner, req);
}

int em__fetch_many(em_ctx *ctx, uint32_t s, uint32_t bucket, const uint32_t *maps, const int32_t *owners, size_t n,
                   int (*meanwhile)(void *arg), em__fetched_fn done, void *arg)
{
    em__rt *rt = &ctx->rt;
    const char *cm = rt->cfg.compress;
    fetch_one f[FETCH_INFLIGHT];
    memset(f, 0, sizeof f);
    em__buf plain;
    em__buf_init(&plain);
    size_t next = 0;
    int nact = 0, rc = 0;
    double t0 = em__now_s(), busy = 0;
    for (;;) {
        for (int i = 0; i < FETCH_INFLIGHT && next < n; i++) { /* start more */
            if (f[i].active) continue;
            if (em__fetch_hook) em__fetch_hook();
            f[i].m = maps[next];
            f[i].owner = owners[next++];
            f[i].off = f[i].size = f[i].raw = 0;
            f[i].got.len = 0;
            f[i].active = 1;
            nact++;
            uint32_t flags = strcmp(cm, "zlib") == 0 || (strcmp(cm, "auto") == 0 && rt->same_host && !rt->same_host[f[i].owner]);
            fetch_send(rt, &f[i], s, bucket, flags);
        }
        if (meanwhile) {
            double tm = em__now_s();
            rc = meanwhile(arg);
            meanwhile = NULL;
            busy = em__now_s() - tm;
            if (rc < 0) goto out;
        }
        if (!nact) break;
        for (int i = 0; i < FETCH_INFLIGHT; i++)
            if (f[i].active && !em__rt_is_alive(rt, f[i].owner)) {
                rc = em__fetch_failed(s, f[i].m, f[i].owner);
                goto out;
            }
        em__msg *resp = em__mbox_get(&rt->fetch_mb, 200);
        if (!resp) continue;
        uint64_t rid = 0;
        if (resp->hdr->type == EM__MSG_FETCH_RESP && resp->len >= RESP_HDR) memcpy(&rid, resp->payload, 8);
        fetch_one *fo = NULL;
        for (int i = 0; i < FETCH_INFLIGHT; i++)
            if (f[i].active && f[i].id == rid && resp->hdr->type == EM__MSG_FETCH_RESP) fo = &f[i];
        if (!fo) { /* a wake-up or a stale answer */
            em__msg_free(resp);
            continue;
        }
        int32_t st;
        memcpy(&st, resp->payload + 8, 4);
        memcpy(&fo->size, resp->payload + 12, 8);
        memcpy(&fo->enc, resp->payload + 20, 4);
        memcpy(&fo->raw, resp->payload + 24, 8);
        if (st != 0) {
            em__msg_free(resp);
            rc = em__fetch_failed(s, fo->m, fo->owner); /* the owner lost it (e.g. restarted) */
            goto out;
        }
        if (fo->off == 0 && resp->len - RESP_HDR == fo->size) { /* the whole bucket in one answer: no copy */
            fo->active = 0;
            nact--;
            const uint8_t *p = resp->payload + RESP_HDR;
            size_t len = fo->size;
            if (fo->enc) {
                plain.len = 0;
                rc = unzlib(p, len, fo->raw, &plain);
                p = plain.p;
                len = plain.len;
            }
            if (rc == 0) rc = done(fo->m, p, len, arg);
            em__msg_free(resp);
            if (rc < 0) goto out;
            continue;
        }
        const size_t want = fo->got.len + (resp->len - RESP_HDR);
        got_room(fo, want > fo->size ? want : fo->size); /* the whole bucket; em__buf_add must not grow a mapping */
        em__buf_add(&fo->got, resp->payload + RESP_HDR, resp->len - RESP_HDR);
        fo->off += resp->len - RESP_HDR;
        em__msg_free(resp);
        if (fo->off < fo->size) {
            fetch_send(rt, fo, s, bucket, fo->enc);
            continue;
        }
        fo->active = 0;
        nact--;
        em__buf *whole = &fo->got;
        if (fo->enc) {
            plain.len = 0;
            if ((rc = unzlib(fo->got.p, fo->got.len, fo->raw, &plain)) < 0) goto out;
            whole = &plain;
        }
        if ((rc = done(fo->m, whole->p, whole->len, arg)) < 0) goto out;
    }
out:
    for (int i = 0; i < FETCH_INFLIGHT; i++) {
        if (f[i].got_huge) em__huge_free(f[i].got.p, f[i].got.cap);
        else em__buf_release(&f[i].got);
    }
    em__buf_release(&plain);
    em__task_fetch_wait += em__now_s() - t0 - busy;
    return rc;
}

typedef struct copy_arg {
    em__buf *out;
} copy_arg;

static int copy_out(uint32_t m, const uint8_t *p, size_t n, void *arg)
{
    (void)m;
    em__buf_add(((copy_arg *)arg)->out, p, n);
    return 0;
}

static int fetch_remote(em_ctx *ctx, int owner, uint32_t s, uint32_t m, uint32_t bucket, em__buf *out)
{
    copy_arg ca = {out};
    int32_t o = owner;
    return em__fetch_many(ctx, s, bucket, &m, &o, 1, NULL, copy_out, &ca);
}

int em__fetch_bucket(em_ctx *ctx, uint32_t s, uint32_t m, int owner, uint32_t bucket, int side, em__buf *scratch,
                     em__bucket_fn fn, void *arg)
{
    int rc;
    scratch->len = 0;
    if (owner == ctx->rt.rank) {
        em__block *b = em__store_get(s, m);
        if (!b || bucket >= b->nbuckets) {
            if (b) em__block_unref(b);
            return em__fetch_failed(s, m, owner);
        }
        if (b->path) { /* spilled: read and inflate the one bucket */
            em__buf z;
            em__buf_init(&z);
            rc = em__block_read_z(b, bucket, &z);
            if (rc == 0) rc = unzlib(z.p, z.len, b->offs[bucket + 1] - b->offs[bucket], scratch);
            em__buf_release(&z);
            if (rc == 0) rc = fn(scratch->p, scratch->len, side, arg);
        } else {
            rc = fn(em__block_bucket(b, bucket), b->offs[bucket + 1] - b->offs[bucket], side, arg);
        }
        em__block_unref(b);
        return rc;
    }
    if (owner < 0) return em__fetch_failed(s, m, owner);
    if ((rc = fetch_remote(ctx, owner, s, m, bucket, scratch)) < 0) return rc;
    return fn(scratch->p, scratch->len, side, arg);
}

