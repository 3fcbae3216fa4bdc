/* store.h — the block store's blocks, for the files that read them (operators/store.c keeps them; fetch.c serves
 * and fetches their buckets; shuffle.c stores a map task's buckets) (DESIGN section 5). Jobs and the scheduler
 * see only the em__store_* calls in shuffle.h. */
#ifndef EM_OPERATORS_STORE_H
#define EM_OPERATORS_STORE_H

#include "operators/shuffle.h"

struct em__block {
    uint32_t shuffle, map_part, nbuckets;
    int refs;
    em__buf data;    /* in memory: the buckets back to back (or bufs) */
    em__buf *bufs;   /* in memory: [nbuckets] one buffer per bucket, as the map task filled them (no copy) */
    uint64_t *offs;  /* [nbuckets+1] raw bucket boundaries (prefix sums of the sizes, whatever the layout) */
    uint64_t bytes;  /* in memory: bytes held */
    char *path;      /* on disk: the file of compressed buckets */
    uint64_t *zoffs; /* on disk: [nbuckets+1] boundaries of the compressed buckets in the file */
    em__buf *zcache; /* in memory: [nbuckets] compressed buckets made for fetchers that asked for zlib */
    uint8_t *slab;     /* the map task's mapping that bufs started in (em__huge_alloc), or NULL: a buf whose */
    size_t slab_bytes; /*   bytes are inside it is a slice, freed with the slab, not on its own */
    em__block *next; /* hash chain */
};

/* Bucket i of an in-memory block. */
static inline const uint8_t *em__block_bucket(const em__block *b, uint32_t i)
{
    return b->bufs ? b->bufs[i].p : b->data.p + b->offs[i];
}

/* Whether buffer bytes p are a slice of a slab (a mapping of `bytes` at slab, or none), freed with it. Inline: a
 * map task asks it for every record it appends to a bucket. */
static inline int em__in_slab(const uint8_t *slab, size_t bytes, const uint8_t *p)
{
    return slab && p >= slab && p < slab + bytes;
}

/* The block of map output (s, m), referenced (release it with em__block_unref), or NULL. */
em__block *em__store_get(uint32_t s, uint32_t m);
void em__block_unref(em__block *b);
/* Takes the bucket buffers themselves (and the array, and the slab they started in): a map task's output is
 * stored without being copied. */
void em__store_put_buckets(uint32_t shuffle, uint32_t map_part, em__buf *bufs, uint32_t nbuckets, uint8_t *slab,
                           size_t slab_bytes);
/* The compressed form of a bucket of a block on disk, read into out. */
int em__block_read_z(const em__block *b, uint32_t bk, em__buf *out);
/* The zlib form of bucket bk (raw bytes, in memory) of b, made at the first request and kept for the next chunk. */
const em__buf *em__block_zlib(em__block *b, uint32_t bk);

#endif
