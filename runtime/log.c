/* log.c — leveled, rank-tagged logging ("[r2 exec] WARN ...") on stderr, the thread-local last error, asserts
 * and the out-of-memory policy (DESIGN section 9, STYLE rules 4 and 5). */
#include "runtime/log.h"

#include "ember.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int log_rank = -1;
static int log_level = EM_LOG_WARN;
static volatile int log_leader;
static _Thread_local char last_error[1024];
static _Atomic(em__log_sink) log_sink;

void em__log_set_sink(em__log_sink sink) { atomic_store(&log_sink, sink); }

void em__log_setup(int rank, int level)
{
    log_rank = rank;
    log_level = level;
}

void em__log_set_leader(int is_leader) { log_leader = is_leader; }
int em__log_level(void) { return log_level; }

int em__log_parse_level(const char *s)
{
    static const char *names[] = {"error", "warn", "info", "debug"};
    for (int i = 0; i < 4; i++)
        if (strcasecmp(s, names[i]) == 0 || (s[0] == '0' + i && s[1] == 0)) return i;
    if (strcasecmp(s, "warning") == 0) return EM_LOG_WARN;
    return -1;
}

void em__log(int level, const char *fmt, ...)
{
    static const char *names[] = {"ERROR", "WARN", "INFO", "DEBUG"};
    if (level > log_level) return;
    char line[2048];
    int n = snprintf(line, sizeof line, "[r%d %s] %s ", log_rank, log_leader ? "lead" : "exec", names[level]);
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2) len = sizeof line - 2;
    line[len++] = '\n';
    em__log_sink sink = atomic_load(&log_sink);
    if (sink) {
        sink(line, len);
        return;
    }
    ssize_t w = write(2, line, len);
    (void)w;
}

int em__fail(int err, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    return err;
}

void em__set_error(const char *msg) { snprintf(last_error, sizeof last_error, "%s", msg); }
const char *em_last_error(void) { return last_error; }

void em__assert_fail(const char *expr, const char *file, int line)
{
    em__log(EM_LOG_ERROR, "assertion failed: %s (%s:%d)", expr, file, line);
    _exit(70);
}

void em__oom(size_t bytes)
{
    em__log(EM_LOG_ERROR, "out of memory allocating %zu bytes; this rank exits", bytes);
    _exit(71);
}

void *em__malloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) em__oom(n);
    return p;
}

void *em__calloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p) em__oom(n * size);
    return p;
}

void *em__realloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q) em__oom(n);
    return q;
}

char *em__strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = em__malloc(n);
    memcpy(p, s, n);
    return p;
}

/* ---- error names, from the one X-macro list in ember.h ---- */

const char *em_err_name(int err)
{
    switch (err) {
#define EM__ERR_NAME(name, num, msg) case EM_E##name: return "EM_E" #name;
        EM_ERRNO_MAP(EM__ERR_NAME)
#undef EM__ERR_NAME
    case 0: return "OK";
    default: return "EM_EUNKNOWN";
    }
}

const char *em_strerror(int err)
{
    switch (err) {
#define EM__ERR_MSG(name, num, msg) case EM_E##name: return msg;
        EM_ERRNO_MAP(EM__ERR_MSG)
#undef EM__ERR_MSG
    case 0: return "success";
    default: return "unknown error";
    }
}
