/*
 * sortbykey.c — the ten longest words of a text, longest first, ties in alphabetical order.
 *
 *     ember run -np 2 build/examples/sortbykey [FILE]      (default: examples/data/sample.txt)
 *
 * em_sort_by_key orders records by the bytes of their keys (memcmp) across all partitions: every key of
 * partition i sorts before every key of partition i+1, so em_take(sorted, 10) is the global top ten.
 * To sort by several things at once, build the key as a tuple: tuples compare field by field, numbers
 * numerically. Here the key is (-length, word): ascending order puts long words first and breaks ties by word.
 */
#include <ember.h>

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>

/* flatMap: a line -> one record per word (runs of letters, lowercased), the word as key, no value. */
static int words(const em_rec *in, em_emitter *out, void *arg)
{
    const char *s = in->key;
    char w[256];
    size_t n = 0;
    (void)arg;
    for (uint32_t i = 0; i <= in->klen; i++) {
        if (i < in->klen && isalpha((unsigned char)s[i])) {
            if (n < sizeof w) w[n++] = (char)tolower((unsigned char)s[i]);
        } else if (n) {
            int rc = em_emit(out, w, (uint32_t)n, NULL, 0);
            if (rc < 0) return rc;
            n = 0;
        }
    }
    return 0;
}

/* map: word -> key (-length, word) as a tuple; em_tup builds it in a buffer that we free again. */
static int length_key(const em_rec *in, em_emitter *out, void *arg)
{
    em_tup t = {0};
    (void)arg;
    em_tup_i64(&t, -(int64_t)in->klen);
    em_tup_str(&t, in->key, in->klen);
    int rc = em_emit(out, t.p, (uint32_t)t.len, NULL, 0);
    em_tup_free(&t);
    return rc;
}

int main(int argc, char **argv)
{
    em_ctx *ctx;
    em_records top;
    int rc;
    if (em_init(&argc, &argv, &ctx) < 0) return 1;
    const char *path = argc > 1 ? argv[1] : "examples/data/sample.txt";

    em_ds *uniq = em_distinct(em_map(em_text(ctx, &path, 1, 0), words, NULL), 0); /* each word once */
    em_ds *sorted = em_sort_by_key(em_map(uniq, length_key, NULL), 1, 0);        /* 1: ascending */
    if ((rc = em_take(sorted, 10, &top)) < 0) {
        if (em_is_leader(ctx)) fprintf(stderr, "sortbykey: %s: %s\n", em_strerror(rc), em_last_error());
        return em_finalize(ctx, 1);
    }
    for (size_t i = 0; em_is_leader(ctx) && i < top.n; i++) {
        em_field len, word; /* read the key tuple back: field 0 is -length, field 1 the word */
        em_tup_get(top.recs[i].key, top.recs[i].klen, 0, &len);
        em_tup_get(top.recs[i].key, top.recs[i].klen, 1, &word);
        printf("%" PRId64 "\t%.*s\n", -len.i64, (int)word.len, word.str);
    }
    em_records_free(&top);
    return em_finalize(ctx, 0);
}
