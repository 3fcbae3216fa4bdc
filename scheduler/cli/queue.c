/*
 * queue.c — the verbs that look at and act on queued jobs: `ember queue`, `ember status ID`, `ember cancel ID...`
 * and `ember logs ID [-f]` (shared DESIGN.md section 9; state in jobdb.c, the daemon in daemon.c).
 *
 * A job id is validated (digits only) before it names anything, and `logs` opens the job's files one path
 * component at a time with O_NOFOLLOW, so no symbolic link planted in $EMBER_HOME makes it read another file.
 */
#include "scheduler/cli/cli.h"
#include "scheduler/cli/jobdb.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Parses the id argument and loads the job. 1 loaded; otherwise the exit status (after a message). */
static int load_job(em__jobdb *jdb, const char *who, const char *arg, em__job *j)
{
    long long id;
    if (em__parse_id(arg, &id) < 0) {
        fprintf(stderr, "%s: '%s': not a job id (expected digits)\n", who, arg);
        return 2;
    }
    int got = em__job_get(jdb, id, j, 0);
    if (got == 0) {
        fprintf(stderr, "%s: job %lld: no such job\n", who, id);
        return 1;
    }
    return got < 0 ? 1 : -1;
}

/* Elapsed run time of a job, seconds. */
static long long run_seconds(const em__job *j)
{
    if (!j->start_ms)
        return 0;
    long long end = j->end_ms ? j->end_ms : em__state_final(j->state) ? j->start_ms : em__now_ms();
    return (end - j->start_ms) / 1000;
}

static void refresh_slurm_jobs(em__jobdb *jdb)
{
    em__job *v;
    int n;
    if (em__job_list(jdb, "backend = 'slurm' AND state IN ('PD', 'R') AND slurm_id IS NOT NULL", NULL, &v, &n) < 0)
        return;
    for (int i = 0; i < n; i++)
        em__slurm_refresh(jdb, &v[i]);
    em__job_list_free(v, n);
}

/* ---- ember queue ------------------------------------------------------------------------------------------- */

static void queue_usage(FILE *out)
{
    fputs("usage: ember queue [--all] [--noheader]\n"
          "\n"
          "Lists running jobs, then pending ones in the order they will start, then jobs that ended in the last\n"
          "5 minutes (like squeue), with Slurm's state codes: PD pending, R running, CD completed, F failed,\n"
          "CA cancelled, TO timed out. REASON says why a pending job waits (Priority, Resources, Dependency) or\n"
          "how a job ended (NonZeroExitCode, Cancelled, DependencyNeverSatisfied, TimeLimit, JobLost).\n"
          "\n"
          "  --all         every job ever submitted, not just the recent ones\n"
          "  --noheader    no header line\n",
          out);
}

int em__cli_queue(int argc, char **argv)
{
    const char *who = "ember queue";
    int all = 0, header = 1;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--all") == 0 || strcmp(argv[i], "-a") == 0) {
            all = 1;
        } else if (strcmp(argv[i], "--noheader") == 0) {
            header = 0;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            queue_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "%s: unknown option '%s' (try 'ember queue --help')\n", who, argv[i]);
            return 2;
        }
    }
    em__jobdb jdb;
    if (em__jobdb_open(&jdb, who) < 0)
        return 1;
    refresh_slurm_jobs(&jdb);
    char where[128];
    snprintf(where, sizeof where, "state IN ('PD', 'R') OR end_ms >= %lld", em__now_ms() - EM__RECENT_S * 1000LL);
    em__job *v;
    int n;
    if (em__job_list(&jdb, all ? NULL : where,
                     "CASE state WHEN 'R' THEN 0 WHEN 'PD' THEN 1 ELSE 2 END,"
                     " CASE WHEN state = 'PD' THEN -priority ELSE 0 END, id",
                     &v, &n) < 0) {
        em__jobdb_close(&jdb);
        return 1;
    }
    /* Column widths from the data, like `column -t`, so long names and ids stay aligned. */
    int wid = 2, wname = 4, wuser = 4, wtime = 4, wnp = 2;
    char tbuf[32], nbuf[32];
    int active_local = 0;
    for (int i = 0; i < n; i++) {
        snprintf(nbuf, sizeof nbuf, "%lld", v[i].id);
        if ((int)strlen(nbuf) > wid)
            wid = (int)strlen(nbuf);
        if ((int)strlen(v[i].name) > wname)
            wname = (int)strlen(v[i].name);
        if ((int)strlen(v[i].user) > wuser)
            wuser = (int)strlen(v[i].user);
        em__fmt_duration(tbuf, sizeof tbuf, run_seconds(&v[i]));
        if ((int)strlen(tbuf) > wtime)
            wtime = (int)strlen(tbuf);
        snprintf(nbuf, sizeof nbuf, "%ld", v[i].np);
        if ((int)strlen(nbuf) > wnp)
            wnp = (int)strlen(nbuf);
        active_local += !em__state_final(v[i].state) && strcmp(v[i].backend, "local") == 0;
    }
    if (header)
        printf("%*s %-*s %-*s %-2s %*s %*s %s\n", wid, "ID", wname, "NAME", wuser, "USER", "ST", wtime, "TIME", wnp, "NP",
               "REASON");
    for (int i = 0; i < n; i++) {
        em__fmt_duration(tbuf, sizeof tbuf, run_seconds(&v[i]));
        printf("%*lld %-*s %-*s %-2s %*s %*ld %s\n", wid, v[i].id, wname, v[i].name, wuser, v[i].user, v[i].state, wtime,
               tbuf, wnp, v[i].np, v[i].reason);
    }
    fflush(stdout);
    if (active_local && !em__sched_running())
        fprintf(stderr, "%s: note: the scheduler is not running: pending jobs wait and ended jobs still show R until"
                        " 'ember scheduler start'\n", who);
    em__job_list_free(v, n);
    em__jobdb_close(&jdb);
    return 0;
}

/* ---- ember status ID --------------------------------------------------------------------------------------- */

static void fmt_time(char *buf, size_t len, long long ms)
{
    if (!ms) {
        snprintf(buf, len, "-");
        return;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}

/* Prints S so that a shell would read it back as one word (for display only: nothing runs it). */
static void print_word(const char *s)
{
    if (*s && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%") == strlen(s)) {
        fputs(s, stdout);
        return;
    }
    putchar('\'');
    for (; *s; s++)
        if (*s == '\'')
            fputs("'\\''", stdout);
        else
            putchar(*s);
    putchar('\'');
}

static void status_usage(FILE *out)
{
    fputs("usage: ember status ID\n"
          "\n"
          "Shows one job in full: its command, state, times, exit status and where its output and event log are.\n",
          out);
}

int em__cli_status(int argc, char **argv)
{
    const char *who = "ember status";
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        status_usage(stdout);
        return 0;
    }
    if (argc != 2) {
        status_usage(stderr);
        return 2;
    }
    em__jobdb jdb;
    em__job j;
    long long id;
    if (em__parse_id(argv[1], &id) < 0) {
        fprintf(stderr, "%s: '%s': not a job id (expected digits)\n", who, argv[1]);
        return 2;
    }
    if (em__jobdb_open(&jdb, who) < 0)
        return 1;
    int rc = load_job(&jdb, who, argv[1], &j);
    if (rc >= 0) {
        em__jobdb_close(&jdb);
        return rc;
    }
    if (strcmp(j.backend, "slurm") == 0)
        em__slurm_refresh(&jdb, &j);
    char t[64], p[PATH_MAX];
    printf("JobId:       %lld\n", j.id);
    printf("Name:        %s\n", j.name);
    printf("User:        %s\n", j.user);
    printf("State:       %s (%s)\n", j.state, em__state_long(j.state));
    printf("Reason:      %s\n", j.reason);
    printf("Command:     ember run -np %ld", j.np);
    if (j.hostfile) {
        fputs(" --hostfile ", stdout);
        print_word(j.hostfile);
    }
    for (int i = 0; i < j.argc; i++) {
        putchar(' ');
        print_word(j.argv[i]);
    }
    printf("\nWorkDir:     %s\n", j.cwd);
    printf("NP:          %ld\n", j.np);
    printf("Priority:    %lld\n", j.priority);
    if (j.ndeps) {
        printf("After:      ");
        for (int i = 0; i < j.ndeps; i++)
            printf(" %lld", j.deps[i]);
        putchar('\n');
    }
    if (j.time_limit > 0) {
        em__fmt_duration(t, sizeof t, j.time_limit);
        printf("TimeLimit:   %s\n", t);
    } else {
        printf("TimeLimit:   UNLIMITED\n");
    }
    fmt_time(t, sizeof t, j.submit_ms);
    printf("Submitted:   %s\n", t);
    fmt_time(t, sizeof t, j.start_ms);
    printf("Started:     %s\n", t);
    fmt_time(t, sizeof t, j.end_ms);
    printf("Ended:       %s\n", t);
    em__fmt_duration(t, sizeof t, run_seconds(&j));
    printf("RunTime:     %s\n", t);
    if (j.has_exit)
        printf("ExitStatus:  %d\n", j.exit_code);
    else
        printf("ExitStatus:  -\n");
    if (strcmp(j.state, "R") == 0 && j.pid)
        printf("Pid:         %lld (shepherd), %lld (job session)\n", j.pid, j.pgid);
    em__job_path(p, sizeof p, j.id, "stdout");
    printf("StdOut:      %s\n", p);
    em__job_path(p, sizeof p, j.id, "stderr");
    printf("StdErr:      %s\n", p);
    em__job_path(p, sizeof p, j.id, "events.jsonl");
    printf("EventLog:    %s\n", p);
    if (strcmp(j.backend, "slurm") == 0) {
        printf("Backend:     slurm (Slurm job %s)\n", j.slurm_id ? j.slurm_id : "-");
        em__job_path(p, sizeof p, j.id, "job.sbatch");
        printf("BatchScript: %s\n", p);
    } else {
        printf("Backend:     local\n");
    }
    em__job_release(&j);
    em__jobdb_close(&jdb);
    return 0;
}

/* ---- ember cancel ID... ---------------------------------------------------------------------------------- */

static void cancel_usage(FILE *out)
{
    fputs("usage: ember cancel ID...\n"
          "\n"
          "A pending job leaves the queue (state CA). A running job's `ember run` gets SIGTERM, which stops mpirun\n"
          "and every rank; whatever is left of the job gets SIGKILL after the scheduler's grace period. Waits\n"
          "until the job is gone.\n",
          out);
}

/* Stops a running local job; returns once its shepherd is gone (or the wait gave up). */
static int cancel_running(em__jobdb *jdb, const char *who, long long id, long grace)
{
    em__jobdb_update(jdb, "UPDATE jobs SET cancel_req = 1 WHERE id = ? AND state = 'R'", "i", id);
    long long deadline = mono_ms() + (grace + 5) * 1000LL;
    int signalled = 0, killed = 0;
    for (;;) {
        em__job j;
        if (em__job_get(jdb, id, &j, 0) != 1)
            return 1;
        if (strcmp(j.state, "R") != 0) {
            /* Ended: give the kernel a moment to take down what the SIGKILLs hit, so "cancelled" means gone. */
            for (int k = 0; k < 40 && j.pgid > 1 && em__session_kill((pid_t)j.pgid, j.pgstart, 0) > 0; k++)
                sleep_ms(50);
            em__job_release(&j);
            return 0;
        }
        if (j.pid) {
            if (em__proc_is((pid_t)j.pid, j.pstart)) {
                /* The shepherd sends SIGTERM to `ember run` and SIGKILL to the job's session after the grace. */
                if (!signalled)
                    kill((pid_t)j.pid, SIGTERM);
                signalled = 1;
                if (mono_ms() > deadline && !killed) {
                    /* A shepherd that does not finish the job in time: do its work and take it down too. */
                    em__session_kill((pid_t)j.pgid, j.pgstart, SIGKILL);
                    kill((pid_t)j.pid, SIGKILL);
                    killed = 1;
                }
            } else if (em__job_reconcile(jdb, &j, NULL, 0) < 0) {
                em__job_release(&j);
                return 1;
            }
        } else if (mono_ms() > deadline) {
            fprintf(stderr, "%s: job %lld: still being launched; try again\n", who, id);
            em__job_release(&j);
            return 1;
        }
        em__job_release(&j);
        sleep_ms(50);
    }
}

int em__cli_cancel(int argc, char **argv)
{
    const char *who = "ember cancel";
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        cancel_usage(stdout);
        return 0;
    }
    if (argc < 2) {
        cancel_usage(stderr);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        long long id;
        if (em__parse_id(argv[i], &id) < 0) {
            fprintf(stderr, "%s: '%s': not a job id (expected digits)\n", who, argv[i]);
            return 2;
        }
    }
    em__jobdb jdb;
    if (em__jobdb_open(&jdb, who) < 0)
        return 1;
    char *g = em__meta_get(&jdb, "grace");
    long grace = g ? atol(g) : EM__GRACE_DEFAULT;
    free(g);
    int status = 0;
    for (int i = 1; i < argc; i++) {
        em__job j;
        int rc = load_job(&jdb, who, argv[i], &j);
        if (rc >= 0) {
            status = status ? status : rc;
            continue;
        }
        if (strcmp(j.backend, "slurm") == 0) {
            if (em__slurm_cancel(who, &j) < 0) {
                status = 1;
            } else {
                em__jobdb_update(&jdb, "UPDATE jobs SET cancel_req = 1 WHERE id = ?", "i", j.id);
                em__slurm_refresh(&jdb, &j);
            }
            em__job_release(&j);
            continue;
        }
        /* PD -> CA in one conditional UPDATE; if the daemon started it meanwhile, it is cancelled as running. */
        if (strcmp(j.state, "PD") == 0 &&
            em__jobdb_update(&jdb,
                             "UPDATE jobs SET state = 'CA', reason = 'Cancelled', cancel_req = 1, end_ms = ?"
                             " WHERE id = ? AND state = 'PD'",
                             "ii", em__now_ms(), j.id) == 1) {
            em__job_release(&j);
            continue;
        }
        long long jid = j.id;
        em__job_release(&j);
        if (em__job_get(&jdb, jid, &j, 0) != 1) {
            status = 1;
            continue;
        }
        if (strcmp(j.state, "R") == 0) {
            if (cancel_running(&jdb, who, j.id, grace) != 0)
                status = 1;
        } else {
            fprintf(stderr, "%s: job %lld already ended (%s)\n", who, j.id, j.state);
            status = 1;
        }
        em__job_release(&j);
    }
    em__jobdb_close(&jdb);
    em__sched_poke();
    return status;
}

/* ---- ember logs ID [-f] ------------------------------------------------------------------------------------- */

static void logs_usage(FILE *out)
{
    fputs("usage: ember logs [-f] [--stdout | --stderr] ID\n"
          "\n"
          "Prints what job ID wrote: its stdout to stdout, its stderr to stderr.\n"
          "\n"
          "  -f, --follow   keep printing as the job writes, until it ends\n"
          "  --stdout       only the job's stdout\n"
          "  --stderr       only the job's stderr\n",
          out);
}

/*
 * Opens <home>/jobs/<id>/<name> refusing symbolic links at every step below $EMBER_HOME. The fd, -1 if the file
 * does not exist (yet), or -2 after a message if something is there that must not be read.
 */
static int open_job_file(const char *who, long long id, const char *name)
{
    const char *home = em__home(who);
    char ids[32];
    int fd = -1;
    if (!home)
        return -2;
    snprintf(ids, sizeof ids, "%lld", id);
    int hd = open(home, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (hd < 0)
        return -1;
    int jd = openat(hd, "jobs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    int dd = jd >= 0 ? openat(jd, ids, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
    int e = errno;
    if (dd >= 0) {
        fd = openat(dd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
        e = errno;
    }
    struct stat st;
    if (fd >= 0 && (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))) {
        close(fd);
        fd = -1;
        e = EINVAL;
    }
    close(hd);
    if (jd >= 0)
        close(jd);
    if (dd >= 0)
        close(dd);
    if (fd < 0 && e != ENOENT) {
        fprintf(stderr, "%s: job %lld: refusing to read %s/jobs/%lld/%s: %s\n", who, id, home, id, name,
                e == ELOOP || e == ENOTDIR ? "not a regular file in the job's own directory (symbolic link?)"
                : e == EINVAL              ? "not a regular file"
                                           : strerror(e));
        return -2;
    }
    return fd;
}

/* Copies what is new in FD to OUT. -1 on a write error. */
static int drain(int fd, int out)
{
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return 0;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(out, buf + off, (size_t)(n - off));
            if (w < 0) {
                if (errno == EINTR)
                    continue;
                return -1;
            }
            off += w;
        }
    }
}

int em__cli_logs(int argc, char **argv)
{
    const char *who = "ember logs";
    int follow = 0, want_out = 1, want_err = 1;
    const char *idarg = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-f") == 0 || strcmp(a, "--follow") == 0) {
            follow = 1;
        } else if (strcmp(a, "--stdout") == 0) {
            want_err = 0;
        } else if (strcmp(a, "--stderr") == 0) {
            want_out = 0;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            logs_usage(stdout);
            return 0;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "%s: unknown option '%s' (try 'ember logs --help')\n", who, a);
            return 2;
        } else if (idarg) {
            fprintf(stderr, "%s: more than one job id ('%s', '%s')\n", who, idarg, a);
            return 2;
        } else {
            idarg = a;
        }
    }
    if (!idarg || (!want_out && !want_err)) {
        logs_usage(stderr);
        return 2;
    }
    long long id;
    if (em__parse_id(idarg, &id) < 0) {
        fprintf(stderr, "%s: '%s': not a job id (expected digits)\n", who, idarg);
        return 2;
    }
    em__jobdb jdb;
    em__job j;
    if (em__jobdb_open(&jdb, who) < 0)
        return 1;
    int rc = load_job(&jdb, who, idarg, &j);
    if (rc >= 0) {
        em__jobdb_close(&jdb);
        return rc;
    }
    int fds[2] = {-1, -1};
    const char *names[2] = {"stdout", "stderr"};
    const int want[2] = {want_out, want_err}, outs[2] = {STDOUT_FILENO, STDERR_FILENO};
    int status = 0, polls = 0;
    for (;;) {
        /* Whether the job had ended is read before the files, so a last write is never missed. */
        int ended = 1;
        if (follow) {
            em__job now;
            if (em__job_get(&jdb, id, &now, 0) == 1) {
                if (strcmp(now.backend, "slurm") == 0 && polls % 10 == 0)
                    em__slurm_refresh(&jdb, &now);
                /* With no daemon to notice the end of the job, we do (the update is conditional, so no race);
                 * the new state is read on the next round. */
                if (strcmp(now.state, "R") == 0 && polls % 10 == 9 && !em__sched_running())
                    em__job_reconcile(&jdb, &now, NULL, 0);
                ended = em__state_final(now.state);
                em__job_release(&now);
            }
        }
        for (int k = 0; k < 2; k++) {
            if (!want[k])
                continue;
            if (fds[k] == -1) {
                fds[k] = open_job_file(who, id, names[k]);
                if (fds[k] == -2) {
                    status = 1;
                    goto out;
                }
            }
            if (fds[k] >= 0 && drain(fds[k], outs[k]) < 0) {
                status = 1;
                goto out;
            }
        }
        if (!follow || ended)
            break;
        polls++;
        sleep_ms(100);
    }
out:
    for (int k = 0; k < 2; k++)
        if (fds[k] >= 0)
            close(fds[k]);
    em__job_release(&j);
    em__jobdb_close(&jdb);
    return status;
}
