/* parallelize.c — em_parallelize: records from the driver's memory, copied into the lineage node on every rank
 * and cut into contiguous partitions. */
#include "operators/dataset.h"
#include "operators/shuffle.h"
#include "runtime/log.h"

#include <stdlib.h>

em_ds *em_parallelize(em_ctx *ctx, const em_rec *recs, size_t n, int nparts)
{
    if (nparts <= 0) nparts = em_default_partitions(ctx);
    em__node *node = em__node_add(ctx, EM__K_PARALLELIZE, NULL, nparts);
    node->offs = em__malloc(sizeof(uint64_t) * ((size_t)nparts + 1));
    for (int p = 0; p < nparts; p++) {
        node->offs[p] = node->data.len;
        for (size_t i = n * (size_t)p / (size_t)nparts; i < n * ((size_t)p + 1) / (size_t)nparts; i++)
            em__rec_append(&node->data, recs[i].key, recs[i].klen, recs[i].val, recs[i].vlen);
    }
    node->offs[nparts] = node->data.len;
    return (em_ds *)node;
}

int em__parallelize_compute(const em__node *n, int part, em_emitter *sink)
{
    size_t pos = n->offs[part];
    em_rec r;
    int rc;
    while (pos < n->offs[part + 1] && em__rec_next(n->data.p, n->offs[part + 1], &pos, &r) > 0)
        if ((rc = sink->push(sink, &r)) < 0) return rc;
    return 0;
}
