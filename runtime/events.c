/* events.c — the JSON-lines event log of a run (DESIGN section 9; format in events.h and README.md).
 *
 * The leader writes; every other rank only remembers where the log is, so that if it is elected it appends to the
 * same file. A line is formatted completely in memory and written with one write(2) on an O_APPEND descriptor:
 * two threads (driver and progress thread) never interleave, and a line is never half-written by us.
 * At finalize a log above EM__EVENTS_GZIP_BYTES is compressed: appended as one gzip member to PATH.gz (so a path
 * reused by several runs keeps all of them; gzip readers read concatenated members as one stream), then removed.
 */
#include "runtime/events.h"

#include "ember.h"
#include "runtime/log.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define JSON_RING 8 /* em__json_str buffers per thread */

static struct {
    pthread_mutex_t mu;
    int fd;             /* -1 until this rank writes as the leader */
    int rank;
    int failed;         /* opening failed once: logged, not retried on every event */
    char path[PATH_MAX];
    /* task_start / task_end lines wait here (at most EV_BATCH bytes, EV_BATCH_S seconds, or until any other event)
     * and go out in one write: a job of many small tasks writes two of them per task */
    char *pend;
    size_t plen, pcap;
    double pend_t0;
} ev = {PTHREAD_MUTEX_INITIALIZER, -1, -1, 0, "", NULL, 0, 0, 0};
#define EV_BATCH ((size_t)64 << 10)
#define EV_BATCH_S 0.1
static _Atomic int ev_configured; /* em__events_open succeeded and em__events_close has not run */
static _Atomic int ev_leader = -1; /* -1: never told (no runtime): write as if leading */

void em__events_set_leader(int is_leader) { atomic_store(&ev_leader, is_leader ? 1 : 0); }

/* ---- JSON string escaping ---------------------------------------------------------------------------------- */

size_t em__utf8_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t len;
    unsigned lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        if (c == 0xE0) lo = 0xA0;
        if (c == 0xED) hi = 0x9F; /* U+D800..DFFF are surrogates */
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        if (c == 0xF0) lo = 0x90;
        if (c == 0xF4) hi = 0x8F;
    } else
        return 0;
    if (n < len || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < len; i++)
        if ((s[i] & 0xC0) != 0x80) return 0;
    return len;
}

/* Escapes s into out (cap bytes, NUL-terminated) and returns the length it needs (without the NUL), like
 * snprintf. Short escapes as Python's json module writes them; other control bytes and bytes that are not valid
 * UTF-8 as \u00XX (lowercase hex, as Python). */
static size_t json_escape(const char *s, char *out, size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t n = strlen(s), o = 0;
    char tmp[8];
#define PUT(str, l)                                                                                           \
    do {                                                                                                      \
        for (size_t k_ = 0; k_ < (l); k_++, o++)                                                              \
            if (o + 1 < cap) out[o] = (str)[k_];                                                              \
    } while (0)
    for (size_t i = 0; i < n;) {
        unsigned c = p[i];
        const char *esc = NULL;
        switch (c) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        default: break;
        }
        if (esc) {
            PUT(esc, 2);
            i++;
            continue;
        }
        size_t l = c < 0x20 ? 0 : em__utf8_len(p + i, n - i);
        if (l == 0) { /* control byte or a byte that does not start valid UTF-8 */
            memcpy(tmp, "\\u00", 4);
            tmp[4] = hex[c >> 4];
            tmp[5] = hex[c & 15];
            PUT(tmp, 6);
            i++;
            continue;
        }
        PUT((const char *)p + i, l);
        i += l;
    }
#undef PUT
    if (cap) out[o < cap ? o : cap - 1] = 0;
    return o;
}

/* The ring of em__json_str buffers of one thread, freed when the thread exits. */
struct json_ring {
    char *buf[JSON_RING];
    size_t cap[JSON_RING];
    unsigned next;
};
static pthread_key_t ring_key;
static pthread_once_t ring_once = PTHREAD_ONCE_INIT;

static void ring_free(void *p)
{
    struct json_ring *r = p;
    for (int i = 0; i < JSON_RING; i++) free(r->buf[i]);
    free(r);
}

static void ring_key_init(void) { EM_ASSERT(pthread_key_create(&ring_key, ring_free) == 0); }

const char *em__json_str(const char *s)
{
    if (!s) s = "";
    pthread_once(&ring_once, ring_key_init);
    struct json_ring *r = pthread_getspecific(ring_key);
    if (!r) {
        r = em__calloc(1, sizeof *r);
        pthread_setspecific(ring_key, r);
    }
    unsigned i = r->next++ % JSON_RING;
    size_t need = json_escape(s, NULL, 0) + 1;
    if (need > r->cap[i]) {
        r->cap[i] = need < 64 ? 64 : need;
        r->buf[i] = em__realloc(r->buf[i], r->cap[i]);
    }
    json_escape(s, r->buf[i], r->cap[i]);
    return r->buf[i];
}

/* ---- line format --------------------------------------------------------------------------------------------- */

/* Skips one JSON value (as a caller wrote it: no validation beyond nesting and strings); returns the position
 * after it. */
static const char *skip_value(const char *p)
{
    int depth = 0;
    for (; *p; p++) {
        if (*p == '"') {
            for (p++; *p && *p != '"'; p++)
                if (*p == '\\' && p[1]) p++;
            if (!*p) return p;
            if (depth == 0) return p + 1;
        } else if (*p == '{' || *p == '[')
            depth++;
        else if (*p == '}' || *p == ']') {
            if (--depth <= 0) return p + 1;
        } else if (depth == 0 && *p == ',')
            return p;
    }
    return p;
}

/* 1 if the members in fields have one named "rank" at the top level. */
static int has_rank_member(const char *f)
{
    while (*f) {
        while (*f == ' ' || *f == ',') f++;
        if (*f != '"') return 0;
        const char *k = f + 1;
        const char *e = k;
        while (*e && *e != '"') e += (*e == '\\' && e[1]) ? 2 : 1;
        if (!*e) return 0;
        if (e - k == 4 && memcmp(k, "rank", 4) == 0) return 1;
        f = e + 1;
        while (*f == ' ' || *f == ':') f++;
        f = skip_value(f);
    }
    return 0;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec * 1000.0 + (double)(ts.tv_nsec / 1000) / 1000.0;
}

/* Appends n bytes at *at if they fit before end; returns 0 or -1. */
static int put(char **at, const char *end, const char *p, size_t n)
{
    if ((size_t)(end - *at) < n) return -1;
    memcpy(*at, p, n);
    *at += n;
    return 0;
}

int em__event_format(char *buf, size_t cap, double ts_ms, int rank, const char *type, const char *fields)
{
    if (ts_ms < 0) ts_ms = now_ms();
    if (!fields) fields = "";
    while (*fields == ' ' || *fields == ',') fields++;
    /* Assembled with memcpy rather than snprintf("%s..."): a job of many small tasks writes two events per task,
     * and printf's string and floating-point paths cost microseconds a line. The time has the digits of %.3f,
     * from integer microseconds. */
    char head[96];
    long long us = (long long)(ts_ms * 1000.0 + 0.5);
    int hn = snprintf(head, sizeof head, "{\"ts\":%lld.%03lld,\"event\":\"", us / 1000, us % 1000);
    char rk[32];
    int rn = has_rank_member(fields) ? 0 : snprintf(rk, sizeof rk, ",\"rank\":%d", rank);
    const char *t = em__json_str(type);
    size_t fl = strlen(fields);
    char *at = buf, *end = buf + cap;
    if (put(&at, end, head, (size_t)hn) < 0 || put(&at, end, t, strlen(t)) < 0 || put(&at, end, "\"", 1) < 0 ||
        put(&at, end, rk, (size_t)rn) < 0 || (fl && put(&at, end, ",", 1) < 0) || put(&at, end, fields, fl) < 0 ||
        put(&at, end, "}\n", 2) < 0 || at == end)
        return -1;
    *at = 0;
    return (int)(at - buf);
}

/* ---- file ---------------------------------------------------------------------------------------------------- */

/* mkdir -p of the directory part of path, each new directory 0700. */
static int mkdirs_for(const char *path)
{
    char d[PATH_MAX];
    snprintf(d, sizeof d, "%s", path);
    char *slash = strrchr(d, '/');
    if (!slash || slash == d) return 0;
    *slash = 0;
    for (char *p = d + 1; ; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(d, 0700) < 0 && errno != EEXIST)
                return em__fail(EM_EIO, "event log: cannot create directory %s: %s", d, strerror(errno));
            *p = c;
            if (!c) break;
        }
    }
    struct stat st;
    if (stat(d, &st) < 0 || !S_ISDIR(st.st_mode))
        return em__fail(EM_EIO, "event log: %s is not a directory", d);
    return 0;
}

static int app_id_ok(const char *s)
{
    if (!s || !*s || *s == '.' || strlen(s) > 200) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '-' ||
              *s == '_' || *s == '.'))
            return 0;
    return 1;
}

/* Caller holds ev.mu. */
static int open_file(void)
{
    int rc;
    if ((rc = mkdirs_for(ev.path)) < 0) return rc;
    int fd = open(ev.path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return em__fail(EM_EIO, "event log: cannot open %s: %s", ev.path, strerror(errno));
    ev.fd = fd;
    return 0;
}

int em__events_open(const char *path, const char *app_id, int rank)
{
    char p[PATH_MAX];
    int rc = 0;
    if (path && *path) {
        if (strlen(path) >= sizeof p) return em__fail(EM_EINVAL, "event log: path too long: %.80s...", path);
        snprintf(p, sizeof p, "%s", path);
    } else {
        if (!app_id_ok(app_id))
            return em__fail(EM_EINVAL, "event log: app id '%s' is not [A-Za-z0-9._-]+", app_id ? app_id : "");
        const char *home = getenv("EMBER_HOME");
        const char *uh = getenv("HOME");
        int n;
        if (home && *home) n = snprintf(p, sizeof p, "%s/events/%s.jsonl", home, app_id);
        else n = snprintf(p, sizeof p, "%s/.ember/events/%s.jsonl", uh && *uh ? uh : ".", app_id);
        if (n < 0 || (size_t)n >= sizeof p) return em__fail(EM_EINVAL, "event log: path too long for app %s", app_id);
    }
    pthread_mutex_lock(&ev.mu);
    if (atomic_load(&ev_configured) && strcmp(ev.path, p) == 0) {
        ev.rank = rank;
        pthread_mutex_unlock(&ev.mu);
        return 0;
    }
    if (ev.fd >= 0) close(ev.fd);
    ev.fd = -1;
    ev.failed = 0;
    ev.rank = rank;
    snprintf(ev.path, sizeof ev.path, "%s", p);
    if (atomic_load(&ev_leader) != 0) rc = open_file(); /* the leader opens now, so a bad path shows at once */
    if (rc == 0) atomic_store(&ev_configured, 1);
    else ev.path[0] = 0;
    pthread_mutex_unlock(&ev.mu);
    if (rc < 0) EM_LOG_E("%s", em_last_error());
    return rc;
}

const char *em__events_path(void) { return atomic_load(&ev_configured) ? ev.path : ""; }

static double ev_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Caller holds ev.mu. Whole lines in one write(2) on an O_APPEND descriptor: never interleaved with a new
 * leader's lines. */
static void write_all_locked(const char *p, size_t n)
{
    if (ev.fd < 0 || !n) return;
    ssize_t w = write(ev.fd, p, n);
    if (w != (ssize_t)n && !ev.failed) {
        ev.failed = 1; /* disk full or the like: say so once, the job goes on */
        EM_LOG_W("event log: short write to %s: %s", ev.path, w < 0 ? strerror(errno) : "partial line");
    }
}

static void ev_flush_locked(void)
{
    write_all_locked(ev.pend, ev.plen);
    ev.plen = 0;
}

void em__event(const char *type, const char *fmt, ...)
{
    if (!atomic_load(&ev_configured) || atomic_load(&ev_leader) == 0) return;
    char fbuf[1024], lbuf[1536];
    char *fields = fbuf, *line = lbuf;
    fbuf[0] = 0;
    if (fmt && *fmt) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(fbuf, sizeof fbuf, fmt, ap);
        va_end(ap);
        if (n < 0) return;
        if ((size_t)n >= sizeof fbuf) {
            fields = em__malloc((size_t)n + 1);
            va_start(ap, fmt);
            vsnprintf(fields, (size_t)n + 1, fmt, ap);
            va_end(ap);
        }
    }
    int n = em__event_format(lbuf, sizeof lbuf, -1, ev.rank, type, fields);
    if (n < 0) {
        size_t cap = strlen(fields) + strlen(type) * 6 + 128;
        line = em__malloc(cap);
        n = em__event_format(line, cap, -1, ev.rank, type, fields);
        EM_ASSERT(n > 0);
    }
    pthread_mutex_lock(&ev.mu);
    if (ev.fd < 0 && !ev.failed && atomic_load(&ev_configured) && open_file() < 0) {
        ev.failed = 1;
        EM_LOG_E("%s", em_last_error());
    }
    if (ev.fd >= 0) {
        int batch = strncmp(type, "task_", 5) == 0 && (strcmp(type, "task_start") == 0 || strcmp(type, "task_end") == 0);
        double t = ev_now_s();
        if (!ev.plen) ev.pend_t0 = t;
        if (batch && ev.plen + (size_t)n <= EV_BATCH && t - ev.pend_t0 < EV_BATCH_S) {
            if (ev.plen + (size_t)n > ev.pcap) {
                ev.pcap = EV_BATCH;
                ev.pend = em__realloc(ev.pend, ev.pcap);
            }
            memcpy(ev.pend + ev.plen, line, (size_t)n);
            ev.plen += (size_t)n;
        } else {
            ev_flush_locked();
            write_all_locked(line, (size_t)n);
        }
    }
    pthread_mutex_unlock(&ev.mu);
    if (fields != fbuf) free(fields);
    if (line != lbuf) free(line);
}

/* Appends path as one gzip member to path.gz and removes path. Returns 0 or EM_EIO. */
static int compress_file(const char *path)
{
    char gz[PATH_MAX + 8];
    snprintf(gz, sizeof gz, "%s.gz", path);
    int in = open(path, O_RDONLY | O_CLOEXEC);
    if (in < 0) return em__fail(EM_EIO, "event log: cannot reopen %s: %s", path, strerror(errno));
    int out = open(gz, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    gzFile g = out >= 0 ? gzdopen(out, "ab") : NULL;
    if (!g) {
        if (out >= 0) close(out);
        close(in);
        return em__fail(EM_EIO, "event log: cannot create %s: %s", gz, strerror(errno));
    }
    struct stat st;
    off_t start = fstat(out, &st) == 0 ? st.st_size : 0; /* to undo a half-written member */
    char buf[1 << 16];
    ssize_t r;
    int rc = 0;
    while ((r = read(in, buf, sizeof buf)) > 0)
        if (gzwrite(g, buf, (unsigned)r) != (int)r) {
            rc = em__fail(EM_EIO, "event log: cannot write %s", gz);
            break;
        }
    if (r < 0) rc = em__fail(EM_EIO, "event log: cannot read %s: %s", path, strerror(errno));
    if (gzclose(g) != Z_OK && rc == 0) rc = em__fail(EM_EIO, "event log: cannot finish %s", gz);
    close(in);
    if (rc < 0) {
        if (truncate(gz, start) < 0) EM_LOG_W("event log: cannot truncate %s after a failed write", gz);
        return rc;
    }
    if (unlink(path) < 0) return em__fail(EM_EIO, "event log: cannot remove %s: %s", path, strerror(errno));
    return 0;
}

void em__events_close(void)
{
    pthread_mutex_lock(&ev.mu);
    ev_flush_locked();
    free(ev.pend);
    ev.pend = NULL;
    ev.pcap = 0;
    atomic_store(&ev_configured, 0);
    int fd = ev.fd;
    ev.fd = -1;
    struct stat st;
    int big = fd >= 0 && fstat(fd, &st) == 0 && st.st_size > EM__EVENTS_GZIP_BYTES;
    if (fd >= 0) close(fd);
    if (big && compress_file(ev.path) < 0) EM_LOG_W("%s; the log stays uncompressed", em_last_error());
    pthread_mutex_unlock(&ev.mu);
}
