/*
 * run.c — `ember run [-np N] [--hostfile F] PROGRAM [ARGS...]`: launches a job under mpirun with the recovery
 * recipe of shared DESIGN.md section 6 and turns the job's own status report into the exit status (section 9).
 *
 * mpirun is started with fork + execvp, never through a shell, so PROGRAM's arguments reach it byte for byte.
 * The job's stdout is mpirun's stdout, which is ours: results pass through untouched and unbuffered. mpirun's
 * stderr goes through the noise filter of mpinoise.c.
 *
 * Status file contract (the writer is the runtime; tests/e2e/fixtures/fake_job.sh imitates it):
 *
 *   EMBER_STATUS_FILE=<private dir>/status        set for mpirun, forwarded to remote ranks with -x
 *   +-------------+-----------------------------------------------+---------------------------------------+
 *   | content     | written by                                    | ember run exits with                  |
 *   +-------------+-----------------------------------------------+---------------------------------------+
 *   | (no file)   | nobody: not an Ember job (e.g. `hostname`)    | mpirun's status (signal S: 128+S)     |
 *   | running\n   | rank 0 at start                               | 1, "job ended without reporting ..."  |
 *   | exit <N>\n  | the current leader at the end                 | N                                     |
 *   +-------------+-----------------------------------------------+---------------------------------------+
 *   Both writes are atomic (write a temporary file in the same directory, rename over "status").
 *
 * Only an Ember job gets the recovery recipe: PROGRAM, or an executable among its first 16 arguments (a wrapper
 * such as /usr/bin/time), carries EM__JOB_MARKER (see is_ember_program). Anything else
 * (`hostname`, a plain MPI program, a script) runs as under plain mpirun: the first rank that fails ends the job
 * and sets mpirun's status, where in recovery mode mpirun would wait for the other ranks and exit 0.
 *
 * Environment: EMBER_MPIRUN names the launcher (default "mpirun"; tests point it at a stand-in).
 */
#include "scheduler/cli/cli.h"
#include "scheduler/sched.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define IDLE_MS 100       /* quiet time after which the noise filter releases a held partial line */

void em__cli_run_usage(FILE *out)
{
    fputs("usage: ember run [-np N] [--hostfile F] PROGRAM [ARGS...]\n"
          "\n"
          "Runs PROGRAM on N ranks under mpirun with Ember's recovery settings and exits with the job's own\n"
          "status. Options end at PROGRAM: everything after it is passed to PROGRAM unchanged.\n"
          "\n"
          "  -np N, -n N, --np N   number of ranks (default: SLURM_NTASKS, else the number of cores)\n"
          "  --hostfile F          Open MPI hostfile: lines 'host [slots=N] ...', '#' starts a comment\n"
          "  -h, --help            print this help\n",
          out);
}

struct run_opts {
    long np;              /* 0 = default */
    const char *hostfile; /* NULL = none */
    int prog_index;       /* index of PROGRAM in argv */
    int recovery;         /* PROGRAM is an Ember job: launched with the recovery recipe */
};

static int bad_np(const char *flag, const char *val)
{
    fprintf(stderr, "ember run: %s: expected a positive integer, got '%s'\n", flag, val);
    return 2;
}

/* Returns 0, or an exit status (2) after printing one line. */
static int parse_args(int argc, char **argv, struct run_opts *o)
{
    int i = 1;
    o->np = 0;
    o->hostfile = NULL;
    o->prog_index = -1;
    while (i < argc) {
        const char *a = argv[i];
        const char *val = NULL;
        const char *flag = a;
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (a[0] != '-' || a[1] == '\0')
            break;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            em__cli_run_usage(stdout);
            return -1;
        }
        if (strcmp(a, "-np") == 0 || strcmp(a, "-n") == 0 || strcmp(a, "--np") == 0 ||
            strcmp(a, "--hostfile") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "ember run: %s: missing value\n", a);
                return 2;
            }
            val = argv[i + 1];
            i += 2;
        } else if (strncmp(a, "--np=", 5) == 0 || strncmp(a, "-np=", 4) == 0 || strncmp(a, "--hostfile=", 11) == 0) {
            const char *eq = strchr(a, '=');
            static char name[16];
            size_t k = (size_t)(eq - a);
            memcpy(name, a, k);
            name[k] = '\0';
            flag = name;
            val = eq + 1;
            i++;
        } else {
            fprintf(stderr, "ember run: unknown option '%s' (try 'ember run --help')\n", a);
            return 2;
        }
        if (strcmp(flag, "--hostfile") == 0) {
            o->hostfile = val;
        } else if ((o->np = em__parse_count(val)) < 0) {
            return bad_np(flag, val);
        }
    }
    if (i >= argc) {
        fputs("ember run: missing PROGRAM\n", stderr);
        em__cli_run_usage(stderr);
        return 2;
    }
    o->prog_index = i;
    return 0;
}

/* Hostfile lines look like "host [slots=N] [max_slots=N] ..."; '#' starts a comment (validate.c checks them, for
 * the queue too). Returns 0 or 2. */
static int check_hostfile(const char *path) { return em__hostfile_slots("ember run", path) < 0 ? 2 : 0; }

static int is_exec_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

/* PROGRAM is found as a shell would find it: a path if it contains '/', else through PATH. Returns its path
 * (malloc'd) or NULL. */
static char *find_program(const char *prog)
{
    if (strchr(prog, '/'))
        return is_exec_file(prog) ? strdup(prog) : NULL;
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    size_t plen = strlen(prog);
    while (*path) {
        size_t dlen = strcspn(path, ":");
        char *full = malloc(dlen + plen + 3);
        if (!full)
            return NULL;
        if (dlen == 0)
            memcpy(full, ".", 2), dlen = 1; /* an empty PATH entry means the current directory */
        else
            memcpy(full, path, dlen);
        full[dlen] = '/';
        memcpy(full + dlen + 1, prog, plen + 1);
        if (is_exec_file(full))
            return full;
        free(full);
        path += strcspn(path, ":");
        if (*path == ':')
            path++;
    }
    return NULL;
}

/* Whether PROGRAM is an Ember job: it carries EM__JOB_MARKER (every binary linked with libember does). One that
 * cannot be read is taken for one, as before this check existed. */
static int is_ember_program(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || st.st_size == 0) {
        if (fd >= 0) close(fd);
        return fd < 0;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (p == MAP_FAILED) return 1;
    int found = memmem(p, (size_t)st.st_size, EM__JOB_MARKER, sizeof EM__JOB_MARKER - 1) != NULL;
    munmap(p, (size_t)st.st_size);
    return found;
}

static long default_np(void)
{
    const char *s = getenv("SLURM_NTASKS");
    long n;
    if (s && (n = em__parse_count(s)) > 0)
        return n;
    n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? n : 1;
}

/* ---- signals: forwarded to mpirun ---------------------------------------------------------------------- */

static volatile pid_t child_pid;      /* 0 until mpirun is running (and always 0 in the child) */
static volatile sig_atomic_t got_sig; /* last SIGINT/SIGTERM/SIGHUP received */

static void on_signal(int sig, siginfo_t *si, void *ctx)
{
    (void)ctx;
    got_sig = sig;
    /* A Ctrl-C from the terminal (SI_KERNEL) already reached mpirun, which is in our process group; a second
     * SIGINT would make mpirun abort without cleaning up. Everything else (kill, timeout) is forwarded. */
    if (child_pid > 0 && !(si && si->si_code == SI_KERNEL))
        kill(child_pid, sig);
}

static const int fwd_sigs[] = {SIGINT, SIGTERM, SIGHUP};

static void install_handlers(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO; /* no SA_RESTART: poll() and waitpid() return EINTR and we loop */
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < sizeof fwd_sigs / sizeof fwd_sigs[0]; i++) {
        struct sigaction old;
        /* A signal ignored by whoever started us (nohup, a background job of sh) stays ignored. */
        if (sigaction(fwd_sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_IGN)
            continue;
        sigaction(fwd_sigs[i], &sa, NULL);
    }
}

/* ---- temporary status directory -------------------------------------------------------------------------- */

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char p[PATH_MAX];
            if (snprintf(p, sizeof p, "%s/%s", dir, e->d_name) < (int)sizeof p)
                unlink(p);
        }
        closedir(d);
    }
    rmdir(dir);
}

enum { ST_NONE, ST_RUNNING, ST_EXIT, ST_BAD };

/* Reads the status file. ST_EXIT sets *code. */
static int read_status(const char *path, int *code)
{
    char buf[128];
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return ST_NONE;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n < 0)
        return ST_BAD;
    buf[n] = '\0';
    if (strcmp(buf, "running\n") == 0 || strcmp(buf, "running") == 0)
        return ST_RUNNING;
    if (strncmp(buf, "exit ", 5) == 0) {
        char *end;
        errno = 0;
        long v = strtol(buf + 5, &end, 10);
        if (errno == 0 && end != buf + 5 && (*end == '\n' || *end == '\0') && v >= 0 && v <= 255) {
            *code = (int)v;
            return ST_EXIT;
        }
    }
    return ST_BAD;
}

/* ---- launching ------------------------------------------------------------------------------------------- */

/* Whether all ranks run on this host with Open MPI's transport choice left to us: no hostfile (checked by the
 * caller), not inside a batch system's allocation (which may span nodes), and no transport set by the user. */
static int single_host_defaults(void)
{
    static const char *const vars[] = {"SLURM_JOB_ID", "PBS_JOBID", "LSB_JOBID", "OMPI_MCA_pml", "OMPI_MCA_btl",
                                       "OMPI_MCA_mtl"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        if (getenv(vars[i])) return 0;
    return 1;
}

static char **build_argv(const struct run_opts *o, int argc, char **argv, long np, const char *mpirun)
{
    static char npbuf[32];
    int extra = argc - o->prog_index;
    char **av = calloc((size_t)extra + 24, sizeof *av);
    int k = 0;
    if (!av)
        return NULL;
    snprintf(npbuf, sizeof npbuf, "%ld", np);
    av[k++] = (char *)mpirun;
    if (o->recovery) {
        av[k++] = "--enable-recovery";
        av[k++] = "--mca";
        av[k++] = "async_mpi_finalize";
        av[k++] = "1";
        av[k++] = "--mca";
        av[k++] = "orte_allowed_exit_without_sync";
        av[k++] = "1";
    }
    if (geteuid() == 0)
        av[k++] = "--allow-run-as-root";
    /* Always: 4 ranks on a 2-core laptop is the normal case, and harmless when cores suffice. */
    av[k++] = "--oversubscribe";
    if (o->hostfile) {
        av[k++] = "--hostfile";
        av[k++] = (char *)o->hostfile;
    } else if (single_host_defaults()) {
        /* Every rank on this host: shared memory only. Without this Open MPI spends 0.2-0.8 s of every start
         * probing network transports (the cm PML's OFI/PSM MTLs) that ob1 + vader then beat anyway. */
        av[k++] = "--mca";
        av[k++] = "pml";
        av[k++] = "ob1";
        av[k++] = "--mca";
        av[k++] = "btl";
        av[k++] = "self,vader";
    }
    av[k++] = "-x";
    av[k++] = "EMBER_STATUS_FILE";
    av[k++] = "-np";
    av[k++] = npbuf;
    for (int i = o->prog_index; i < argc; i++)
        av[k++] = argv[i];
    av[k] = NULL;
    return av;
}

/* Copies mpirun's stderr through the noise filter until it closes or mpirun is gone. Returns mpirun's status. */
static int pump(int errfd, pid_t pid)
{
    em__noise *nf = em__noise_new(STDERR_FILENO);
    char buf[65536];
    int status = 0, reaped = 0, open_fd = 1;
    fcntl(errfd, F_SETFL, fcntl(errfd, F_GETFL) | O_NONBLOCK);
    while (open_fd) {
        struct pollfd p = {.fd = errfd, .events = POLLIN};
        int r = poll(&p, 1, IDLE_MS);
        if (r < 0 && errno != EINTR)
            break;
        if (r == 0) {
            if (nf)
                em__noise_idle(nf);
            /* mpirun gone and nothing for a while: a leftover grandchild may hold the pipe; stop waiting. */
            if (reaped)
                break;
        }
        if (r > 0) {
            for (;;) {
                ssize_t n = read(errfd, buf, sizeof buf);
                if (n > 0) {
                    if (nf)
                        em__noise_feed(nf, buf, (size_t)n);
                    else
                        (void)!write(STDERR_FILENO, buf, (size_t)n);
                    continue;
                }
                if (n == 0)
                    open_fd = 0;
                else if (errno == EINTR)
                    continue;
                break;
            }
        }
        if (!reaped && waitpid(pid, &status, WNOHANG) == pid)
            reaped = 1;
    }
    em__noise_free(nf);
    close(errfd);
    while (!reaped) {
        pid_t w = waitpid(pid, &status, 0);
        if (w == pid)
            reaped = 1;
        else if (w < 0 && errno != EINTR)
            return 1;
    }
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 1;
}

int em__cli_run(int argc, char **argv)
{
    struct run_opts o;
    int rc = parse_args(argc, argv, &o);
    if (rc < 0)
        return 0; /* --help */
    if (rc > 0)
        return rc;
    const char *prog = argv[o.prog_index];
    if (o.hostfile && (rc = check_hostfile(o.hostfile)) != 0)
        return rc;
    char *where = find_program(prog);
    if (!where) {
        fprintf(stderr, "ember run: %s: not found\n", prog);
        return 2;
    }
    o.recovery = is_ember_program(where);
    free(where);
    /* A wrapper (time, env, nice, valgrind ...) whose arguments name an Ember program launches an Ember job. */
    for (int i = o.prog_index + 1; !o.recovery && i < argc && i <= o.prog_index + 16; i++) {
        char *arg_prog = argv[i][0] && argv[i][0] != '-' ? find_program(argv[i]) : NULL;
        if (arg_prog) o.recovery = is_ember_program(arg_prog);
        free(arg_prog);
    }
    long np = o.np > 0 ? o.np : default_np();
    const char *mpirun = getenv("EMBER_MPIRUN");
    if (!mpirun || !*mpirun)
        mpirun = "mpirun";

    const char *tmp = getenv("TMPDIR");
    char dir[PATH_MAX], status_path[PATH_MAX + 16];
    if (!tmp || !*tmp)
        tmp = "/tmp";
    if (snprintf(dir, sizeof dir, "%s/ember-run.XXXXXX", tmp) >= (int)sizeof dir || !mkdtemp(dir)) {
        fprintf(stderr, "ember run: cannot create a temporary directory in %s: %s\n", tmp, strerror(errno));
        return 1;
    }
    snprintf(status_path, sizeof status_path, "%s/status", dir);
    char **av = build_argv(&o, argc, argv, np, mpirun);
    int errpipe[2], execpipe[2];
    if (!av || pipe(errpipe) < 0 || pipe2(execpipe, O_CLOEXEC) < 0) {
        fprintf(stderr, "ember run: cannot start %s: %s\n", mpirun, strerror(errno ? errno : ENOMEM));
        remove_dir(dir);
        free(av);
        return 1;
    }
    install_handlers();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "ember run: fork: %s\n", strerror(errno));
        remove_dir(dir);
        free(av);
        return 1;
    }
    if (pid == 0) {
        /* Child: signals back to default (exec keeps ignored ones ignored, which is what the caller asked). */
        for (size_t i = 0; i < sizeof fwd_sigs / sizeof fwd_sigs[0]; i++) {
            struct sigaction old;
            if (sigaction(fwd_sigs[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN)
                signal(fwd_sigs[i], SIG_DFL);
        }
        close(execpipe[0]);
        close(errpipe[0]);
        dup2(errpipe[1], STDERR_FILENO);
        close(errpipe[1]);
        setenv("EMBER_STATUS_FILE", status_path, 1);
        /* One host, shared memory only: hwloc need not find the PCI devices (network cards' locality), which
         * mpirun did twice per start by reading PCI config space, trapped by the VM here: about 30 ms. */
        if (!o.hostfile && single_host_defaults()) setenv("HWLOC_COMPONENTS", "-pci,-linuxio", 0);
        execvp(av[0], av);
        int e = errno;
        (void)!write(execpipe[1], &e, sizeof e);
        _exit(127);
    }
    child_pid = pid;
    if (got_sig) /* arrived between fork() and now: nobody forwarded it yet */
        kill(pid, got_sig);
    close(errpipe[1]);
    close(execpipe[1]);
    int exec_errno = 0;
    ssize_t got;
    while ((got = read(execpipe[0], &exec_errno, sizeof exec_errno)) < 0 && errno == EINTR)
        ;
    close(execpipe[0]);
    int mpirun_rc = pump(errpipe[0], pid);
    child_pid = 0;
    free(av);
    if (got == (ssize_t)sizeof exec_errno) {
        fprintf(stderr, "ember run: %s: %s\n", mpirun,
                exec_errno == ENOENT ? "not found (is Open MPI installed?)" : strerror(exec_errno));
        remove_dir(dir);
        return 127;
    }

    int code = 0;
    int st = read_status(status_path, &code);
    remove_dir(dir);
    int sig = got_sig;
    if (st == ST_EXIT)
        return code;
    if (sig) {
        /* Interrupted and the job did not report: die the way we were asked to, so a calling shell sees it. */
        signal(sig, SIG_DFL);
        raise(sig);
        return 128 + sig;
    }
    if (st == ST_RUNNING) {
        fputs("ember run: job ended without reporting a status\n", stderr);
        return 1;
    }
    if (st == ST_BAD) {
        fputs("ember run: malformed status file (expected 'running' or 'exit N')\n", stderr);
        return 1;
    }
    return mpirun_rc;
}
