/* fetch.h — reading buckets of the block store from wherever they are, and serving them to other ranks
 * (operators/fetch.c, DESIGN section 5). Used by the reduce side and em_cache in shuffle.c, and by store.c, which
 * registers the server. */
#ifndef EM_OPERATORS_FETCH_H
#define EM_OPERATORS_FETCH_H

#include "operators/shuffle.h"

/* The FETCH_REQ handler, run on the progress thread: answers with one chunk of the bucket asked for. */
void em__fetch_serve(em__rt *rt, em__msg *m, void *arg);

/* Notes that map output m of store id s is lost with rank `rank` (em__last_fetch_fail, the error message) and
 * returns EM__FETCH_FAILED. */
int em__fetch_failed(uint32_t s, uint32_t m, int rank);

/* Fetches bucket `bucket` of map outputs maps[0..n) of store id s from their owners (other ranks), calling done
 * with each whole bucket (decompressed) in completion order. `meanwhile` (may be NULL) is called once, after the
 * first requests are sent and before any answer is read, with `arg`: the caller's local work then overlaps the
 * transfers (time in it is not counted as fetch wait). LOCAL to the executor thread, which it blocks;
 * EM__FETCH_FAILED when an owner is gone or lost the output, else the first negative return of meanwhile or done. */
typedef int (*em__fetched_fn)(uint32_t m, const uint8_t *p, size_t n, void *arg);
int em__fetch_many(em_ctx *ctx, uint32_t s, uint32_t bucket, const uint32_t *maps, const int32_t *owners, size_t n,
                   int (*meanwhile)(void *arg), em__fetched_fn done, void *arg);

/* Calls fn(bytes, side) with bucket `bucket` of map output m of store id s held by `owner` (locally straight from
 * the store, else fetched into scratch). */
typedef int (*em__bucket_fn)(const uint8_t *p, size_t n, int side, void *arg);
int em__fetch_bucket(em_ctx *ctx, uint32_t s, uint32_t m, int owner, uint32_t bucket, int side, em__buf *scratch,
                     em__bucket_fn fn, void *arg);

#endif
