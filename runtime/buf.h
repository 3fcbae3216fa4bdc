/* buf.h — growable byte buffer and the little-endian packing used by every message payload. */
#ifndef EM_RUNTIME_BUF_H
#define EM_RUNTIME_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct em__buf {
    uint8_t *p;
    size_t len;
    size_t cap;
} em__buf;

void em__buf_init(em__buf *b);
void em__buf_release(em__buf *b);
void em__buf_grow(em__buf *b, size_t extra); /* ensures cap >= len + extra (OOM exits) */
static inline void em__buf_add(em__buf *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) em__buf_grow(b, n);
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
}
static inline void em__buf_u32(em__buf *b, uint32_t v) { em__buf_add(b, &v, 4); }
static inline void em__buf_u64(em__buf *b, uint64_t v) { em__buf_add(b, &v, 8); }
static inline void em__buf_i64(em__buf *b, int64_t v) { em__buf_add(b, &v, 8); }
/* u32 length then the bytes */
static inline void em__buf_bytes(em__buf *b, const void *p, uint32_t n)
{
    em__buf_u32(b, n);
    em__buf_add(b, p, n);
}

/* Big memory as its own mapping, aligned to 2 MiB and advised to transparent huge pages: zero already (no memset
 * pass), and first touched 2 MiB at a time. On these VMs a fresh 4 KiB page costs tens of microseconds, a huge
 * page little more than its zeroing. From 1 MiB up the size is rounded up to whole huge pages. em__huge_free
 * takes the size given to em__huge_alloc. OOM exits. */
void *em__huge_alloc(size_t bytes);
void em__huge_free(void *p, size_t bytes);

/* Reader over a payload; any overrun sets err and returns zeros, so callers check err once at the end. */
typedef struct em__rd {
    const uint8_t *p;
    const uint8_t *end;
    int err;
} em__rd;

static inline void em__rd_init(em__rd *r, const void *p, size_t n)
{
    r->p = p;
    r->end = r->p + n;
    r->err = 0;
}
static inline const void *em__rd_take(em__rd *r, size_t n)
{
    if ((size_t)(r->end - r->p) < n) {
        r->err = 1;
        r->p = r->end;
        return NULL;
    }
    const void *q = r->p;
    r->p += n;
    return q;
}
static inline uint32_t em__rd_u32(em__rd *r)
{
    uint32_t v = 0;
    const void *q = em__rd_take(r, 4);
    if (q) memcpy(&v, q, 4);
    return v;
}
static inline uint64_t em__rd_u64(em__rd *r)
{
    uint64_t v = 0;
    const void *q = em__rd_take(r, 8);
    if (q) memcpy(&v, q, 8);
    return v;
}
static inline int64_t em__rd_i64(em__rd *r) { return (int64_t)em__rd_u64(r); }
static inline const void *em__rd_bytes(em__rd *r, uint32_t *n)
{
    *n = em__rd_u32(r);
    return em__rd_take(r, *n);
}

#endif
