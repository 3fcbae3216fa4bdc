/*
 * empty_job — the smallest Ember job: em_init then em_finalize. `bench/run.sh` times it at np=2 against a
 * plain MPI hello (bench/mpi_hello.c) to publish Ember's start-up and shut-down cost (issue 2, "Benchmarks").
 */
#include "ember.h"

int main(int argc, char **argv)
{
    em_ctx *ctx;
    if (em_init(&argc, &argv, &ctx) < 0) return 1;
    return em_finalize(ctx, 0);
}
