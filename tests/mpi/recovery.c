/* recovery.c — a job whose result must not change when ranks die, hang or exit mid-run (fault injection is given
 * on the command line by tests/mpi/recovery.sh). Sums i*i over [0, N) through a slow-ish map so that faults land
 * while tasks run; the expected value is the closed form, computed here without Ember. */
#include "ember.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static int slow_square(const em_rec *r, em_emitter *out, void *arg)
{
    (void)arg;
    int64_t i = em_i64_get(r->key);
    if (i % 1000 == 0) {
        struct timespec ts = {0, 2 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return em_emit_i64(out, i, i * i);
}

int main(int argc, char **argv)
{
    em_ctx *ctx;
    if (em_init(&argc, &argv, &ctx) < 0) return 2;
    const int64_t N = 400000;
    int64_t sum = 0, cnt = 0;
    em_ds *sq = em_map(em_range(ctx, 0, N, 40), slow_square, NULL);
    int rc = em_reduce_i64(sq, EM_AGG_SUM, &sum);
    if (rc == 0) rc = em_count(sq, &cnt);
    int64_t want = 0;
    for (int64_t i = 0; i < N; i++) want += i * i;
    int bad = rc < 0 || sum != want || cnt != N;
    if (em_is_leader(ctx)) {
        if (rc < 0) printf("error: %s\n", em_last_error());
        else printf("sum %lld count %lld %s\n", (long long)sum, (long long)cnt, bad ? "WRONG" : "ok");
    }
    return em_finalize(ctx, bad ? 1 : 0);
}
