/*
 * wc_baseline — the single-threaded C word count that Ember's wordcount is measured against (issue 3,
 * "Benchmarks"). Meant as an honest, reasonably tuned baseline, not a straw man:
 *   - input read with large read() calls (16 MiB) straight into the scan buffer, no stdio;
 *   - words are maximal runs of bytes that are not ASCII whitespace (space \t \n \v \f \r), case-sensitive,
 *     exactly as jobs/wordcount.c defines them; a word split across two reads is carried over;
 *   - one open-addressing hash table (linear probing, power-of-two size, load <= 1/2) whose slots hold the
 *     full 64-bit hash, so almost every probe that is not a hit is rejected without touching the word bytes;
 *     words of up to 12 bytes are stored in the slot, longer ones in one arena (no per-word malloc);
 *     the hash reads 8 bytes at a time; slots are prefetched a batch of 16 words ahead; the table sits
 *     on transparent huge pages.
 *
 *     wc_baseline FILE...     (no FILE or "-": stdin)
 *
 * Prints `distinct words: N` and `total words: N` on stdout, like `wordcount`. With `--top K` also prints the
 * K most frequent words as `count<TAB>word` (ties by word in byte order) so outputs can be cross-checked.
 * Not Ember code: it does not call libember.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static void die(const char *what)
{
    fprintf(stderr, "wc_baseline: %s\n", what);
    exit(1);
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n);
    if (!p) die("out of memory");
    return p;
}

/* ---- hash ------------------------------------------------------------------------------------------------ */

static inline uint64_t load64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline uint64_t mix(uint64_t a, uint64_t b)
{
    /* 64x64 -> 128 multiply folded (the wyhash mixer); __int128 is a GCC extension. */
    __extension__ unsigned __int128 r = (unsigned __int128)a * b;
    return (uint64_t)r ^ (uint64_t)(r >> 64);
}

static inline uint64_t hash_word(const unsigned char *p, size_t n)
{
    uint64_t h = 0x243f6a8885a308d3ULL ^ n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) h = mix(h ^ load64(p + i), 0x9e3779b97f4a7c15ULL);
    uint64_t t = 0;
    if (i < n) memcpy(&t, p + i, n - i);
    return mix(h ^ t, 0xbf58476d1ce4e5b9ULL) ^ (h >> 29);
}

/* ---- table ----------------------------------------------------------------------------------------------- */

enum { INLINE_MAX = 12 };

/* 32 bytes, two slots per cache line. Words of up to INLINE_MAX bytes are stored in the slot itself, so the
 * frequent (short) words are matched without a second cache miss; longer ones live in the arena. */
typedef struct slot {
    uint64_t hash;  /* 0 = empty (a real hash of 0 is stored as 1) */
    uint64_t count;
    uint32_t len;
    union {
        unsigned char bytes[INLINE_MAX]; /* len <= INLINE_MAX */
        uint32_t off[2];                 /* else: arena offset, low and high halves (keeps 4-byte alignment) */
    } w;
} slot;

static slot *tab;
static size_t tab_mask, tab_used;
static unsigned char *arena;
static size_t arena_len, arena_cap;

static const unsigned char *slot_word(const slot *s)
{
    if (s->len <= INLINE_MAX) return s->w.bytes;
    return arena + ((uint64_t)s->w.off[1] << 32 | s->w.off[0]);
}

static void tab_grow(void)
{
    size_t old_n = tab ? tab_mask + 1 : 0, n = old_n ? old_n * 2 : (size_t)1 << 16;
    slot *old = tab;
    /* Probes are random accesses into a table of tens of MB: transparent huge pages cut the TLB misses,
     * which cost as much as the cache misses themselves. */
    size_t bytes = n * sizeof *tab;
    if (bytes >= ((size_t)2 << 20)) {
        tab = aligned_alloc((size_t)2 << 20, bytes);
        if (!tab) die("out of memory");
        madvise(tab, bytes, MADV_HUGEPAGE);
        memset(tab, 0, bytes);
    } else {
        tab = calloc(n, sizeof *tab);
        if (!tab) die("out of memory");
    }
    tab_mask = n - 1;
    for (size_t i = 0; i < old_n; i++) {
        if (!old[i].hash) continue;
        size_t j = old[i].hash & tab_mask;
        while (tab[j].hash) j = (j + 1) & tab_mask;
        tab[j] = old[i];
    }
    free(old);
}

static inline void count_word(const unsigned char *w, size_t n, uint64_t h)
{
    size_t j = h & tab_mask;
    for (;;) {
        slot *s = &tab[j];
        if (s->hash == h && s->len == n && memcmp(slot_word(s), w, n) == 0) {
            s->count++;
            return;
        }
        if (!s->hash) break;
        j = (j + 1) & tab_mask;
    }
    slot *s = &tab[j];
    *s = (slot){.hash = h, .count = 1, .len = (uint32_t)n};
    if (n <= INLINE_MAX) {
        memcpy(s->w.bytes, w, n);
    } else {
        if (arena_len + n > arena_cap) {
            arena_cap = (arena_cap ? arena_cap * 2 : (size_t)1 << 24) + n;
            arena = xrealloc(arena, arena_cap);
        }
        memcpy(arena + arena_len, w, n);
        s->w.off[0] = (uint32_t)arena_len;
        s->w.off[1] = (uint32_t)((uint64_t)arena_len >> 32);
        arena_len += n;
    }
    if (++tab_used * 2 > tab_mask + 1) tab_grow();
}

/* ---- scanning -------------------------------------------------------------------------------------------- */

static unsigned char is_space[256];

/* Words are hashed in batches and their slots prefetched before any is looked up, so the cache misses of a
 * batch overlap instead of being paid one after another. */
enum { BATCH = 16 };
typedef struct pending {
    const unsigned char *w;
    size_t n;
    uint64_t h;
} pending;

static void flush_batch(pending *b, int nb)
{
    for (int k = 0; k < nb; k++) count_word(b[k].w, b[k].n, b[k].h);
}

/* Counts the complete words of buf[0, n); returns how many trailing bytes form an unfinished word. With
 * `last`, the buffer ends the input and a trailing word is complete. */
static size_t scan(const unsigned char *buf, size_t n, int last, uint64_t *total)
{
    pending b[BATCH];
    int nb = 0;
    size_t i = 0, left = 0;
    uint64_t words = 0;
    for (;;) {
        while (i < n && is_space[buf[i]]) i++;
        if (i == n) break;
        size_t start = i;
        while (i < n && !is_space[buf[i]]) i++;
        if (i == n && !last) {
            left = n - start;
            break;
        }
        uint64_t h = hash_word(buf + start, i - start);
        h += !h;
        __builtin_prefetch(&tab[h & tab_mask]);
        b[nb++] = (pending){buf + start, i - start, h};
        words++;
        if (nb == BATCH) {
            flush_batch(b, nb);
            nb = 0;
        }
    }
    flush_batch(b, nb);
    *total += words;
    return left;
}

static void count_fd(int fd, const char *name, uint64_t *total)
{
    static unsigned char *buf;
    static size_t cap = (size_t)16 << 20;
    if (!buf) buf = xrealloc(NULL, cap);
    size_t have = 0; /* bytes of an unfinished word at buf[0, have) */
    for (;;) {
        if (have == cap) { /* one word longer than the buffer: grow */
            cap *= 2;
            buf = xrealloc(buf, cap);
        }
        ssize_t r = read(fd, buf + have, cap - have);
        if (r < 0) {
            if (errno == EINTR) continue;
            fprintf(stderr, "wc_baseline: read %s: %s\n", name, strerror(errno));
            exit(1);
        }
        size_t n = have + (size_t)r;
        size_t left = scan(buf, n, r == 0, total);
        if (r == 0) break;
        memmove(buf, buf + n - left, left);
        have = left;
    }
}

/* ---- --top ----------------------------------------------------------------------------------------------- */

static int by_count_then_word(const void *a, const void *b)
{
    const slot *x = *(const slot *const *)a, *y = *(const slot *const *)b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    size_t m = x->len < y->len ? x->len : y->len;
    int c = memcmp(slot_word(x), slot_word(y), m);
    if (c) return c;
    return (x->len > y->len) - (x->len < y->len);
}

static void print_top(long k)
{
    slot **v = xrealloc(NULL, (tab_used ? tab_used : 1) * sizeof *v);
    size_t n = 0;
    for (size_t i = 0; i <= tab_mask; i++)
        if (tab[i].hash) v[n++] = &tab[i];
    qsort(v, n, sizeof *v, by_count_then_word);
    for (size_t i = 0; i < n && (long)i < k; i++)
        printf("%" PRIu64 "\t%.*s\n", v[i]->count, (int)v[i]->len, (const char *)slot_word(v[i]));
    free(v);
}

int main(int argc, char **argv)
{
    static const char ws[] = " \t\n\v\f\r";
    for (const char *c = ws; *c; c++) is_space[(unsigned char)*c] = 1;
    tab_grow();

    long top = 0;
    int nfiles = 0;
    uint64_t total = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--top")) {
            char *end;
            if (i + 1 >= argc || (top = strtol(argv[i + 1], &end, 10)) < 0 || *end) {
                fprintf(stderr, "wc_baseline: --top: expected a non-negative integer\n");
                return 2;
            }
            i++;
            continue;
        }
        nfiles++;
        if (!strcmp(argv[i], "-")) {
            count_fd(0, "stdin", &total);
            continue;
        }
        int fd = open(argv[i], O_RDONLY);
        if (fd < 0) {
            fprintf(stderr, "wc_baseline: open %s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        count_fd(fd, argv[i], &total);
        close(fd);
    }
    if (!nfiles) count_fd(0, "stdin", &total);
    if (top) print_top(top);
    printf("distinct words: %zu\ntotal words: %" PRIu64 "\n", tab_used, total);
    return 0;
}
