/*
 * Tests of operators/sources/csvparse.c: RFC 4180 quoting, malformed records reported with file:line, header
 * lookup, typed fields, and split consistency (the records of all splits, for every split size, equal a
 * whole-file parse by a naive character-at-a-time state machine written here).
 */
#include <criterion/criterion.h>

#include "ember.h"
#include "operators/sources/csvparse.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t rng_state;
static uint32_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng_state >> 33);
}

static char tmpdir[256];
static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/em-csv-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}
static void rm_tmpdir(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}
static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* ---- a record log: "L<line>:R|f1|f2|..." or "L<line>:E", compared as strings ------------------------------- */

typedef struct strlist {
    char **s;
    size_t n, cap;
} strlist;

static void sl_add(strlist *l, const char *s, size_t n)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->s = realloc(l->s, l->cap * sizeof *l->s);
    }
    l->s[l->n] = malloc(n + 1);
    memcpy(l->s[l->n], s, n);
    l->s[l->n++][n] = 0;
}
static void sl_free(strlist *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->s[i]);
    free(l->s);
    memset(l, 0, sizeof *l);
}

/* Fields are logged with '|' and '\' escaped so that the log is unambiguous. */
static void log_row(strlist *l, uint64_t line, int nf, const char *const *f, const uint32_t *len)
{
    size_t cap = 64, n;
    for (int i = 0; i < nf; i++) cap += 2 * len[i] + 1;
    char *b = malloc(cap);
    cr_assert_not_null(b);
    n = (size_t)sprintf(b, "L%llu:R", (unsigned long long)line);
    for (int i = 0; i < nf; i++) {
        b[n++] = '|';
        for (uint32_t j = 0; j < len[i]; j++) {
            if (f[i][j] == '|' || f[i][j] == '\\') b[n++] = '\\';
            b[n++] = f[i][j];
        }
    }
    sl_add(l, b, n);
    free(b);
}
static void log_err(strlist *l, uint64_t line)
{
    char b[64];
    int n = sprintf(b, "L%llu:E", (unsigned long long)line);
    sl_add(l, b, (size_t)n);
}

/* ---- the naive model ------------------------------------------------------------------------------------- */

/* Whole input, one character at a time. The first non-blank record is the header (not logged, its field count
 * is returned in *ncols). */
static void naive_parse(const char *d, size_t len, int header, strlist *out, int *ncols_out)
{
    enum { FSTART, UNQ, QUO, QUO_Q, AFTER } st = FSTART;
    char *fld[512];
    uint32_t flen[512];
    int nf = 0, bad = 0, quoted_any = 0, ncols = -1;
    uint64_t line = 1, rline = 1;
    size_t cap = len + 1;
    char *cur = malloc(cap);
    size_t cl = 0;
    int in_record = 0;
    if (!header) ncols = 0;

#define END_FIELD()                                                                                            \
    do {                                                                                                       \
        fld[nf] = malloc(cl + 1);                                                                              \
        memcpy(fld[nf], cur, cl);                                                                              \
        flen[nf++] = (uint32_t)cl;                                                                             \
        cl = 0;                                                                                                \
    } while (0)
#define END_RECORD()                                                                                           \
    do {                                                                                                       \
        int blank = !bad && nf == 1 && flen[0] == 0 && !quoted_any;                                            \
        if (!blank) {                                                                                          \
            if (ncols < 0 && !bad) ncols = nf;                                                                 \
            else if (ncols < 0) ncols = 0; /* a bad header: the model treats it as absent */                  \
            else if (bad || (ncols && nf != ncols)) log_err(out, rline);                                       \
            else log_row(out, rline, nf, (const char *const *)fld, flen);                                      \
        }                                                                                                      \
        for (int k_ = 0; k_ < nf; k_++) free(fld[k_]);                                                         \
        nf = 0;                                                                                                \
        bad = 0;                                                                                               \
        quoted_any = 0;                                                                                        \
        in_record = 0;                                                                                         \
        st = FSTART;                                                                                           \
    } while (0)

    for (size_t i = 0; i < len; i++) {
        char c = d[i];
        if (!in_record) in_record = 1, rline = line;
        if (c == '\n') line++;
        switch (st) {
        case FSTART:
            if (c == '"') { st = QUO; quoted_any = 1; break; }
            st = UNQ;
            /* fallthrough */
        case UNQ:
            if (c == ',') { END_FIELD(); st = FSTART; }
            else if (c == '\n') { if (cl && cur[cl - 1] == '\r') cl--; END_FIELD(); END_RECORD(); }
            else { if (c == '"') bad = 1; cur[cl++] = c; }
            break;
        case QUO:
            if (c == '"') st = QUO_Q;
            else cur[cl++] = c;
            break;
        case QUO_Q:
            if (c == '"') { cur[cl++] = '"'; st = QUO; break; }
            st = AFTER;
            /* fallthrough */
        case AFTER:
            if (c == ',') { END_FIELD(); st = FSTART; }
            else if (c == '\n') { END_FIELD(); END_RECORD(); }
            else if (c == '\r' && (i + 1 == len || d[i + 1] == '\n') && d[i - 1] == '"') {}
            else bad = 1;
            break;
        }
    }
    if (in_record) {
        if (st == QUO) bad = 1;
        if (st == UNQ && cl && cur[cl - 1] == '\r') cl--;
        END_FIELD();
        END_RECORD();
    }
    free(cur);
    if (ncols_out) *ncols_out = ncols < 0 ? 0 : ncols;
#undef END_FIELD
#undef END_RECORD
}

/* ---- reading through the module --------------------------------------------------------------------------- */

static void read_split(const char *path, uint64_t start, uint64_t end, uint64_t line, const em__csv_opts *o,
                       strlist *out)
{
    em__csv_reader r;
    em__csv_row row;
    int rc = em__csv_reader_open(&r, path, start, end, line, o);
    cr_assert_eq(rc, 0, "open: %s", r.err);
    while ((rc = em__csv_reader_next(&r, &row)) != 0) {
        if (rc == EM_EPARSE) {
            char want[64];
            snprintf(want, sizeof want, "%s:%llu: ", path, (unsigned long long)row.line);
            cr_assert(strncmp(r.err, want, strlen(want)) == 0, "message '%s' should start with '%s'", r.err, want);
            log_err(out, row.line);
            continue;
        }
        cr_assert_eq(rc, 1, "next: %d %s", rc, r.err);
        log_row(out, row.line, row.nfields, row.field, row.len);
    }
    em__csv_reader_release(&r);
}

static void assert_same(const strlist *want, const strlist *got, const char *what, const char *data)
{
    size_t n = want->n < got->n ? want->n : got->n;
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(got->s[i], want->s[i], "%s: record %zu\n--- input:\n%s\n---", what, i, data);
    cr_assert_eq(got->n, want->n, "%s: %zu records, want %zu\n--- input:\n%s\n---", what, got->n, want->n, data);
}

static void check_splits(const char *path, const char *data, size_t len, const em__csv_opts *o)
{
    strlist want = {0};
    naive_parse(data, len, !o->no_header, &want, NULL);
    for (uint64_t sz = 1; sz <= len + 1; sz++) {
        em__split *sp;
        int n;
        char err[512] = "", what[64];
        strlist got = {0};
        const char *paths[] = {path};
        int rc = em__csv_plan(paths, 1, sz, 0, o, &sp, &n, err, sizeof err);
        cr_assert_eq(rc, 0, "plan: %s", err);
        for (int i = 0; i < n; i++) {
            if (i) cr_assert_eq(sp[i].start, sp[i - 1].end, "splits tile the data");
            read_split(sp[i].path, sp[i].start, sp[i].end, sp[i].line, o, &got);
        }
        snprintf(what, sizeof what, "split size %llu", (unsigned long long)sz);
        assert_same(&want, &got, what, data);
        sl_free(&got);
        em__text_plan_free(sp);
    }
    sl_free(&want);
}

/* ---- tests ------------------------------------------------------------------------------------------------- */

/* Parses a whole buffer with em__csv_parse (no header), logging like read_split. */
static void parse_all(const char *text, int ncols, strlist *out, char *lasterr, size_t errlen)
{
    size_t len = strlen(text), pos = 0, used;
    char *buf = malloc(len + 1);
    em__csv_parser p;
    em__csv_row row;
    memcpy(buf, text, len + 1);
    em__csv_parser_init(&p, 0, "t.csv", 1, ncols, NULL);
    for (;;) {
        int rc = em__csv_parse(&p, buf + pos, len - pos, 1, &used, &row);
        if (rc == EM__CSV_MORE) break;
        pos += used;
        if (rc == EM__CSV_ROW) log_row(out, row.line, row.nfields, row.field, row.len);
        else if (rc == EM_EPARSE) {
            log_err(out, row.line);
            if (lasterr) snprintf(lasterr, errlen, "%s", p.err);
        }
    }
    em__csv_parser_release(&p);
    free(buf);
}

static void expect(const char *text, const char *const *want, size_t nwant)
{
    strlist got = {0};
    parse_all(text, 0, &got, NULL, 0);
    for (size_t i = 0; i < nwant && i < got.n; i++) cr_assert_str_eq(got.s[i], want[i], "input %s", text);
    cr_assert_eq(got.n, nwant, "input '%s': %zu records", text, got.n);
    /* the naive model agrees */
    strlist model = {0};
    naive_parse(text, strlen(text), 0, &model, NULL);
    assert_same(&got, &model, "model", text);
    sl_free(&model);
    sl_free(&got);
}

Test(csvparse, quoting_cases)
{
    expect("a,b,c\n", (const char *[]){"L1:R|a|b|c"}, 1);
    expect("a,b,c", (const char *[]){"L1:R|a|b|c"}, 1);
    expect("a,,\n", (const char *[]){"L1:R|a||"}, 1);
    expect("\"a,b\",c\r\n", (const char *[]){"L1:R|a,b|c"}, 1);
    expect("\"say \"\"hi\"\"\",x\n", (const char *[]){"L1:R|say \"hi\"|x"}, 1);
    expect("\"\"\"\"\n", (const char *[]){"L1:R|\""}, 1);
    expect("\"\",\"\"\n", (const char *[]){"L1:R||"}, 1);
    expect("\"multi\nline\",2\nnext,3\n", (const char *[]){"L1:R|multi\nline|2", "L3:R|next|3"}, 2);
    expect("\"cr\r\nlf\"\r\nz\r\n", (const char *[]){"L1:R|cr\r\nlf", "L3:R|z"}, 2);
    expect("a\n\n\r\nb\n", (const char *[]){"L1:R|a", "L4:R|b"}, 2);
    expect("x\r", (const char *[]){"L1:R|x"}, 1);
    expect("a\rb,c\n", (const char *[]){"L1:R|a\rb|c"}, 1);
}

Test(csvparse, malformed_rows_are_reported_and_skipped)
{
    char err[512];
    strlist got = {0};
    parse_all("ok,1\n5\" tv,2\nok,3\n", 2, &got, err, sizeof err);
    cr_assert_eq(got.n, 3);
    cr_assert_str_eq(got.s[1], "L2:E");
    cr_assert_str_eq(got.s[2], "L3:R|ok|3");
    cr_assert(strstr(err, "t.csv:2: quote inside unquoted field 1"), "%s", err);
    sl_free(&got);

    parse_all("ok,1\n\"a\"x,2\nok,3\n", 2, &got, err, sizeof err);
    cr_assert_str_eq(got.s[1], "L2:E");
    cr_assert(strstr(err, "t.csv:2: unexpected 'x' after the closing quote of field 1"), "%s", err);
    sl_free(&got);

    parse_all("a,b\nc\nd,e\n", 2, &got, err, sizeof err);
    cr_assert_str_eq(got.s[1], "L2:E");
    cr_assert_str_eq(got.s[2], "L3:R|d|e");
    cr_assert(strstr(err, "t.csv:2: expected 2 fields as in the header, got 1"), "%s", err);
    sl_free(&got);

    parse_all("a,b\n\"open,c\nd,e\n", 2, &got, err, sizeof err);
    cr_assert_eq(got.n, 2);
    cr_assert_str_eq(got.s[1], "L2:E");
    cr_assert(strstr(err, "t.csv:2: unterminated quoted field 1"), "%s", err);
    sl_free(&got);
}

Test(csvparse, reader_reports_file_line_and_counts)
{
    make_tmpdir();
    char path[512];
    snprintf(path, sizeof path, "%s/orders.csv", tmpdir);
    const char *text = "id,amount\n1,10\n2,\"x\"y\n3\n4,\"multi\nline\"\n5,abc\n";
    write_file(path, text, strlen(text));
    em__csv_reader r;
    em__csv_row row;
    int rc, rows = 0;
    cr_assert_eq(em__csv_reader_open(&r, path, 0, strlen(text), 1, NULL), 0, "%s", r.err);
    cr_assert_eq(r.hdr.ncols, 2);
    int amount = em__csv_col(&r.hdr, "amount");
    cr_assert_eq(amount, 1);
    cr_assert_eq(em__csv_col(&r.hdr, "nope"), -1);
    cr_assert_eq(em__csv_col(NULL, "id"), -1);
    char msgs[4][512];
    int nmsg = 0;
    while ((rc = em__csv_reader_next(&r, &row)) != 0) {
        if (rc == EM_EPARSE) {
            snprintf(msgs[nmsg++], 512, "%s", r.err);
            continue;
        }
        cr_assert_eq(rc, 1);
        rows++;
        int64_t v;
        char err[512];
        if (row.line == 2) {
            cr_assert_eq(em__csv_field_i64(&row, amount, &v, err, sizeof err), 0);
            cr_assert_eq(v, 10);
        }
        if (row.line == 7) {
            cr_assert_eq(em__csv_field_i64(&row, amount, &v, err, sizeof err), EM_EPARSE);
            char want[600];
            snprintf(want, sizeof want, "%s:7: amount: 'abc' is not an integer", path);
            cr_assert_str_eq(err, want);
        }
    }
    cr_assert_eq(rows, 3);
    cr_assert_eq(r.nbad, 2);
    cr_assert_eq(nmsg, 2);
    char want[600];
    snprintf(want, sizeof want, "%s:3: unexpected 'y' after the closing quote of field 2 (amount)", path);
    cr_assert_str_eq(msgs[0], want);
    snprintf(want, sizeof want, "%s:4: expected 2 fields as in the header, got 1", path);
    cr_assert_str_eq(msgs[1], want);
    em__csv_reader_release(&r);
    rm_tmpdir();
}

static em__csv_row one_row(em__csv_parser *p, char *buf, const em__csv_header *h)
{
    em__csv_row row;
    size_t used;
    em__csv_parser_init(p, 0, "orders.csv", 17, 0, h);
    cr_assert_eq(em__csv_parse(p, buf, strlen(buf), 1, &used, &row), EM__CSV_ROW);
    return row;
}

Test(csvparse, typed_fields)
{
    char *names[] = {"qty", "amount"};
    em__csv_header h = {2, names};
    char buf[] = "42,3.5,-9223372036854775808,9223372036854775808,abc,,1e999, 7,0x10,\"12\",inf,1e-400";
    em__csv_parser p;
    em__csv_row row = one_row(&p, buf, &h);
    int64_t i;
    double d;
    char err[512];
    cr_assert_eq(em__csv_field_i64(&row, 0, &i, err, sizeof err), 0);
    cr_assert_eq(i, 42);
    cr_assert_eq(em__csv_field_f64(&row, 1, &d, err, sizeof err), 0);
    cr_assert_float_eq(d, 3.5, 1e-12);
    cr_assert_eq(em__csv_field_i64(&row, 1, &i, err, sizeof err), EM_EPARSE);
    cr_assert_str_eq(err, "orders.csv:17: amount: '3.5' is not an integer");
    cr_assert_eq(em__csv_field_i64(&row, 2, &i, err, sizeof err), 0);
    cr_assert_eq(i, INT64_MIN);
    cr_assert_eq(em__csv_field_i64(&row, 3, &i, err, sizeof err), EM_EPARSE);
    cr_assert(strstr(err, "field 4: '9223372036854775808' is out of range"), "%s", err);
    cr_assert_eq(em__csv_field_f64(&row, 4, &d, err, sizeof err), EM_EPARSE);
    cr_assert_str_eq(err, "orders.csv:17: field 5: 'abc' is not a number");
    cr_assert_eq(em__csv_field_f64(&row, 5, &d, err, sizeof err), EM_EPARSE);
    cr_assert(strstr(err, "field 6: empty field is not a number"), "%s", err);
    cr_assert_eq(em__csv_field_f64(&row, 6, &d, err, sizeof err), EM_EPARSE);
    cr_assert(strstr(err, "out of range"), "%s", err);
    cr_assert_eq(em__csv_field_i64(&row, 7, &i, err, sizeof err), EM_EPARSE, "leading space");
    cr_assert_eq(em__csv_field_i64(&row, 8, &i, err, sizeof err), EM_EPARSE, "hex is not decimal");
    cr_assert_eq(em__csv_field_i64(&row, 9, &i, err, sizeof err), 0, "quoted number");
    cr_assert_eq(i, 12);
    cr_assert_eq(em__csv_field_f64(&row, 10, &d, err, sizeof err), 0);
    cr_assert(isinf(d));
    cr_assert_eq(em__csv_field_f64(&row, 11, &d, err, sizeof err), 0, "underflow is accepted: %s", err);
    cr_assert_eq(em__csv_field_i64(&row, 12, &i, err, sizeof err), EM_EINVAL);
    cr_assert_str_eq(err, "orders.csv:17: no field 13 (the record has 12)");
    cr_assert_eq(em__csv_field_i64(&row, -1, &i, NULL, 0), EM_EINVAL);
    em__csv_parser_release(&p);
}

Test(csvparse, streaming_byte_by_byte_equals_whole_buffer)
{
    const char *text = "h1,h2\n\"a\"\"b\",\"c\nd\"\r\n\"x\"y,1\n\n\"open";
    size_t len = strlen(text);
    strlist whole = {0}, inc = {0};
    parse_all(text, 2, &whole, NULL, 0);
    /* grow the visible window one byte at a time, as a reader refilling a buffer would */
    char *buf = malloc(len);
    em__csv_parser p;
    em__csv_row row;
    size_t pos = 0, vis = 0, used;
    em__csv_parser_init(&p, 0, "t.csv", 1, 2, NULL);
    for (;;) {
        memcpy(buf + pos, text + pos, vis - pos);
        int rc = em__csv_parse(&p, buf + pos, vis - pos, vis == len, &used, &row);
        if (rc == EM__CSV_MORE) {
            if (vis == len) break;
            vis++;
            continue;
        }
        pos += used;
        if (rc == EM__CSV_ROW) log_row(&inc, row.line, row.nfields, row.field, row.len);
        if (rc == EM_EPARSE) log_err(&inc, row.line);
    }
    assert_same(&whole, &inc, "incremental", text);
    cr_assert_eq(whole.n, 4);
    em__csv_parser_release(&p);
    free(buf);
    sl_free(&whole);
    sl_free(&inc);
}

/* Random CSV: valid fields (plain, quoted with separators, quotes, CR and LF), with occasional corruption. */
static size_t gen_csv(char *b, size_t cap, int nrec, int ncols, int corrupt)
{
    static const char alpha[] = "ab,\"\n\r";
    size_t n = 0;
    n += (size_t)sprintf(b, "c1");
    for (int c = 1; c < ncols; c++) n += (size_t)sprintf(b + n, ",c%d", c + 1);
    n += (size_t)sprintf(b + n, rnd() % 2 ? "\r\n" : "\n");
    for (int r = 0; r < nrec && n + 200 < cap; r++) {
        int nc = (rnd() % 8 == 0) ? 1 + (int)(rnd() % (unsigned)(ncols + 1)) : ncols;
        if (rnd() % 10 == 0) nc = 0; /* blank line */
        for (int c = 0; c < nc; c++) {
            if (c) b[n++] = ',';
            int flen = (int)(rnd() % 5);
            if (rnd() % 3 == 0) {
                b[n++] = '"';
                for (int k = 0; k < flen; k++) {
                    char ch = alpha[rnd() % 6];
                    if (ch == '"') b[n++] = '"';
                    b[n++] = ch;
                }
                b[n++] = '"';
            } else {
                for (int k = 0; k < flen; k++) b[n++] = (char)('a' + rnd() % 3);
            }
            if (corrupt && rnd() % 15 == 0) b[n++] = alpha[rnd() % 6];
        }
        if (r < nrec - 1 || rnd() % 2) n += (size_t)sprintf(b + n, rnd() % 2 ? "\r\n" : "\n");
    }
    return n;
}

Test(csvparse, splits_read_every_record_once_for_all_split_sizes)
{
    static char buf[8192];
    char path[512];
    make_tmpdir();
    snprintf(path, sizeof path, "%s/r.csv", tmpdir);
    for (int seed = 1; seed <= 40; seed++) {
        rng_state = (uint64_t)seed * 7919;
        size_t n = gen_csv(buf, sizeof buf, 4 + (int)(rnd() % 20), 1 + (int)(rnd() % 4), seed % 2 == 0);
        buf[n] = 0;
        write_file(path, buf, n);
        em__csv_opts o = {0};
        o.bufsize = seed % 3 == 0 ? 3 : 0; /* tiny buffers force refills inside records and quotes */
        o.no_header = seed % 5 == 0;
        check_splits(path, buf, n, &o);
    }
    rm_tmpdir();
}

Test(csvparse, splits_of_random_bytes_agree_with_model)
{
    static const char alpha[] = "a,\"\n\r";
    static char buf[512];
    char path[512];
    make_tmpdir();
    snprintf(path, sizeof path, "%s/junk.csv", tmpdir);
    for (int seed = 1; seed <= 60; seed++) {
        rng_state = (uint64_t)seed;
        size_t n = 20 + rnd() % 100;
        for (size_t i = 0; i < n; i++) buf[i] = alpha[rnd() % 5];
        buf[n] = 0;
        write_file(path, buf, n);
        em__csv_opts o = {0};
        o.no_header = 1; /* a junk header would make the field count the only thing checked */
        o.bufsize = seed % 2 ? 2 : 0;
        check_splits(path, buf, n, &o);
    }
    rm_tmpdir();
}

Test(csvparse, header_only_empty_and_bom_files)
{
    char path[512];
    make_tmpdir();
    snprintf(path, sizeof path, "%s/h.csv", tmpdir);
    const char *cases[] = {"", "a,b\n", "a,b", "\n\na,b\n1,2\n", "\xEF\xBB\xBFid,v\n1,2\n"};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        write_file(path, cases[c], strlen(cases[c]));
        em__csv_opts o = {0};
        check_splits(path, cases[c], strlen(cases[c]), &o);
    }
    em__csv_reader r;
    cr_assert_eq(em__csv_reader_open(&r, path, 0, 100, 1, NULL), 0);
    cr_assert_eq(em__csv_col(&r.hdr, "id"), 0, "BOM dropped from the first name");
    em__csv_reader_release(&r);
    const char *paths[] = {"/nonexistent/x.csv"};
    em__split *sp;
    int n;
    char err[256];
    cr_assert_eq(em__csv_plan(paths, 1, 0, 0, NULL, &sp, &n, err, sizeof err), EM_ENOENT);
    rm_tmpdir();
}

/* The writer: fixed cases, then random fields written by em__csv_quote (and em__csv_fput, which must write the
 * same bytes) read back by the parser as the same fields. */
Test(csvparse, writer_round_trips_through_the_parser)
{
    char d[64];
    cr_assert_eq(em__csv_quote(d, "", 0), 0);
    cr_assert_eq(em__csv_quote(d, "abc", 3), 3);
    cr_assert_eq(memcmp(d, "abc", 3), 0);
    size_t n = em__csv_quote(d, "a,b", 3);
    cr_assert_eq(n, 5);
    cr_assert_eq(memcmp(d, "\"a,b\"", 5), 0);
    n = em__csv_quote(d, "q\"x", 3);
    cr_assert_eq(n, 6);
    cr_assert_eq(memcmp(d, "\"q\"\"x\"", 6), 0);
    n = em__csv_quote(d, "\r", 1);
    cr_assert_eq(n, 3);
    cr_assert_eq(memcmp(d, "\"\r\"", 3), 0);

    static const char alpha[] = "ab,\"\r\n x";
    rng_state = 99;
    for (int iter = 0; iter < 2000; iter++) {
        char f[3][16], line[3 * 34 + 4], viaf[sizeof line];
        size_t fl[3], len = 0;
        for (int k = 0; k < 3; k++) {
            fl[k] = rnd() % 16;
            for (size_t i = 0; i < fl[k]; i++) f[k][i] = alpha[rnd() % (sizeof alpha - 1)];
            if (k) line[len++] = ',';
            len += em__csv_quote(line + len, f[k], fl[k]);
        }
        line[len++] = '\n';
        FILE *mf = fmemopen(viaf, sizeof viaf, "w");
        cr_assert(mf);
        for (int k = 0; k < 3; k++) {
            if (k) putc(',', mf);
            em__csv_fput(mf, f[k], fl[k]);
        }
        putc('\n', mf);
        long flen = ftell(mf);
        fclose(mf);
        cr_assert_eq((size_t)flen, len, "iteration %d", iter);
        cr_assert_eq(memcmp(viaf, line, len), 0, "iteration %d", iter);
        em__csv_parser p;
        em__csv_row row;
        size_t used;
        em__csv_parser_init(&p, ',', "w.csv", 1, 0, NULL);
        cr_assert_eq(em__csv_parse(&p, line, len, 1, &used, &row), EM__CSV_ROW, "iteration %d: %s", iter, p.err);
        cr_assert_eq(used, len);
        cr_assert_eq(row.nfields, 3);
        for (int k = 0; k < 3; k++) {
            cr_assert_eq(row.len[k], fl[k], "iteration %d field %d", iter, k);
            cr_assert_eq(memcmp(row.field[k], f[k], fl[k]), 0, "iteration %d field %d", iter, k);
        }
        em__csv_parser_release(&p);
    }
}
