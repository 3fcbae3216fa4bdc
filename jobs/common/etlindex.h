/*
 * etlindex.h — the lookup side of the ETL job's broadcast join (jobs/etl.c): a read-only index from join keys to
 * small integer targets (a right-side row, or a group id), built once on every rank from the collected small side.
 * LOCAL and pure: no engine state, unit-tested in tests/unit/test_etlindex.c.
 *
 * Keys are the typed key tuples etl.c builds (em_tup bytes: "7" and "007" are the same int64 key), compared as
 * bytes. When every key is one int64 and they span a compact range (surrogate ids 1..N, the usual dimension
 * table), the index is a plain array indexed by key - lo: one cache line per probe, no hashing. Otherwise an open
 * addressing hash table over copies of the key bytes.
 *
 * A key may have several targets (duplicate keys on the small side): find() returns all of them, in build order.
 */
#ifndef EM_JOBS_COMMON_ETLINDEX_H
#define EM_JOBS_COMMON_ETLINDEX_H

#include <stddef.h>
#include <stdint.h>

typedef struct etl_index {
    int dense;          /* 1: ent[key - lo] for int64 keys in [lo, lo + span) */
    int64_t lo;
    uint64_t span;
    int32_t *ent;       /* per dense key, or per unique key (hash mode): -1 none, >= 0 the one target,
                           <= -2 targets at multi[-2 - ent]: a count, then the targets */
    int32_t *multi;
    uint8_t *ent8;      /* dense, one target per key, every target < 255: ent as bytes (0xFF none), 4x smaller so
                           that more of it stays in cache (the probes of a big join are random) */
    /* hash mode */
    uint64_t *slot;     /* [mask + 1]: 0 empty, else hash (high 32 bits) << 32 | (unique key + 1) */
    uint64_t mask;
    uint8_t *kbytes;    /* unique keys back to back */
    uint64_t *koff;     /* [nkeys + 1] offsets into kbytes */
    size_t nkeys;
} etl_index;

/* The hash of a key's bytes (64 bits, well mixed: index and group tables take their low bits). LOCAL. */
uint64_t etl_hash(const uint8_t *p, size_t n);

/* Builds the index of keys[i] (klen[i] bytes) -> target[i] for i < n. Returns 0 or -1 (out of memory, or more
 * than 2^31 entries). LOCAL. */
int etl_index_build(etl_index *ix, const uint8_t *const *keys, const uint32_t *klen, const int32_t *target, size_t n);

/* The targets of a key: returns how many (0 if absent) and points *t at them (valid while the index lives, or
 * until the next call when there is one: it may be *one). */
int etl_index_find(const etl_index *ix, const uint8_t *key, uint32_t klen, int32_t *one, const int32_t **t);
/* The same for the key em_tup_i64(k) without building it. */
int etl_index_find_i64(const etl_index *ix, int64_t k, int32_t *one, const int32_t **t);

void etl_index_release(etl_index *ix);

#endif
