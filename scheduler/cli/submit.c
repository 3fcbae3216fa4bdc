/*
 * submit.c — `ember submit [OPTIONS] PROGRAM [ARGS...]`: validates a job, records it in the queue (jobdb.c),
 * prints `Submitted job <id>` and returns; `--wait` then follows it to its end and exits with its status.
 * Starts the scheduler daemon (daemon.c) when none runs. With `--backend slurm` the job goes to Slurm through a
 * batch script (slurm.c) instead. Shared DESIGN.md section 9.
 *
 * Everything the job will need is checked here, before an id is allocated, so a bad submission never leaves a
 * row behind: PROGRAM must be found the way execvp will find it, -np is a positive integer no larger than the
 * scheduler's slot budget, the hostfile parses, the name is safe, --after names existing jobs, --time parses.
 * The job later runs in the submitter's working directory with the submitter's environment (like sbatch's
 * default --export=ALL), both stored with the job.
 */
#include "scheduler/cli/cli.h"
#include "scheduler/cli/jobdb.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_DEPS 64
#define PRIORITY_MAX 1000000

static const char *WHO = "ember submit";

static void usage(FILE *out)
{
    fputs("usage: ember submit [-np N] [--hostfile F] [--name NAME] [--priority P] [--after ID] [--time LIMIT]\n"
          "                    [--wait] [--backend local|slurm] [--dry-run] PROGRAM [ARGS...]\n"
          "\n"
          "Queues PROGRAM to run as `ember run -np N PROGRAM ARGS...` in this directory with this environment,\n"
          "prints 'Submitted job <id>' and returns. The scheduler daemon runs queued jobs in priority, then\n"
          "submission order within its slot budget; submit starts it if it is not running.\n"
          "\n"
          "  -np N, -n N, --np N  ranks (slots) the job uses (default 1)\n"
          "  --hostfile F         Open MPI hostfile for the job\n"
          "  --name NAME          job name (default: PROGRAM's file name); printable ASCII, no '/', no '..',\n"
          "                       at most 64 bytes\n"
          "  --priority P         higher runs first (default 0, range -1000000..1000000)\n"
          "  --after ID           run only after job ID completed successfully (repeatable); if ID fails, is\n"
          "                       cancelled or times out, this job is cancelled (DependencyNeverSatisfied)\n"
          "  --time LIMIT         time limit, as Slurm writes it: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S; at the limit\n"
          "                       the job gets SIGTERM, then SIGKILL after the scheduler's grace, and ends TO\n"
          "  --wait               wait for the job to end and exit with its exit status (1 if it never ran)\n"
          "  --backend slurm      submit to Slurm with sbatch instead (queue/status/cancel use squeue/sacct/scancel)\n"
          "  --dry-run            with --backend slurm: print the batch script, submit nothing\n",
          out);
}

struct opts {
    long np;
    const char *hostfile, *name, *backend;
    long long priority, time_limit;
    long long deps[MAX_DEPS];
    int ndeps, wait, dry_run, prog;
};

static int bad(const char *flag, const char *val, const char *expected)
{
    fprintf(stderr, "%s: %s: expected %s, got '%s'\n", WHO, flag, expected, val);
    return 2;
}

static int parse(int argc, char **argv, struct opts *o)
{
    static const char *const with_value[] = {"-np", "-n", "--np", "--hostfile", "--name", "--priority", "--after",
                                             "--time", "--backend"};
    memset(o, 0, sizeof *o);
    o->backend = "local";
    int i = 1;
    while (i < argc) {
        const char *a = argv[i], *val = NULL;
        char flag[32];
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        }
        if (a[0] != '-' || a[1] == '\0')
            break;
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return -1;
        }
        if (strcmp(a, "--wait") == 0) {
            o->wait = 1, i++;
            continue;
        }
        if (strcmp(a, "--dry-run") == 0) {
            o->dry_run = 1, i++;
            continue;
        }
        const char *eq = strchr(a, '=');
        size_t flen = eq ? (size_t)(eq - a) : strlen(a);
        int known = 0;
        for (size_t k = 0; k < sizeof with_value / sizeof with_value[0]; k++)
            if (strlen(with_value[k]) == flen && strncmp(a, with_value[k], flen) == 0)
                known = 1;
        if (!known || flen >= sizeof flag) {
            fprintf(stderr, "%s: unknown option '%s' (try 'ember submit --help')\n", WHO, a);
            return 2;
        }
        memcpy(flag, a, flen);
        flag[flen] = '\0';
        if (eq) {
            val = eq + 1;
            i++;
        } else if (i + 1 < argc) {
            val = argv[i + 1];
            i += 2;
        } else {
            fprintf(stderr, "%s: %s: missing value\n", WHO, flag);
            return 2;
        }
        if (strcmp(flag, "--hostfile") == 0) {
            o->hostfile = val;
        } else if (strcmp(flag, "--name") == 0) {
            const char *why = em__name_problem(val);
            if (why) {
                fprintf(stderr, "%s: --name '%s': not a valid job name: %s\n", WHO, val, why);
                return 2;
            }
            o->name = val;
        } else if (strcmp(flag, "--backend") == 0) {
            if (strcmp(val, "local") != 0 && strcmp(val, "slurm") != 0)
                return bad(flag, val, "'local' or 'slurm'");
            o->backend = val;
        } else if (strcmp(flag, "--priority") == 0) {
            char *end;
            errno = 0;
            long long p = strtoll(val, &end, 10);
            if (!*val || *end || errno || p < -PRIORITY_MAX || p > PRIORITY_MAX)
                return bad(flag, val, "an integer from -1000000 to 1000000");
            o->priority = p;
        } else if (strcmp(flag, "--after") == 0) {
            long long id;
            if (em__parse_id(val, &id) < 0)
                return bad(flag, val, "a job id");
            if (o->ndeps == MAX_DEPS) {
                fprintf(stderr, "%s: --after: more than %d dependencies\n", WHO, MAX_DEPS);
                return 2;
            }
            o->deps[o->ndeps++] = id;
        } else if (strcmp(flag, "--time") == 0) {
            if ((o->time_limit = em__parse_time(val)) < 0)
                return bad(flag, val, "a time limit such as 30, 5:00, 1:30:00 or 2-0");
        } else if ((o->np = em__parse_count(val)) < 0) {
            return bad(flag, val, "a positive integer");
        }
    }
    if (i >= argc) {
        fprintf(stderr, "%s: missing PROGRAM\n", WHO);
        usage(stderr);
        return 2;
    }
    if (o->dry_run && strcmp(o->backend, "slurm") != 0) {
        fprintf(stderr, "%s: --dry-run needs --backend slurm\n", WHO);
        return 2;
    }
    o->prog = i;
    return 0;
}

/* PROGRAM's file name, made into a valid job name. */
static void default_name(const char *prog, char *buf, size_t len)
{
    const char *base = strrchr(prog, '/');
    base = base ? base + 1 : prog;
    snprintf(buf, len, "%s", *base ? base : "job");
    for (char *c = buf; *c; c++)
        if ((unsigned char)*c <= ' ' || (unsigned char)*c >= 0x7f || *c == '\\')
            *c = '_';
    while (strstr(buf, ".."))
        *strstr(buf, "..") = '_';
    if (buf[0] == '-')
        buf[0] = '_';
}

static void user_name(char *buf, size_t len)
{
    struct passwd *pw = getpwuid(getuid());
    if (pw && pw->pw_name && !em__name_problem(pw->pw_name))
        snprintf(buf, len, "%s", pw->pw_name);
    else
        snprintf(buf, len, "%u", (unsigned)getuid());
}

/* Follows job ID to its end. The exit status: 0 for CD, the job's own status when it ran, else 1. */
static int wait_for(em__jobdb *jdb, long long id)
{
    int polls = 0;
    for (;;) {
        em__job j;
        int got = em__job_get(jdb, id, &j, 0);
        if (got != 1) {
            fprintf(stderr, "%s: job %lld: %s\n", WHO, id, got == 0 ? "vanished from the queue" : "cannot read its state");
            return 1;
        }
        if (strcmp(j.backend, "slurm") == 0 && polls % 10 == 0)
            em__slurm_refresh(jdb, &j);
        if (em__state_final(j.state)) {
            int rc = strcmp(j.state, "CD") == 0 ? 0 : j.has_exit && j.exit_code != 0 ? j.exit_code : 1;
            if (strcmp(j.state, "CD") != 0) {
                if (j.has_exit)
                    fprintf(stderr, "%s: job %lld ended %s (%s), exit status %d\n", WHO, id, em__state_long(j.state),
                            j.reason, j.exit_code);
                else
                    fprintf(stderr, "%s: job %lld ended %s (%s)\n", WHO, id, em__state_long(j.state), j.reason);
            }
            em__job_release(&j);
            return rc;
        }
        /* A daemon that died while we wait is started again, as submit would. */
        if (strcmp(j.backend, "local") == 0 && ++polls % 20 == 0 && !em__sched_running())
            em__sched_start(WHO, 0, NULL, 0, 1);
        em__job_release(&j);
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* Space-separated Slurm ids of the dependencies, all of which must be Slurm jobs that were submitted. */
static int slurm_deps(em__jobdb *jdb, const struct opts *o, char *buf, size_t len)
{
    size_t off = 0;
    buf[0] = '\0';
    for (int i = 0; i < o->ndeps; i++) {
        em__job d;
        int got = em__job_get(jdb, o->deps[i], &d, 0);
        if (got != 1) {
            if (got == 0)
                fprintf(stderr, "%s: --after %lld: no such job\n", WHO, o->deps[i]);
            return -1;
        }
        if (!d.slurm_id) {
            fprintf(stderr, "%s: --after %lld: not a Slurm job (a Slurm job can only wait for Slurm jobs)\n", WHO,
                    o->deps[i]);
            em__job_release(&d);
            return -1;
        }
        off += (size_t)snprintf(buf + off, off < len ? len - off : 0, "%s%s", i ? ":" : "", d.slurm_id);
        em__job_release(&d);
    }
    return off < len ? 0 : -1;
}

static int submit_slurm(em__jobdb *jdb, em__job *j, const struct opts *o)
{
    char deps[1024], exe[PATH_MAX], path[PATH_MAX], out[256];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) {
        fprintf(stderr, "%s: cannot find the ember binary: %s\n", WHO, strerror(errno));
        return 1;
    }
    exe[n] = '\0';
    if (slurm_deps(jdb, o, deps, sizeof deps) < 0)
        return 2;
    if (o->dry_run) {
        em__slurm_script(stdout, j, exe, deps);
        return 0;
    }
    if (!em__in_path("sbatch")) {
        fprintf(stderr, "%s: --backend slurm: sbatch not found in PATH\n", WHO);
        return 1;
    }
    long long bad_dep = 0;
    /* The row first (for its id), then the script, then sbatch; a failure leaves the row F (SbatchFailed). */
    j->ndeps = 0;
    if (em__job_insert(jdb, j, &bad_dep) < 0 || em__job_dir_make(WHO, j->id) < 0 ||
        em__job_path(path, sizeof path, j->id, "job.sbatch") < 0)
        return 1;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (f)
        em__slurm_script(f, j, exe, deps);
    else if (fd >= 0)
        close(fd);
    if (!f || fclose(f) != 0) {
        fprintf(stderr, "%s: cannot write %s: %s\n", WHO, path, strerror(errno));
        em__jobdb_update(jdb, "UPDATE jobs SET state = 'F', reason = 'SbatchFailed', end_ms = ? WHERE id = ?", "ii",
                         em__now_ms(), j->id);
        return 1;
    }
    char *sb[] = {"sbatch", "--parsable", path, NULL};
    int rc = em__run_capture(sb, out, sizeof out, 1, 60);
    char sid[64] = "";
    if (rc == 0)
        sscanf(out, "%63[0-9]", sid);
    if (!sid[0]) {
        fprintf(stderr, "%s: sbatch %s failed (exit status %d)%s%s\n", WHO, path, rc, out[0] ? ": " : "", out);
        em__jobdb_update(jdb, "UPDATE jobs SET state = 'F', reason = 'SbatchFailed', end_ms = ? WHERE id = ?", "ii",
                         em__now_ms(), j->id);
        return 1;
    }
    em__jobdb_update(jdb, "UPDATE jobs SET slurm_id = ? WHERE id = ?", "si", sid, j->id);
    printf("Submitted job %lld\n", j->id);
    fflush(stdout);
    return o->wait ? wait_for(jdb, j->id) : 0;
}

int em__cli_submit(int argc, char **argv)
{
    struct opts o;
    int rc = parse(argc, argv, &o);
    if (rc)
        return rc < 0 ? 0 : rc;
    const char *prog = argv[o.prog];
    if (!em__program_exists(prog)) {
        fprintf(stderr, "%s: %s: not found\n", WHO, prog);
        return 2;
    }
    if (o.hostfile && em__hostfile_slots(WHO, o.hostfile) < 0)
        return 2;
    char name[EM__NAME_MAX + 1], user[64], cwd[PATH_MAX];
    if (o.name)
        snprintf(name, sizeof name, "%s", o.name);
    else
        default_name(prog, name, sizeof name);
    user_name(user, sizeof user);
    if (!getcwd(cwd, sizeof cwd)) {
        fprintf(stderr, "%s: cannot read the current directory: %s\n", WHO, strerror(errno));
        return 1;
    }
    em__job j;
    memset(&j, 0, sizeof j);
    j.name = name;
    j.user = user;
    j.priority = o.priority;
    j.np = o.np > 0 ? o.np : 1;
    j.hostfile = (char *)o.hostfile;
    j.time_limit = o.time_limit;
    j.cwd = cwd;
    j.argv = argv + o.prog;
    j.argc = argc - o.prog;
    j.backend = (char *)o.backend;
    j.deps = o.deps;
    j.ndeps = o.ndeps;

    int slurm = strcmp(o.backend, "slurm") == 0;
    /* The daemon before the database: its slot budget decides whether -np can ever fit. */
    if (!slurm && em__sched_start(WHO, 0, NULL, 0, 1) < 0)
        return 1;
    em__jobdb jdb;
    if (em__jobdb_open(&jdb, WHO) < 0)
        return 1;
    if (slurm) {
        rc = submit_slurm(&jdb, &j, &o);
        em__jobdb_close(&jdb);
        return rc;
    }
    char *slots_s = em__meta_get(&jdb, "slots");
    long slots = slots_s ? atol(slots_s) : 0;
    free(slots_s);
    if (slots > 0 && j.np > slots) {
        fprintf(stderr, "%s: -np %ld: more than the scheduler's %ld slots (see 'ember scheduler start --slots')\n", WHO,
                j.np, slots);
        em__jobdb_close(&jdb);
        return 2;
    }
    /* The daemon never asks Slurm about a job, so a local job cannot wait for a Slurm one. */
    for (int i = 0; i < j.ndeps; i++) {
        em__job d;
        if (em__job_get(&jdb, j.deps[i], &d, 0) == 1 && strcmp(d.backend, "local") != 0) {
            fprintf(stderr, "%s: --after %lld: a Slurm job (a local job can only wait for local jobs)\n", WHO, d.id);
            em__job_release(&d);
            em__jobdb_close(&jdb);
            return 2;
        }
        em__job_release(&d);
    }
    long long bad_dep = 0;
    rc = em__job_insert(&jdb, &j, &bad_dep);
    if (rc == -2) {
        fprintf(stderr, "%s: --after %lld: no such job\n", WHO, bad_dep);
        em__jobdb_close(&jdb);
        return 2;
    }
    if (rc < 0) {
        em__jobdb_close(&jdb);
        return 1;
    }
    printf("Submitted job %lld\n", j.id);
    fflush(stdout);
    em__sched_poke();
    rc = o.wait ? wait_for(&jdb, j.id) : 0;
    em__jobdb_close(&jdb);
    return rc;
}
