/*
 * daemon.c — `ember scheduler start|stop|status` and the scheduler daemon: runs queued jobs in priority, then
 * FIFO order within a budget of slots (ranks), honours --after dependencies and --time limits, and survives its
 * own restart (shared DESIGN.md section 9; state and process layout in jobdb.h).
 *
 * The daemon is a loop that owns no job's fate in memory: every decision is a conditional UPDATE of queue.db,
 * and everything a running job needs lives in a shepherd process that outlives the daemon. Launching a job:
 *
 *   1. UPDATE state PD -> R (pid 0)                       a crash here: the restart finds R with pid 0, requeues
 *   2. fork S; S forks B (B: setsid, waits on a pipe)      S tells the daemon B's pid
 *   3. UPDATE pid/pstart = S, pgid/pgstart = B            a crash before 4: S reads EOF, kills B, writes
 *                                                         "notstarted"; the restart requeues the job
 *   4. write "g" to S; S tells B; B execs `ember run`     from here the job is running exactly once
 *
 * A restarted daemon finds running jobs again through pid + /proc start time of S; if S is gone, the result
 * file it left decides the final state, and without one the job is marked F (JobLost), never run again.
 *
 * Fault injection (tests): EMBER_SCHED_FAULT=launch-before-pid or launch-before-go in the daemon's environment makes
 * it SIGKILL itself at that point of its first launch, the two places where a crash could lose or double a job.
 *
 * Signals: the daemon blocks SIGCHLD, SIGUSR1 (a submit's "look now"), SIGTERM, SIGINT and SIGHUP and takes them
 * with sigtimedwait between ticks; a tick (TICK_MS) also polls shepherds that are not its children any more.
 */
#include "scheduler/cli/cli.h"
#include "scheduler/cli/jobdb.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define TICK_MS 250           /* the daemon's polling period */
#define LAUNCH_TIMEOUT_MS 10000 /* how long the daemon waits for a shepherd to report */
#define START_TIMEOUT_MS 15000  /* how long `scheduler start` waits for the daemon to report */

static const char *WHO = "ember scheduler";

/* ---- the daemon's log ------------------------------------------------------------------------------------- */

static void dlog(const char *fmt, ...)
{
    char ts[32];
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%d %H:%M:%S", &tm);
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s [%d] ", ts, (int)getpid());
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(stderr);
}

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- is one running? ------------------------------------------------------------------------------------ */

pid_t em__sched_running(void)
{
    char path[PATH_MAX];
    if (em__home_path(path, sizeof path, "scheduler.lock") < 0)
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    /* F_GETLK asks without taking the lock: a check never makes a starting daemon think another one runs. */
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    pid_t pid = 0;
    if (fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK)
        pid = fl.l_pid;
    close(fd);
    return pid;
}

void em__sched_poke(void)
{
    pid_t pid = em__sched_running();
    if (pid > 0)
        kill(pid, SIGUSR1);
}

/* ---- launching --------------------------------------------------------------------------------------------- */

/* ember run -np N [--hostfile F] -- PROGRAM ARGS... */
static char **job_argv(const em__job *j, const char *sched_hostfile, char *npbuf, size_t nplen)
{
    char **av = calloc((size_t)j->argc + 8, sizeof *av);
    int k = 0;
    if (!av)
        return NULL;
    snprintf(npbuf, nplen, "%ld", j->np);
    av[k++] = "ember";
    av[k++] = "run";
    av[k++] = "-np";
    av[k++] = npbuf;
    const char *hf = j->hostfile ? j->hostfile : sched_hostfile;
    if (hf && *hf) {
        av[k++] = "--hostfile";
        av[k++] = (char *)hf;
    }
    av[k++] = "--";
    for (int i = 0; i < j->argc; i++)
        av[k++] = j->argv[i];
    av[k] = NULL;
    return av;
}

/* The submitter's environment with EMBER_EVENT_LOG and EMBER_JOB_ID set for this job. */
static char **job_envp(const em__job *j, char *evbuf, char *idbuf, size_t idlen)
{
    int n = 0;
    for (size_t i = 0; i < j->env_len; i++)
        n += j->env[i] == '\0';
    char **ev = calloc((size_t)n + 3, sizeof *ev);
    int k = 0;
    if (!ev)
        return NULL;
    for (size_t off = 0; off < j->env_len; off += strlen(j->env + off) + 1) {
        const char *e = j->env + off;
        if (strncmp(e, "EMBER_EVENT_LOG=", 16) == 0 || strncmp(e, "EMBER_JOB_ID=", 13) == 0)
            continue;
        ev[k++] = (char *)e;
    }
    ev[k++] = evbuf;
    snprintf(idbuf, idlen, "EMBER_JOB_ID=%lld", j->id);
    ev[k++] = idbuf;
    ev[k] = NULL;
    return ev;
}

static void back_to_pending(em__jobdb *jdb, long long id, const char *why)
{
    dlog("job %lld: launch failed (%s); pending again", id, why);
    em__jobdb_update(jdb, "UPDATE jobs SET state = 'PD', start_ms = 0, pid = 0, pgid = 0 WHERE id = ? AND state = 'R'",
                     "i", id);
}

/* SIGKILLs the daemon if EMBER_SCHED_FAULT names this point: a crash exactly here, for the tests. */
static void fault_point(const char *name, long long id)
{
    const char *f = getenv("EMBER_SCHED_FAULT");
    if (f && strcmp(f, name) == 0) {
        dlog("fault injection: %s (job %lld): SIGKILL", name, id);
        kill(getpid(), SIGKILL);
    }
}

/* The job cannot be started (and retrying would fail the same way every tick): F, LaunchFailed. */
static void launch_failed(em__jobdb *jdb, long long id, const char *why)
{
    dlog("job %lld: launch failed (%s); marked F", id, why);
    em__jobdb_update(jdb,
                     "UPDATE jobs SET state = 'F', reason = 'LaunchFailed', end_ms = ?, pid = 0, pgid = 0 WHERE id = ?"
                     " AND state = 'R'",
                     "ii", em__now_ms(), id);
}

/* Starts job ID (state PD) as described at the top of this file. 1 started, 0 not (someone else moved it). */
static int launch(em__jobdb *jdb, long long id, const char *sched_hostfile, long grace)
{
    em__job j;
    char dir[PATH_MAX], res[PATH_MAX], evp[PATH_MAX], ev[PATH_MAX + 32], npbuf[32], idbuf[48];
    int rc = 0;
    if (em__job_get(jdb, id, &j, 1) != 1)
        return 0;
    if (em__jobdb_update(jdb,
                         "UPDATE jobs SET state = 'R', reason = 'None', start_ms = ?, end_ms = 0, exit_code = NULL,"
                         " pid = 0, pstart = 0, pgid = 0, pgstart = 0 WHERE id = ? AND state = 'PD'",
                         "ii", em__now_ms(), id) != 1)
        goto out;
    if (em__job_dir_make(WHO, id) < 0 || em__job_path(dir, sizeof dir, id, NULL) < 0 ||
        em__job_path(res, sizeof res, id, "result") < 0 || em__job_path(evp, sizeof evp, id, "events.jsonl") < 0) {
        launch_failed(jdb, id, "cannot create its job directory");
        goto out;
    }
    unlink(res);
    snprintf(ev, sizeof ev, "EMBER_EVENT_LOG=%s", evp);
    char **av = job_argv(&j, sched_hostfile, npbuf, sizeof npbuf);
    char **envp = job_envp(&j, ev, idbuf, sizeof idbuf);
    int go[2] = {-1, -1}, info[2] = {-1, -1};
    if (!av || !envp || pipe2(go, O_CLOEXEC) < 0 || pipe2(info, O_CLOEXEC) < 0) {
        back_to_pending(jdb, id, strerror(errno ? errno : ENOMEM));
        goto free_out;
    }
    pid_t s = fork();
    if (s < 0) {
        back_to_pending(jdb, id, strerror(errno));
        goto free_out;
    }
    if (s == 0) {
        close(go[1]);
        close(info[0]);
        em__shepherd(&j, av, envp, go[0], info[1], grace, dir);
    }
    close(go[0]), go[0] = -1;
    close(info[1]), info[1] = -1;
    fault_point("launch-before-pid", id);
    long long sstart = 0, bstart = 0;
    int32_t b = 0;
    struct pollfd p = {.fd = info[0], .events = POLLIN};
    int ok = em__proc_info(s, &sstart, NULL) == 0 && poll(&p, 1, LAUNCH_TIMEOUT_MS) == 1 &&
             read(info[0], &b, sizeof b) == (ssize_t)sizeof b && b > 0 && em__proc_info(b, &bstart, NULL) == 0;
    if (ok)
        ok = em__jobdb_update(jdb, "UPDATE jobs SET pid = ?, pstart = ?, pgid = ?, pgstart = ? WHERE id = ? AND state = 'R'",
                              "iiiii", (long long)s, sstart, (long long)b, bstart, id) == 1;
    if (ok)
        fault_point("launch-before-go", id);
    if (!ok || write(go[1], "g", 1) != 1) {
        /* The shepherd sees EOF and stops B before it ran anything. */
        close(go[1]), go[1] = -1;
        waitpid(s, NULL, 0);
        unlink(res);
        launch_failed(jdb, id, "the shepherd did not report");
        goto free_out;
    }
    dlog("job %lld started: shepherd %d, job session %d, np %ld: %s", id, (int)s, (int)b, j.np, j.argv[0]);
    rc = 1;
free_out:
    for (int i = 0; i < 2; i++) {
        if (go[i] >= 0)
            close(go[i]);
        if (info[i] >= 0)
            close(info[i]);
    }
    free(av);
    free(envp);
out:
    em__job_release(&j);
    return rc;
}

/* ---- one tick ---------------------------------------------------------------------------------------------- */

/* 0: every dependency completed; 1: some still pending or running; 2: one will never complete. */
static int deps_state(em__jobdb *jdb, const em__job *j)
{
    int worst = 0;
    for (int i = 0; i < j->ndeps; i++) {
        em__job d;
        int got = em__job_get(jdb, j->deps[i], &d, 0);
        if (got != 1) {
            worst = 2; /* a dependency that vanished from the database can never complete */
            continue;
        }
        if (strcmp(d.state, "F") == 0 || strcmp(d.state, "CA") == 0 || strcmp(d.state, "TO") == 0)
            worst = 2;
        else if (strcmp(d.state, "CD") != 0 && worst < 1)
            worst = 1;
        em__job_release(&d);
    }
    return worst;
}

static void set_reason(em__jobdb *jdb, const em__job *j, const char *reason)
{
    if (strcmp(j->reason, reason) != 0)
        em__jobdb_update(jdb, "UPDATE jobs SET reason = ? WHERE id = ? AND state = 'PD'", "si", reason, j->id);
}

static void reconcile_running(em__jobdb *jdb)
{
    em__job *v;
    int n;
    char msg[256];
    if (em__job_list(jdb, "state = 'R' AND backend = 'local'", "id", &v, &n) < 0)
        return;
    for (int i = 0; i < n; i++)
        if (em__job_reconcile(jdb, &v[i], msg, sizeof msg) > 0 && msg[0])
            dlog("%s", msg);
    em__job_list_free(v, n);
}

static void tick(em__jobdb *jdb, long slots, const char *hostfile, long grace)
{
    em__job *v;
    int n;
    reconcile_running(jdb);
    /* Dependencies that can never be satisfied: cancel, repeatedly, so a chain a -> b -> c goes in one tick. */
    for (int changed = 1; changed;) {
        changed = 0;
        if (em__job_list(jdb, "state = 'PD' AND backend = 'local' AND id IN (SELECT job FROM deps)", "id", &v, &n) < 0)
            return;
        for (int i = 0; i < n; i++) {
            if (deps_state(jdb, &v[i]) != 2)
                continue;
            if (em__jobdb_update(jdb,
                                 "UPDATE jobs SET state = 'CA', reason = 'DependencyNeverSatisfied', end_ms = ?"
                                 " WHERE id = ? AND state = 'PD'",
                                 "ii", em__now_ms(), v[i].id) == 1) {
                dlog("job %lld cancelled: DependencyNeverSatisfied", v[i].id);
                changed = 1;
            }
        }
        em__job_list_free(v, n);
    }
    long used = 0;
    if (em__job_list(jdb, "state = 'R' AND backend = 'local'", NULL, &v, &n) < 0)
        return;
    for (int i = 0; i < n; i++)
        used += v[i].np;
    em__job_list_free(v, n);
    long free_slots = slots - used;
    if (em__job_list(jdb, "state = 'PD' AND backend = 'local'", "priority DESC, id ASC", &v, &n) < 0)
        return;
    /* Strict order: the first job that does not fit holds back every later one (no backfill), so a big job is
     * never starved by a stream of small ones. Jobs waiting for a dependency or larger than the whole budget
     * hold back nobody. */
    int blocked = 0;
    for (int i = 0; i < n; i++) {
        em__job *j = &v[i];
        if (j->ndeps && deps_state(jdb, j) != 0) {
            set_reason(jdb, j, "Dependency");
        } else if (j->np > slots) {
            set_reason(jdb, j, "Resources");
        } else if (blocked) {
            set_reason(jdb, j, "Priority");
        } else if (j->np <= free_slots) {
            if (launch(jdb, j->id, hostfile, grace))
                free_slots -= j->np;
        } else {
            set_reason(jdb, j, "Resources");
            blocked = 1;
        }
    }
    em__job_list_free(v, n);
}

/* After a restart: jobs marked R with no shepherd recorded were never started (step 1 of a launch). */
static void recover(em__jobdb *jdb)
{
    em__job *v;
    int n;
    if (em__job_list(jdb, "state = 'R' AND backend = 'local'", "id", &v, &n) < 0)
        return;
    for (int i = 0; i < n; i++) {
        em__job *j = &v[i];
        if (j->pid == 0) {
            back_to_pending(jdb, j->id, "the scheduler stopped while launching it");
        } else if (em__proc_is((pid_t)j->pid, j->pstart)) {
            dlog("job %lld still running: shepherd %lld found again", j->id, j->pid);
        }
    }
    em__job_list_free(v, n);
    reconcile_running(jdb);
}

static void ready(int fd, const char *fmt, ...)
{
    char buf[512];
    va_list ap;
    if (fd < 0)
        return;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof buf - 1)
        n = (int)sizeof buf - 1;
    (void)!write(fd, buf, (size_t)n);
    close(fd);
}

/* The daemon itself (already detached and logging to scheduler.log). Returns its exit status. */
static int daemon_main(long slots, const char *hostfile, long grace, int ready_fd)
{
    char lockp[PATH_MAX], pidp[PATH_MAX], tmpp[PATH_MAX + 8];
    if (em__home_make(WHO) < 0 || em__home_path(lockp, sizeof lockp, "scheduler.lock") < 0 ||
        em__home_path(pidp, sizeof pidp, "scheduler.pid") < 0) {
        ready(ready_fd, "error cannot use EMBER_HOME\n");
        return 1;
    }
    int lfd = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (lfd < 0) {
        ready(ready_fd, "error %s: %s\n", lockp, strerror(errno));
        return 1;
    }
    /* A POSIX record lock: released by the kernel however we die, and never inherited by a shepherd. */
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
    if (fcntl(lfd, F_SETLK, &fl) < 0) {
        pid_t other = em__sched_running();
        ready(ready_fd, "running %d\n", (int)other);
        return 0;
    }
    snprintf(tmpp, sizeof tmpp, "%s.tmp", pidp);
    FILE *pf = NULL;
    int pfd = open(tmpp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (pfd >= 0 && (pf = fdopen(pfd, "w")) != NULL) {
        fprintf(pf, "%d\n", (int)getpid());
        if (fclose(pf) == 0)
            rename(tmpp, pidp);
    }

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigprocmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    em__jobdb jdb;
    if (em__jobdb_open(&jdb, WHO) < 0) {
        ready(ready_fd, "error cannot open the job database (see the scheduler log)\n");
        return 1;
    }
    char sbuf[32], gbuf[32];
    snprintf(sbuf, sizeof sbuf, "%ld", slots);
    snprintf(gbuf, sizeof gbuf, "%ld", grace);
    em__meta_set(&jdb, "slots", sbuf);
    em__meta_set(&jdb, "grace", gbuf);
    em__meta_set(&jdb, "hostfile", hostfile ? hostfile : "");
    dlog("scheduler started: %ld slots%s%s, kill grace %ld s", slots, hostfile ? " from " : "", hostfile ? hostfile : "",
         grace);
    recover(&jdb);
    ready(ready_fd, "ok %d %ld\n", (int)getpid(), slots);

    for (;;) {
        while (waitpid(-1, NULL, WNOHANG) > 0)
            ;
        tick(&jdb, slots, hostfile, grace);
        struct timespec ts = {.tv_sec = TICK_MS / 1000, .tv_nsec = (TICK_MS % 1000) * 1000000L};
        siginfo_t si;
        int sig = sigtimedwait(&set, &si, &ts);
        if (sig == SIGTERM || sig == SIGINT || sig == SIGHUP) {
            dlog("scheduler stopping on signal %d; running jobs keep running", sig);
            break;
        }
    }
    em__jobdb_close(&jdb);
    unlink(pidp);
    close(lfd);
    return 0;
}

/* ---- start / stop / status ------------------------------------------------------------------------------ */

int em__sched_start(const char *who, long slots, const char *hostfile, long grace, int quiet)
{
    char logp[PATH_MAX], abs_hf[PATH_MAX], sbuf[32], gbuf[32], fdbuf[16];
    if (em__home_make(who) < 0 || em__home_path(logp, sizeof logp, "scheduler.log") < 0)
        return -1;
    pid_t running = em__sched_running();
    if (running) {
        if (!quiet)
            printf("scheduler already running (pid %d)\n", (int)running);
        return 0;
    }
    if (hostfile) {
        long hs = em__hostfile_slots(who, hostfile);
        if (hs < 0)
            return -2;
        /* The daemon works in /, so a relative path must be made absolute here. */
        if (!realpath(hostfile, abs_hf)) {
            fprintf(stderr, "%s: --hostfile %s: %s\n", who, hostfile, strerror(errno));
            return -2;
        }
        hostfile = abs_hf;
        if (slots == 0)
            slots = hs;
    }
    if (slots == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        slots = n > 0 ? n : 1;
    }
    int rp[2];
    if (pipe(rp) < 0) {
        fprintf(stderr, "%s: pipe: %s\n", who, strerror(errno));
        return -1;
    }
    fcntl(rp[0], F_SETFD, FD_CLOEXEC);
    fflush(stdout);
    fflush(stderr);
    pid_t a = fork();
    if (a < 0) {
        fprintf(stderr, "%s: fork: %s\n", who, strerror(errno));
        close(rp[0]), close(rp[1]);
        return -1;
    }
    if (a == 0) {
        /* Double fork: the first child starts a new session and leaves, so the daemon is no session leader and
         * can never acquire a controlling terminal, and it is nobody's child but init's. */
        close(rp[0]);
        setsid();
        pid_t d = fork();
        if (d != 0)
            _exit(d < 0 ? 1 : 0);
        int in = open("/dev/null", O_RDONLY);
        int lg = open(logp, O_WRONLY | O_CREAT | O_APPEND | O_NOFOLLOW, 0600);
        if (in < 0 || lg < 0) {
            ready(rp[1], "error cannot open %s: %s\n", logp, strerror(errno));
            _exit(1);
        }
        dup2(in, 0), dup2(lg, 1), dup2(lg, 2);
        close(in), close(lg);
        /* The daemon works in /: hand it $EMBER_HOME as the absolute path we resolved. */
        setenv("EMBER_HOME", em__home(who), 1);
        if (chdir("/") < 0)
            _exit(1);
        snprintf(sbuf, sizeof sbuf, "%ld", slots);
        snprintf(gbuf, sizeof gbuf, "%ld", grace > 0 ? grace : EM__GRACE_DEFAULT);
        snprintf(fdbuf, sizeof fdbuf, "%d", rp[1]);
        char *av[] = {"ember", "scheduler", "__daemon", "--ready-fd", fdbuf, "--slots", sbuf, "--grace", gbuf,
                      hostfile ? "--hostfile" : NULL, (char *)hostfile, NULL};
        execv("/proc/self/exe", av);
        ready(rp[1], "error cannot run /proc/self/exe: %s\n", strerror(errno));
        _exit(127);
    }
    close(rp[1]);
    waitpid(a, NULL, 0);
    char buf[512];
    size_t got = 0;
    long long deadline = mono_ms() + START_TIMEOUT_MS;
    for (;;) {
        long long left = deadline - mono_ms();
        struct pollfd p = {.fd = rp[0], .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) <= 0)
            break;
        ssize_t n = read(rp[0], buf + got, sizeof buf - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(rp[0]);
    buf[got] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    int pid;
    long s;
    if (sscanf(buf, "ok %d %ld", &pid, &s) == 2) {
        if (!quiet)
            printf("scheduler started (pid %d, %ld slots); log: %s\n", pid, s, logp);
        return 0;
    }
    if (sscanf(buf, "running %d", &pid) == 1) {
        if (!quiet)
            printf("scheduler already running (pid %d)\n", pid);
        return 0;
    }
    if (strncmp(buf, "error ", 6) == 0)
        fprintf(stderr, "%s: scheduler did not start: %s\n", who, buf + 6);
    else
        fprintf(stderr, "%s: scheduler did not start (see %s)\n", who, logp);
    return -1;
}

static void usage(FILE *out)
{
    fputs("usage: ember scheduler start [--slots N] [--hostfile F] [--grace SECONDS]\n"
          "       ember scheduler stop | status\n"
          "\n"
          "The scheduler daemon runs the jobs of `ember submit` in priority, then submission order, within a budget\n"
          "of slots (ranks). `ember submit` starts it with the defaults when none runs. Stopping it leaves running\n"
          "jobs running; the next start finds them again.\n"
          "\n"
          "  --slots N          ranks that may run at once (default: the sum of slots= in --hostfile, else the\n"
          "                     number of online cores)\n"
          "  --hostfile F       Open MPI hostfile for jobs submitted without one; its slots are the budget\n"
          "  --grace SECONDS    time between SIGTERM and SIGKILL when a job is cancelled or hits --time (10)\n",
          out);
}

static int cmd_stop(void)
{
    pid_t pid = em__sched_running();
    if (!pid) {
        printf("scheduler not running\n");
        return 0;
    }
    if (kill(pid, SIGTERM) < 0) {
        fprintf(stderr, "%s: stop: cannot signal pid %d: %s\n", WHO, (int)pid, strerror(errno));
        return 1;
    }
    long long deadline = mono_ms() + 10000;
    while (em__sched_running() == pid) {
        if (mono_ms() > deadline) {
            fprintf(stderr, "%s: stop: pid %d still running after 10 s\n", WHO, (int)pid);
            return 1;
        }
        usleep(20000);
    }
    printf("scheduler stopped (pid %d); running jobs keep running\n", (int)pid);
    return 0;
}

static int cmd_status(void)
{
    pid_t pid = em__sched_running();
    em__jobdb jdb;
    if (!pid) {
        printf("scheduler not running\n");
        return 1;
    }
    if (em__jobdb_open(&jdb, WHO) < 0)
        return 1;
    char *slots = em__meta_get(&jdb, "slots"), *hf = em__meta_get(&jdb, "hostfile");
    em__job *v;
    int n, running = 0, pending = 0;
    long used = 0;
    if (em__job_list(&jdb, "state IN ('R', 'PD') AND backend = 'local'", NULL, &v, &n) == 0) {
        for (int i = 0; i < n; i++) {
            if (strcmp(v[i].state, "R") == 0)
                running++, used += v[i].np;
            else
                pending++;
        }
        em__job_list_free(v, n);
    }
    char logp[PATH_MAX];
    em__home_path(logp, sizeof logp, "scheduler.log");
    printf("scheduler running (pid %d): %ld of %s slots in use, %d running, %d pending\n", (int)pid, used,
           slots ? slots : "?", running, pending);
    if (hf && *hf)
        printf("hostfile: %s\n", hf);
    printf("log: %s\n", logp);
    free(slots);
    free(hf);
    em__jobdb_close(&jdb);
    return 0;
}

int em__cli_scheduler(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "-h") == 0 || strcmp(sub, "--help") == 0 || strcmp(sub, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(sub, "stop") == 0 || strcmp(sub, "status") == 0) {
        if (argc > 2) {
            fprintf(stderr, "%s %s: unexpected argument '%s'\n", WHO, sub, argv[2]);
            return 2;
        }
        return strcmp(sub, "stop") == 0 ? cmd_stop() : cmd_status();
    }
    int is_daemon = strcmp(sub, "__daemon") == 0;
    if (strcmp(sub, "start") != 0 && !is_daemon) {
        fprintf(stderr, "%s: unknown subcommand '%s' (expected start, stop or status)\n", WHO, sub);
        return 2;
    }
    long slots = 0, grace = EM__GRACE_DEFAULT;
    int ready_fd = -1;
    const char *hostfile = NULL;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 0;
        }
        if (strcmp(a, "--slots") != 0 && strcmp(a, "--hostfile") != 0 && strcmp(a, "--grace") != 0 &&
            !(is_daemon && strcmp(a, "--ready-fd") == 0)) {
            fprintf(stderr, "%s start: unknown option '%s' (try 'ember scheduler --help')\n", WHO, a);
            return 2;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "%s start: %s: missing value\n", WHO, a);
            return 2;
        }
        const char *v = argv[++i];
        if (strcmp(a, "--hostfile") == 0) {
            hostfile = v;
        } else if (strcmp(a, "--ready-fd") == 0) {
            ready_fd = atoi(v);
        } else {
            long n = em__parse_count(v);
            if (n < 0) {
                fprintf(stderr, "%s start: %s: expected a positive integer, got '%s'\n", WHO, a, v);
                return 2;
            }
            if (strcmp(a, "--slots") == 0)
                slots = n;
            else
                grace = n;
        }
    }
    if (is_daemon) {
        if (ready_fd >= 0)
            fcntl(ready_fd, F_SETFD, FD_CLOEXEC);
        return daemon_main(slots > 0 ? slots : 1, hostfile, grace, ready_fd);
    }
    int rc = em__sched_start(WHO, slots, hostfile, grace, 0);
    return rc == -2 ? 2 : rc < 0 ? 1 : 0;
}
