/*
 * slurm.c — `ember submit --backend slurm`: the sbatch script, and how queue/status/cancel map to Slurm's
 * squeue/sacct/scancel for such jobs (shared DESIGN.md section 9). The job keeps its Ember id; the row holds the
 * Slurm id. Every Slurm tool runs through fork/execvp, never a shell; the batch script is the one place a shell
 * reads our arguments, so every word in it is single-quoted.
 *
 * Slurm state -> Ember state code:
 *   PENDING -> PD; RUNNING, COMPLETING, CONFIGURING, SUSPENDED, STOPPED, RESIZING, REQUEUED -> R;
 *   COMPLETED -> CD; FAILED, NODE_FAIL, OUT_OF_MEMORY, BOOT_FAIL, DEADLINE -> F; CANCELLED, PREEMPTED -> CA;
 *   TIMEOUT -> TO. sacct's ExitCode "N:S" is exit status N, or 128+S when a signal S ended it.
 *
 * A job's state comes from `squeue -t all` while the controller remembers the job (running, and for MinJobAge
 * after it ended, exit status included), then from sacct. A Slurm without accounting storage (slurmdbd) cannot
 * answer sacct at all, so squeue must catch the end: `submit --wait`, `queue` and `status` poll well within
 * MinJobAge; a job nobody looked at until the controller forgot it stays as last seen.
 */
#include "scheduler/cli/jobdb.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SLURM_TIMEOUT_S 20 /* how long one squeue/sacct/scancel may take */

/* Writes S as one shell word: single quotes, with ' written as '\''. */
static void shq(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'')
            fputs("'\\''", f);
        else
            fputc(*s, f);
    }
    fputc('\'', f);
}

/* A #SBATCH value: double-quoted when it holds a space (sbatch's own parser understands that). */
static void directive(FILE *f, const char *opt, const char *val)
{
    if (strpbrk(val, " \t\"'"))
        fprintf(f, "#SBATCH --%s=\"%s\"\n", opt, val);
    else
        fprintf(f, "#SBATCH --%s=%s\n", opt, val);
}

void em__slurm_script(FILE *f, const em__job *j, const char *ember_exe, const char *dep_slurm_ids)
{
    char idpart[32], p[PATH_MAX + 64], t[64];
    const char *home = em__home("ember submit");
    if (j->id > 0)
        snprintf(idpart, sizeof idpart, "%lld", j->id);
    else
        snprintf(idpart, sizeof idpart, "<id>");
    fprintf(f, "#!/bin/sh\n# Ember job %s (%s), written by `ember submit --backend slurm`.\n", idpart, j->name);
    directive(f, "job-name", j->name);
    snprintf(t, sizeof t, "%ld", j->np);
    directive(f, "ntasks", t);
    /* sbatch expands %j, %u, ... in --output/--error: a '%' of our own is written %%. */
    for (int k = 0; k < 2; k++) {
        char raw[PATH_MAX + 32];
        size_t o = 0;
        snprintf(raw, sizeof raw, "%s/jobs/%s/%s", home ? home : "", idpart, k ? "stderr" : "stdout");
        for (const char *c = raw; *c && o + 2 < sizeof p; c++) {
            if (*c == '%')
                p[o++] = '%';
            p[o++] = *c;
        }
        p[o] = '\0';
        directive(f, k ? "error" : "output", p);
    }
    directive(f, "chdir", j->cwd);
    if (j->time_limit > 0) {
        /* Slurm's D-HH:MM:SS; it rounds seconds up to whole minutes. */
        long long s = j->time_limit;
        snprintf(t, sizeof t, "%lld-%02lld:%02lld:%02lld", s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
        directive(f, "time", t);
    }
    if (dep_slurm_ids && *dep_slurm_ids) {
        snprintf(p, sizeof p, "afterok:%s", dep_slurm_ids);
        directive(f, "dependency", p);
        /* As the local scheduler does: a job whose dependency failed is cancelled, not left pending forever. */
        directive(f, "kill-on-invalid-dep", "yes");
    }
    /* Only a lower priority maps to Slurm without privileges (a positive nice); a higher one is Slurm's admins'. */
    if (j->priority < 0) {
        snprintf(t, sizeof t, "%lld", -j->priority);
        directive(f, "nice", t);
    }
    directive(f, "export", "ALL");
    snprintf(p, sizeof p, "%s/jobs/%s/events.jsonl", home ? home : "", idpart);
    fputs("export EMBER_EVENT_LOG=", f);
    shq(f, p);
    fprintf(f, "\nexport EMBER_JOB_ID=%s\n", j->id > 0 ? idpart : "0");
    /* `ember run` inside the allocation: mpirun takes the hosts and slots from Slurm, with Ember's recovery recipe
     * and the job's own exit status. */
    fputs("exec ", f);
    shq(f, ember_exe);
    fprintf(f, " run -np %ld", j->np);
    if (j->hostfile) {
        fputs(" --hostfile ", f);
        shq(f, j->hostfile);
    }
    fputs(" --", f);
    for (int i = 0; i < j->argc; i++) {
        fputc(' ', f);
        shq(f, j->argv[i]);
    }
    fputc('\n', f);
}

int em__in_path(const char *prog)
{
    return em__program_exists(prog);
}

int em__run_capture(char *const argv[], char *buf, size_t len, int pass_stderr, int timeout_s)
{
    int p[2];
    buf[0] = '\0';
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]), close(p[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(p[1], 1);
        if (!pass_stderr) {
            int nul = open("/dev/null", O_WRONLY);
            if (nul >= 0)
                dup2(nul, 2);
        }
        signal(SIGPIPE, SIG_DFL);
        execvp(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    size_t got = 0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left = (long)(timeout_s - (now.tv_sec - t0.tv_sec)) * 1000;
        struct pollfd pf = {.fd = p[0], .events = POLLIN};
        if (left <= 0 || poll(&pf, 1, (int)left) <= 0) {
            kill(pid, SIGKILL);
            break;
        }
        char tmp[4096];
        ssize_t n = read(p[0], tmp, sizeof tmp);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        size_t keep = (size_t)n < len - 1 - got ? (size_t)n : len - 1 - got;
        memcpy(buf + got, tmp, keep);
        got += keep;
    }
    buf[got] = '\0';
    close(p[0]);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *map_state(const char *s)
{
    static const char *const map[][2] = {
        {"PENDING", "PD"},   {"RUNNING", "R"},     {"COMPLETING", "R"}, {"CONFIGURING", "R"},
        {"SUSPENDED", "R"},  {"STOPPED", "R"},     {"RESIZING", "R"},   {"REQUEUED", "R"},
        {"COMPLETED", "CD"}, {"FAILED", "F"},      {"NODE_FAIL", "F"},  {"OUT_OF_MEMORY", "F"},
        {"BOOT_FAIL", "F"},  {"DEADLINE", "F"},    {"CANCELLED", "CA"}, {"PREEMPTED", "CA"},
        {"TIMEOUT", "TO"},
    };
    size_t n = strcspn(s, " +|\n");
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strlen(map[i][0]) == n && strncmp(s, map[i][0], n) == 0)
            return map[i][1];
    return NULL;
}

/* What Slurm said about one job. */
struct answer {
    const char *state; /* Ember's code, NULL if Slurm did not say */
    char reason[64];
    int has_code, code;
};

/* squeue's "STATE|REASON|EXIT" line: the controller's view, which with -t all includes jobs that ended less than
 * MinJobAge (default 300 s) ago. Its exit_code is a raw wait status (768 is exit 3; 15 is SIGTERM), meaningful
 * only once the job ended. A stand-in or an older squeue may print only "STATE|REASON". */
static void ask_squeue(const char *slurm_id, struct answer *a)
{
    char out[4096];
    char *sq[] = {"squeue", "-h", "-t", "all", "-j", (char *)slurm_id, "-O", "State:|,Reason:|,exit_code:", NULL};
    if (em__run_capture(sq, out, sizeof out, 0, SLURM_TIMEOUT_S) != 0 || !(a->state = map_state(out)))
        return;
    char *bar = strchr(out, '|');
    if (!bar)
        return;
    snprintf(a->reason, sizeof a->reason, "%.*s", (int)strcspn(bar + 1, "|\n"), bar + 1);
    char *bar2 = strchr(bar + 1, '|'), *end = NULL;
    long st = bar2 ? strtol(bar2 + 1, &end, 10) : -1;
    if (st >= 0 && end != bar2 + 1 && em__state_final(a->state)) {
        a->has_code = 1;
        a->code = WIFSIGNALED((int)st) ? 128 + WTERMSIG((int)st) : WEXITSTATUS((int)st);
    }
}

/* sacct's "STATE|N:S" line: the accounting database, which remembers jobs the controller forgot. It fails on a
 * Slurm without accounting storage ("Slurm accounting storage is disabled"). */
static void ask_sacct(const char *slurm_id, struct answer *a)
{
    char out[4096];
    char *sa[] = {"sacct", "-n", "-X", "-P", "-j", (char *)slurm_id, "-o", "State,ExitCode", NULL};
    if (em__run_capture(sa, out, sizeof out, 0, SLURM_TIMEOUT_S) != 0 || !(a->state = map_state(out)))
        return;
    char *bar = strchr(out, '|');
    int n, sig;
    if (bar && sscanf(bar + 1, "%d:%d", &n, &sig) == 2) {
        a->has_code = 1;
        a->code = sig ? 128 + sig : n;
    }
}

int em__slurm_refresh(em__jobdb *jdb, em__job *j)
{
    struct answer a = {.state = NULL, .reason = "None"};
    if (!j->slurm_id || em__state_final(j->state))
        return 0;
    ask_squeue(j->slurm_id, &a);
    if (!a.state) {
        /* Gone from the controller: only accounting knows how it ended. */
        snprintf(a.reason, sizeof a.reason, "None");
        ask_sacct(j->slurm_id, &a);
    }
    if (!a.state)
        return -1;
    /* The same reasons as a local job that ended so (Slurm's own when it cancelled a job for a failed dependency). */
    if (strcmp(a.state, "CA") == 0 && strcmp(a.reason, "DependencyNeverSatisfied") != 0)
        snprintf(a.reason, sizeof a.reason, "Cancelled");
    else if (strcmp(a.state, "TO") == 0)
        snprintf(a.reason, sizeof a.reason, "TimeLimit");
    else if (strcmp(a.state, "F") == 0)
        snprintf(a.reason, sizeof a.reason, "NonZeroExitCode");
    else if (strcmp(a.state, "CD") == 0)
        snprintf(a.reason, sizeof a.reason, "None");
    long long now = em__now_ms();
    int rc = em__jobdb_update(jdb,
                              "UPDATE jobs SET state = ?, reason = ?,"
                              " start_ms = CASE WHEN start_ms = 0 AND ? != 'PD' THEN ? ELSE start_ms END,"
                              " end_ms = CASE WHEN end_ms = 0 AND ? IN ('CD', 'F', 'CA', 'TO') THEN ? ELSE end_ms END"
                              " WHERE id = ?",
                              "sssisii", a.state, a.reason, a.state, now, a.state, now, j->id);
    if (rc >= 0 && a.has_code)
        em__jobdb_update(jdb, "UPDATE jobs SET exit_code = ? WHERE id = ?", "ii", (long long)a.code, j->id);
    snprintf(j->state, sizeof j->state, "%s", a.state);
    free(j->reason);
    j->reason = strdup(a.reason);
    if (a.has_code)
        j->has_exit = 1, j->exit_code = a.code;
    return rc < 0 ? -1 : 0;
}

int em__slurm_cancel(const char *who, const em__job *j)
{
    char out[1024];
    if (!j->slurm_id) {
        fprintf(stderr, "%s: job %lld: no Slurm job id recorded\n", who, j->id);
        return -1;
    }
    char *sc[] = {"scancel", j->slurm_id, NULL};
    int rc = em__run_capture(sc, out, sizeof out, 1, SLURM_TIMEOUT_S);
    if (rc != 0) {
        fprintf(stderr, "%s: job %lld: scancel %s %s\n", who, j->id, j->slurm_id,
                rc == 127 ? "not found in PATH" : "failed");
        return -1;
    }
    /* scancel only asks; the job is COMPLETING (R) for a moment. Like a local cancel, return once it ended, so
     * that the queue shows CA right after; if Slurm is slow, it will show later. */
    struct timespec t0, now, ts = {0, 200 * 1000000L};
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do {
        struct answer a = {.state = NULL};
        ask_squeue(j->slurm_id, &a);
        if (!a.state || em__state_final(a.state))
            break;
        nanosleep(&ts, NULL);
        clock_gettime(CLOCK_MONOTONIC, &now);
    } while (now.tv_sec - t0.tv_sec < SLURM_TIMEOUT_S);
    return 0;
}
