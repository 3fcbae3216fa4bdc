/* joberr.h — how the shipped jobs report a usage error: once, from the leader. */
#ifndef EM_JOBS_COMMON_JOBERR_H
#define EM_JOBS_COMMON_JOBERR_H

#include <ember.h>

/* Prints "PROG: <message>" on stderr on the leader only: every rank parses the same command line and reaches the
 * same verdict, and the user should see it once. LOCAL. */
void em_job_error(const em_ctx *ctx, const char *prog, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
