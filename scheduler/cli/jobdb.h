/*
 * jobdb.h — what the job queue's verbs share: its state in SQLite under $EMBER_HOME and the job files (jobdb.c),
 * validation of ids, names, -np, --time and hostfiles (validate.c), liveness of a job's processes (procs.c), the
 * job's shepherd (shepherd.c), the daemon (daemon.c) and the Slurm backend (slurm.c).
 * Shared DESIGN.md section 9. Internal to the `ember` command (scheduler/cli); every name is em__*.
 *
 * Layout of $EMBER_HOME (default ~/.ember; directories 0700, files 0600):
 *
 *   queue.db (+ -wal, -shm)    SQLite in WAL mode: tables jobs, deps, meta (schema in jobdb.c)
 *   scheduler.lock             the daemon holds a POSIX write lock on it while it runs; F_GETLK names its pid
 *   scheduler.pid              the daemon's pid (for people and scripts; the lock is the truth)
 *   scheduler.log              the daemon's own log
 *   jobs/<id>/stdout, stderr   the job's output
 *   jobs/<id>/events.jsonl     the job's event log (EMBER_EVENT_LOG points here)
 *   jobs/<id>/result           written by the job's shepherd when it ends: "<kind> <status> <end_ms>\n"
 *   jobs/<id>/job.sbatch       the batch script of a --backend slurm job
 *
 * Processes of a running local job (daemon.c):
 *
 *   daemon ─fork─> shepherd S (own session; waits for the job, enforces --time, writes `result`)
 *                   └─fork─> B: setsid, execve(/proc/self/exe, "ember run -np N ...")  ── mpirun ── ranks
 *
 * B leads a session of its own: Open MPI puts every rank in a process group of its own, but all stay in B's
 * session, so "every process of the job" is "every process whose session id is B". The jobs row holds S and B
 * with their start times (/proc/PID/stat field 22), so a pid reused by an unrelated process is never mistaken
 * for the job.
 *
 * Errors: functions that can fail print one line "<who>: <what failed>: <why>" on stderr (who is the verb,
 * e.g. "ember submit") and return -1.
 */
#ifndef EMBER_CLI_JOBDB_H
#define EMBER_CLI_JOBDB_H

#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

#define EM__NAME_MAX 64          /* bytes in a job name */
#define EM__GRACE_DEFAULT 10     /* s between SIGTERM and SIGKILL (cancel, --time) */
#define EM__RECENT_S 300         /* s a finished job stays in `ember queue` without --all (Slurm's MinJobAge) */

typedef struct sqlite3 em__sqlite;

/* One open queue database. */
typedef struct em__jobdb {
    em__sqlite *db;
    const char *who; /* prefix of error messages */
} em__jobdb;

/* One row of jobs, with its dependencies. Strings and arrays are owned; em__job_release frees them. */
typedef struct em__job {
    long long id;
    char *name, *user;
    char state[4];       /* PD R CD F CA TO */
    char *reason;        /* Slurm-style: Priority, Resources, Dependency, DependencyNeverSatisfied, TimeLimit, ... */
    long long priority;  /* higher runs first */
    long np;
    char *hostfile;      /* NULL: none */
    long long time_limit; /* s; 0: none */
    char *cwd;
    char **argv;         /* PROGRAM ARGS..., NULL-terminated */
    int argc;
    char *env;           /* NUL-separated NAME=VALUE strings (only loaded by em__job_get with want_env) */
    size_t env_len;
    char *backend;       /* "local" or "slurm" */
    char *slurm_id;      /* NULL until sbatch answered */
    long long submit_ms, start_ms, end_ms; /* ms since the epoch; 0: not yet */
    int has_exit, exit_code;               /* ember run's exit status, once known */
    long long pid, pstart;                 /* shepherd S and its start time (clock ticks since boot) */
    long long pgid, pgstart;               /* B (the job's session and process group leader), its start time */
    int cancel_req;
    long long *deps;
    int ndeps;
} em__job;

/* ---- $EMBER_HOME and paths ------------------------------------------------------------------------------ */

/* $EMBER_HOME, else $HOME/.ember (static storage). NULL with a message if neither can be found. */
const char *em__home(const char *who);
/* Creates $EMBER_HOME (and missing parents) 0700. 0 or -1. */
int em__home_make(const char *who);
/* "<home>/jobs/<id>[/<file>]" into buf. 0, or -1 if it does not fit. */
int em__job_path(char *buf, size_t len, long long id, const char *file);
/* "<home>/<file>" into buf. 0, or -1 if it does not fit. */
int em__home_path(char *buf, size_t len, const char *file);
/* Creates <home>/jobs/<id> 0700 (and <home>/jobs). 0 or -1. */
int em__job_dir_make(const char *who, long long id);

/* ---- validation ------------------------------------------------------------------------------------------ */

/* PROGRAM resolved as execvp would (a path if it contains '/', else through PATH): 1 found, 0 not. */
int em__program_exists(const char *prog);
/* Milliseconds since the epoch. */
long long em__now_ms(void);

/* ---- processes ---------------------------------------------------------------------------------------------- */

/* /proc/PID/stat: start time (clock ticks since boot) and session id of a live (not zombie) process.
 * 0, or -1 if there is no such live process. */
int em__proc_info(pid_t pid, long long *start, pid_t *sid);
/* 1 if PID is alive and started at START, else 0. */
int em__proc_is(pid_t pid, long long start);
/* Sends SIG to every process of session SID started at or after MIN_START (so a session id reused later by an
 * unrelated session is left alone), except the caller. Returns how many were signalled. */
int em__session_kill(pid_t sid, long long min_start, int sig);

/* ---- the database --------------------------------------------------------------------------------------- */

/* Opens (creating 0600 with its schema, WAL, busy timeout) <home>/queue.db. 0 or -1. */
int em__jobdb_open(em__jobdb *jdb, const char *who);
void em__jobdb_close(em__jobdb *jdb);
/* Runs SQL without results (BEGIN IMMEDIATE, COMMIT, ...). 0 or -1. */
int em__jobdb_exec(em__jobdb *jdb, const char *sql);

/* Inserts J (id, state and times are assigned) and its deps in one BEGIN IMMEDIATE transaction, after checking
 * that every dependency exists. Sets j->id. 0, -1 on a database error, -2 if a dependency is unknown
 * (*bad_dep names it). */
int em__job_insert(em__jobdb *jdb, em__job *j, long long *bad_dep);
/* Loads one job. 1 found, 0 no such job, -1 error. */
int em__job_get(em__jobdb *jdb, long long id, em__job *j, int want_env);
/* Loads the jobs matching WHERE (an SQL expression, may be NULL) ordered by ORDER_BY (may be NULL) into a new
 * array (*out, *n; free with em__job_list_free). 0 or -1. */
int em__job_list(em__jobdb *jdb, const char *where, const char *order_by, em__job **out, int *n);
void em__job_list_free(em__job *jobs, int n);
void em__job_release(em__job *j);
/* Runs an UPDATE with positional int64/text parameters given as a format: 'i' long long, 's' const char *
 * (NULL binds NULL). Returns the number of rows changed, or -1. */
int em__jobdb_update(em__jobdb *jdb, const char *sql, const char *fmt, ...);

/* meta table: a setting of the running daemon (slots, hostfile, grace). NULL-terminated copy or NULL. */
char *em__meta_get(em__jobdb *jdb, const char *key);
int em__meta_set(em__jobdb *jdb, const char *key, const char *value);

/* 1 if STATE is final (CD F CA TO). */
int em__state_final(const char *state);
/* "PENDING", "RUNNING", ... for a state code. */
const char *em__state_long(const char *state);

/*
 * For a job in state R whose shepherd is gone: reads jobs/<id>/result and finishes the row (CD, F, CA, TO; or
 * back to PD if the shepherd never started the job) with a conditional UPDATE, so the daemon and `ember cancel`
 * may both try. Kills what is left of the job's session first. Does nothing while the shepherd lives or while
 * the job is still being launched (pid 0). Returns 1 if the row changed, 0 if not, -1 on error. *msg (may be
 * NULL) receives a line for the daemon's log.
 */
int em__job_reconcile(em__jobdb *jdb, const em__job *j, char *msg, size_t msglen);

/* ---- the scheduler daemon (daemon.c) ---------------------------------------------------------------------- */

/* pid of the running daemon (from the lock), or 0 if none. */
pid_t em__sched_running(void);
/* Starts the daemon unless one runs. quiet: print nothing on success. slots 0: default. hostfile may be NULL.
 * 0 (started or already running) or -1. */
int em__sched_start(const char *who, long slots, const char *hostfile, long grace, int quiet);
/* Wakes the daemon to look at the queue now (SIGUSR1); harmless if none runs. */
void em__sched_poke(void);

/*
 * The shepherd of one job (shepherd.c), run in a child of the daemon; never returns. Starts B (av/envp: `ember
 * run ...`), reports B's pid on INFO_FD, runs it only after reading "g" on GO_FD (EOF: kills B, writes
 * "notstarted"), then waits for it, enforcing j->time_limit and stop requests (SIGTERM/SIGINT/SIGHUP), and writes
 * DIR/result.
 */
_Noreturn void em__shepherd(const em__job *j, char **av, char **envp, int go_fd, int info_fd, long grace,
                            const char *dir);

/* ---- the Slurm backend (slurm.c) --------------------------------------------------------------------------- */

/* Writes the sbatch script for J (id may be 0 for a dry run) to F. */
void em__slurm_script(FILE *f, const em__job *j, const char *ember_exe, const char *dep_slurm_ids);
/* Refreshes a slurm job's row from squeue/sacct (state, exit code, times). 0, or -1 if Slurm did not answer. */
int em__slurm_refresh(em__jobdb *jdb, em__job *j);
/* scancel. 0 or -1. */
int em__slurm_cancel(const char *who, const em__job *j);
/* Runs ARGV (no shell) with a timeout, stdout into buf (NUL-terminated, truncated), stderr passed through if
 * pass_stderr else discarded. Exit status, or -1 if it could not run (127 if not found). */
int em__run_capture(char *const argv[], char *buf, size_t len, int pass_stderr, int timeout_s);
/* 1 if PROGRAM can be found through PATH. */
int em__in_path(const char *prog);

#endif
