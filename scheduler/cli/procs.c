/*
 * procs.c — what the job queue knows about processes, from /proc: whether a recorded pid is still the process it
 * was (pid + start time, so a reused pid is never mistaken for a job) and every process of a job's session.
 * Shared DESIGN.md section 9; the process layout of a job is drawn in jobdb.h.
 */
#include "scheduler/cli/jobdb.h"

#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- processes ---------------------------------------------------------------------------------------------- */

int em__proc_info(pid_t pid, long long *start, pid_t *sid)
{
    char path[64], buf[1024];
    if (pid <= 0)
        return -1;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    /* "pid (comm) S ppid pgrp session ... starttime(22) ...": comm may hold spaces and parentheses. */
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    p++;
    char *save = NULL;
    long long fields[20] = {0};
    char state = 0;
    int k = 0;
    for (char *tok = strtok_r(p, " ", &save); tok && k < 20; tok = strtok_r(NULL, " ", &save), k++) {
        if (k == 0)
            state = tok[0];
        else
            fields[k] = atoll(tok);
    }
    if (k < 20 || state == 'Z' || state == 'X')
        return -1;
    if (start)
        *start = fields[19]; /* field 22 */
    if (sid)
        *sid = (pid_t)fields[3]; /* field 6 */
    return 0;
}

int em__proc_is(pid_t pid, long long start)
{
    long long s;
    return em__proc_info(pid, &s, NULL) == 0 && s == start;
}

static int session_kill_once(pid_t sid, long long min_start, int sig);

/* With SIGKILL the session is scanned again until nothing is left (at most ~1 s): a process forked while the
 * first scan ran (mpirun still starting its ranks) would otherwise outlive the job. */
int em__session_kill(pid_t sid, long long min_start, int sig)
{
    int n = session_kill_once(sid, min_start, sig);
    for (int round = 0, left = n; sig == SIGKILL && left > 0 && round < 100; round++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
        left = session_kill_once(sid, min_start, sig);
    }
    return n;
}

static int session_kill_once(pid_t sid, long long min_start, int sig)
{
    DIR *d = opendir("/proc");
    int count = 0;
    if (!d || sid <= 1)
        return d ? (closedir(d), 0) : 0;
    struct dirent *e;
    pid_t self = getpid();
    while ((e = readdir(d)) != NULL) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        pid_t pid = (pid_t)atol(e->d_name);
        long long st;
        pid_t s;
        if (pid == self || em__proc_info(pid, &st, &s) < 0 || s != sid || st < min_start)
            continue;
        if (kill(pid, sig) == 0)
            count++;
    }
    closedir(d);
    return count;
}
