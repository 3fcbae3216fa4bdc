/*
 * join.c — who works where: employees joined with departments on the department number.
 *
 *     ember run -np 2 build/examples/join
 *
 * em_join matches records of two datasets with equal keys (a shuffle brings each key's records together).
 * Each output record keeps the key; its value is a 2-field tuple (left value, right value). This is a FULL
 * outer join, so rows without a partner are kept too, with a NULL field for the missing side: Ken's
 * department does not exist, and nobody works in Legal. EM_JOIN_INNER, _LEFT and _RIGHT keep fewer rows.
 */
#include <ember.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A department number (the join key, 8 bytes from em_i64_put) and a name (the value). */
struct row { int64_t dept; const char *name; };
static const struct row emps[] = {{10, "Ada"}, {20, "Linus"}, {10, "Grace"}, {40, "Ken"}, {20, "Barbara"}};
static const struct row depts[] = {{10, "Engineering"}, {20, "Sales"}, {30, "Legal"}};

static em_ds *dataset(em_ctx *ctx, const struct row *rows, size_t n)
{
    unsigned char keys[8][8];
    em_rec recs[8];
    for (size_t i = 0; i < n; i++) {
        em_i64_put(keys[i], rows[i].dept);
        recs[i] = (em_rec){.key = keys[i], .klen = 8, .val = rows[i].name, .vlen = (uint32_t)strlen(rows[i].name)};
    }
    return em_parallelize(ctx, recs, n, 2); /* copies the records now: keys and recs may go away */
}

/* Field i of a joined value: the name, or "-" for the NULL of a missing side. Writes into buf. */
static const char *side(const em_rec *r, int i, char *buf, size_t size)
{
    em_field f;
    if (em_tup_get(r->val, r->vlen, i, &f) < 0 || f.type != EM_F_STR) return "-";
    snprintf(buf, size, "%.*s", (int)f.len, f.str);
    return buf;
}

static int by_line(const void *a, const void *b) { return strcmp(a, b); }

int main(int argc, char **argv)
{
    em_ctx *ctx;
    em_records res;
    int rc;
    if (em_init(&argc, &argv, &ctx) < 0) return 1;

    em_ds *joined = em_join(dataset(ctx, emps, 5), dataset(ctx, depts, 3), EM_JOIN_FULL, 0);
    if ((rc = em_collect(joined, &res)) < 0) {
        if (em_is_leader(ctx)) fprintf(stderr, "join: %s: %s\n", em_strerror(rc), em_last_error());
        return em_finalize(ctx, 1);
    }
    if (em_is_leader(ctx)) { /* one line per joined row, sorted: the shuffle leaves them in no useful order */
        char lines[16][160], a[64], b[64];
        size_t n = res.n < 16 ? res.n : 16;
        for (size_t i = 0; i < n; i++)
            snprintf(lines[i], sizeof lines[i], "%s\t%s\t%d", side(&res.recs[i], 0, a, sizeof a),
                     side(&res.recs[i], 1, b, sizeof b), (int)em_i64_get(res.recs[i].key));
        qsort(lines, n, sizeof lines[0], by_line);
        for (size_t i = 0; i < n; i++) printf("%s\n", lines[i]);
    }
    em_records_free(&res);
    return em_finalize(ctx, 0);
}
