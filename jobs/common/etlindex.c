/*
 * etlindex.c — the broadcast join's key index (see etlindex.h). Built in two passes over the keys: the first gives
 * each key its unique id and counts its targets, the second places the targets (one inline, several in `multi`).
 */
#include "jobs/common/etlindex.h"

#include <stdlib.h>
#include <string.h>

#define TAG_I64 2 /* em_tup's tag of an int64 field: 1 tag byte, then 8 bytes big-endian with the sign bit flipped */

static int64_t tup_i64(const uint8_t *p)
{
    uint64_t u = 0;
    for (int i = 1; i <= 8; i++) u = u << 8 | p[i];
    return (int64_t)(u ^ 0x8000000000000000ULL);
}

static int is_i64(const uint8_t *k, uint32_t kl) { return kl == 9 && k[0] == TAG_I64; }

uint64_t etl_hash(const uint8_t *p, size_t n)
{
    uint64_t h = 0x9E3779B97F4A7C15ULL ^ n, w;
    for (; n >= 8; p += 8, n -= 8) {
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdULL;
        h ^= h >> 32;
    }
    w = 0;
    memcpy(&w, p, n);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ULL;
    h ^= h >> 29;
    h *= 0x9E3779B97F4A7C15ULL;
    return h ^ (h >> 32);
}

/* Hash mode: the unique id of a key, or -1; with `add`, a new key gets the next id (its bytes copied). */
static int64_t hash_id(etl_index *ix, const uint8_t *k, uint32_t kl, int add)
{
    uint64_t h = etl_hash(k, kl), hi = h >> 32;
    for (uint64_t i = h & ix->mask;; i = (i + 1) & ix->mask) {
        uint64_t s = ix->slot[i];
        if (s == 0) {
            if (!add) return -1;
            uint64_t u = ix->nkeys++;
            memcpy(ix->kbytes + ix->koff[u], k, kl);
            ix->koff[u + 1] = ix->koff[u] + kl;
            ix->slot[i] = hi << 32 | (u + 1);
            return (int64_t)u;
        }
        if (s >> 32 != hi) continue;
        uint64_t u = (s & 0xffffffffu) - 1;
        if (ix->koff[u + 1] - ix->koff[u] == kl && memcmp(ix->kbytes + ix->koff[u], k, kl) == 0) return (int64_t)u;
    }
}

int etl_index_build(etl_index *ix, const uint8_t *const *keys, const uint32_t *klen, const int32_t *target, size_t n)
{
    int32_t *uid = NULL, *cnt = NULL;
    size_t nu = 0, total = 0;
    int64_t lo = INT64_MAX, hi = INT64_MIN;
    memset(ix, 0, sizeof *ix);
    if (n >= INT32_MAX / 2) return -1;
    int all_i64 = n > 0;
    for (size_t i = 0; i < n && all_i64; i++) {
        if (!(all_i64 = is_i64(keys[i], klen[i]))) break;
        int64_t v = tup_i64(keys[i]);
        lo = v < lo ? v : lo;
        hi = v > hi ? v : hi;
    }
    if (!(uid = malloc((n ? n : 1) * sizeof *uid))) goto fail;
    if (all_i64 && (uint64_t)hi - (uint64_t)lo < 4 * (uint64_t)n + 1024) {
        ix->dense = 1;
        ix->lo = lo;
        ix->span = (uint64_t)hi - (uint64_t)lo + 1;
        nu = ix->span;
        for (size_t i = 0; i < n; i++) uid[i] = (int32_t)((uint64_t)tup_i64(keys[i]) - (uint64_t)lo);
    } else {
        for (size_t i = 0; i < n; i++) total += klen[i];
        ix->mask = 15;
        while (ix->mask + 1 < 2 * n) ix->mask = ix->mask * 2 + 1;
        if (!(ix->slot = calloc(ix->mask + 1, sizeof *ix->slot)) || !(ix->kbytes = malloc(total ? total : 1)) ||
            !(ix->koff = malloc((n + 1) * sizeof *ix->koff)))
            goto fail;
        ix->koff[0] = 0;
        for (size_t i = 0; i < n; i++) uid[i] = (int32_t)hash_id(ix, keys[i], klen[i], 1);
        nu = ix->nkeys;
    }
    if (!(cnt = calloc(nu ? nu : 1, sizeof *cnt)) || !(ix->ent = malloc((nu ? nu : 1) * sizeof *ix->ent))) goto fail;
    for (size_t i = 0; i < n; i++) cnt[uid[i]]++;
    size_t nmulti = 0;
    for (size_t u = 0; u < nu; u++) {
        ix->ent[u] = -1;
        if (cnt[u] > 1) {
            if (nmulti + 1 + (size_t)cnt[u] >= INT32_MAX) goto fail;
            ix->ent[u] = -2 - (int32_t)nmulti;
            nmulti += 1 + (size_t)cnt[u];
        }
    }
    if (!(ix->multi = calloc(nmulti ? nmulti : 1, sizeof *ix->multi))) goto fail;
    for (size_t i = 0; i < n; i++) {
        int32_t u = uid[i];
        if (cnt[u] == 1) {
            ix->ent[u] = target[i];
        } else {
            int32_t *m = ix->multi + (-2 - ix->ent[u]);
            m[1 + m[0]++] = target[i];
        }
    }
    if (ix->dense && nmulti == 0) {
        int small = 1;
        for (size_t u = 0; u < nu && small; u++) small = ix->ent[u] < 0xFF;
        if (small && (ix->ent8 = malloc(nu ? nu : 1))) {
            for (size_t u = 0; u < nu; u++) ix->ent8[u] = ix->ent[u] < 0 ? 0xFF : (uint8_t)ix->ent[u];
            free(ix->ent);
            ix->ent = NULL;
        }
    }
    free(uid);
    free(cnt);
    return 0;
fail:
    free(uid);
    free(cnt);
    etl_index_release(ix);
    return -1;
}

/* The targets of entry e (see etlindex.h). */
static int targets(const etl_index *ix, const int32_t *e, const int32_t **t)
{
    if (*e == -1) return 0;
    if (*e >= 0) {
        *t = e;
        return 1;
    }
    const int32_t *m = ix->multi + (-2 - *e);
    *t = m + 1;
    return m[0];
}

int etl_index_find_i64(const etl_index *ix, int64_t k, int32_t *one, const int32_t **t)
{
    if (!ix->dense) {
        uint8_t b[9];
        uint64_t u = (uint64_t)k ^ 0x8000000000000000ULL;
        b[0] = TAG_I64;
        for (int i = 8; i >= 1; i--, u >>= 8) b[i] = (uint8_t)u;
        return etl_index_find(ix, b, 9, one, t);
    }
    uint64_t u = (uint64_t)k - (uint64_t)ix->lo;
    if (u >= ix->span) return 0;
    if (ix->ent8) {
        if (ix->ent8[u] == 0xFF) return 0;
        *one = ix->ent8[u];
        *t = one;
        return 1;
    }
    return targets(ix, &ix->ent[u], t);
}

int etl_index_find(const etl_index *ix, const uint8_t *key, uint32_t klen, int32_t *one, const int32_t **t)
{
    if (ix->dense) return is_i64(key, klen) ? etl_index_find_i64(ix, tup_i64(key), one, t) : 0;
    if (!ix->slot) return 0;
    int64_t u = hash_id((etl_index *)ix, key, klen, 0); /* add = 0: nothing is written */
    return u < 0 ? 0 : targets(ix, &ix->ent[u], t);
}

void etl_index_release(etl_index *ix)
{
    free(ix->ent);
    free(ix->ent8);
    free(ix->multi);
    free(ix->slot);
    free(ix->kbytes);
    free(ix->koff);
    memset(ix, 0, sizeof *ix);
}
