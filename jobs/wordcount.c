/*
 * wordcount.c — the word-count job: how often each word of some text files occurs, counted by every rank.
 * Follows DESIGN.md §2-5 (lazy datasets, narrow operators pipelined in a task, reduceByKey through the
 * shuffle with map-side combine, collective actions whose results the leader prints).
 *
 *     ember run -np 2 build/bin/wordcount --top 10 book.txt      the 10 most frequent words, then the totals
 *     ember run -np 4 build/bin/wordcount --out counts/ books/   `word<TAB>count` part files under counts/
 *
 * A word is a maximal run of bytes that are not ASCII whitespace (space \t \n \v \f \r). Bytes, not characters:
 * the count is exact, case-sensitive and independent of the locale, so `tr -s ' \t\n\r\v\f' '\n' | sort |
 * uniq -c` agrees with it. The dataflow is
 *     em_text (one record per line) -> em_map (a line -> (word, 1) for each of its words)
 *     -> em_reduce_by_key_agg SUM (a shuffle: one record per distinct word, its count as the value)
 * and then actions on the counts: em_count, em_reduce_i64, em_collect for --top, em_save_text for --out.
 */
#include <ember.h>

#include <errno.h>
#include <glob.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jobs/common/joberr.h"
#include "jobs/common/numarg.h"

#define PROG "wordcount"
#define DEFAULT_INPUT "examples/data/sample.txt" /* with no arguments at all (make demo), next to build/ */

static const char usage[] =
    "usage: " PROG " [--top K] [--out DIR] INPUT...\n"
    "Counts the words (runs of bytes that are not ASCII whitespace) of text files, directories or globs and\n"
    "prints `distinct words: N` and `total words: N`.\n"
    "  --top K     first print the K most frequent words as `count<TAB>word` (ties: word in byte order)\n"
    "  --out DIR   also write `word<TAB>count` lines as part files under DIR (then DIR/_SUCCESS)\n"
    "With no argument at all, counts " DEFAULT_INPUT ". Ember's own flags (--ember-*): --ember-help.\n";

typedef struct wc_args {
    const char *const *inputs;
    int ninputs;
    uint64_t top;    /* words to list; 0: none */
    const char *out; /* NULL: no part files */
} wc_args;


static int is_space(unsigned char c)
{
    return c == ' ' || (c >= '\t' && c <= '\r'); /* \t \n \v \f \r are 9..13 */
}

/* Map: a line (the record's key) -> (word, int64 1) for each word. em_emit copies the bytes, so emitting a
 * slice of the borrowed line costs no allocation. Map-side combine in the shuffle adds up the ones. */
static int split_words(const em_rec *line, em_emitter *out, void *arg)
{
    const unsigned char *s = line->key, *end = s + line->klen;
    (void)arg;
    while (s < end) {
        while (s < end && is_space(*s)) s++;
        const unsigned char *word = s;
        while (s < end && !is_space(*s)) s++;
        int rc = s > word ? em_emit_str_i64(out, (const char *)word, (size_t)(s - word), 1) : 0;
        if (rc < 0) return rc;
    }
    return 0;
}

/* Most frequent first; equal counts by word in byte order, a prefix before the longer word. */
static int by_count_then_word(const void *pa, const void *pb)
{
    const em_rec *a = pa, *b = pb;
    int64_t ca = em_i64_get(a->val), cb = em_i64_get(b->val);
    if (ca != cb) return ca > cb ? -1 : 1;
    int c = memcmp(a->key, b->key, a->klen < b->klen ? a->klen : b->klen);
    return c ? c : (a->klen > b->klen) - (a->klen < b->klen);
}

/* Why an input names nothing (NULL: it is a path that exists, or a glob that matches). Checked on every rank
 * before any action, so that a typo is a usage error (exit 2) rather than a failed job. */
static const char *input_problem(const char *path)
{
    struct stat st;
    glob_t g;
    if (stat(path, &st) == 0) return NULL;
    if (!strpbrk(path, "*?["))
        return errno == ENOENT || errno == ENOTDIR ? "no such file or directory" : strerror(errno);
    int found = glob(path, 0, NULL, &g) == 0 && g.gl_pathc > 0;
    globfree(&g);
    return found ? NULL : "no file matches";
}

/* The sample text shipped in the repository, found from the binary (build/bin/wordcount). */
static const char *default_input(const char *argv0)
{
    static char path[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", path, sizeof path - 1);
    if (n > 0)
        path[n] = '\0';
    else
        snprintf(path, sizeof path, "%s", argv0);
    char *slash = strrchr(path, '/');
    size_t dir = slash ? (size_t)(slash - path) + 1 : 0;
    snprintf(path + dir, sizeof path - dir, "../../%s", DEFAULT_INPUT);
    return path;
}

/* Reads the command line (Ember's flags already removed) into *a; the inputs are gathered at the front of argv.
 * Returns 0, 1 when --help was printed, or -1 after printing the error. */
static int parse_args(int argc, char **argv, const em_ctx *ctx, wc_args *a)
{
    static const char *def[1];
    int n = 0, only_inputs = 0;
    *a = (wc_args){0};
    if (argc <= 1) {
        def[0] = default_input(argv[0]);
        *a = (wc_args){.inputs = def, .ninputs = 1};
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        char *arg = argv[i], *eq = strchr(arg, '='), *val;
        size_t flen = eq ? (size_t)(eq - arg) : strlen(arg); /* --flag=value */
        if (only_inputs || arg[0] != '-' || arg[1] == '\0') {
            argv[1 + n++] = arg;
            continue;
        }
        if (strcmp(arg, "--") == 0) {
            only_inputs = 1;
            continue;
        }
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            if (em_is_leader(ctx)) fputs(usage, stdout);
            return 1;
        }
        int is_top = flen == 5 && strncmp(arg, "--top", 5) == 0, is_out = flen == 5 && strncmp(arg, "--out", 5) == 0;
        if (!is_top && !is_out) {
            em_job_error(ctx, PROG, "unknown flag '%s' (see --help)", arg);
            return -1;
        }
        val = eq ? eq + 1 : ++i < argc ? argv[i] : NULL;
        if (!val || !*val) {
            em_job_error(ctx, PROG, "%s: missing value", is_top ? "--top" : "--out");
            return -1;
        }
        if (is_out) {
            a->out = val;
        } else if (em_parse_u64(val, &a->top) < 0 || a->top > INT64_MAX) {
            em_job_error(ctx, PROG, "--top: '%s' is not a count of words (expected an integer >= 0)", val);
            return -1;
        }
    }
    if (n == 0) {
        em_job_error(ctx, PROG, "no input: give one or more files, directories or globs (see --help)");
        return -1;
    }
    for (int i = 1; i <= n; i++) {
        const char *why = input_problem(argv[i]);
        if (why) {
            em_job_error(ctx, PROG, "%s: %s", argv[i], why);
            return -1;
        }
    }
    a->inputs = (const char *const *)(argv + 1);
    a->ninputs = n;
    return 0;
}

int main(int argc, char **argv)
{
    em_ctx *ctx;
    wc_args a;
    em_records recs = {0};
    int64_t distinct = 0, total = 0;
    int rc;
    if (em_init(&argc, &argv, &ctx) < 0) return 1;
    if ((rc = parse_args(argc, argv, ctx, &a)) != 0) return em_finalize(ctx, rc < 0 ? 2 : 0);

    /* Lazy: nothing runs until the first action below. */
    em_ds *lines = em_text(ctx, a.inputs, a.ninputs, 0);
    em_ds *words = em_map(lines, split_words, NULL);
    em_ds *counts = em_reduce_by_key_agg(words, EM_AGG_SUM, 0);

    if (a.out && (rc = em_save_text(counts, a.out, "str_i64")) < 0) goto fail;
    if ((rc = em_count(counts, &distinct)) < 0) goto fail;
    if ((rc = em_reduce_i64(counts, EM_AGG_SUM, &total)) < 0) goto fail;
    /* --top: every distinct word comes to each rank (bounded by --ember-max-result); the leader sorts. */
    if (a.top && (rc = em_collect(counts, &recs)) < 0) goto fail;
    if (em_is_leader(ctx)) {
        if (a.top) qsort(recs.recs, recs.n, sizeof *recs.recs, by_count_then_word);
        for (size_t i = 0; i < recs.n && i < a.top; i++) {
            printf("%" PRId64 "\t", em_i64_get(recs.recs[i].val));
            fwrite(recs.recs[i].key, 1, recs.recs[i].klen, stdout);
            putchar('\n');
        }
        printf("distinct words: %" PRId64 "\ntotal words: %" PRId64 "\n", distinct, total);
    }
    if (a.top) em_records_free(&recs);
    return em_finalize(ctx, 0);
fail:
    if (em_is_leader(ctx)) fprintf(stderr, PROG ": %s: %s\n", em_strerror(rc), em_last_error());
    return em_finalize(ctx, 1);
}
