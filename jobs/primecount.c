/*
 * primecount.c — the prime-count job: the number of primes in [A, B), counted in parallel by every rank.
 * Follows DESIGN.md §1-2 (a job is an SPMD program; actions are collective, the leader prints).
 *
 *     mpirun -np 4 build/bin/primecount --limit 1e10            primes in [0, 10000000000): 455052511
 *     mpirun -np 4 build/bin/primecount --from 2^32 --to 1e10 --partitions 64
 *
 * The dataflow is one map and one reduce: em_range() makes P records 0..P-1, record i is mapped to the count
 * of primes in the i-th of P equal slices of [A, B) (a segmented sieve, jobs/common/sieve.c), and the counts
 * are summed. The slices are equal in width, not in work: primes thin out slowly (1 / ln x), so the low
 * slices cost only a little more, and having several slices per rank evens that out.
 */
#include <ember.h>

#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "jobs/common/joberr.h"
#include "jobs/common/numarg.h"
#include "jobs/common/sieve.h"

#define PROG "primecount"
#define DEFAULT_LIMIT "1e8"            /* with no arguments at all (make demo) */
#define MIN_SLICE UINT64_C(1000000)    /* numbers: smaller slices cost more in scheduling than in sieving */
#define SLICES_PER_RANK 8

static const char usage[] =
    "usage: " PROG " [--limit N | --from A --to B] [--partitions P]\n"
    "Counts the primes in [0, N) or [A, B) on all ranks and prints `primes in [A, B): COUNT`.\n"
    "  --limit N        count primes below N (default " DEFAULT_LIMIT " when no argument is given)\n"
    "  --from A         lower bound, included (default 0)\n"
    "  --to B           upper bound, excluded\n"
    "  --partitions P   number of tasks (default: max(--ember-partitions, 8 x ranks), slices >= 1e6)\n"
    "Numbers may be written 10000000000, 1e10, 2.5e9 or 2^32. Ember's own flags (--ember-*): --ember-help.\n";

/* The job's parameters, shared by every rank (the map callback's `arg`). */
typedef struct pc_job {
    uint64_t from, to; /* [from, to) */
    int64_t parts;     /* number of slices */
} pc_job;

/* Map: record i (of parts) -> (i, number of primes in the i-th slice of [from, to)). */
static int count_slice(const em_rec *in, em_emitter *out, void *arg)
{
    const pc_job *job = arg;
    int64_t i = em_i64_get(in->key);
    uint64_t w = job->to - job->from, q = w / (uint64_t)job->parts, r = w % (uint64_t)job->parts;
    uint64_t lo = job->from + (uint64_t)i * q + ((uint64_t)i < r ? (uint64_t)i : r);
    uint64_t hi = lo + q + ((uint64_t)i < r);
    uint64_t n = em_sieve_count(lo, hi);
    if (n == UINT64_MAX) { /* out of memory: this rank is lost, the cluster reruns the slice elsewhere */
        fprintf(stderr, PROG ": out of memory counting primes in [%" PRIu64 ", %" PRIu64 ")\n", lo, hi);
        _exit(1);
    }
    return em_emit_i64(out, i, (int64_t)n);
}


/* Parses the value of `flag` into *v. Returns 0, or -1 after printing why it is missing or not a number. */
static int flag_value(const em_ctx *ctx, const char *flag, const char *s, uint64_t *v)
{
    if (!s) {
        em_job_error(ctx, PROG, "%s: missing value", flag);
        return -1;
    }
    if (em_parse_u64(s, v) == 0) return 0;
    if (s[0] == '-' && s[1] >= '0' && s[1] <= '9')
        em_job_error(ctx, PROG, "%s: '%s' is negative", flag, s);
    else
        em_job_error(ctx, PROG, "%s: '%s' is not a number", flag, s);
    return -1;
}

/* Reads the command line (Ember's flags already removed) into *job. Returns 0, 1 when --help was printed,
 * or -1 after printing the error. */
static int parse_args(int argc, char **argv, const em_ctx *ctx, pc_job *job)
{
    static char *default_argv[] = {PROG, "--limit", DEFAULT_LIMIT, NULL};
    uint64_t limit = 0, from = 0, to = 0, parts = 0;
    int has_limit = 0, has_from = 0, has_to = 0, has_parts = 0;

    if (argc <= 1) {
        argc = 3;
        argv = default_argv;
    }
    for (int i = 1; i < argc; i++) {
        char *arg = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL, *eq = strchr(arg, '=');
        size_t flen = eq && strncmp(arg, "--", 2) == 0 ? (size_t)(eq - arg) : strlen(arg); /* --flag=value */
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            if (em_is_leader(ctx)) fputs(usage, stdout);
            return 1;
        }
        uint64_t *dst = NULL;
        const char *flag = NULL;
        static const char *const names[] = {"--limit", "--from", "--to", "--partitions"};
        uint64_t *dsts[] = {&limit, &from, &to, &parts};
        int *seen[] = {&has_limit, &has_from, &has_to, &has_parts};
        for (int k = 0; k < 4; k++) {
            if (flen == strlen(names[k]) && strncmp(arg, names[k], flen) == 0) {
                flag = names[k];
                dst = dsts[k];
                *seen[k] = 1;
            }
        }
        if (!dst) {
            em_job_error(ctx, PROG, "unknown %s '%s' (see --help)", arg[0] == '-' ? "flag" : "argument", arg);
            return -1;
        }
        if (flen < strlen(arg))
            val = eq + 1;
        else
            i++;
        if (flag_value(ctx, flag, val, dst) < 0) return -1;
    }
    if (has_limit && (has_from || has_to)) {
        em_job_error(ctx, PROG, "--limit cannot be combined with --from/--to");
        return -1;
    }
    if (has_from && !has_to) {
        em_job_error(ctx, PROG, "--from: needs --to as well");
        return -1;
    }
    if (!has_limit && !has_to) {
        em_job_error(ctx, PROG, "give --limit N or --from A --to B (see --help)");
        return -1;
    }
    if (has_limit) to = limit;
    if (from > to) {
        em_job_error(ctx, PROG, "--from %" PRIu64 " is greater than --to %" PRIu64, from, to);
        return -1;
    }
    if (to > EM_SIEVE_MAX_B) {
        em_job_error(ctx, PROG, "%s: %" PRIu64 " is above the largest supported bound 2^62", has_limit ? "--limit" : "--to", to);
        return -1;
    }
    if (has_parts && (parts < 1 || parts > INT_MAX)) {
        em_job_error(ctx, PROG, "--partitions: must be between 1 and %d", INT_MAX);
        return -1;
    }
    if (!has_parts) { /* several slices per rank for balance, but none too small to be worth a task */
        uint64_t want = (uint64_t)em_size(ctx) * SLICES_PER_RANK, max = (to - from) / MIN_SLICE;
        parts = (uint64_t)em_default_partitions(ctx);
        if (want > parts) parts = want;
        if (parts > max) parts = max ? max : 1;
    }
    *job = (pc_job){.from = from, .to = to, .parts = (int64_t)parts};
    return 0;
}

int main(int argc, char **argv)
{
    em_ctx *ctx;
    pc_job job;
    int64_t total = 0;
    int rc;
    if (em_init(&argc, &argv, &ctx) < 0) return 1;
    if ((rc = parse_args(argc, argv, ctx, &job)) != 0) return em_finalize(ctx, rc < 0 ? 2 : 0);

    em_ds *slices = em_range(ctx, 0, job.parts, (int)job.parts);
    em_ds *counts = em_map(slices, count_slice, &job);
    if ((rc = em_reduce_i64(counts, EM_AGG_SUM, &total)) < 0) {
        if (em_is_leader(ctx)) fprintf(stderr, PROG ": %s: %s\n", em_strerror(rc), em_last_error());
        return em_finalize(ctx, 1);
    }
    if (em_is_leader(ctx)) printf("primes in [%" PRIu64 ", %" PRIu64 "): %" PRId64 "\n", job.from, job.to, total);
    return em_finalize(ctx, 0);
}
