/* log.h — leveled, rank-tagged logging to stderr, and the per-thread "last error" message. */
#ifndef EM_RUNTIME_LOG_H
#define EM_RUNTIME_LOG_H

#include <stdarg.h>
#include <stddef.h>

enum { EM_LOG_ERROR = 0, EM_LOG_WARN = 1, EM_LOG_INFO = 2, EM_LOG_DEBUG = 3 };

/* Set once at start-up (and on leader change for the role). */
void em__log_setup(int rank, int level);
void em__log_set_leader(int is_leader);
int em__log_level(void);
/* Parses "error|warn|info|debug" (or 0..3); returns the level or -1. */
int em__log_parse_level(const char *s);

/* One line: "[r2 exec] WARN message\n", written with a single write(2) so lines from threads never interleave. */
void em__log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Where finished log lines go instead of write(2, ...) (runtime/progress.c installs one that clears its bar, writes
 * the line and redraws the bar in one write, so a log line never lands in the middle of a bar). The sink is called
 * from any thread, must write the whole line and must not log. NULL restores the plain write. */
typedef void (*em__log_sink)(const char *line, size_t len);
void em__log_set_sink(em__log_sink sink);

#define EM_LOG_E(...) em__log(EM_LOG_ERROR, __VA_ARGS__)
#define EM_LOG_W(...) em__log(EM_LOG_WARN, __VA_ARGS__)
#define EM_LOG_I(...) do { if (em__log_level() >= EM_LOG_INFO) em__log(EM_LOG_INFO, __VA_ARGS__); } while (0)
#define EM_LOG_D(...) do { if (em__log_level() >= EM_LOG_DEBUG) em__log(EM_LOG_DEBUG, __VA_ARGS__); } while (0)

/* Records the message returned by em_last_error() on this thread and returns `err` (for `return em__fail(...)`). */
int em__fail(int err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Copies a message into this thread's last-error slot (used to carry remote task errors to the caller). */
void em__set_error(const char *msg);

/* Programmer errors: always compiled in; prints rank, file, line and the expression, then _exit(70). */
#define EM_ASSERT(e) ((e) ? (void)0 : em__assert_fail(#e, __FILE__, __LINE__))
_Noreturn void em__assert_fail(const char *expr, const char *file, int line);

/* Out of memory: log and _exit this rank (STYLE rule 5; the cluster sees a dead executor). */
_Noreturn void em__oom(size_t bytes);
void *em__malloc(size_t n);
void *em__calloc(size_t n, size_t size);
void *em__realloc(void *p, size_t n);
char *em__strdup(const char *s);

#endif
