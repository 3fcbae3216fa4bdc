/* progress.c — console progress bars on stderr, as Spark's ConsoleProgressBar draws them (DESIGN section 9).
 *
 * The driver reports counts; a small refresher thread, started on the first report and gone when no stage is
 * running, redraws every EM__PROGRESS_PERIOD_MS so a bar appears EM__PROGRESS_DELAY_MS after its stage started even
 * if no task finished meanwhile. Everything that reaches stderr from this rank's log goes through log_sink() while
 * bars are enabled, so a log line first wipes the bar and the bar comes back under it, in one write(2).
 * No allocation under the mutex: em__oom logs, and the log sink takes the mutex.
 */
#include "runtime/progress.h"

#include "runtime/log.h"
#include "runtime/loop.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define MAX_STAGES 16 /* stages tracked at once */
#define MAX_SHOWN 3   /* bars side by side */
#define LINE_CAP 1024
#define REFRESH_MS 1000 /* ms: redraw an unchanged bar this often (another rank's log line may have wiped it) */

struct pstage {
    int used;
    int stage;
    char name[40];
    int done, running, total;
    int64_t start_ms; /* monotonic ms of the first report */
};

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int inited;
    int enabled;
    int cols;        /* terminal width */
    int tty;         /* the bytes end up on a terminal (so escape sequences are fine) */
    int64_t drawn_ms; /* monotonic ms of the last draw */
    int thread_on;   /* the refresher runs */
    struct pstage st[MAX_STAGES];
    size_t shown;    /* columns of the bar on screen now (0: nothing drawn) */
    char line[LINE_CAP];
} pg = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void out(const char *s, size_t n)
{
    while (n) {
        ssize_t w = write(2, s, n);
        if (w <= 0) return;
        s += w;
        n -= (size_t)w;
    }
}

int em__progress_format(char *o, size_t cap, int width, int stage, const char *name, int done, int running,
                        int total)
{
    char head[80], tail[64];
    if (name && *name) snprintf(head, sizeof head, "[Stage %d %.39s: ", stage, name);
    else snprintf(head, sizeof head, "[Stage %d: ", stage);
    snprintf(tail, sizeof tail, " (%d + %d) / %d]", done, running, total);
    int w = width - (int)strlen(head) - (int)strlen(tail);
    if (w < 1) w = 0;
    size_t need = strlen(head) + (size_t)w + strlen(tail) + 1;
    if (need > cap) return -1;
    int fill = total > 0 ? (int)((long long)w * (done < total ? done : total) / total) : 0;
    char *p = o + sprintf(o, "%s", head);
    for (int i = 0; i < w; i++) *p++ = i < fill ? '=' : i == fill ? '>' : ' ';
    p += sprintf(p, "%s", tail);
    return (int)(p - o);
}

/* The whole line for the stages older than the delay; caller holds pg.mu. Returns its length. */
static size_t render(char *o, size_t cap, int64_t now)
{
    int idx[MAX_SHOWN], n = 0;
    for (int i = 0; i < MAX_STAGES && n < MAX_SHOWN; i++)
        if (pg.st[i].used && now - pg.st[i].start_ms >= EM__PROGRESS_DELAY_MS) idx[n++] = i;
    size_t len = 0;
    o[0] = 0;
    /* One column short of the terminal: writing the last column makes some terminals wrap before the '\r'. */
    int width = n ? (pg.cols - 1) / n : 0;
    for (int k = 0; k < n; k++) {
        const struct pstage *s = &pg.st[idx[k]];
        int m = em__progress_format(o + len, cap - len, width, s->stage, s->name, s->done, s->running, s->total);
        if (m < 0) break;
        len += (size_t)m;
    }
    return len;
}

/* "\r" + spaces over what is shown + "\r": caller holds pg.mu; appends to buf. */
static size_t wipe(char *o, size_t cap)
{
    size_t n = 0;
    if (!pg.shown || pg.shown + 2 > cap) return 0;
    o[n++] = '\r';
    memset(o + n, ' ', pg.shown);
    n += pg.shown;
    o[n++] = '\r';
    pg.shown = 0;
    return n;
}

/* Redraws if the line changed (or is due for a refresh); caller holds pg.mu. */
static void redraw(int64_t now)
{
    char buf[LINE_CAP], o[3 * LINE_CAP];
    size_t len = render(buf, sizeof buf, now), n = 0;
    if (len == pg.shown && strcmp(buf, pg.line) == 0 && (len == 0 || now - pg.drawn_ms < REFRESH_MS)) return;
    pg.drawn_ms = now;
    if (len < pg.shown) n = wipe(o, sizeof o); /* a shorter line would leave the end of the old one behind */
    o[n++] = '\r';
    memcpy(o + n, buf, len);
    n += len;
    out(o, n);
    pg.shown = len;
    memcpy(pg.line, buf, len + 1);
}

static int any_stage(void)
{
    for (int i = 0; i < MAX_STAGES; i++)
        if (pg.st[i].used) return 1;
    return 0;
}

static void *refresher(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&pg.mu);
    while (pg.enabled && any_stage()) {
        struct timespec ts;
        em__deadline_after(&ts, EM__PROGRESS_PERIOD_MS * 1000LL);
        pthread_cond_timedwait(&pg.cv, &pg.mu, &ts);
        if (pg.enabled && any_stage()) redraw(em__now_ms());
    }
    pg.thread_on = 0;
    pthread_mutex_unlock(&pg.mu);
    return NULL;
}

/* A log line: wipe the bar, print the line, draw the bar again, in one write. On a rank that draws no bar, the
 * line may still land on the leader's bar (every rank's stderr ends on the same terminal): it starts with "\r" and
 * erase-line, and the leader redraws its bar within REFRESH_MS. */
static void log_sink(const char *line, size_t len)
{
    pthread_mutex_lock(&pg.mu);
    char o[2 * LINE_CAP + 2200];
    size_t n = 0;
    size_t bar = pg.shown;
    if (!bar && pg.tty && len + 4 <= sizeof o) {
        memcpy(o, "\r\033[K", 4);
        memcpy(o + 4, line, len);
        out(o, len + 4);
        pthread_mutex_unlock(&pg.mu);
        return;
    }
    if (bar && len + 2 * bar + 4 <= sizeof o) {
        n = wipe(o, sizeof o);
        memcpy(o + n, line, len);
        n += len;
        memcpy(o + n, pg.line, bar);
        n += bar;
        pg.shown = bar;
        out(o, n);
    } else {
        if (bar) { /* a line too long to batch: still never in the middle of the bar */
            n = wipe(o, sizeof o);
            out(o, n);
        }
        out(line, len);
        pg.line[0] = 0; /* redrawn by the next round */
    }
    pthread_mutex_unlock(&pg.mu);
}

/* The parent of pid (from /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces and parentheses), or
 * -1. */
static int parent_of(int pid)
{
    char p[64], buf[512];
    snprintf(p, sizeof p, "/proc/%d/stat", pid);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *e = strrchr(buf, ')');
    int ppid;
    if (!e || sscanf(e + 1, " %*c %d", &ppid) != 1) return -1;
    return ppid;
}

/* Under mpirun a rank's stderr is a pipe, but what mpirun relays lands where mpirun's stderr goes, and `ember run`
 * relays mpirun's stderr to its own. So: the first of our parent (mpirun on this host) and its parent (`ember run`)
 * whose stderr is a terminal; returns a descriptor of that terminal (for its width), or -1. Two levels only: a job
 * of the queue runs under `ember run` too, with stderr in a file, and its bars must not reach some terminal above. */
static int launcher_tty(void)
{
    int pid = (int)getppid();
    for (int level = 0; level < 2 && pid > 1; level++, pid = parent_of(pid)) {
        char p[64];
        snprintf(p, sizeof p, "/proc/%d/fd/2", pid);
        int fd = open(p, O_WRONLY | O_NOCTTY | O_CLOEXEC);
        if (fd < 0) return -1;
        if (isatty(fd)) return fd;
        close(fd);
    }
    return -1;
}

static int term_cols(int fd)
{
    struct winsize ws;
    if (fd >= 0 && ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20) return ws.ws_col;
    const char *c = getenv("COLUMNS");
    int v = c ? atoi(c) : 0;
    return v >= 20 && v <= 1000 ? v : 80;
}

void em__progress_init(const char *mode)
{
    if (!mode || !*mode) mode = "auto";
    int enabled = 0, fd = -1;
    if (strcmp(mode, "on") == 0) {
        enabled = 1;
        fd = isatty(2) ? 2 : launcher_tty();
    } else if (strcmp(mode, "auto") == 0) {
        const char *e = getenv("EMBER_PROGRESS_TTY");
        if (isatty(2)) fd = 2;
        else fd = launcher_tty();
        enabled = fd >= 0 || (e && strcmp(e, "1") == 0);
    }
    int cols = term_cols(fd);
    int tty = fd >= 0 || (strcmp(mode, "auto") == 0 && enabled);
    if (fd > 2) close(fd);
    pthread_mutex_lock(&pg.mu);
    if (!pg.inited) {
        em__cond_init(&pg.cv);
        pg.inited = 1;
    }
    pg.enabled = enabled;
    pg.cols = cols;
    pg.tty = tty;
    pthread_mutex_unlock(&pg.mu);
    em__log_set_sink(enabled ? log_sink : NULL);
}

int em__progress_enabled(void)
{
    pthread_mutex_lock(&pg.mu);
    int e = pg.enabled;
    pthread_mutex_unlock(&pg.mu);
    return e;
}

void em__progress_update(int stage, const char *name, int done, int running, int total)
{
    pthread_mutex_lock(&pg.mu);
    if (!pg.enabled) {
        pthread_mutex_unlock(&pg.mu);
        return;
    }
    struct pstage *s = NULL, *fr = NULL;
    for (int i = 0; i < MAX_STAGES; i++) {
        if (pg.st[i].used && pg.st[i].stage == stage) s = &pg.st[i];
        if (!pg.st[i].used && !fr) fr = &pg.st[i];
    }
    if (!s && fr) {
        s = fr;
        memset(s, 0, sizeof *s);
        s->used = 1;
        s->stage = stage;
        s->start_ms = em__now_ms();
    }
    if (s) {
        if (name) snprintf(s->name, sizeof s->name, "%s", name);
        s->done = done;
        s->running = running;
        s->total = total;
    }
    if (!pg.thread_on) {
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &at, refresher, NULL) == 0) pg.thread_on = 1;
        pthread_attr_destroy(&at);
    }
    if (!pg.thread_on) redraw(em__now_ms()); /* no thread: draw on reports only */
    pthread_mutex_unlock(&pg.mu);
}

void em__progress_done(int stage)
{
    pthread_mutex_lock(&pg.mu);
    for (int i = 0; i < MAX_STAGES; i++)
        if (pg.st[i].used && pg.st[i].stage == stage) pg.st[i].used = 0;
    if (pg.enabled) {
        if (any_stage()) redraw(em__now_ms());
        else {
            char o[LINE_CAP + 4];
            size_t n = wipe(o, sizeof o);
            out(o, n);
            pg.line[0] = 0;
        }
        pthread_cond_signal(&pg.cv);
    }
    pthread_mutex_unlock(&pg.mu);
}
