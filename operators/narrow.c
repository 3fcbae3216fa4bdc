/* narrow.c — the narrow operators beyond map and filter: mapPartitions, union, sample, and the foreach sink
 * node. All pipelined inside one task (DESIGN section 4). */
#include "operators/dataset.h"
#include "runtime/log.h"

#include <stdlib.h>
#include <string.h>

static em__node *narrow_node(em_ds *parent, em__kind kind)
{
    em__node *p = (em__node *)parent;
    EM_ASSERT(p);
    return em__node_add(p->ctx, kind, p, p->nparts);
}

em_ds *em_map_partitions(em_ds *parent, em_part_open_fn open, em_part_each_fn each, em_part_close_fn close,
                         void *arg)
{
    EM_ASSERT(each);
    em__node *n = narrow_node(parent, EM__K_MAPPART);
    n->popen = open;
    n->peach = each;
    n->pclose = close;
    n->arg = arg;
    return (em_ds *)n;
}

em_ds *em_union(em_ds *a, em_ds *b)
{
    em__node *pa = (em__node *)a, *pb = (em__node *)b;
    EM_ASSERT(pa && pb && pa->ctx == pb->ctx);
    em__node *n = em__node_add(pa->ctx, EM__K_UNION, pa, pa->nparts + pb->nparts);
    n->parent2 = pb;
    return (em_ds *)n;
}

em_ds *em_sample(em_ds *parent, double fraction, uint64_t seed)
{
    em__node *n = narrow_node(parent, EM__K_SAMPLE);
    n->fraction = fraction < 0 ? 0 : fraction > 1 ? 1 : fraction;
    n->seed = seed;
    return (em_ds *)n;
}

em_ds *em_cache(em_ds *ds)
{
    EM_ASSERT(ds);
    ((em__node *)ds)->cached = 1;
    return ds;
}

/* ---- per-record stages ---- */

typedef struct mp_state {
    void *st;
} mp_state;

static int mappart_push(em_emitter *self, const em_rec *r)
{
    const em__node *n = self->node;
    return em__user_rc(n, n->peach(((mp_state *)self->state)->st, r, self->next, n->arg), "mapPartitions");
}

/* splitmix64: a small, good generator; seeded per (seed, partition) so a sample does not depend on placement */
static uint64_t splitmix(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static int sample_push(em_emitter *self, const em_rec *r)
{
    uint64_t *rng = self->state;
    double u = (double)(splitmix(rng) >> 11) * 0x1.0p-53;
    return u < self->node->fraction ? self->next->push(self->next, r) : 0;
}

static int foreach_push(em_emitter *self, const em_rec *r)
{
    const em__node *n = self->node;
    int rc = n->filter(r, n->arg);
    return rc < 0 ? em__user_rc(n, rc, "foreach") : 0;
}

int em__narrow_compute(em__node *node, int part, em_emitter *sink)
{
    switch (node->kind) {
    case EM__K_UNION:
        if (part < node->parent->nparts) return em__node_compute(node->parent, part, sink);
        return em__node_compute(node->parent2, part - node->parent->nparts, sink);
    case EM__K_SAMPLE: {
        uint64_t rng = node->seed ^ ((uint64_t)part * 0xD1B54A32D192ED03ULL);
        splitmix(&rng);
        em_emitter st = {sample_push, sink, node, &rng, NULL};
        return em__node_compute(node->parent, part, &st);
    }
    case EM__K_FOREACH: {
        em_emitter st = {foreach_push, sink, node, NULL, NULL};
        return em__node_compute(node->parent, part, &st);
    }
    case EM__K_MAPPART: {
        mp_state ms = {node->popen ? node->popen(part, node->arg) : NULL};
        em_emitter st = {mappart_push, sink, node, &ms, NULL};
        int rc = em__node_compute(node->parent, part, &st);
        if (node->pclose) { /* always: it frees the state; its output only counts when the partition succeeded */
            int crc = em__user_rc(node, node->pclose(ms.st, sink, node->arg), "mapPartitions close");
            if (rc == 0) rc = crc;
        }
        return rc;
    }
    default: return em__fail(EM_EINVAL, "dataset %d is not a narrow operator", node->id);
    }
}
