/* actions.c — range/map/filter/count/reduce on every rank count, checked against closed-form sums computed
 * here without Ember. Exit status is the verdict; prints "ok" lines from the leader. */
#include "ember.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int is_mult3(const em_rec *r, void *arg)
{
    (void)arg;
    return em_i64_get(r->key) % 3 == 0;
}

/* emits i twice with value i*i, so the count doubles */
static int square_twice(const em_rec *r, em_emitter *out, void *arg)
{
    (void)arg;
    int64_t i = em_i64_get(r->key);
    int rc = em_emit_i64(out, i, i * i);
    return rc < 0 ? rc : em_emit_i64(out, i, i * i);
}

static int fail_on_77(const em_rec *r, em_emitter *out, void *arg)
{
    (void)arg;
    (void)out;
    return em_i64_get(r->key) == 77 ? -1 : 0;
}

int main(int argc, char **argv)
{
    em_ctx *ctx;
    if (em_init(&argc, &argv, &ctx) < 0) return 2;
    int bad = 0;
    int64_t n = 0, s = 0;
    const int64_t N = 100000;
    for (int parts = 1; parts <= 13; parts += 4) {
        em_ds *r = em_range(ctx, -5, N, parts);
        if (em_count(r, &n) < 0 || n != N + 5) bad |= 1;
        em_ds *m3 = em_filter(r, is_mult3, NULL);
        int64_t want = 0;
        for (int64_t i = -5; i < N; i++) want += i % 3 == 0;
        if (em_count(m3, &n) < 0 || n != want) bad |= 2;
        em_ds *sq = em_map(m3, square_twice, NULL);
        int64_t wsum = 0, wmin = INT64_MAX, wmax = INT64_MIN;
        for (int64_t i = -5; i < N; i++)
            if (i % 3 == 0) {
                wsum += 2 * i * i;
                if (i * i < wmin) wmin = i * i;
                if (i * i > wmax) wmax = i * i;
            }
        if (em_reduce_i64(sq, EM_AGG_SUM, &s) < 0 || s != wsum) bad |= 4;
        if (em_reduce_i64(sq, EM_AGG_MIN, &s) < 0 || s != wmin) bad |= 8;
        if (em_reduce_i64(sq, EM_AGG_MAX, &s) < 0 || s != wmax) bad |= 16;
        if (em_reduce_i64(sq, EM_AGG_COUNT, &s) < 0 || s != 2 * want) bad |= 32;
    }
    /* empty range: count 0, sum 0, min is an error */
    em_ds *e = em_range(ctx, 10, 10, 3);
    if (em_count(e, &n) < 0 || n != 0) bad |= 64;
    if (em_reduce_i64(e, EM_AGG_SUM, &s) < 0 || s != 0) bad |= 128;
    if (em_reduce_i64(e, EM_AGG_MIN, &s) != EM_EINVAL) bad |= 256;
    /* a callback that fails deterministically fails the action after max-task-failures, naming the task */
    em_ds *f = em_map(em_range(ctx, 0, 100, 4), fail_on_77, NULL);
    int rc = em_count(f, &n);
    if (rc != EM_ETASK || !strstr(em_last_error(), "task 3 of stage 0")) {
        bad |= 512;
        fprintf(stderr, "r%d: expected EM_ETASK naming task 3, got %s: %s\n", em_rank(ctx), em_err_name(rc), em_last_error());
    }
    /* and the job goes on afterwards */
    if (em_count(em_range(ctx, 0, 10, 2), &n) < 0 || n != 10) bad |= 1024;
    if (bad) fprintf(stderr, "r%d: actions failed, mask %d\n", em_rank(ctx), bad);
    else if (em_is_leader(ctx)) printf("ok actions np=%d\n", em_size(ctx));
    return em_finalize(ctx, bad ? 1 : 0);
}
