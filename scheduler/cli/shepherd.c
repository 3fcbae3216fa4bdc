/*
 * shepherd.c — the process that stands between the scheduler daemon and one running job (shared DESIGN.md
 * section 9; the launch protocol is drawn at the top of daemon.c, the result file in jobdb.c).
 *
 * It outlives the daemon on purpose: it waits for the job, stops it at its --time limit or when told to (SIGTERM
 * to `ember run`, SIGKILL to the job's whole session after the grace period), and leaves the result file that
 * tells any later daemon how the job ended. It never touches the database.
 */
#include "scheduler/cli/jobdb.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static long long mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Closes every descriptor >= 3 but KEEP_A and KEEP_B: the daemon's database and lock must not live on in jobs. */
static void close_other_fds(int keep_a, int keep_b)
{
    int fds[1024], n = 0;
    for (int fd = 3; fd < 1024 && n < 1024; fd++)
        if (fd != keep_a && fd != keep_b && fcntl(fd, F_GETFD) >= 0)
            fds[n++] = fd;
    for (int i = 0; i < n; i++)
        close(fds[i]);
}

static void write_result(const char *dir, const char *kind, int code)
{
    char tmp[PATH_MAX + 16], fin[PATH_MAX + 16], buf[128];
    snprintf(tmp, sizeof tmp, "%s/result.tmp", dir);
    snprintf(fin, sizeof fin, "%s/result", dir);
    int n = snprintf(buf, sizeof buf, "%s %d %lld\n", kind, code, em__now_ms());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    ssize_t w = write(fd, buf, (size_t)n);
    fsync(fd);
    close(fd);
    if (w == n)
        rename(tmp, fin);
}

static int open_out(const char *dir, const char *name)
{
    char p[PATH_MAX + 16];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return open(p, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
}

/*
 * Runs in the child of the daemon; never returns. Starts B (the job), waits for the daemon's "go", then waits for
 * the job while enforcing its time limit and stop requests, and leaves the result file behind.
 */
_Noreturn void em__shepherd(const em__job *j, char **av, char **envp, int go_fd, int info_fd, long grace, const char *dir)
{
    setsid();
    close_other_fds(go_fd, info_fd);
    int in = open("/dev/null", O_RDONLY);
    int out = open_out(dir, "stdout"), err = open_out(dir, "stderr");
    if (in < 0 || out < 0 || err < 0) {
        write_result(dir, "launchfail", 127);
        _exit(1);
    }
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    close(in), close(out), close(err);

    sigset_t waitset, none;
    sigemptyset(&none);
    sigemptyset(&waitset);
    sigaddset(&waitset, SIGCHLD);
    sigaddset(&waitset, SIGTERM);
    sigaddset(&waitset, SIGINT);
    sigaddset(&waitset, SIGHUP);
    sigprocmask(SIG_BLOCK, &waitset, NULL);

    int bgo[2];
    if (pipe2(bgo, O_CLOEXEC) < 0) {
        write_result(dir, "launchfail", 127);
        _exit(1);
    }
    pid_t b = fork();
    if (b < 0) {
        write_result(dir, "launchfail", 127);
        _exit(1);
    }
    if (b == 0) {
        /* B: a session of its own, so the job's processes (mpirun and every rank, each rank in a process group
         * of its own) are all findable by session id; signals as the submitter would have them. */
        char c;
        setsid();
        close(bgo[1]);
        close(go_fd);
        close(info_fd);
        signal(SIGPIPE, SIG_DFL);
        sigprocmask(SIG_SETMASK, &none, NULL);
        if (read(bgo[0], &c, 1) != 1 || c != 'g')
            _exit(0);
        if (chdir(j->cwd) < 0) {
            fprintf(stderr, "ember: job %lld: cannot enter %s: %s\n", j->id, j->cwd, strerror(errno));
            _exit(126);
        }
        execve("/proc/self/exe", av, envp);
        fprintf(stderr, "ember: job %lld: cannot run ember: %s\n", j->id, strerror(errno));
        _exit(127);
    }
    close(bgo[0]);
    long long bstart = 0;
    em__proc_info(b, &bstart, NULL);
    int32_t bpid = (int32_t)b;
    ssize_t w = write(info_fd, &bpid, sizeof bpid);
    close(info_fd);
    char c = 0;
    ssize_t r;
    while ((r = read(go_fd, &c, 1)) < 0 && errno == EINTR)
        ;
    close(go_fd);
    if (w != (ssize_t)sizeof bpid || r != 1 || c != 'g') {
        /* The daemon died (or gave up) before recording us: the job must not run, and a restart requeues it. */
        kill(b, SIGKILL);
        waitpid(b, NULL, 0);
        write_result(dir, "notstarted", 0);
        _exit(0);
    }
    if (write(bgo[1], "g", 1) != 1) {
        kill(b, SIGKILL);
        waitpid(b, NULL, 0);
        write_result(dir, "launchfail", 127);
        _exit(1);
    }
    close(bgo[1]);

    long long now = mono_ms();
    long long limit_at = j->time_limit > 0 ? now + j->time_limit * 1000 : 0;
    long long kill_at = 0; /* when SIGKILL follows the SIGTERM; 0: no SIGTERM sent yet */
    const char *kind = "exit";
    int status = 0;
    for (;;) {
        pid_t got = waitpid(b, &status, WNOHANG);
        if (got == b)
            break;
        now = mono_ms();
        if (!kill_at && limit_at && now >= limit_at) {
            kind = "timeout";
            /* SIGTERM to `ember run` alone: it forwards it to mpirun once, and mpirun stops the ranks. Open MPI
             * puts each rank in a process group of its own, and an mpirun that gets a second SIGTERM (one to
             * the whole group plus the one forwarded) aborts without stopping its ranks. */
            kill(b, SIGTERM);
            kill_at = now + grace * 1000;
        }
        if (kill_at && now >= kill_at) {
            em__session_kill(b, bstart, SIGKILL);
            kill_at = now + 1000; /* again each second until B is gone */
        }
        long long next = 1000;
        if (limit_at && !kill_at)
            next = limit_at - now;
        if (kill_at && kill_at - now < next)
            next = kill_at - now;
        if (next < 1)
            next = 1;
        struct timespec ts = {.tv_sec = next / 1000, .tv_nsec = (next % 1000) * 1000000};
        siginfo_t si;
        int sig = sigtimedwait(&waitset, &si, &ts);
        if ((sig == SIGTERM || sig == SIGINT || sig == SIGHUP) && !kill_at) {
            kind = "term";
            kill(b, SIGTERM);
            kill_at = mono_ms() + grace * 1000;
        }
    }
    /* Whatever the job left behind in its session (a rank mpirun lost track of) goes with it. */
    em__session_kill(b, bstart, SIGKILL);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : 1;
    write_result(dir, kind, code);
    _exit(0);
}
