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
 *     em_text_chunks (runs of whole lines) -> em_map (the text -> (word, 1) for each of its words)
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
#ifdef __SSE2__
#include <emmintrin.h>
#endif

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


/* Bit i of the result: whether byte i of p[0..n) is whitespace, for n <= 16; bits from n up are set (the end of
 * the text ends a word like whitespace does), up to bit 15. ASCII whitespace is space and \t \n \v \f \r (9..13).
 * With SSE2 (every x86-64) the 16 bytes are classified at once. */
static inline uint64_t space_bits16(const unsigned char *p, size_t n)
{
#ifdef __SSE2__
    __m128i x;
    if (n == 16) {
        x = _mm_loadu_si128((const __m128i *)(const void *)p);
    } else { /* the text's last few bytes: not read past its end */
        unsigned char tail[16];
        memset(tail, ' ', sizeof tail);
        memcpy(tail, p, n);
        x = _mm_loadu_si128((const __m128i *)(const void *)tail);
    }
    __m128i sp = _mm_cmpeq_epi8(x, _mm_set1_epi8(' '));
    __m128i t = _mm_sub_epi8(x, _mm_set1_epi8(9)); /* \t..\r become 0..4, the only bytes with t <= 4 unsigned */
    __m128i ctl = _mm_cmpeq_epi8(_mm_min_epu8(t, _mm_set1_epi8(4)), t);
    return ((uint64_t)(uint32_t)_mm_movemask_epi8(_mm_or_si128(sp, ctl)) | (uint64_t)0xFFFF << n) & 0xFFFF;
#else
    static const unsigned char space_tab[256] = {[' '] = 1, ['\t'] = 1, ['\n'] = 1, ['\v'] = 1, ['\f'] = 1, ['\r'] = 1};
    uint64_t m = ((uint64_t)0xFFFF << n) & 0xFFFF;
    for (size_t i = 0; i < n; i++) m |= (uint64_t)space_tab[p[i]] << i;
    return m;
#endif
}

/* Map: a run of whole lines (the record's key, em_text_chunks: '\n' is whitespace like the rest, so words never
 * cross a record's edge) -> (word, int64 1) for each word. em_emit copies the bytes, so emitting a slice of the
 * borrowed text costs no allocation. Map-side combine in the shuffle adds up the ones.
 * The text is classified 64 bytes at a time into a bit mask of whitespace; words start at a non-space bit after
 * a space bit and end at the next space bit, found with count-trailing-zeros: a few instructions per word, not
 * a branch per byte. A record of about 1 MiB instead of one per line saves the per-line work (the reader's
 * search for each '\n', a record and a call per line, a short tail per line). */
static int split_words(const em_rec *text, em_emitter *out, void *arg)
{
    const unsigned char *s = text->key;
    const size_t n = text->klen;
    uint64_t prev_space = 1; /* the start: as if after whitespace */
    size_t word = 0;         /* where the current word started */
    (void)arg;
    for (size_t base = 0; base < n; base += 64) {
        uint64_t sp = 0;
        if (n - base >= 64) { /* all but the last block: no bounds to check */
            for (size_t c = 0; c < 64; c += 16) sp |= space_bits16(s + base + c, 16) << c;
        } else {
            for (size_t c = 0; c < 64; c += 16) {
                size_t at = base + c;
                sp |= (at < n ? space_bits16(s + at, n - at < 16 ? n - at : 16) : 0xFFFF) << c;
            }
        }
        uint64_t nonsp = ~sp;
        uint64_t starts = nonsp & (sp << 1 | prev_space);
        uint64_t ends = sp & (nonsp << 1 | (prev_space ^ 1));
        int rc;
        /* Starts and ends alternate, each end after its start, but for a word carried over from the last block,
         * whose end comes first. */
        if (!prev_space && ends) {
            if ((rc = em_emit_str_i64(out, (const char *)s + word, base + (size_t)__builtin_ctzll(ends) - word, 1)) < 0)
                return rc;
            ends &= ends - 1;
        }
        for (; ends; ends &= ends - 1, starts &= starts - 1) {
            word = base + (size_t)__builtin_ctzll(starts);
            if ((rc = em_emit_str_i64(out, (const char *)s + word, base + (size_t)__builtin_ctzll(ends) - word, 1)) < 0)
                return rc;
        }
        if (starts) word = base + (size_t)__builtin_ctzll(starts); /* a word that goes on into the next block */
        prev_space = sp >> 63;
    }
    if (!prev_space) { /* a word running up to the end (a file's last line, without '\n') */
        int rc = em_emit_str_i64(out, (const char *)s + word, n - word, 1);
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

/* One pass over the counts: each partition reports its number of distinct words, its total, and its own K most
 * frequent words (a bounded heap), so the leader only merges small summaries (takeOrdered, as Spark does). */
typedef struct part_summary {
    int64_t distinct, total;
    uint64_t k;
    em_rec *heap; /* min-heap by by_count_then_word reversed: the root is the least frequent kept word */
    size_t n;
} part_summary;

static int heap_less(const em_rec *a, const em_rec *b) { return by_count_then_word(a, b) > 0; } /* a ranks after b */

static void heap_sift_down(em_rec *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && heap_less(&h[l], &h[m])) m = l;
        if (r < n && heap_less(&h[r], &h[m])) m = r;
        if (m == i) return;
        em_rec t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static em_rec copy_rec(const em_rec *r)
{
    char *p = malloc((size_t)r->klen + 8 + 1);
    if (!p) abort();
    memcpy(p, r->key, r->klen);
    memcpy(p + r->klen, r->val, 8);
    return (em_rec){p, p + r->klen, r->klen, 8};
}

static void *summary_open(int part, void *arg)
{
    (void)part;
    part_summary *s = calloc(1, sizeof *s);
    if (!s) abort();
    s->k = *(const uint64_t *)arg;
    s->heap = s->k ? malloc(sizeof *s->heap * (s->k < 1024 ? s->k : 1024)) : NULL;
    return s;
}

static int summary_each(void *state, const em_rec *in, em_emitter *out, void *arg)
{
    part_summary *s = state;
    (void)out, (void)arg;
    s->distinct++;
    s->total += em_i64_get(in->val);
    if (!s->k) return 0;
    if (s->n < s->k) {
        if (s->n >= 1024 && (s->n & (s->n - 1)) == 0) { /* grow by doubling past the first 1024 */
            em_rec *h = realloc(s->heap, sizeof *h * s->n * 2);
            if (!h) abort();
            s->heap = h;
        }
        s->heap[s->n++] = copy_rec(in);
        for (size_t i = s->n - 1; i > 0 && heap_less(&s->heap[i], &s->heap[(i - 1) / 2]); i = (i - 1) / 2) {
            em_rec t = s->heap[i];
            s->heap[i] = s->heap[(i - 1) / 2];
            s->heap[(i - 1) / 2] = t;
        }
    } else if (heap_less(&s->heap[0], in)) { /* in ranks before the weakest kept word */
        free((void *)s->heap[0].key);
        s->heap[0] = copy_rec(in);
        heap_sift_down(s->heap, s->n, 0);
    }
    return 0;
}

/* Emits ("", distinct total) first, then the kept words with their counts. */
static int summary_close(void *state, em_emitter *out, void *arg)
{
    part_summary *s = state;
    int rc = 0;
    (void)arg;
    if (s) {
        uint8_t v[16];
        em_i64_put(v, s->distinct);
        em_i64_put(v + 8, s->total);
        rc = em_emit(out, "", 0, v, 16);
        for (size_t i = 0; i < s->n; i++) {
            if (rc == 0) rc = em_emit(out, s->heap[i].key, s->heap[i].klen, s->heap[i].val, 8);
            free((void *)s->heap[i].key);
        }
        free(s->heap);
        free(s);
    }
    return rc;
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
    em_ds *text = em_text_chunks(ctx, a.inputs, a.ninputs, 0);
    em_ds *words = em_map(text, split_words, NULL);
    em_ds *counts = em_reduce_by_key_agg(words, EM_AGG_SUM, 0);
    /* --out and the summary both read the shuffle: it is written once */
    if (a.out && (rc = em_save_text(counts, a.out, "str_i64")) < 0) goto fail;
    em_ds *summary = em_map_partitions(counts, summary_open, summary_each, summary_close, &a.top);
    if ((rc = em_collect(summary, &recs)) < 0) goto fail;
    if (em_is_leader(ctx)) {
        size_t nw = 0;
        for (size_t i = 0; i < recs.n; i++) {
            if (recs.recs[i].vlen == 16) { /* a partition's ("", distinct total); a word's value is 8 bytes */
                distinct += em_i64_get(recs.recs[i].val);
                total += em_i64_get((const uint8_t *)recs.recs[i].val + 8);
            } else {
                recs.recs[nw++] = recs.recs[i];
            }
        }
        qsort(recs.recs, nw, sizeof *recs.recs, by_count_then_word);
        for (size_t i = 0; i < nw && i < a.top; i++) {
            printf("%" PRId64 "\t", em_i64_get(recs.recs[i].val));
            fwrite(recs.recs[i].key, 1, recs.recs[i].klen, stdout);
            putchar('\n');
        }
        printf("distinct words: %" PRId64 "\ntotal words: %" PRId64 "\n", distinct, total);
    }
    em_records_free(&recs);
    return em_finalize(ctx, 0);
fail:
    if (em_is_leader(ctx)) fprintf(stderr, PROG ": %s: %s\n", em_strerror(rc), em_last_error());
    return em_finalize(ctx, 1);
}
