/* sorter.h — sorts records by key within a memory budget: records collect in memory; past the budget they are
 * sorted and written to a zlib-compressed run file on local disk; reading merges the runs and what is still in
 * memory (DESIGN section 5). Used by sortByKey, groupByKey, cogroup/join and the reduce side of reduceByKey
 * when its table outgrows the budget. One sorter belongs to one task (one thread). */
#ifndef EM_OPERATORS_SORTER_H
#define EM_OPERATORS_SORTER_H

#include "runtime/buf.h"
#include "ember.h"

typedef struct em__run em__run;

typedef struct em__sorter {
    em__buf mem;        /* records, em__rec_append format */
    uint64_t (*ix)[3];  /* [n] {key bytes 0-7, key bytes 8-15 (big-endian, zero-padded), offset in mem with
                           min(key length, 17) in the top 8 bits} */
    size_t n, cap;
    size_t budget;      /* bytes of mem + ix before a spill */
    int desc;
    char *dir;          /* where runs go */
    em__run **runs;
    int nruns;
    uint64_t spilled;   /* bytes written to runs (compressed) */
    /* reading */
    size_t mpos;        /* next in-memory record */
    int last;           /* source of the record returned last: -1 memory, >= 0 a run, -2 none */
    int reading;
} em__sorter;

/* tmpdir: --ember-tmpdir, or NULL/"" for $TMPDIR or /tmp. */
void em__sorter_init(em__sorter *s, size_t budget, const char *tmpdir, int desc);
/* Adds a copy of r. Returns 0 or EM_EIO (cannot write a run: the message names the file). */
int em__sorter_add(em__sorter *s, const em_rec *r);
/* Ends adding; the records come out of em__sorter_next in key order (ascending unless desc). */
int em__sorter_finish(em__sorter *s);
/* 1 and the next record (valid until the next call), 0 at the end, or EM_EIO. */
int em__sorter_next(em__sorter *s, em_rec *r);
/* Frees memory and deletes the run files. */
void em__sorter_release(em__sorter *s);

/* memcmp order of keys, shorter first on a tie. */
static inline int em__key_cmp(const void *a, uint32_t al, const void *b, uint32_t bl)
{
    uint32_t n = al < bl ? al : bl;
    int c = n ? memcmp(a, b, n) : 0; /* an empty key may be a NULL pointer */
    return c ? c : (al > bl) - (al < bl);
}

#endif
