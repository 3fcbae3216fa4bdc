/*
 * etljoin.c — the ETL job's shuffle join (see etljoin.h): the cogroup of the parsed sides, one key at a time.
 * Follows DESIGN.md §4-5 (cogroup is a wide operator: both sides are shuffled by key).
 */
#include "jobs/common/etljoin.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs/common/etlagg.h"
#include "jobs/common/etlbad.h"
#include "jobs/common/etlbytes.h"
#include "jobs/common/etlrow.h"

static _Thread_local em_tup tg, tx; /* scratch tuples of this executor thread */

int etl_join_pair(const etl_plan *pl, const em_field *l, const em_field *r, em_emitter *out)
{
    static const em_field null_field = {.type = EM_F_NULL};
    const em_field *side_f[2] = {l, r};
    uint8_t st[1 + ETL_MAXA * sizeof(etl_aggst)];
    int rc;
    em_tup_clear(&tg);
    em_tup_i64(&tg, 0);
    for (int g = 0; g < pl->ng; g++)
        etl_field_put(&tg, side_f[pl->gside[g]] ? &side_f[pl->gside[g]][pl->gpos[g]] : &null_field);
    st[0] = 'M';
    for (int a = 0; a < pl->na; a++) {
        const etl_agg *ag = &pl->agg[a];
        etl_aggst s = {0};
        s.all_int = 1;
        const em_field *f = ag->kind == ETL_COUNT || !side_f[ag->side] ? &null_field : &side_f[ag->side][pl->apos[a]];
        if (ag->kind == ETL_COUNT) {
            s.n = 1;
        } else if (ag->kind == ETL_COUNT_DISTINCT) {
            if (f->type != EM_F_NULL) { /* (group, value) under kind 1 + a */
                em_tup_clear(&tx);
                em_tup_i64(&tx, 1 + a);
                for (int g = 0; g < pl->ng; g++)
                    etl_field_put(&tx, side_f[pl->gside[g]] ? &side_f[pl->gside[g]][pl->gpos[g]] : &null_field);
                etl_field_put(&tx, f);
                if ((rc = em_emit(out, tx.p, (uint32_t)tx.len, "D", 1)) < 0) return rc;
            }
        } else if (f->type == EM_F_I64) {
            s.n = 1, s.i = f->i64, s.hi = (double)f->i64;
        } else if (f->type == EM_F_F64) {
            s.n = 1, s.all_int = 0, s.hi = f->f64;
        }
        memcpy(st + 1 + (size_t)a * sizeof s, &s, sizeof s);
    }
    return em_emit(out, tg.p, (uint32_t)tg.len, st, (uint32_t)(1 + (size_t)pl->na * sizeof(etl_aggst)));
}

int etl_join_rows(const void *key, uint32_t klen, em_values *a, em_values *b, em_emitter *out, void *arg)
{
    const etl_plan *pl = arg;
    const void *v;
    uint32_t vl;
    int rc;
    em_field kf;
    if (em_tup_get(key, klen, 0, &kf) == 0 && kf.type == EM_F_NULL) { /* the bad rows of both sides */
        etl_badsum bs;
        memset(&bs, 0, sizeof bs);
        for (int s = 0; s < 2; s++)
            while ((rc = em_values_next(s ? b : a, &v, &vl)) > 0) {
                etl_badrow r = {etl_field_i64(v, vl, 0), etl_field_i64(v, vl, 1), etl_field_i64(v, vl, 2), ""};
                em_field f;
                if (em_tup_get(v, vl, 3, &f) == 0 && f.type == EM_F_STR)
                    snprintf(r.msg, sizeof r.msg, "%.*s", (int)f.len, f.str);
                etl_badsum_count(&bs, r.side, r.file, 1);
                etl_badsum_list(&bs, &r);
            }
        if (rc < 0) return rc;
        return etl_badsum_emit(out, &bs);
    }
    /* Right rows of this key, held in memory (usually one: a dimension table). */
    etl_bytes rows = {0}, offs = {0}, lown = {0}, rown = {0};
    em_field lf[ETL_MAXF], rf[ETL_MAXF];
    size_t nr = 0;
    while ((rc = em_values_next(b, &v, &vl)) > 0) {
        size_t o[2] = {rows.len, rows.len + vl};
        if (etl_bytes_add(&rows, v, vl) < 0 || etl_bytes_add(&offs, o, sizeof o) < 0) {
            rc = -1;
            break;
        }
        nr++;
    }
    if (rc < 0 || (nr == 0 && pl->join == EM_JOIN_INNER)) goto out; /* unmatched left rows are dropped */
    const size_t *off = (const size_t *)(void *)offs.p;
    while ((rc = em_values_next(a, &v, &vl)) > 0) {
        if (etl_payload_fields(v, vl, lf, ETL_MAXF, &lown) < 0) {
            rc = -1;
            break;
        }
        if (nr == 0) {
            if ((rc = etl_join_pair(pl, lf, NULL, out)) < 0) break;
            continue;
        }
        for (size_t i = 0; i < nr && rc >= 0; i++)
            if (etl_payload_fields(rows.p + off[2 * i], (uint32_t)(off[2 * i + 1] - off[2 * i]), rf, ETL_MAXF, &rown) < 0)
                rc = -1;
            else rc = etl_join_pair(pl, lf, rf, out);
        if (rc < 0) break;
    }
out:
    free(rows.p), free(offs.p), free(lown.p), free(rown.p);
    return rc < 0 ? rc : 0;
}
