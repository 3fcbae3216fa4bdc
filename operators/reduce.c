/* reduce.c — reduceByKey and its built-in aggregator form: a wide node whose parent is the map side of a shuffle
 * (DESIGN section 4). The work happens in shuffle.c: map-side combine, then a combine of the fetched buckets. */
#include "operators/dataset.h"
#include "runtime/log.h"

static em_ds *reduce_node(em_ds *parent, em_combine_fn fn, void *arg, int agg, int nparts)
{
    em__node *p = (em__node *)parent;
    EM_ASSERT(p);
    if (nparts <= 0) nparts = em_default_partitions(p->ctx);
    em__node *n = em__node_add(p->ctx, EM__K_REDUCE, p, nparts);
    n->combine = fn;
    n->arg = arg;
    n->agg = agg;
    return (em_ds *)n;
}

em_ds *em_reduce_by_key(em_ds *parent, em_combine_fn fn, void *arg, int nparts)
{
    EM_ASSERT(fn);
    return reduce_node(parent, fn, arg, -1, nparts);
}

em_ds *em_reduce_by_key_agg(em_ds *parent, em_agg agg, int nparts)
{
    EM_ASSERT(agg >= EM_AGG_COUNT && agg <= EM_AGG_MEAN_F64);
    return reduce_node(parent, NULL, NULL, (int)agg, nparts);
}
