/*
 * mpi_bw — plain MPI point-to-point bandwidth between 2 ranks: the baseline for Ember's shuffle
 * microbenchmark (issue 3, "Benchmarks"). Not Ember code: it uses MPI directly and never calls libember.
 *
 *     mpirun -np 2 mpi_bw [--msg BYTES] [--total BYTES] [--window N]
 *
 * Rank 0 streams `total` bytes (default 512 MiB) to rank 1 in `msg`-byte messages (default 4 MiB) with up to
 * `window` (default 8) Isend/Irecv pairs in flight, then rank 1 acknowledges with a zero-byte message. A
 * second phase does the same in both directions at once (what a 2-rank shuffle does). One warm-up round
 * precedes the timed ones. Rank 0 prints:
 *     unidirectional: X GB/s
 *     bidirectional: Y GB/s      (bytes moved in both directions together / time)
 * GB = 1e9 bytes.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static long long parse_bytes(const char *s)
{
    char *end;
    double v = strtod(s, &end);
    switch (*end) {
    case 'K': case 'k': v *= 1024; end++; break;
    case 'M': case 'm': v *= 1024 * 1024; end++; break;
    case 'G': case 'g': v *= 1024.0 * 1024 * 1024; end++; break;
    default: break;
    }
    if (end == s || *end || v <= 0) {
        fprintf(stderr, "mpi_bw: expected a positive size, got '%s'\n", s);
        exit(2);
    }
    return (long long)v;
}

/* Moves `nmsg` messages of `msg` bytes: this rank sends to `peer` if `send`, receives from `peer` if `recv`. */
static void stream(int peer, int send, int recv, char *sbuf, char *rbuf, long long msg, long long nmsg,
                   int window)
{
    MPI_Request *req = malloc(sizeof *req * (size_t)window * 2);
    if (!req) { fprintf(stderr, "mpi_bw: out of memory\n"); exit(1); }
    for (long long done = 0; done < nmsg; done += window) {
        int n = 0;
        long long k = nmsg - done < window ? nmsg - done : window;
        for (long long i = 0; i < k; i++) {
            /* Each in-flight message has its own slice of the buffer: no aliasing between requests. */
            if (recv) MPI_Irecv(rbuf + i * msg, (int)msg, MPI_BYTE, peer, 1, MPI_COMM_WORLD, &req[n++]);
            if (send) MPI_Isend(sbuf + i * msg, (int)msg, MPI_BYTE, peer, 1, MPI_COMM_WORLD, &req[n++]);
        }
        MPI_Waitall(n, req, MPI_STATUSES_IGNORE);
    }
    /* Receiver's acknowledgement, so the sender's clock stops when the data has arrived. */
    if (recv) MPI_Send(NULL, 0, MPI_BYTE, peer, 2, MPI_COMM_WORLD);
    if (send) MPI_Recv(NULL, 0, MPI_BYTE, peer, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    free(req);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    long long msg = 4LL << 20, total = 512LL << 20;
    int window = 8;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--msg")) msg = parse_bytes(argv[i + 1]);
        else if (!strcmp(argv[i], "--total")) total = parse_bytes(argv[i + 1]);
        else if (!strcmp(argv[i], "--window")) window = (int)parse_bytes(argv[i + 1]);
        else {
            if (rank == 0) fprintf(stderr, "mpi_bw: unknown flag '%s'\n", argv[i]);
            MPI_Finalize();
            return 2;
        }
    }
    if (size != 2 || msg > 1 << 30) {
        if (rank == 0) fprintf(stderr, "mpi_bw: needs exactly 2 ranks and --msg <= 1G\n");
        MPI_Finalize();
        return 2;
    }
    long long nmsg = (total + msg - 1) / msg;
    char *sbuf = malloc((size_t)(msg * window)), *rbuf = malloc((size_t)(msg * window));
    if (!sbuf || !rbuf) { fprintf(stderr, "mpi_bw: out of memory\n"); MPI_Abort(MPI_COMM_WORLD, 1); }
    memset(sbuf, rank + 1, (size_t)(msg * window));
    memset(rbuf, 0, (size_t)(msg * window));
    int peer = 1 - rank;

    /* Warm-up: registers/maps the buffers and sets up the shared-memory channel. */
    stream(peer, rank == 0, rank == 1, sbuf, rbuf, msg, window, window);

    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    stream(peer, rank == 0, rank == 1, sbuf, rbuf, msg, nmsg, window);
    double uni = MPI_Wtime() - t0;

    MPI_Barrier(MPI_COMM_WORLD);
    t0 = MPI_Wtime();
    /* Both directions: each rank sends nmsg messages and receives nmsg (acks go both ways too). */
    MPI_Request *req = malloc(sizeof *req * (size_t)window * 2);
    for (long long done = 0; done < nmsg; done += window) {
        int n = 0;
        long long k = nmsg - done < window ? nmsg - done : window;
        for (long long i = 0; i < k; i++) {
            MPI_Irecv(rbuf + i * msg, (int)msg, MPI_BYTE, peer, 3, MPI_COMM_WORLD, &req[n++]);
            MPI_Isend(sbuf + i * msg, (int)msg, MPI_BYTE, peer, 3, MPI_COMM_WORLD, &req[n++]);
        }
        MPI_Waitall(n, req, MPI_STATUSES_IGNORE);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    double bi = MPI_Wtime() - t0;
    free(req);

    if (rank == 0) {
        double bytes = (double)nmsg * (double)msg;
        printf("message size: %lld bytes, total: %.0f MB each way\n", msg, bytes / 1e6);
        printf("unidirectional: %.2f GB/s\n", bytes / uni / 1e9);
        printf("bidirectional: %.2f GB/s\n", 2 * bytes / bi / 1e9);
    }
    free(sbuf);
    free(rbuf);
    MPI_Finalize();
    return 0;
}
