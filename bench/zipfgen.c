/*
 * zipfgen — deterministic Zipf word-corpus generator for the word-count benchmarks (issue 3, "Benchmarks").
 *
 *     zipfgen --bytes N [--vocab V] [--seed S] [--s 1.1] > corpus.txt
 *
 * Writes exactly N bytes (suffixes K/M/G, powers of 1024) of text to stdout: words drawn from a Zipf(s)
 * distribution over a fixed vocabulary of V pseudo-words (default 1e6), separated by single spaces, with a
 * newline every 10..15 words. The last byte is always a newline. The same arguments give the same bytes.
 *
 * Vocabulary: the word of rank r (1 = most frequent) gets a length that grows with log(r), like natural
 * language (frequent words are short), plus noise; words of one length L are distinct by construction (the
 * j-th word of length L is j written in base 26 with min(L, 6) digits, scrambled by an affine bijection mod 26^L).
 * Sampling: Walker's alias table (O(1) per word) driven by xoshiro256**. Not Ember code: it does not use
 * libember and has no dependencies beyond libc.
 */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_WORD_LEN 20

/* ---- PRNG: splitmix64 for seeding, xoshiro256** for the stream --------------------------------------- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

typedef struct rng {
    uint64_t s[4];
} rng;

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t rng_next(rng *g)
{
    uint64_t *s = g->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

static void rng_seed(rng *g, uint64_t seed)
{
    for (int i = 0; i < 4; i++) g->s[i] = splitmix64(&seed);
}

/* Uniform integer in [0, n) (multiply-high; the bias is below 2^-32 for our n). */
static uint32_t rng_below(rng *g, uint32_t n)
{
    return (uint32_t)(((rng_next(g) >> 32) * (uint64_t)n) >> 32);
}

/* ---- argument parsing --------------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr, "usage: zipfgen --bytes N[K|M|G] [--vocab V] [--seed S] [--s EXPONENT]\n");
    exit(2);
}

/* Parses "123", "1e6", "100M", "1.5G"; returns -1 on junk. */
static double parse_size(const char *flag, const char *s)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || v < 0) goto bad;
    switch (*end) {
    case 'k': case 'K': v *= 1024.0; end++; break;
    case 'm': case 'M': v *= 1024.0 * 1024.0; end++; break;
    case 'g': case 'G': v *= 1024.0 * 1024.0 * 1024.0; end++; break;
    default: break;
    }
    if (*end == 'B' || *end == 'b') end++;
    if (*end != '\0') goto bad;
    return v;
bad:
    fprintf(stderr, "zipfgen: %s: expected a non-negative number with optional K/M/G suffix, got '%s'\n", flag, s);
    exit(2);
}

/* ---- vocabulary ---------------------------------------------------------------------------------------- */

static uint64_t pow26(int l)
{
    uint64_t p = 1;
    for (int i = 0; i < l; i++) p *= 26;
    return p;
}

/* Builds the V words into one pool; off[r] is where word r starts (off[V] = end). Word r has rank r+1. */
static char *build_vocab(uint32_t v, uint64_t seed, uint32_t **off_out)
{
    rng g;
    rng_seed(&g, seed ^ 0x766f636162ULL);
    uint64_t used[MAX_WORD_LEN + 1] = {0};
    uint64_t cap[MAX_WORD_LEN + 1];
    uint64_t mul[MAX_WORD_LEN + 1], add[MAX_WORD_LEN + 1];
    for (int l = 1; l <= MAX_WORD_LEN; l++) {
        /* Only the first 6 letters encode j (26^6 = 3.1e8 > the largest vocabulary), so mul * j < 2^58. */
        cap[l] = pow26(l < 6 ? l : 6);
        /* An odd multiplier that is not a multiple of 13 is coprime with 26^k: an affine bijection. */
        uint64_t m;
        do m = rng_next(&g) % cap[l] | 1; while (m % 13 == 0);
        mul[l] = m;
        add[l] = rng_next(&g) % cap[l];
    }
    uint32_t *off = malloc(((size_t)v + 1) * sizeof *off);
    char *pool = malloc((size_t)v * MAX_WORD_LEN + 1);
    if (!off || !pool) {
        fprintf(stderr, "zipfgen: out of memory building a vocabulary of %" PRIu32 " words\n", v);
        exit(1);
    }
    uint32_t pos = 0;
    for (uint32_t r = 0; r < v; r++) {
        /* Mean length 2.5 + 1.1*log10(rank): ~3 for the top words, ~9 at rank 1e6; noise in [-2, +2]. */
        double mean = 2.5 + 1.1 * log10((double)r + 1.0);
        int l = (int)lround(mean) + (int)rng_below(&g, 5) - 2;
        if (l < 1) l = 1;
        if (l > MAX_WORD_LEN) l = MAX_WORD_LEN;
        while (used[l] >= cap[l]) l++; /* length full (only for tiny L): take the next length */
        uint64_t j = used[l]++;
        uint64_t code = (mul[l] * j + add[l]) % cap[l];
        off[r] = pos;
        for (int i = 0; i < l; i++) {
            if (i < 6) {
                pool[pos + (uint32_t)i] = (char)('a' + code % 26);
                code /= 26;
            } else {
                pool[pos + (uint32_t)i] = (char)('a' + rng_below(&g, 26)); /* past 6 digits: free letters */
            }
        }
        pos += (uint32_t)l;
    }
    off[v] = pos;
    *off_out = off;
    return pool;
}

/* ---- alias table (Walker / Vose) ------------------------------------------------------------------------ */

typedef struct alias_ent {
    uint32_t thresh; /* keep this index if the 32 low random bits are below thresh */
    uint32_t alias;
} alias_ent;

static alias_ent *build_alias(uint32_t v, double s)
{
    double *p = malloc((size_t)v * sizeof *p);
    uint32_t *small = malloc((size_t)v * sizeof *small), *large = malloc((size_t)v * sizeof *large);
    alias_ent *t = malloc((size_t)v * sizeof *t);
    if (!p || !small || !large || !t) {
        fprintf(stderr, "zipfgen: out of memory building the alias table\n");
        exit(1);
    }
    double sum = 0;
    for (uint32_t i = 0; i < v; i++) sum += p[i] = pow((double)i + 1.0, -s);
    uint32_t ns = 0, nl = 0;
    for (uint32_t i = 0; i < v; i++) {
        p[i] = p[i] * (double)v / sum;
        if (p[i] < 1.0) small[ns++] = i;
        else large[nl++] = i;
    }
    while (ns && nl) {
        uint32_t a = small[--ns], b = large[nl - 1];
        t[a].thresh = (uint32_t)fmin(p[a] * 4294967296.0, 4294967295.0);
        t[a].alias = b;
        p[b] -= 1.0 - p[a];
        if (p[b] < 1.0) {
            nl--;
            small[ns++] = b;
        }
    }
    while (nl) { uint32_t b = large[--nl]; t[b].thresh = UINT32_MAX; t[b].alias = b; }
    while (ns) { uint32_t a = small[--ns]; t[a].thresh = UINT32_MAX; t[a].alias = a; }
    free(p);
    free(small);
    free(large);
    return t;
}

/* ---- output --------------------------------------------------------------------------------------------- */

static void write_all(const char *buf, size_t n)
{
    while (n) {
        ssize_t w = write(STDOUT_FILENO, buf, n);
        if (w < 0) {
            if (errno == EINTR) continue;
            perror("zipfgen: write to stdout failed");
            exit(1);
        }
        buf += w;
        n -= (size_t)w;
    }
}

int main(int argc, char **argv)
{
    double bytes_d = -1, vocab_d = 1e6, s = 1.1;
    uint64_t seed = 42;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc) usage();
        const char *val = argv[++i];
        if (!strcmp(a, "--bytes")) bytes_d = parse_size(a, val);
        else if (!strcmp(a, "--vocab")) vocab_d = parse_size(a, val);
        else if (!strcmp(a, "--seed")) seed = (uint64_t)parse_size(a, val);
        else if (!strcmp(a, "--s")) {
            char *end;
            s = strtod(val, &end);
            if (end == val || *end || !(s > 0)) {
                fprintf(stderr, "zipfgen: --s: expected a positive exponent, got '%s'\n", val);
                return 2;
            }
        } else {
            fprintf(stderr, "zipfgen: unknown flag '%s'\n", a);
            usage();
        }
    }
    if (bytes_d < 0) usage();
    if (vocab_d < 1 || vocab_d > 1e8) {
        fprintf(stderr, "zipfgen: --vocab: expected 1..1e8 words\n");
        return 2;
    }
    uint64_t total = (uint64_t)bytes_d;
    uint32_t v = (uint32_t)vocab_d;

    uint32_t *off;
    char *pool = build_vocab(v, seed, &off);
    alias_ent *tab = build_alias(v, s);
    rng g;
    rng_seed(&g, seed);

    enum { BUF = 1 << 20 };
    static char buf[BUF + MAX_WORD_LEN + 2];
    size_t len = 0;
    uint64_t written = 0;
    uint32_t line_left = 10 + rng_below(&g, 6);
    while (written < total) {
        uint64_t x = rng_next(&g);
        uint32_t idx = (uint32_t)(((x >> 32) * (uint64_t)v) >> 32);
        if ((uint32_t)x >= tab[idx].thresh) idx = tab[idx].alias;
        uint32_t wl = off[idx + 1] - off[idx];
        memcpy(buf + len, pool + off[idx], MAX_WORD_LEN); /* fixed-size copy; pool has slack at the end */
        len += wl;
        if (--line_left == 0) {
            buf[len++] = '\n';
            line_left = 10 + rng_below(&g, 6);
        } else {
            buf[len++] = ' ';
        }
        if (len >= BUF || written + len >= total) {
            size_t n = len;
            if (written + n >= total) {
                n = (size_t)(total - written);
                buf[n - 1] = '\n'; /* the corpus always ends with a newline */
            }
            write_all(buf, n);
            written += n;
            len = 0;
        }
    }
    free(pool);
    free(off);
    free(tab);
    return 0;
}
