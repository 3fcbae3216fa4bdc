/*
 * Tests of operators/sources/textsplit.c: input expansion (files, directories, globs), split planning and the
 * "a split owns the lines that start inside it" rule, checked against a naive whole-file splitter written here.
 */
#include <criterion/criterion.h>

#include "ember.h"
#include "operators/sources/textsplit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ---------------------------------------------------------------------------------------------- */

static uint64_t rng_state;
static uint32_t rnd(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (uint32_t)(rng_state >> 33);
}

static char tmpdir[256];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/em-textsplit-XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void rm_tmpdir(void)
{
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

static char *path_in(const char *name)
{
    static char buf[32][512];
    static int k;
    char *p = buf[k++ % 32];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    return p;
}

static void write_file(const char *path, const char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f, "%s", path);
    cr_assert_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

/* A growing list of lines (copied), used for both the expected and the observed sequences. */
typedef struct lines {
    char **s;
    size_t *len;
    uint64_t *no;
    size_t n, cap;
} lines;

static void lines_add(lines *l, const char *s, size_t len, uint64_t no)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 64;
        l->s = realloc(l->s, l->cap * sizeof *l->s);
        l->len = realloc(l->len, l->cap * sizeof *l->len);
        l->no = realloc(l->no, l->cap * sizeof *l->no);
    }
    l->s[l->n] = malloc(len + 1);
    memcpy(l->s[l->n], s, len);
    l->len[l->n] = len;
    l->no[l->n++] = no;
}

static void lines_free(lines *l)
{
    for (size_t i = 0; i < l->n; i++) free(l->s[i]);
    free(l->s);
    free(l->len);
    free(l->no);
    memset(l, 0, sizeof *l);
}

/* The naive model: the whole file in memory, cut at every '\n', one '\r' dropped before it. */
static void naive_lines(const char *data, size_t len, lines *out)
{
    size_t s = 0;
    uint64_t no = 1;
    for (size_t i = 0; i <= len; i++) {
        if (i == len && s == len) break;
        if (i == len || data[i] == '\n') {
            size_t n = i - s;
            if (n && data[s + n - 1] == '\r') n--;
            lines_add(out, data + s, n, no++);
            s = i + 1;
        }
    }
}

/* Reads every split of a plan in order. */
static void read_plan(const em__split *sp, int n, size_t bufsize, int count_lines, lines *out)
{
    for (int i = 0; i < n; i++) {
        em__line_reader r;
        const char *line;
        size_t len;
        uint64_t no;
        int rc = em__line_reader_open(&r, sp[i].path, sp[i].start, sp[i].end, bufsize, count_lines);
        cr_assert_eq(rc, 0, "open: %s", r.err);
        while ((rc = em__line_reader_next(&r, &line, &len, &no)) > 0) lines_add(out, line, len, no);
        cr_assert_eq(rc, 0, "next: %s", r.err);
        em__line_reader_release(&r);
    }
}

/* Reads every split of a plan in order as chunks (em__line_reader_chunk), cut into lines by the naive model. Each
 * chunk must be whole lines: it ends with '\n' unless it ends the file. */
static void read_plan_chunks(const em__split *sp, int n, size_t bufsize, lines *out)
{
    for (int i = 0; i < n; i++) {
        em__line_reader r;
        const char *chunk;
        size_t len;
        int rc = em__line_reader_open(&r, sp[i].path, sp[i].start, sp[i].end, bufsize, 0);
        cr_assert_eq(rc, 0, "open: %s", r.err);
        while ((rc = em__line_reader_chunk(&r, &chunk, &len)) > 0) {
            cr_assert_gt(len, 0, "an empty chunk");
            if (chunk[len - 1] != '\n') { /* then it is the file's last line: nothing may follow */
                const char *more;
                size_t ml;
                cr_assert_eq(em__line_reader_chunk(&r, &more, &ml), 0, "a chunk without '\\n' before more text");
            }
            naive_lines(chunk, len, out);
        }
        cr_assert_eq(rc, 0, "chunk: %s", r.err);
        em__line_reader_release(&r);
    }
}

static void assert_same(const lines *want, const lines *got, int check_no, const char *what)
{
    cr_assert_eq(got->n, want->n, "%s: %zu lines, want %zu", what, got->n, want->n);
    for (size_t i = 0; i < want->n; i++) {
        cr_assert_eq(got->len[i], want->len[i], "%s: line %zu has length %zu, want %zu", what, i, got->len[i],
                     want->len[i]);
        cr_assert(memcmp(got->s[i], want->s[i], want->len[i]) == 0, "%s: line %zu differs", what, i);
        if (check_no) cr_assert_eq(got->no[i], want->no[i], "%s: line %zu numbered %llu", what, i,
                                   (unsigned long long)got->no[i]);
    }
}

/* Random text: line lengths 0..maxlen, optional CRLF, optional final newline. */
static size_t gen_text(char *buf, size_t cap, int nlines, int maxlen, int crlf, int final_nl)
{
    size_t n = 0;
    for (int i = 0; i < nlines; i++) {
        int len = (rnd() % 4 == 0) ? 0 : (int)(rnd() % (unsigned)(maxlen + 1));
        for (int j = 0; j < len && n < cap - 3; j++) buf[n++] = (char)('a' + rnd() % 26);
        if (i == nlines - 1 && !final_nl) break;
        if (crlf && rnd() % 2) buf[n++] = '\r';
        buf[n++] = '\n';
    }
    return n;
}

/* Checks one set of files for every split size 1..total+1 against the naive model. */
static void check_all_split_sizes(const char *const *paths, int npaths, const char **files, const char **data,
                                  const size_t *dlen, int nfiles, size_t bufsize)
{
    lines want = {0};
    size_t total = 0;
    for (int f = 0; f < nfiles; f++) {
        lines one = {0};
        naive_lines(data[f], dlen[f], &one);
        for (size_t i = 0; i < one.n; i++) lines_add(&want, one.s[i], one.len[i], one.no[i]);
        lines_free(&one);
        total += dlen[f];
    }
    (void)files;
    for (uint64_t sz = 1; sz <= total + 1; sz++) {
        em__split *sp;
        int n;
        char err[256] = "";
        int rc = em__text_plan(paths, npaths, sz, 0, &sp, &n, err, sizeof err);
        cr_assert_eq(rc, 0, "plan: %s", err);
        for (int c = 0; c < 3; c++) { /* c == 2: chunks */
            lines got = {0};
            char what[64];
            snprintf(what, sizeof what, "split %llu %s", (unsigned long long)sz,
                     c == 2 ? "chunks" : c ? "count_lines 1" : "count_lines 0");
            if (c == 2) read_plan_chunks(sp, n, bufsize, &got);
            else read_plan(sp, n, bufsize, c, &got);
            assert_same(&want, &got, c == 1, what);
            lines_free(&got);
        }
        em__text_plan_free(sp);
    }
    lines_free(&want);
}

/* ---- tests ------------------------------------------------------------------------------------------------- */

Test(textsplit, every_line_once_for_all_split_sizes)
{
    static char buf[4096];
    make_tmpdir();
    for (int seed = 1; seed <= 12; seed++) {
        rng_state = (uint64_t)seed;
        int crlf = seed % 3 == 0, final_nl = seed % 2;
        size_t n = gen_text(buf, sizeof buf, 5 + (int)(rnd() % 25), seed % 4 == 0 ? 40 : 9, crlf, final_nl);
        const char *p = path_in("f.txt");
        write_file(p, buf, n);
        const char *paths[] = {p};
        const char *data[] = {buf};
        /* a tiny buffer makes most lines "longer than the buffer" and exercises the growth path */
        check_all_split_sizes(paths, 1, paths, data, &n, 1, seed % 2 ? 4 : 0);
    }
    rm_tmpdir();
}

Test(textsplit, edge_files)
{
    static const char *cases[] = {"", "\n", "\n\n", "a", "a\n", "\r\n", "a\r\nb", "ab\n\ncd", "\nx\n\n\ny"};
    make_tmpdir();
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const char *p = path_in("e.txt");
        size_t n = strlen(cases[c]);
        write_file(p, cases[c], n);
        const char *paths[] = {p};
        const char *data[] = {cases[c]};
        check_all_split_sizes(paths, 1, paths, data, &n, 1, 1);
        check_all_split_sizes(paths, 1, paths, data, &n, 1, 0);
    }
    rm_tmpdir();
}

Test(textsplit, line_longer_than_default_buffer)
{
    size_t big = 3 * EM__LINE_READER_DEFAULT_BUF + 17, n = 0;
    char *buf = malloc(big + 64);
    make_tmpdir();
    memcpy(buf, "first\n", 6);
    n = 6;
    memset(buf + n, 'x', big);
    n += big;
    memcpy(buf + n, "\r\nlast", 6);
    n += 6;
    const char *p = path_in("big.txt");
    write_file(p, buf, n);
    const char *paths[] = {p};
    lines want = {0};
    naive_lines(buf, n, &want);
    cr_assert_eq(want.n, 3);
    /* tiny split sizes over a 3 MiB line are quadratic (each split skips through the line); the small-buffer
     * runs of the other tests cover tiny splits, this one covers the default buffer's growth */
    uint64_t sizes[] = {100000, 1 << 20, big + 5, big + 6, big + 7, big + 100};
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        em__split *sp;
        int ns;
        lines got = {0};
        cr_assert_eq(em__text_plan(paths, 1, sizes[i], 0, &sp, &ns, NULL, 0), 0);
        read_plan(sp, ns, 0, 1, &got);
        assert_same(&want, &got, 1, "big line");
        lines_free(&got);
        em__text_plan_free(sp);
    }
    lines_free(&want);
    free(buf);
    rm_tmpdir();
}

Test(textsplit, directories_sorted_skipping_hidden_and_underscore)
{
    make_tmpdir();
    const char *d = path_in("in");
    cr_assert_eq(mkdir(d, 0755), 0);
    cr_assert_eq(mkdir(path_in("in/sub"), 0755), 0);
    write_file(path_in("in/part-1"), "b1\nb2", 5);
    write_file(path_in("in/part-0"), "a1\r\na2\n", 7);
    write_file(path_in("in/part-2"), "", 0);
    write_file(path_in("in/_SUCCESS"), "no\n", 3);
    write_file(path_in("in/.hidden"), "no\n", 3);
    write_file(path_in("in/sub/x"), "no\n", 3);
    write_file(path_in("solo"), "c1\n", 3);
    const char *paths[] = {d, path_in("solo")};
    const char *data[] = {"a1\r\na2\n", "b1\nb2", "c1\n"};
    size_t dlen[] = {7, 5, 3};
    check_all_split_sizes(paths, 2, NULL, data, dlen, 3, 0);

    em__split *sp;
    int n;
    cr_assert_eq(em__text_plan(paths, 2, 1000, 0, &sp, &n, NULL, 0), 0);
    cr_assert_eq(n, 3);
    cr_assert_str_eq(sp[0].path, path_in("in/part-0"));
    cr_assert_str_eq(sp[1].path, path_in("in/part-1"));
    cr_assert_eq(sp[1].file, 1);
    cr_assert_eq(sp[2].file, 3, "the empty part-2 keeps its file index");
    em__text_plan_free(sp);
    rm_tmpdir();
}

Test(textsplit, globs)
{
    make_tmpdir();
    write_file(path_in("x2.log"), "two\n", 4);
    write_file(path_in("x1.log"), "one\n", 4);
    write_file(path_in("x1.txt"), "no\n", 3);
    write_file(path_in("_x0.log"), "no\n", 3);
    char pat[512];
    snprintf(pat, sizeof pat, "%s/*.log", tmpdir);
    const char *paths[] = {pat};
    const char *data[] = {"one\n", "two\n"};
    size_t dlen[] = {4, 4};
    check_all_split_sizes(paths, 1, NULL, data, dlen, 2, 0);

    /* a glob matching a directory expands it */
    cr_assert_eq(mkdir(path_in("dir9"), 0755), 0);
    write_file(path_in("dir9/a"), "in dir\n", 7);
    snprintf(pat, sizeof pat, "%s/dir?", tmpdir);
    const char *data2[] = {"in dir\n"};
    size_t dlen2[] = {7};
    check_all_split_sizes(paths, 1, NULL, data2, dlen2, 1, 0);
    rm_tmpdir();
}

Test(textsplit, missing_inputs_are_enoent_with_path)
{
    em__split *sp = NULL;
    int n = -1;
    char err[256];
    const char *p1[] = {"/nonexistent/em-file.txt"};
    cr_assert_eq(em__text_plan(p1, 1, 0, 0, &sp, &n, err, sizeof err), EM_ENOENT);
    cr_assert(strstr(err, "/nonexistent/em-file.txt"), "%s", err);
    const char *p2[] = {"/nonexistent/*.txt"};
    cr_assert_eq(em__text_plan(p2, 1, 0, 0, &sp, &n, err, sizeof err), EM_ENOENT);
    cr_assert(strstr(err, "no file matches"), "%s", err);
    em__line_reader r;
    cr_assert_eq(em__line_reader_open(&r, "/nonexistent/em-file.txt", 0, 10, 0, 0), EM_ENOENT);
    cr_assert(strstr(r.err, "/nonexistent/em-file.txt"));
    em__line_reader_release(&r);
}

Test(textsplit, min_splits_lowers_split_size)
{
    static char buf[1000];
    make_tmpdir();
    memset(buf, 'z', sizeof buf);
    write_file(path_in("a"), buf, 1000);
    write_file(path_in("b"), buf, 7);
    write_file(path_in("c"), buf, 0);
    const char *paths[] = {path_in("a"), path_in("b"), path_in("c")};
    em__split *sp;
    int n;
    for (int m = 1; m <= 1100; m += 37) {
        cr_assert_eq(em__text_plan(paths, 3, 0, m, &sp, &n, NULL, 0), 0);
        cr_assert_geq(n, m <= 1007 ? m : 1007, "min_splits %d gave %d", m, n);
        uint64_t covered = 0;
        for (int i = 0; i < n; i++) {
            cr_assert_lt(sp[i].start, sp[i].end);
            covered += sp[i].end - sp[i].start;
        }
        cr_assert_eq(covered, 1007);
        em__text_plan_free(sp);
    }
    cr_assert_eq(em__text_plan(paths, 3, 0, 0, &sp, &n, NULL, 0), 0);
    cr_assert_eq(n, 2, "one split per non-empty file with the default size");
    em__text_plan_free(sp);
    rm_tmpdir();
}
