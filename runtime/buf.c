/* buf.c — growable byte buffer (payload packing, result accumulation). */
#include "runtime/buf.h"

#include "runtime/log.h"

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

void em__buf_init(em__buf *b) { memset(b, 0, sizeof *b); }

void em__buf_release(em__buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}

void em__buf_grow(em__buf *b, size_t extra)
{
    size_t need = b->len + extra;
    if (need <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) cap *= 2;
    b->p = em__realloc(b->p, cap);
    b->cap = cap;
}

#define HUGE_PAGE ((size_t)2 << 20)

/* The size actually mapped: from 1 MiB up, whole huge pages (a partial one at the end would be 4 KiB pages). */
static size_t huge_round(size_t bytes)
{
    return bytes < HUGE_PAGE / 2 ? bytes : (bytes + HUGE_PAGE - 1) & ~(HUGE_PAGE - 1);
}

void *em__huge_alloc(size_t bytes)
{
    bytes = huge_round(bytes);
    if (bytes < HUGE_PAGE) { /* no huge page fits: just a mapping */
        void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) em__oom(bytes);
        return p;
    }
    uint8_t *m = mmap(NULL, bytes + HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) em__oom(bytes);
    size_t lead = (HUGE_PAGE - (uintptr_t)m % HUGE_PAGE) % HUGE_PAGE;
    if (lead) munmap(m, lead);
    munmap(m + lead + bytes, HUGE_PAGE - lead);
    madvise(m + lead, bytes, MADV_HUGEPAGE);
    return m + lead;
}

void em__huge_free(void *p, size_t bytes)
{
    if (p) munmap(p, huge_round(bytes));
}
