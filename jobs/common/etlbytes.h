/*
 * etlbytes.h — a growable byte buffer for the ETL job's copies (jobs/etl.c): a field unescaped out of a record, a
 * block of the broadcast right side, a value being assembled. Reused across records, so no per-record malloc once
 * warm. LOCAL and pure; the owner frees p.
 *
 * etl_bytes_add is defined here, static inline, because it runs on the hot paths of several files (per row of a
 * broadcast block, per byte of a field holding NUL bytes): it stays as inlinable as when it was one file's static.
 */
#ifndef EM_JOBS_COMMON_ETLBYTES_H
#define EM_JOBS_COMMON_ETLBYTES_H

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct etl_bytes {
    uint8_t *p;
    size_t len, cap;
} etl_bytes;

/* Appends p[0, n) to b (growing it by doubling). Returns 0, or -1 when out of memory (b unchanged). */
static inline int etl_bytes_add(etl_bytes *b, const void *p, size_t n)
{
    if (b->len + n > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->len + n) c *= 2;
        uint8_t *q = realloc(b->p, c);
        if (!q) return -1;
        b->p = q;
        b->cap = c;
    }
    if (n) memcpy(b->p + b->len, p, n);
    b->len += n;
    return 0;
}

#endif
