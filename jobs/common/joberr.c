/* joberr.c — one usage-error printer for the shipped jobs (see joberr.h). */
#include "jobs/common/joberr.h"

#include <stdarg.h>
#include <stdio.h>

void em_job_error(const em_ctx *ctx, const char *prog, const char *fmt, ...)
{
    va_list ap;
    if (!em_is_leader(ctx)) return;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}
