/*
 * mpi_hello — a plain MPI hello (MPI_Init, rank and size, MPI_Finalize): the start-up cost baseline that an
 * empty Ember job (bench/empty_job.c) is compared with (issue 2, "Benchmarks"). Not Ember code: it uses MPI
 * directly and never calls libember. Rank 0 prints one line.
 */
#include <mpi.h>
#include <stdio.h>

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    if (rank == 0) printf("hello from rank 0 of %d\n", size);
    MPI_Finalize();
    return 0;
}
