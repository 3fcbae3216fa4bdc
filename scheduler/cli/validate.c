/*
 * validate.c — checks of what a user hands the job queue before it touches a path or the database: job ids, names,
 * counts, Slurm-style time limits, Open MPI hostfiles (with their slot sums) and programs (found as execvp
 * would). Shared DESIGN.md section 9; the contract of each function is in jobdb.h.
 */
#include "scheduler/cli/cli.h"
#include "scheduler/cli/jobdb.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- validation ------------------------------------------------------------------------------------------ */

int em__parse_id(const char *s, long long *id)
{
    long long v = 0;
    size_t n = strlen(s);
    if (n == 0 || n > 18)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    if (v <= 0)
        return -1;
    *id = v;
    return 0;
}

long em__parse_count(const char *s)
{
    long v = 0;
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (*s - '0');
        if (v > EM__NP_MAX)
            return -1;
    }
    return v > 0 ? v : -1;
}

const char *em__name_problem(const char *name)
{
    size_t n = strlen(name);
    if (n == 0)
        return "it is empty";
    if (n > EM__NAME_MAX)
        return "it is longer than 64 bytes";
    if (name[0] == '-')
        return "it starts with '-'";
    if (strstr(name, ".."))
        return "it contains '..'";
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c == '/' || c == '\\')
            return "it contains a slash";
        if (c <= ' ' || c >= 0x7f)
            return "it contains a space, control or non-ASCII byte";
    }
    return NULL;
}

/* Digits only, at most 9 of them. -1 otherwise. */
static long long time_part(const char *s, size_t n)
{
    long long v = 0;
    if (n == 0 || n > 9)
        return -1;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

long long em__parse_time(const char *s)
{
    if (strcasecmp(s, "UNLIMITED") == 0 || strcasecmp(s, "INFINITE") == 0)
        return 0;
    long long days = 0, f[3];
    int nf = 0;
    const char *dash = strchr(s, '-');
    if (dash) {
        if ((days = time_part(s, (size_t)(dash - s))) < 0)
            return -1;
        s = dash + 1;
    }
    for (;;) {
        size_t n = strcspn(s, ":");
        if (nf == 3 || (f[nf] = time_part(s, n)) < 0)
            return -1;
        nf++;
        if (s[n] == '\0')
            break;
        s += n + 1;
    }
    long long sec;
    if (dash) { /* D-H, D-H:M, D-H:M:S */
        sec = f[0] * 3600 + (nf > 1 ? f[1] * 60 : 0) + (nf > 2 ? f[2] : 0);
    } else if (nf == 1) { /* M */
        sec = f[0] * 60;
    } else if (nf == 2) { /* M:S */
        sec = f[0] * 60 + f[1];
    } else { /* H:M:S */
        sec = f[0] * 3600 + f[1] * 60 + f[2];
    }
    sec += days * 86400;
    return sec > 100LL * 365 * 86400 ? -1 : sec;
}

void em__fmt_duration(char *buf, size_t len, long long s)
{
    if (s < 0)
        s = 0;
    long long d = s / 86400, h = s / 3600 % 24, m = s / 60 % 60, sec = s % 60;
    if (d)
        snprintf(buf, len, "%lld-%02lld:%02lld:%02lld", d, h, m, sec);
    else if (h)
        snprintf(buf, len, "%lld:%02lld:%02lld", h, m, sec);
    else
        snprintf(buf, len, "%lld:%02lld", m, sec);
}

long em__hostfile_slots(const char *who, const char *path)
{
    struct stat st;
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "%s: --hostfile %s: %s\n", who, path, strerror(errno));
        return -1;
    }
    if (fstat(fileno(f), &st) == 0 && S_ISDIR(st.st_mode)) {
        fprintf(stderr, "%s: --hostfile %s: is a directory\n", who, path);
        fclose(f);
        return -1;
    }
    char buf[4096];
    long lineno = 0, slots = 0, hosts = 0;
    const char *why = NULL;
    while (!why && fgets(buf, sizeof buf, f)) {
        lineno++;
        char *hash = strchr(buf, '#');
        if (hash)
            *hash = '\0';
        buf[strcspn(buf, "\r\n")] = '\0';
        char *save = NULL;
        char *tok = strtok_r(buf, " \t", &save);
        if (!tok)
            continue;
        for (const char *c = tok; *c && !why; c++)
            if (!isalnum((unsigned char)*c) && !strchr(".-_:[]", *c))
                why = "a host name";
        long n = 1;
        for (tok = strtok_r(NULL, " \t", &save); tok && !why; tok = strtok_r(NULL, " \t", &save)) {
            char *eq = strchr(tok, '=');
            if (!eq || eq == tok) {
                why = "key=value after the host name (e.g. slots=4)";
            } else if (strstr(tok, "slots") && (eq[1] == '\0' || strspn(eq + 1, "0123456789") != strlen(eq + 1) ||
                                                strlen(eq + 1) > 6)) {
                why = "slots=N with N a non-negative integer";
            } else if (strncmp(tok, "slots=", 6) == 0) {
                n = atol(eq + 1);
            }
        }
        if (!why) {
            hosts++;
            slots += n;
        }
    }
    if (why) {
        fprintf(stderr, "%s: %s:%ld: expected 'host [slots=N]', %s\n", who, path, lineno, why);
        fclose(f);
        return -1;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        fprintf(stderr, "%s: --hostfile %s: read error\n", who, path);
        return -1;
    }
    if (hosts == 0 || slots == 0) {
        fprintf(stderr, "%s: %s: no hosts with slots in hostfile\n", who, path);
        return -1;
    }
    return slots > EM__NP_MAX ? EM__NP_MAX : slots;
}

static int is_exec_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode) && access(path, X_OK) == 0;
}

int em__program_exists(const char *prog)
{
    if (!*prog)
        return 0;
    if (strchr(prog, '/'))
        return is_exec_file(prog);
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        size_t dlen = strcspn(path, ":");
        char full[PATH_MAX];
        /* An empty PATH entry means the current directory. */
        int n = dlen ? snprintf(full, sizeof full, "%.*s/%s", (int)dlen, path, prog)
                     : snprintf(full, sizeof full, "./%s", prog);
        if (n < (int)sizeof full && is_exec_file(full))
            return 1;
        path += dlen;
        if (*path == ':')
            path++;
    }
    return 0;
}

long long em__now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
