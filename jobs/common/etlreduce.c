/*
 * etlreduce.c — the ETL job's reduces (see etlreduce.h): merging partial aggregates and bad-row summaries, and
 * turning distinct (group, value) pairs into counts. Follows DESIGN.md §4-5 (reduceByKey with map-side combine).
 */
#include "jobs/common/etlreduce.h"

#include <stdlib.h>
#include <string.h>

#include "jobs/common/etlagg.h"
#include "jobs/common/etlbad.h"
#include "jobs/common/etlbytes.h"
#include "jobs/common/etlplan.h"
#include "jobs/common/etlrow.h"

static _Thread_local em_tup tx; /* scratch tuple of this executor thread */

int etl_combine(const void *a, uint32_t alen, const void *b, uint32_t blen, em_value *out, void *arg)
{
    const etl_plan *pl = arg;
    const uint8_t *pa = a, *pb = b;
    if (alen == 0 || blen == 0 || pa[0] != pb[0]) return -1;
    if (pa[0] == 'D') return em_value_set(out, "D", 1);
    if (pa[0] == 'M') {
        uint8_t st[1 + ETL_MAXA * sizeof(etl_aggst)];
        if (alen != blen || alen != 1 + (size_t)pl->na * sizeof(etl_aggst)) return -1;
        memcpy(st, pa, alen);
        for (int i = 0; i < pl->na; i++) {
            etl_aggst x, y;
            memcpy(&x, st + 1 + (size_t)i * sizeof x, sizeof x);
            memcpy(&y, pb + 1 + (size_t)i * sizeof y, sizeof y);
            etl_aggst_merge(pl->agg[i].kind, &x, &y);
            memcpy(st + 1 + (size_t)i * sizeof x, &x, sizeof x);
        }
        return em_value_set(out, st, alen);
    }
    etl_badsum x, y;
    etl_badsum_decode(pa + 1, alen - 1, &x);
    etl_badsum_decode(pb + 1, blen - 1, &y);
    for (int i = 0; i < y.nfiles; i++) etl_badsum_count(&x, y.fside[i], y.ffile[i], y.fcount[i]);
    for (int i = 0; i < y.nlist; i++) etl_badsum_list(&x, &y.list[i]);
    em_tup t = {0};
    etl_badsum_encode(&x, &t);
    etl_bytes val = {0};
    int rc = etl_bytes_add(&val, "B", 1) < 0 || etl_bytes_add(&val, t.p, t.len) < 0 ? -1
             : em_value_set(out, val.p, (uint32_t)val.len);
    em_tup_free(&t);
    free(val.p);
    return rc;
}

int etl_distinct_to_counts(const em_rec *in, em_emitter *out, void *arg)
{
    const etl_plan *pl = arg;
    int64_t kind = etl_field_i64(in->key, in->klen, 0);
    if (kind <= 0) return em_emit(out, in->key, in->klen, in->val, in->vlen);
    uint8_t st[1 + ETL_MAXA * sizeof(etl_aggst)];
    memset(st, 0, sizeof st);
    st[0] = 'M';
    for (int a = 0; a < pl->na; a++) {
        etl_aggst s = {0};
        s.all_int = 1;
        if (a == kind - 1) s.n = 1;
        memcpy(st + 1 + (size_t)a * sizeof s, &s, sizeof s);
    }
    em_tup_clear(&tx);
    em_tup_i64(&tx, 0);
    etl_bytes own = {0};
    em_field gf[ETL_MAXG + 2];
    int n = etl_payload_fields(in->key, in->klen, gf, ETL_MAXG + 2, &own);
    if (n == pl->ng + 2)
        for (int g = 1; g <= pl->ng; g++) etl_field_put(&tx, &gf[g]);
    free(own.p);
    if (n != pl->ng + 2) return -1;
    return em_emit(out, tx.p, (uint32_t)tx.len, st, (uint32_t)(1 + (size_t)pl->na * sizeof(etl_aggst)));
}
