/*
 * sieve.h — counting primes in a range with a segmented sieve of Eratosthenes (used by jobs/primecount.c).
 */
#ifndef EM_JOBS_SIEVE_H
#define EM_JOBS_SIEVE_H

#include <stdint.h>

/* Largest supported upper bound: the base primes (up to sqrt(b)) must fit in 32 bits. */
#define EM_SIEVE_MAX_B (UINT64_C(1) << 62)

/* Number of primes p with a <= p < b (0 when a >= b). Precondition: b <= EM_SIEVE_MAX_B (larger b are
 * clamped to it). LOCAL, pure computation: all state is per call, so it is safe to call from several threads.
 * Allocates O(sqrt(b) + 512 KiB) bytes for the duration of the call; out of memory returns UINT64_MAX. */
uint64_t em_sieve_count(uint64_t a, uint64_t b);

#endif /* EM_JOBS_SIEVE_H */
