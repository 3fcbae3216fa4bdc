/*
 * sched_overhead — Ember's scheduling cost per task (issue 2, "Scheduling" and "Benchmarks").
 *
 *     mpirun -np 2 sched_overhead [--tasks N]      (N = 10000 by default)
 *
 * Counts em_range(ctx, 0, N, N): N partitions of one record each, so a task does almost no work and its time is
 * the scheduler's (hand-out, execution bookkeeping, result return). The start-up and fixed per-action cost are
 * excluded by subtracting the time of the same action over 2 partitions of one record each:
 *     us/task = (t(N tasks) - t(2 tasks)) / (N - 2)
 * Each measurement is the best of 3 (after a warm-up action), timed with CLOCK_MONOTONIC around em_count on
 * the leader. The leader prints:
 *     tasks: N  time: X ms  fixed (2 tasks): Y ms
 *     us per task: Z
 */
#include "ember.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Best-of-`reps` time of one em_count over [0, n) in n partitions; -1 on failure. */
static double time_count(em_ctx *ctx, int n, int reps)
{
    double best = -1;
    for (int r = 0; r < reps; r++) {
        em_ds *ds = em_range(ctx, 0, n, n);
        int64_t got = -1;
        double t0 = now_s();
        int rc = em_count(ds, &got);
        double t = now_s() - t0;
        if (rc < 0 || got != n) {
            fprintf(stderr, "sched_overhead: em_count over %d partitions: %s (got %lld) %s\n", n,
                    rc < 0 ? em_strerror(rc) : "wrong count", (long long)got, em_last_error());
            return -1;
        }
        if (best < 0 || t < best) best = t;
    }
    return best;
}

int main(int argc, char **argv)
{
    em_ctx *ctx;
    if (em_init(&argc, &argv, &ctx) < 0) return 1;
    int ntasks = 10000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tasks") && i + 1 < argc && atoi(argv[i + 1]) > 2) {
            ntasks = atoi(argv[++i]);
        } else {
            if (em_is_leader(ctx)) fprintf(stderr, "sched_overhead: usage: sched_overhead [--tasks N>2]\n");
            return em_finalize(ctx, 2);
        }
    }
    int status = 1;
    if (time_count(ctx, 2, 1) < 0) goto out; /* warm-up */
    double fixed = time_count(ctx, 2, 3);
    if (fixed < 0) goto out;
    double full = time_count(ctx, ntasks, 3);
    if (full < 0) goto out;
    if (em_is_leader(ctx)) {
        printf("tasks: %d  time: %.1f ms  fixed (2 tasks): %.2f ms\n", ntasks, full * 1e3, fixed * 1e3);
        printf("us per task: %.2f\n", (full - fixed) / (ntasks - 2) * 1e6);
    }
    status = 0;
out:
    return em_finalize(ctx, status);
}
