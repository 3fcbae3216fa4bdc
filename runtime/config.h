/* config.h — every tunable of Ember in one table: --ember-NAME flags, EMBER_NAME environment, defaults. */
#ifndef EM_RUNTIME_CONFIG_H
#define EM_RUNTIME_CONFIG_H

#include <stddef.h>
#include <stdint.h>

#define EM__MAX_FAULTS 16

/* X(field, flag name, type, default, help). Types: INT (int64), SIZE (bytes, K/M/G suffixes), STR, LIST (repeatable).
 * The environment variable is EMBER_ + the flag name upper-cased with '-' as '_' (e.g. EMBER_HEARTBEAT_MS);
 * log-level is also read from EMBER_LOG. Flags win over the environment. */
#define EM__CONFIG_MAP(X)                                                                                     \
    X(log_level, "log-level", STR, "warn", "log level on stderr: error, warn, info, debug (also EMBER_LOG)") \
    X(heartbeat_ms, "heartbeat-ms", INT, "200", "heartbeat interval between every rank and the leader (ms)") \
    X(timeout_ms, "timeout-ms", INT, "2000", "a rank silent this long is declared dead and fenced (ms)")    \
    X(max_task_failures, "max-task-failures", INT, "4", "attempts of one task before the job fails")       \
    X(min_ranks, "min-ranks", INT, "1", "fail the job (EM_ENORANKS) when fewer ranks than this are alive")    \
    X(partitions, "partitions", INT, "0", "default partitions of sources and shuffles (0: 4 x ranks)")       \
    X(memory, "memory", SIZE, "1G", "block store budget per rank before shuffle data spills to disk")       \
    X(max_result, "max-result", SIZE, "1G", "largest result collect() may return (uncompressed bytes)")      \
    X(exit_grace_ms, "exit-grace-ms", INT, "5000", "finalize watchdog: _exit after this long (ms)")         \
    X(fault, "fault", LIST, "", "fault injection, repeatable: see the README (e.g. kill:rank=2:after-tasks=3)") \
    X(event_log, "event-log", STR, "", "JSON-lines event log path (default: none)")                         \
    X(progress, "progress", STR, "auto", "console progress bars on stderr: auto, on, off")                 \
    X(compress, "compress", STR, "auto", "shuffle compression on the wire: auto, none, zlib")                \
    X(tmpdir, "tmpdir", STR, "", "directory for spills and part files (default: $TMPDIR or /tmp)")         \
    X(status_file, "status-file", STR, "", "where the leader writes the job status (set by `ember run`)")

typedef struct em__config {
    char *log_level;
    int64_t heartbeat_ms;   /* ms */
    int64_t timeout_ms;     /* ms */
    int64_t max_task_failures;
    int64_t min_ranks;
    int64_t partitions;
    int64_t memory;         /* bytes */
    int64_t max_result;     /* bytes */
    int64_t exit_grace_ms;  /* ms */
    char *fault[EM__MAX_FAULTS];
    int nfault;
    char *event_log;
    char *progress;
    char *compress;
    char *tmpdir;
    char *status_file;
} em__config;

/* Fills cfg from defaults, environment and argv; removes --ember-* arguments from argv (argc updated).
 * Sets *help when --ember-help was given. Returns 0 or EM_EINVAL with the message in em_last_error(). */
int em__config_load(em__config *cfg, int *argc, char ***argv, int *help);
void em__config_release(em__config *cfg);
/* Prints the table of flags, environment variables, defaults and current values. */
void em__config_print_help(const em__config *cfg, void *file);
/* "128M" → 134217728; returns 0 or -1. */
int em__parse_size(const char *s, int64_t *out);

#endif
