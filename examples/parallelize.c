/*
 * parallelize.c — a dataset from the program's own memory: the planets and their moons.
 *
 *     ember run -np 2 build/examples/parallelize
 *
 * em_parallelize copies an array of records and spreads it over partitions. Every rank runs main(), so every
 * rank must pass the same records (constants, as here, or data each rank read the same way). Keys and values
 * are plain bytes: here the key is a name and the value an int64 written with em_i64_put.
 */
#include <ember.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[] = {"Mercury", "Venus", "Earth", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune"};
static const int64_t moons[] = {0, 0, 1, 2, 95, 146, 28, 16};
#define NPLANETS 8

static int has_moons(const em_rec *in, void *arg)
{
    (void)arg;
    return em_i64_get(in->val) > 0;
}

/* Names in byte order; a name that is a prefix of another comes first. */
static int by_name(const void *pa, const void *pb)
{
    const em_rec *a = pa, *b = pb;
    int c = memcmp(a->key, b->key, a->klen < b->klen ? a->klen : b->klen);
    return c ? c : (a->klen > b->klen) - (a->klen < b->klen);
}

int main(int argc, char **argv)
{
    em_ctx *ctx;
    em_rec recs[NPLANETS];
    unsigned char vals[NPLANETS][8];
    em_records res;
    int rc;
    if (em_init(&argc, &argv, &ctx) < 0) return 1;

    for (int i = 0; i < NPLANETS; i++) {
        em_i64_put(vals[i], moons[i]);
        recs[i] = (em_rec){.key = names[i], .klen = (uint32_t)strlen(names[i]), .val = vals[i], .vlen = 8};
    }
    em_ds *planets = em_parallelize(ctx, recs, NPLANETS, 3); /* copied now: recs may go out of scope */
    em_ds *mooned = em_filter(planets, has_moons, NULL);
    if ((rc = em_collect(mooned, &res)) < 0) {
        if (em_is_leader(ctx)) fprintf(stderr, "parallelize: %s: %s\n", em_strerror(rc), em_last_error());
        return em_finalize(ctx, 1);
    }
    if (em_is_leader(ctx)) {
        qsort(res.recs, res.n, sizeof *res.recs, by_name); /* collect returns partition order */
        for (size_t i = 0; i < res.n; i++)
            printf("%.*s\t%" PRId64 "\n", (int)res.recs[i].klen, (const char *)res.recs[i].key,
                   em_i64_get(res.recs[i].val));
    }
    em_records_free(&res);
    return em_finalize(ctx, 0);
}
