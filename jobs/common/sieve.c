/*
 * sieve.c — em_sieve_count(): primes in [a, b) by a segmented sieve of Eratosthenes on a mod-30 wheel.
 * Used by the primecount job (DESIGN.md §1, jobs/); pure C11, no MPI.
 *
 * Layout of the sieve: one byte stands for 30 consecutive numbers, one bit for each residue coprime to 30.
 *
 *     byte g covers [30g, 30g + 30)      bit  0  1  2  3  4  5  6  7
 *                                   residue  1  7 11 13 17 19 23 29
 *
 * so multiples of 2, 3 and 5 never take space, and a segment of SEG_BYTES bytes holds 30 x SEG_BYTES numbers.
 * Each segment is first filled from three precomputed patterns with the multiples of 7..41 already cleared
 * (presieving; the patterns repeat every 7·11·13·17, 19·23·29 and 31·37·41 bytes), then crossed off by the
 * base primes 43..sqrt(b), then counted with popcount over 64-bit words.
 *
 * Crossing off one prime p: the multiples p·q with q coprime to 30, taken in order, visit the 8 bits in a
 * cycle whose byte offsets depend only on p mod 30 and on where in the wheel q starts; 8 consecutive ones
 * span exactly p bytes. So the hot loop clears 8 fixed (offset, bit) pairs and advances p bytes, and the
 * state kept between segments is the next multiple's byte index and wheel position. The offsets come from
 * small per-call tables (off/mask below), so nothing here is global and calls from several threads are safe.
 */
#include "jobs/common/sieve.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

enum {
    SEG_BYTES = 64 * 1024, /* sieve segment (bytes; 30 numbers each): stays in L2 with the patterns */
    SMALL_MAX = 43,        /* primes below this are counted directly, numbers below it cleared from the bitmap */
    PAT1 = 7 * 11 * 13 * 17, /* pattern periods (bytes) */
    PAT2 = 19 * 23 * 29,
    PAT3 = 31 * 37 * 41,
    FEW_BYTES = 1 << 12 /* a range of fewer bytes than this skips presieving (building patterns costs more) */
};

static const uint8_t wheel_res[8] = {1, 7, 11, 13, 17, 19, 23, 29};
static const uint8_t small_primes[] = {2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41};

/* Bit index of residue r (mod 30), or -1 when r is not coprime to 30. */
static int res_bit(unsigned r)
{
    static const int8_t bit[30] = {-1, 0,  -1, -1, -1, -1, -1, 1,  -1, -1, -1, 2,  -1, 3,  -1,
                                   -1, -1, 4,  -1, 5,  -1, -1, -1, 6,  -1, -1, -1, -1, -1, 7};
    return bit[r];
}

/* Per-call tables. For a prime p = 30a + wheel_res[pi] and a multiple m = p·q with q ≡ wheel_res[w] (mod 30),
 * the k-th next multiple p·q_k (q_k the k-th coprime number after q, q_0 = q) lies in byte
 * floor(m/30) + a·dq[w][k] + off[pi][w][k], at bit mask[pi][w][k] (cleared: the byte is ANDed with it). */
typedef struct sieve_tables {
    uint8_t dq[8][8];
    uint8_t off[8][8][8];
    uint8_t mask[8][8][8];
} sieve_tables;

/* State of one base prime between segments. */
typedef struct sieve_prime {
    uint64_t next; /* byte index of the next multiple to clear, relative to the current segment */
    uint32_t a;    /* p / 30 */
    uint32_t p;
    uint8_t pi;    /* index of p mod 30 in wheel_res */
    uint8_t w;     /* index of q mod 30 for the next multiple p·q */
} sieve_prime;

static void tables_init(sieve_tables *t)
{
    for (int w = 0; w < 8; w++) {
        for (int k = 0; k < 8; k++) {
            int j = w + k;
            t->dq[w][k] = (uint8_t)(j < 8 ? wheel_res[j] - wheel_res[w] : wheel_res[j - 8] + 30 - wheel_res[w]);
        }
    }
    for (int pi = 0; pi < 8; pi++) {
        for (int w = 0; w < 8; w++) {
            unsigned r0 = (unsigned)(wheel_res[pi] * wheel_res[w]) % 30;
            for (int k = 0; k < 8; k++) {
                unsigned v = r0 + (unsigned)wheel_res[pi] * t->dq[w][k];
                t->off[pi][w][k] = (uint8_t)(v / 30);
                t->mask[pi][w][k] = (uint8_t)~(1u << res_bit(v % 30));
            }
        }
    }
}

/* Largest r with r·r <= n. */
static uint64_t isqrt_u64(uint64_t n)
{
    uint64_t r = 0;
    for (uint64_t bit = UINT64_C(1) << 31; bit; bit >>= 1) {
        uint64_t c = r | bit;
        if (c * c <= n) r = c;
    }
    return r;
}

/* Primes 7 <= p <= lim into *out (malloc'ed), their number into *n. Returns false on out of memory. */
static bool base_primes(uint32_t lim, uint32_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (lim < 7) return true;
    size_t half = (size_t)lim / 2 + 1; /* composite[i] for the odd number 2i + 1 */
    uint8_t *composite = calloc(half, 1);
    if (!composite) return false;
    size_t count = 0;
    for (size_t i = 1; i < half; i++) {
        if (composite[i]) continue;
        uint64_t p = 2 * (uint64_t)i + 1;
        if (p > lim) break;
        count += p >= 7;
        for (uint64_t j = p * p / 2; j < half; j += p) composite[j] = 1;
    }
    uint32_t *primes = malloc((count ? count : 1) * sizeof *primes);
    if (!primes) {
        free(composite);
        return false;
    }
    for (size_t i = 3; i < half && *n < count; i++) { /* from 7 */
        if (!composite[i]) primes[(*n)++] = (uint32_t)(2 * i + 1);
    }
    free(composite);
    *out = primes;
    return true;
}

/* Builds a presieve pattern: byte g (0 <= g < len) is 0xff with the multiples of primes[0..np) cleared. The
 * pattern repeats every primes' product of bytes, so `len` may exceed that product (the caller reads ahead). */
static void pattern_init(uint8_t *pat, size_t len, const uint8_t *primes, int np)
{
    memset(pat, 0xff, len);
    for (int i = 0; i < np; i++) {
        unsigned p = primes[i];
        for (int k = 0; k < 8; k++) {
            unsigned g = 0; /* first byte whose bit k is a multiple of p */
            while ((30 * g + wheel_res[k]) % p) g++;
            uint8_t m = (uint8_t)~(1u << k);
            for (size_t j = g; j < len; j += p) pat[j] &= m;
        }
    }
}

/* Crosses off the multiples of one base prime in seg[0, n) and moves its state on to the next segment. */
static void prime_cross(uint8_t *seg, size_t n, sieve_prime *sp, const sieve_tables *t)
{
    uint64_t j = sp->next;
    if (j >= n) { /* no multiple in this segment: usual for primes larger than the segment */
        sp->next = j - n;
        return;
    }
    const uint8_t *dq = t->dq[sp->w], *off = t->off[sp->pi][sp->w], *mk = t->mask[sp->pi][sp->w];
    size_t a = sp->a, p = sp->p, o[8];
    for (int k = 0; k < 8; k++) o[k] = a * dq[k] + off[k];
    if (n > o[7]) {
        const size_t o1 = o[1], o2 = o[2], o3 = o[3], o4 = o[4], o5 = o[5], o6 = o[6], o7 = o[7];
        const uint8_t m0 = mk[0], m1 = mk[1], m2 = mk[2], m3 = mk[3], m4 = mk[4], m5 = mk[5], m6 = mk[6],
                      m7 = mk[7];
        for (size_t lim = n - o7; j < lim; j += p) {
            uint8_t *s = seg + j;
            s[0] &= m0;
            s[o1] &= m1;
            s[o2] &= m2;
            s[o3] &= m3;
            s[o4] &= m4;
            s[o5] &= m5;
            s[o6] &= m6;
            s[o7] &= m7;
        }
    }
    int k = 0; /* the last, partial cycle; it stops before k == 8 because j + o[7] >= n now */
    while (j + o[k] < n) {
        seg[j + o[k]] &= mk[k];
        k++;
    }
    sp->next = j + o[k] - n;
    sp->w = (uint8_t)((sp->w + k) & 7);
}

/* Number of set bits in nwords 64-bit words. popcnt is not in the x86-64 baseline the Makefile compiles
 * for, so GCC builds a popcnt clone and picks it at load time when the CPU has it. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__)
__attribute__((target_clones("popcnt", "default")))
#endif
static uint64_t popcount_words(const uint8_t *s, size_t nwords)
{
    uint64_t c = 0;
    for (size_t i = 0; i < nwords; i++) {
        uint64_t x;
        memcpy(&x, s + 8 * i, 8);
        c += (uint64_t)__builtin_popcountll(x);
    }
    return c;
}

/* seg[0, n) = pattern bytes from p1, p2, p3 ANDed (n rounded up to whole words: the buffers have room). */
static void segment_fill(uint8_t *seg, const uint8_t *p1, const uint8_t *p2, const uint8_t *p3, size_t n)
{
    for (size_t i = 0; i < n; i += 8) {
        uint64_t x, y, z;
        memcpy(&x, p1 + i, 8);
        memcpy(&y, p2 + i, 8);
        memcpy(&z, p3 + i, 8);
        x &= y & z;
        memcpy(seg + i, &x, 8);
    }
}

uint64_t em_sieve_count(uint64_t a, uint64_t b)
{
    if (b > EM_SIEVE_MAX_B) b = EM_SIEVE_MAX_B;
    if (a >= b) return 0;
    uint64_t count = 0;
    for (size_t i = 0; i < sizeof small_primes; i++) count += small_primes[i] >= a && small_primes[i] < b;
    if (b <= SMALL_MAX) return count;

    uint64_t lo = a < SMALL_MAX ? SMALL_MAX : a;  /* numbers below SMALL_MAX are counted above */
    uint64_t g0 = lo / 30, g1 = (b - 1) / 30 + 1; /* the bytes [g0, g1) hold [lo, b) */
    bool presieve = g1 - g0 >= FEW_BYTES;
    uint8_t first_mask = 0, last_mask = 0; /* bits of the first and last byte that lie inside [lo, b) */
    for (int k = 0; k < 8; k++) {
        first_mask |= (uint8_t)((30 * g0 + wheel_res[k] >= lo) << k);
        last_mask |= (uint8_t)((30 * (g1 - 1) + wheel_res[k] < b) << k);
    }

    uint32_t *primes = NULL;
    size_t nprimes = 0;
    sieve_tables *t = malloc(sizeof *t);
    sieve_prime *sp = NULL;
    uint8_t *seg = malloc(SEG_BYTES + 8), *pat = NULL;
    if (!t || !seg || !base_primes((uint32_t)isqrt_u64(b - 1), &primes, &nprimes)) goto oom;
    if (!(sp = malloc((nprimes ? nprimes : 1) * sizeof *sp))) goto oom;
    tables_init(t);

    size_t first = 0, ns = 0; /* with presieving, 7..41 are done by the patterns */
    while (presieve && first < nprimes && primes[first] < SMALL_MAX) first++;
    for (size_t i = first; i < nprimes; i++) {
        uint64_t p = primes[i], start = p * p > 30 * g0 ? p * p : 30 * g0, q = (start + p - 1) / p;
        while (res_bit(q % 30) < 0) q++;
        sp[ns++] = (sieve_prime){.next = p * q / 30 - g0, .a = (uint32_t)(p / 30), .p = (uint32_t)p,
                                 .pi = (uint8_t)res_bit(p % 30), .w = (uint8_t)res_bit(q % 30)};
    }

    uint8_t *pat1 = NULL, *pat2 = NULL, *pat3 = NULL;
    if (presieve) {
        if (!(pat = malloc(PAT1 + PAT2 + PAT3 + 3 * (SEG_BYTES + 8)))) goto oom;
        pat1 = pat;
        pat2 = pat1 + PAT1 + SEG_BYTES + 8;
        pat3 = pat2 + PAT2 + SEG_BYTES + 8;
        pattern_init(pat1, PAT1 + SEG_BYTES + 8, small_primes + 3, 4);
        pattern_init(pat2, PAT2 + SEG_BYTES + 8, small_primes + 7, 3);
        pattern_init(pat3, PAT3 + SEG_BYTES + 8, small_primes + 10, 3);
    }

    for (uint64_t g = g0; g < g1;) {
        size_t n = g1 - g < SEG_BYTES ? (size_t)(g1 - g) : SEG_BYTES, nw = (n + 7) / 8;
        if (presieve)
            segment_fill(seg, pat1 + g % PAT1, pat2 + g % PAT2, pat3 + g % PAT3, n);
        else
            memset(seg, 0xff, n);
        for (size_t i = 0; i < ns; i++) prime_cross(seg, n, &sp[i], t);
        if (g == g0) seg[0] &= first_mask;
        if (g + n == g1) seg[n - 1] &= last_mask;
        memset(seg + n, 0, 8 * nw - n);
        count += popcount_words(seg, nw);
        g += n;
    }
    free(pat);
    free(sp);
    free(primes);
    free(seg);
    free(t);
    return count;
oom:
    free(pat);
    free(sp);
    free(primes);
    free(seg);
    free(t);
    return UINT64_MAX;
}
