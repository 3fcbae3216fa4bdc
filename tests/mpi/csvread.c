/* csvread.c — test program for em_csv (tests/e2e/etl.sh): reads CSV inputs and prints, on the leader, the
 * header as `cols: N name|name|...` and then every row (in partition order = file order) as its fields
 * separated by '|', each field with '\\', '|', '\n', '\r' and bytes < 0x20 escaped as \xHH, so a python3 csv
 * module reading of the same files can be compared line by line.
 *
 *     csvread [--strict] [--sep C] [--col NAME] INPUT...     (--col: also print `col NAME: IDX`) */
#include <ember.h>

#include <stdio.h>
#include <string.h>

static void put_escaped(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == '\\' || c == '|' || c == 0x7f) printf("\\x%02x", c);
        else putchar(c);
    }
}

int main(int argc, char **argv)
{
    em_ctx *ctx;
    if (em_init(&argc, &argv, &ctx) < 0) return 1;
    em_csv_opts o = {0};
    const char *inputs[64], *col = NULL;
    int n = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--strict") == 0) o.strict = 1;
        else if (strcmp(argv[i], "--sep") == 0 && i + 1 < argc) o.sep = argv[++i][0];
        else if (strcmp(argv[i], "--col") == 0 && i + 1 < argc) col = argv[++i];
        else if (n < 64) inputs[n++] = argv[i];
    }
    em_ds *rows = em_csv(ctx, inputs, n, &o, 0);
    em_records r;
    int rc = em_collect(rows, &r);
    if (rc < 0) {
        if (em_is_leader(ctx)) fprintf(stderr, "csvread: %s: %s\n", em_err_name(rc), em_last_error());
        return em_finalize(ctx, 1);
    }
    if (em_is_leader(ctx)) {
        int nc = em_csv_ncols(rows);
        printf("cols: %d ", nc);
        for (int i = 0; i < nc; i++) printf("%s%s", i ? "|" : "", em_csv_colname(rows, i));
        printf("\n");
        if (col) printf("col %s: %d\n", col, em_csv_col(rows, col));
        for (size_t i = 0; i < r.n; i++) {
            int nf = em_tup_count(r.recs[i].val, r.recs[i].vlen);
            for (int f = 0; f < nf; f++) {
                em_field fl;
                if (em_tup_get(r.recs[i].val, r.recs[i].vlen, f, &fl) < 0 || fl.type != EM_F_STR) return 3;
                if (f) putchar('|');
                put_escaped(fl.str, fl.len);
            }
            putchar('\n');
        }
    }
    em_records_free(&r);
    return em_finalize(ctx, 0);
}
