/*
 * csv_columns.c — revenue per product from a CSV file, reading the columns by name.
 *
 *     ember run -np 2 build/examples/csv_columns [FILE.csv]     (default: examples/data/orders.csv)
 *
 * em_csv reads RFC 4180 CSV (quoted fields may hold commas, "" and newlines): one record per row, whose value
 * is a tuple of the row's fields as strings. em_csv_col finds a column's index from the header row, so the job
 * does not depend on the column order, and em_tup_get reads field i of a row. Numbers arrive as text: convert
 * them yourself (strtod here). Rows with the wrong number of fields are skipped and reported on stderr.
 */
#include <ember.h>

#include <stdio.h>
#include <stdlib.h>

/* Column indices, found on every rank before any action; the map callback gets them through its arg. */
struct cols { int product, amount; };

/* Map: row -> (product, amount as a double). */
static int revenue(const em_rec *in, em_emitter *out, void *arg)
{
    const struct cols *c = arg;
    em_field product, amount;
    char num[64], *end;
    unsigned char v[8];
    if (em_tup_get(in->val, in->vlen, c->amount, &amount) < 0 || amount.len >= sizeof num) return -1;
    snprintf(num, sizeof num, "%.*s", (int)amount.len, amount.str); /* fields are not NUL-terminated */
    double x = strtod(num, &end);
    if (end == num || *end) return 0; /* not a number (orders.csv has an "n/a"): emit nothing, skip the row */
    em_f64_put(v, x);
    /* read last: a string with NUL bytes would live in a buffer that the next em_tup_get reuses */
    if (em_tup_get(in->val, in->vlen, c->product, &product) < 0) return -1;
    return em_emit(out, product.str, (uint32_t)product.len, v, 8);
}

int main(int argc, char **argv)
{
    em_ctx *ctx;
    em_records res;
    static struct cols cols; /* arg must stay valid until em_finalize */
    em_csv_opts opts = {0};  /* ',' separator; malformed rows are skipped, not fatal */
    int rc;
    if (em_init(&argc, &argv, &ctx) < 0) return 1;
    const char *path = argc > 1 ? argv[1] : "examples/data/orders.csv";

    em_ds *rows = em_csv(ctx, &path, 1, &opts, 0);
    cols.product = em_csv_col(rows, "product");
    cols.amount = em_csv_col(rows, "amount");
    if (cols.product < 0 || cols.amount < 0) {
        if (em_is_leader(ctx)) fprintf(stderr, "csv_columns: %s: no header with columns product and amount\n", path);
        return em_finalize(ctx, 2);
    }
    em_ds *totals = em_reduce_by_key_agg(em_map(rows, revenue, &cols), EM_AGG_SUM_F64, 0);
    totals = em_sort_by_key(totals, 1, 0); /* products in byte order: collect returns partition order */
    if ((rc = em_collect(totals, &res)) < 0) {
        if (em_is_leader(ctx)) fprintf(stderr, "csv_columns: %s: %s\n", em_strerror(rc), em_last_error());
        return em_finalize(ctx, 1);
    }
    if (em_is_leader(ctx)) {
        for (size_t i = 0; i < res.n; i++)
            printf("%.*s\t%.2f\n", (int)res.recs[i].klen, (const char *)res.recs[i].key, em_f64_get(res.recs[i].val));
    }
    em_records_free(&res);
    return em_finalize(ctx, 0);
}
