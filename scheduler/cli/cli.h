/*
 * cli.h — internal interface between the `ember` command's dispatcher (main.c) and its verbs.
 *
 * Each verb is one function `int em__cli_<verb>(int argc, char **argv)` that receives argv starting at the verb
 * name (argv[0] is "run", "submit", ...) and returns the process exit status. A verb is added by writing it in
 * its own file and adding one row to the table in main.c. See shared DESIGN.md section 9.
 */
#ifndef EMBER_CLI_H
#define EMBER_CLI_H

#include <stddef.h>
#include <stdio.h>

/* `ember run [-np N] [--hostfile F] PROGRAM [ARGS...]`: run.c. */
int em__cli_run(int argc, char **argv);
void em__cli_run_usage(FILE *out);

/* `ember log create|append|info|dump|verify ...`: the streaming input log, logcmd.c. */
int em__cli_log(int argc, char **argv);

/* `ember history [ID|FILE] [--html OUT.html]`: history.c. */
int em__cli_history(int argc, char **argv);

/* The job queue (shared DESIGN.md section 9): submit.c, queue.c, daemon.c; state in jobdb.c, Slurm in slurm.c. */
int em__cli_submit(int argc, char **argv);
int em__cli_queue(int argc, char **argv);
int em__cli_status(int argc, char **argv);
int em__cli_cancel(int argc, char **argv);
int em__cli_logs(int argc, char **argv);
int em__cli_scheduler(int argc, char **argv);

/*
 * Filter of mpirun's stderr (mpinoise.c): drops Open MPI's known noise, passes everything else through in order.
 * Feed it bytes as they arrive; it writes what it keeps to fd. Lines are held only while they might still turn
 * out to be noise (a boxed message that has not closed yet, a partial line); em__noise_idle() releases a held
 * partial line or an unterminated box after the input has been quiet for a while, so prompts and progress bars
 * are not delayed indefinitely.
 */
typedef struct em__noise em__noise;
em__noise *em__noise_new(int fd);
void em__noise_feed(em__noise *nf, const char *data, size_t len);
void em__noise_idle(em__noise *nf);
/* Flushes whatever is held (end of input) and frees the filter. em__noise_free(NULL) is a no-op. */
void em__noise_free(em__noise *nf);

/* A positive count (-np, --slots) of digits only, at most EM__NP_MAX: the value, or -1 (validate.c). */
#define EM__NP_MAX 1000000
long em__parse_count(const char *s);

/* A job id: 1 to 18 decimal digits, no sign, not 0. 0 and *id set, or -1. Nothing else may name a job path. */
int em__parse_id(const char *s, long long *id);
/* em__parse_count (a positive count up to EM__NP_MAX, digits only) is declared in cli.h: `ember run` uses it too. */
/* Why NAME is not a valid job name (NULL: it is): 1..EM__NAME_MAX printable ASCII bytes without space, '/',
 * '\\' or "..", not starting with '-'. */
const char *em__name_problem(const char *name);
/* Slurm's --time forms: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S; 0, "UNLIMITED" or "INFINITE" mean no limit.
 * Seconds (0: none), or -1. */
long long em__parse_time(const char *s);
/* Slurm-style duration: M:SS, H:MM:SS, D-HH:MM:SS. */
void em__fmt_duration(char *buf, size_t len, long long seconds);
/* Checks an Open MPI hostfile ("host [slots=N] [key=value]...", '#' comments) and sums its slots (a host without
 * slots= counts 1). The sum, or -1 after a message naming file:line. */
long em__hostfile_slots(const char *who, const char *path);

#endif
