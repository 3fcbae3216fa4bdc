/* dataset.c — the lineage graph (DESIGN section 2) and the push pipeline that computes one partition of a chain
 * of narrow operators inside one task (DESIGN section 4: narrow operators are pipelined). */
#include "operators/dataset.h"

#include "operators/shuffle.h"
#include "operators/sources/textsplit.h"
#include "runtime/log.h"

#include <stdlib.h>
#include <string.h>

em__node *em__node_add(em_ctx *ctx, em__kind kind, em__node *parent, int nparts)
{
    em__node *n = em__calloc(1, sizeof *n);
    n->kind = kind;
    n->parent = parent;
    n->ctx = ctx;
    n->nparts = nparts;
    pthread_mutex_lock(&ctx->graph_mu);
    int id = atomic_load(&ctx->nnodes);
    EM_ASSERT(id < EM__NODE_CHUNK * EM__NODE_CHUNKS);
    int c = id / EM__NODE_CHUNK;
    if (!ctx->chunks[c]) ctx->chunks[c] = em__calloc(EM__NODE_CHUNK, sizeof(em__node *));
    n->id = id;
    ctx->chunks[c][id % EM__NODE_CHUNK] = n;
    atomic_store(&ctx->nnodes, id + 1);
    pthread_mutex_unlock(&ctx->graph_mu);
    return n;
}

em__node *em__node_get(em_ctx *ctx, int id)
{
    if (id < 0 || id >= atomic_load(&ctx->nnodes)) return NULL;
    pthread_mutex_lock(&ctx->graph_mu);
    em__node *n = ctx->chunks[id / EM__NODE_CHUNK][id % EM__NODE_CHUNK];
    pthread_mutex_unlock(&ctx->graph_mu);
    return n;
}

const em__node *em__node_find_error(const em__node *n)
{
    for (; n; n = n->parent) {
        if (n->err) return n;
        const em__node *e = n->parent2 ? em__node_find_error(n->parent2) : NULL;
        if (e) return e;
    }
    return NULL;
}

void em__node_walk_part(em__node *node, int part, void (*fn)(em__node *n, int part, void *arg), void *arg)
{
    while (node) {
        fn(node, part, arg);
        if (em__node_is_wide(node)) return;
        if (node->kind == EM__K_UNION && part >= node->parent->nparts) {
            part -= node->parent->nparts;
            node = node->parent2;
        } else {
            node = node->parent;
        }
    }
}

void em__graph_release(em_ctx *ctx)
{
    int n = atomic_load(&ctx->nnodes);
    for (int i = 0; i < n; i++) {
        em__node *node = ctx->chunks[i / EM__NODE_CHUNK][i % EM__NODE_CHUNK];
        em__text_plan_free(node->splits);
        em__buf_release(&node->data);
        free(node->offs);
        free(node->err);
        if (node->src_free) node->src_free(node->src);
        free(node);
    }
    for (int c = 0; c < EM__NODE_CHUNKS && ctx->chunks[c]; c++) free(ctx->chunks[c]);
    memset(ctx->chunks, 0, sizeof ctx->chunks);
    atomic_store(&ctx->nnodes, 0);
}

int em_ds_partitions(const em_ds *ds) { return ((const em__node *)ds)->nparts; }

int em_emit(em_emitter *out, const void *key, uint32_t klen, const void *val, uint32_t vlen)
{
    em_rec r = {key, val, klen, vlen};
    return out->push(out, &r);
}

/* ---- narrow operators: map (flatMap) and filter ---- */

int em__user_rc(const em__node *n, int rc, const char *what)
{
    if (rc >= 0) return 0;
    /* codes from Ember itself, passed up from em_emit or em_values_next, go through unchanged */
    if (rc == EM__STOP_CODE || rc == EM__FETCH_FAILED_CODE || rc >= EM_ECANCELED) {
        if (rc != EM__STOP_CODE && !*em_last_error()) em__fail(rc, "%s callback of dataset %d returned %d", what, n->id, rc);
        return rc;
    }
    if (!*em_last_error()) em__fail(EM_EUSER, "%s callback of dataset %d returned %d", what, n->id, rc);
    return EM_EUSER;
}

static int map_push(em_emitter *self, const em_rec *r)
{
    return em__user_rc(self->node, self->node->map(r, self->next, self->node->arg), "map");
}

static int filter_push(em_emitter *self, const em_rec *r)
{
    int keep = self->node->filter(r, self->node->arg);
    if (keep < 0) {
        if (!*em_last_error()) em__fail(EM_EUSER, "filter callback of dataset %d returned %d", self->node->id, keep);
        return EM_EUSER;
    }
    return keep ? self->next->push(self->next, r) : 0;
}

em_ds *em_map(em_ds *parent, em_map_fn fn, void *arg)
{
    em__node *p = (em__node *)parent;
    EM_ASSERT(p && fn);
    em__node *n = em__node_add(p->ctx, EM__K_MAP, p, p->nparts);
    n->map = fn;
    n->arg = arg;
    return (em_ds *)n;
}

em_ds *em_filter(em_ds *parent, em_filter_fn fn, void *arg)
{
    em__node *p = (em__node *)parent;
    EM_ASSERT(p && fn);
    em__node *n = em__node_add(p->ctx, EM__K_FILTER, p, p->nparts);
    n->filter = fn;
    n->arg = arg;
    return (em_ds *)n;
}

/* ---- range source ---- */

em_ds *em_range(em_ctx *ctx, int64_t from, int64_t to, int nparts)
{
    if (nparts <= 0) nparts = em_default_partitions(ctx);
    if (to < from) to = from;
    em__node *n = em__node_add(ctx, EM__K_RANGE, NULL, nparts);
    n->from = from;
    n->to = to;
    return (em_ds *)n;
}

static int range_compute(const em__node *n, int part, em_emitter *sink)
{
    /* Contiguous, balanced within one element: the first len % P partitions get one extra. */
    uint64_t len = (uint64_t)n->to - (uint64_t)n->from, q = len / (uint64_t)n->nparts, rem = len % (uint64_t)n->nparts;
    uint64_t p = (uint64_t)part;
    int64_t lo = (int64_t)((uint64_t)n->from + q * p + (p < rem ? p : rem));
    int64_t hi = (int64_t)((uint64_t)lo + q + (p < rem ? 1 : 0));
    uint8_t key[8];
    em_rec r = {key, key, 8, 0};
    for (int64_t i = lo; i < hi; i++) {
        em_i64_put(key, i);
        int rc = sink->push(sink, &r);
        if (rc < 0) return rc;
    }
    return 0;
}

int em__node_compute(em__node *node, int part, em_emitter *sink)
{
    if (node->cached) return em__cache_compute(node->ctx, node, part, sink);
    return em__node_compute_uncached(node, part, sink);
}

int em__node_compute_uncached(em__node *node, int part, em_emitter *sink)
{
    em_emitter stage;
    switch (node->kind) {
    case EM__K_RANGE: return range_compute(node, part, sink);
    case EM__K_TEXT: return em__text_compute(node, part, sink);
    case EM__K_PARALLELIZE: return em__parallelize_compute(node, part, sink);
    case EM__K_SOURCE:
        if (node->err) return em__fail(node->err_code, "%s", node->err);
        return node->src_compute(node, part, sink);
    case EM__K_REDUCE:
    case EM__K_GROUP:
    case EM__K_COGROUP:
    case EM__K_SORT:
    case EM__K_REPART: return em__shuffle_read(node->ctx, node, part, sink);
    case EM__K_MAPPART:
    case EM__K_UNION:
    case EM__K_SAMPLE:
    case EM__K_FOREACH: return em__narrow_compute(node, part, sink);
    case EM__K_MAP:
    case EM__K_FILTER:
        stage = (em_emitter){node->kind == EM__K_MAP ? map_push : filter_push, sink, node, NULL, NULL};
        return em__node_compute(node->parent, part, &stage);
    }
    return em__fail(EM_EINVAL, "dataset %d: unknown kind %d", node->id, node->kind);
}
