/* wide.c — constructors of the wide operators beyond reduceByKey (DESIGN section 4): each is a node whose input
 * is the map side of a shuffle; what happens on either side of it is in shuffle.c. join and distinct are built
 * from cogroup and reduceByKey with small internal callbacks. */
#include "operators/dataset.h"
#include "runtime/log.h"

#include <stdlib.h>
#include <string.h>

static em__node *wide_node(em_ds *parent, em__kind kind, int nparts)
{
    em__node *p = (em__node *)parent;
    EM_ASSERT(p);
    if (nparts <= 0) nparts = em_default_partitions(p->ctx);
    return em__node_add(p->ctx, kind, p, nparts);
}

em_ds *em_aggregate_by_key(em_ds *parent, const void *zero, uint32_t zlen, em_combine_fn seq, em_combine_fn comb,
                           void *arg, int nparts)
{
    EM_ASSERT(seq && comb);
    em__node *n = wide_node(parent, EM__K_REDUCE, nparts);
    n->agg = EM__AGG_USER;
    n->seq = seq;
    n->combine = comb;
    n->arg = arg;
    em__buf_add(&n->data, zero, zlen);
    return (em_ds *)n;
}

em_ds *em_group_by_key(em_ds *parent, em_group_fn fn, void *arg, int nparts)
{
    EM_ASSERT(fn);
    em__node *n = wide_node(parent, EM__K_GROUP, nparts);
    n->group = fn;
    n->arg = arg;
    return (em_ds *)n;
}

em_ds *em_cogroup(em_ds *a, em_ds *b, em_cogroup_fn fn, void *arg, int nparts)
{
    EM_ASSERT(b && fn && ((em__node *)a)->ctx == ((em__node *)b)->ctx);
    em__node *n = wide_node(a, EM__K_COGROUP, nparts);
    n->parent2 = (em__node *)b;
    n->cogroup = fn;
    n->arg = arg;
    return (em_ds *)n;
}

em_ds *em_sort_by_key(em_ds *parent, int ascending, int nparts)
{
    em__node *n = wide_node(parent, EM__K_SORT, nparts);
    n->ascending = ascending != 0;
    return (em_ds *)n;
}

em_ds *em_repartition(em_ds *parent, int nparts) { return (em_ds *)wide_node(parent, EM__K_REPART, nparts); }

/* ---- join: cogroup, then for each key the product of both sides (b's values of one key held in memory) ---- */

static int emit_pair(em_emitter *out, const void *key, uint32_t klen, em_tup *t, const void *a, uint32_t al,
                     const void *b, uint32_t bl)
{
    em_tup_clear(t);
    if (a) em_tup_str(t, a, al);
    else em_tup_null(t);
    if (b) em_tup_str(t, b, bl);
    else em_tup_null(t);
    return em_emit(out, key, klen, t->p, (uint32_t)t->len);
}

static int join_fn(const void *key, uint32_t klen, em_values *a, em_values *b, em_emitter *out, void *arg)
{
    em_join_kind kind = (em_join_kind)(intptr_t)arg;
    em__buf bs; /* b's values: u32 length + bytes each */
    em__buf_init(&bs);
    em_tup t = {0};
    const void *v;
    uint32_t vl;
    int rc, nb = 0, na = 0;
    while ((rc = em_values_next(b, &v, &vl)) > 0) {
        em__buf_bytes(&bs, v, vl);
        nb++;
    }
    while (rc == 0 && (rc = em_values_next(a, &v, &vl)) > 0) {
        na++;
        rc = 0;
        if (nb == 0) {
            if (kind == EM_JOIN_LEFT || kind == EM_JOIN_FULL) rc = emit_pair(out, key, klen, &t, v, vl, NULL, 0);
        } else {
            em__rd rd;
            em__rd_init(&rd, bs.p, bs.len);
            for (int i = 0; i < nb && rc == 0; i++) {
                uint32_t bl;
                const void *bv = em__rd_bytes(&rd, &bl);
                rc = emit_pair(out, key, klen, &t, v, vl, bv, bl);
            }
        }
        if (rc < 0) break;
    }
    if (rc == 0 && na == 0 && (kind == EM_JOIN_RIGHT || kind == EM_JOIN_FULL)) {
        em__rd rd;
        em__rd_init(&rd, bs.p, bs.len);
        for (int i = 0; i < nb && rc == 0; i++) {
            uint32_t bl;
            const void *bv = em__rd_bytes(&rd, &bl);
            rc = emit_pair(out, key, klen, &t, NULL, 0, bv, bl);
        }
    }
    em_tup_free(&t);
    em__buf_release(&bs);
    return rc < 0 ? rc : 0;
}

em_ds *em_join(em_ds *a, em_ds *b, em_join_kind kind, int nparts)
{
    EM_ASSERT(kind >= EM_JOIN_INNER && kind <= EM_JOIN_FULL);
    return em_cogroup(a, b, join_fn, (void *)(intptr_t)kind, nparts);
}

/* ---- distinct: the whole record as the key (u32 klen, key, value), one copy kept, unpacked again ---- */

static int pack_fn(const em_rec *in, em_emitter *out, void *arg)
{
    (void)arg;
    em__buf b;
    em__buf_init(&b);
    em__buf_u32(&b, in->klen);
    em__buf_add(&b, in->key, in->klen);
    em__buf_add(&b, in->val, in->vlen);
    int rc = em_emit(out, b.p, (uint32_t)b.len, NULL, 0);
    em__buf_release(&b);
    return rc;
}

static int unpack_fn(const em_rec *in, em_emitter *out, void *arg)
{
    (void)arg;
    uint32_t kl;
    if (in->klen < 4) return em__fail(EM_ECOMM, "distinct: a packed record is too short");
    memcpy(&kl, in->key, 4);
    if (kl > in->klen - 4) return em__fail(EM_ECOMM, "distinct: a packed record is malformed");
    const uint8_t *p = (const uint8_t *)in->key + 4;
    return em_emit(out, p, kl, p + kl, in->klen - 4 - kl);
}

em_ds *em_distinct(em_ds *parent, int nparts)
{
    em__node *r = wide_node(em_map(parent, pack_fn, NULL), EM__K_REDUCE, nparts);
    r->agg = EM__AGG_FIRST;
    return em_map((em_ds *)r, unpack_fn, NULL);
}
