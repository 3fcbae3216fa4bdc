/* hdf5io.c — test program for em_hdf5 / em_save_hdf5 (tests/e2e/hdf5.sh).
 *
 *   hdf5io read FILE NPARTS DATASET...    prints, on the leader, for each dataset `== DATASET`, then one line
 *                                         per record in partition order: ROW<TAB>field|field|... (ints %lld,
 *                                         doubles %.17g, strings as is), then `partitions: N`
 *   hdf5io write FILE DATASET ROWS NPARTS writes ROWS rows (i, i * 0.25, "name-<i>" with a comma every 7th row,
 *                                         i % 1000 as i32) with schema id:i64,x:f64,name:str24,small:i32
 *   hdf5io badwrite FILE SCHEMA           tries to save (1, "xyz") with SCHEMA and prints the error */
#include <ember.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int make_row(const em_rec *in, em_emitter *out, void *arg)
{
    (void)arg;
    int64_t i = em_i64_get(in->key);
    char name[32];
    int n = snprintf(name, sizeof name, i % 7 == 0 ? "name, %lld" : "name-%lld", (long long)i);
    em_tup t = {0};
    em_tup_i64(&t, i);
    em_tup_f64(&t, (double)i * 0.25);
    em_tup_str(&t, name, (size_t)n);
    em_tup_i64(&t, i % 1000);
    int rc = em_emit(out, in->key, 8, t.p, (uint32_t)t.len);
    em_tup_free(&t);
    return rc;
}

static int one_row(const em_rec *in, em_emitter *out, void *arg)
{
    (void)arg;
    em_tup t = {0};
    em_tup_i64(&t, 1);
    em_tup_str(&t, "xyz", 3);
    int rc = em_emit(out, in->key, 8, t.p, (uint32_t)t.len);
    em_tup_free(&t);
    return rc;
}

int main(int argc, char **argv)
{
    em_ctx *ctx;
    if (em_init(&argc, &argv, &ctx) < 0) return 1;
    int rc;
    if (argc >= 5 && strcmp(argv[1], "read") == 0) {
        for (int a = 4; a < argc; a++) {
            em_ds *ds = em_hdf5(ctx, argv[2], argv[a], atoi(argv[3]));
            em_records r;
            if ((rc = em_collect(ds, &r)) < 0) goto fail;
            if (em_is_leader(ctx)) {
                printf("== %s\n", argv[a]);
                for (size_t i = 0; i < r.n; i++) {
                    printf("%lld\t", (long long)em_i64_get(r.recs[i].key));
                    int nf = em_tup_count(r.recs[i].val, r.recs[i].vlen);
                    for (int k = 0; k < nf; k++) {
                        em_field f;
                        em_tup_get(r.recs[i].val, r.recs[i].vlen, k, &f);
                        if (k) putchar('|');
                        if (f.type == EM_F_I64) printf("%lld", (long long)f.i64);
                        else if (f.type == EM_F_F64) printf("%.17g", f.f64);
                        else if (f.type == EM_F_STR) fwrite(f.str, 1, f.len, stdout);
                        else printf("NULL");
                    }
                    putchar('\n');
                }
                printf("partitions: %d\n", em_ds_partitions(ds));
            }
            em_records_free(&r);
        }
    } else if (argc == 6 && strcmp(argv[1], "write") == 0) {
        em_ds *rows = em_map(em_range(ctx, 0, atoll(argv[4]), atoi(argv[5])), make_row, NULL);
        if ((rc = em_save_hdf5(rows, argv[2], argv[3], "id:i64,x:f64,name:str24,small:i32")) < 0) goto fail;
        if (em_is_leader(ctx)) printf("saved\n");
    } else if (argc == 4 && strcmp(argv[1], "badwrite") == 0) {
        em_ds *rows = em_map(em_range(ctx, 0, 3, 2), one_row, NULL);
        if ((rc = em_save_hdf5(rows, argv[2], "d", argv[3])) < 0) goto fail;
    } else {
        fprintf(stderr, "usage: hdf5io read FILE NPARTS DATASET... | write FILE DATASET ROWS NPARTS | badwrite FILE SCHEMA\n");
        return em_finalize(ctx, 2);
    }
    return em_finalize(ctx, 0);
fail:
    if (em_is_leader(ctx)) fprintf(stderr, "hdf5io: %s: %s\n", em_err_name(rc), em_last_error());
    return em_finalize(ctx, 1);
}
