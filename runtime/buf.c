/* buf.c — growable byte buffer (payload packing, result accumulation). */
#include "runtime/buf.h"

#include "runtime/log.h"

#include <stdlib.h>

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
