/*
 * history.c — `ember history [ID|FILE] [--html OUT.html]`: reads the JSON-lines event log of a run (plain or
 * gzip, see runtime/events.h and the README section "Event log and history") and prints what happened: the job,
 * its stages with their durations, skew, shuffled records and bytes, spills, failures and recoveries; with --html,
 * one self-contained page with an SVG timeline of tasks per rank. Shared DESIGN.md section 9.
 *
 * The reader is strict (RFC 8259: no trailing commas, no leading zeros, no raw control characters, valid UTF-8
 * and escapes, one object per line) and forgiving about the file: a malformed line is reported as FILE:LINE and
 * skipped, the rest is still summarized. Unknown events and fields are ignored, so newer writers stay readable.
 *
 * Model: a file holds one or more runs (a path given with --ember-event-log may be reused; job_start begins a
 * run). A run has stages keyed by (action, stage) and task attempts keyed by (action, stage, part, attempt):
 *
 *   attempt state   set by
 *   running         task_start only (the rank died or the log ends mid-task): drawn dashed up to the run's end
 *   ok              task_end with status "ok" (or 0)
 *   failed          task_end with another status, or task_failed (both for one attempt count once)
 *
 * Stage numbers are sums over the ok attempts only (what the result is made of); failed attempts are counted
 * apart. Skew = slowest ok attempt / median of the ok attempts (the mean of the middle two for an even count).
 */
#include "scheduler/cli/cli.h"

#include "runtime/events.h"
#include "runtime/log.h"
#include "scheduler/cli/json.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <zlib.h>

#define WHO "ember history"
#define MAX_LINE (64u << 20)    /* bytes: a longer line is reported and skipped */

/* ---- the run model ----------------------------------------------------------------------------------------- */

enum { AT_RUNNING, AT_OK, AT_FAILED };

typedef struct attempt {
    int action, stage, part, attempt, rank;
    double start_ms, end_ms; /* ms since the epoch; < 0 unknown */
    double seconds;          /* < 0 unknown */
    int state;
    int has_end, has_failed; /* task_end / task_failed seen */
    long long rec_in, rec_out, b_in, b_out, spill;
    double fetch_wait_ms;
    char *error;
} attempt;

typedef struct stage {
    int action, stage;
    char *name;
    int tasks_declared;      /* stage_submitted's tasks; -1 unknown */
    double submitted_ms, completed_ms, seconds; /* < 0 unknown */
    int retries, recomputes;
} stage;

typedef struct mark {          /* a failure, fencing, election, retry or recompute, for the list and the timeline */
    double ts;
    char *event;
    char *text;
    int rank;                  /* the rank it concerns, -1 none */
} mark;

typedef struct run {
    char *app_id, *program, *argv, *status;
    int ranks;                 /* -1 unknown */
    double start_ms, end_ms, seconds, first_ts, last_ts;
    attempt *at;
    int nat, capat;
    int *hash;                 /* open addressing over at[], -1 empty */
    int hcap;
    stage *st;
    int nst, capst;
    mark *mk;
    int nmk, capmk;
    int max_rank;
    long long nevents;
} run;

typedef struct history {
    run *runs;
    int nruns;
    long long bad_lines, lines;
} history;

static unsigned attempt_hash(int a, int s, int p, int t)
{
    uint64_t h = (uint64_t)(uint32_t)a * 0x9E3779B97F4A7C15ull ^ (uint64_t)(uint32_t)s * 0xC2B2AE3D27D4EB4Full ^
                 (uint64_t)(uint32_t)p * 0x165667B19E3779F9ull ^ (uint64_t)(uint32_t)t * 0x27D4EB2F165667C5ull;
    return (unsigned)(h ^ (h >> 29));
}

static void rehash(run *r)
{
    free(r->hash);
    r->hcap = r->hcap ? 2 * r->hcap : 1024;
    r->hash = em__realloc(NULL, (size_t)r->hcap * sizeof *r->hash);
    for (int i = 0; i < r->hcap; i++) r->hash[i] = -1;
    for (int i = 0; i < r->nat; i++) {
        attempt *x = &r->at[i];
        unsigned h = attempt_hash(x->action, x->stage, x->part, x->attempt) & (unsigned)(r->hcap - 1);
        while (r->hash[h] >= 0) h = (h + 1) & (unsigned)(r->hcap - 1);
        r->hash[h] = i;
    }
}

static attempt *get_attempt(run *r, int a, int s, int p, int t)
{
    if (2 * (r->nat + 1) > r->hcap) rehash(r);
    unsigned h = attempt_hash(a, s, p, t) & (unsigned)(r->hcap - 1);
    for (; r->hash[h] >= 0; h = (h + 1) & (unsigned)(r->hcap - 1)) {
        attempt *x = &r->at[r->hash[h]];
        if (x->action == a && x->stage == s && x->part == p && x->attempt == t) return x;
    }
    if (r->nat == r->capat) {
        r->capat = r->capat ? 2 * r->capat : 256;
        r->at = em__realloc(r->at, (size_t)r->capat * sizeof *r->at);
    }
    r->hash[h] = r->nat;
    attempt *x = &r->at[r->nat++];
    memset(x, 0, sizeof *x);
    x->action = a, x->stage = s, x->part = p, x->attempt = t, x->rank = -1;
    x->start_ms = x->end_ms = x->seconds = -1;
    x->state = AT_RUNNING;
    return x;
}

static stage *get_stage(run *r, int a, int s)
{
    for (int i = 0; i < r->nst; i++)
        if (r->st[i].action == a && r->st[i].stage == s) return &r->st[i];
    if (r->nst == r->capst) {
        r->capst = r->capst ? 2 * r->capst : 16;
        r->st = em__realloc(r->st, (size_t)r->capst * sizeof *r->st);
    }
    stage *x = &r->st[r->nst++];
    memset(x, 0, sizeof *x);
    x->action = a, x->stage = s, x->tasks_declared = -1;
    x->submitted_ms = x->completed_ms = x->seconds = -1;
    return x;
}

static void add_mark(run *r, double ts, const char *event, int rank, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void add_mark(run *r, double ts, const char *event, int rank, const char *fmt, ...)
{
    if (r->nmk == r->capmk) {
        r->capmk = r->capmk ? 2 * r->capmk : 16;
        r->mk = em__realloc(r->mk, (size_t)r->capmk * sizeof *r->mk);
    }
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    r->mk[r->nmk++] = (mark){ts, em__strdup(event), em__strdup(text), rank};
}

static run *new_run(history *h)
{
    h->runs = em__realloc(h->runs, (size_t)(h->nruns + 1) * sizeof *h->runs);
    run *r = &h->runs[h->nruns++];
    memset(r, 0, sizeof *r);
    r->ranks = -1;
    r->start_ms = r->end_ms = r->seconds = r->first_ts = r->last_ts = -1;
    r->max_rank = -1;
    return r;
}

static int status_ok(const char *s) { return s && (!strcmp(s, "ok") || !strcmp(s, "0") || !strcmp(s, "success")); }

static void note_rank(run *r, int rank)
{
    if (rank > r->max_rank && rank < 100000) r->max_rank = rank;
}

/* "k=v k=v" of the members other than ts and event, for events shown as they are. */
static void members_text(const em__jv *o, char *out, size_t cap)
{
    size_t n = 0;
    out[0] = 0;
    for (int i = 0; i < o->n && n < cap; i++) {
        if (!strcmp(o->keys[i], "ts") || !strcmp(o->keys[i], "event")) continue;
        char *v = em__jv_strdup(o, o->keys[i]);
        int m = snprintf(out + n, cap - n, "%s%s=%s", n ? " " : "", o->keys[i], v ? v : "...");
        free(v);
        if (m < 0) break;
        n += (size_t)m;
    }
}

/* Applies one event object to the history. */
static void apply_event(history *h, const em__jv *o)
{
    const em__jv *ev = em__jv_get(o, "event");
    const char *e = ev->type == EM__JV_STR ? ev->str : "";
    double ts = em__jv_num(o, "ts", -1);
    run *r = h->nruns ? &h->runs[h->nruns - 1] : NULL;
    if (!r || (!strcmp(e, "job_start") && r->nevents)) r = new_run(h);
    r->nevents++;
    if (r->first_ts < 0 || ts < r->first_ts) r->first_ts = ts;
    if (ts > r->last_ts) r->last_ts = ts;
    int a = (int)em__jv_int(o, "action", -1), s = (int)em__jv_int(o, "stage", -1), rank = (int)em__jv_int(o, "rank", -1);
    note_rank(r, rank);
    char buf[1024];

    if (!strcmp(e, "job_start")) {
        free(r->app_id); free(r->program); free(r->argv);
        r->app_id = em__jv_strdup(o, "app_id");
        r->program = em__jv_strdup(o, "program");
        r->argv = em__jv_strdup(o, "argv");
        r->ranks = (int)em__jv_int(o, "ranks", -1);
        note_rank(r, r->ranks - 1);
        r->start_ms = ts;
    } else if (!strcmp(e, "job_end")) {
        free(r->status);
        r->status = em__jv_strdup(o, "status");
        r->seconds = em__jv_num(o, "seconds", -1);
        r->end_ms = ts;
    } else if (!strcmp(e, "stage_submitted") || !strcmp(e, "stage_completed")) {
        stage *st = get_stage(r, a, s);
        char *name = em__jv_strdup(o, "name");
        if (name) { free(st->name); st->name = name; }
        if (e[6] == 's') {
            st->submitted_ms = ts;
            st->tasks_declared = (int)em__jv_int(o, "tasks", -1);
        } else {
            st->completed_ms = ts;
            st->seconds = em__jv_num(o, "seconds", -1);
        }
    } else if (!strcmp(e, "task_start") || !strcmp(e, "task_end") || !strcmp(e, "task_failed")) {
        get_stage(r, a, s);
        attempt *x = get_attempt(r, a, s, (int)em__jv_int(o, "part", -1), (int)em__jv_int(o, "attempt", 0));
        if (rank >= 0) x->rank = rank;
        if (e[5] == 's') {
            x->start_ms = ts;
            return;
        }
        if (x->end_ms < 0 || ts > x->end_ms) x->end_ms = ts;
        double sec = em__jv_num(o, "seconds", -1);
        if (sec >= 0) x->seconds = sec;
        char *err = em__jv_strdup(o, "error");
        if (err) { free(x->error); x->error = err; }
        if (e[5] == 'e') {
            x->has_end = 1;
            char *st = em__jv_strdup(o, "status");
            x->state = st == NULL || status_ok(st) ? AT_OK : AT_FAILED;
            if (x->state == AT_FAILED && !x->error) x->error = em__strdup(st);
            free(st);
            x->rec_in = em__jv_int(o, "records_in", 0);
            x->rec_out = em__jv_int(o, "records_out", 0);
            x->b_in = em__jv_int(o, "bytes_in", 0);
            x->b_out = em__jv_int(o, "bytes_out", 0);
            x->spill = em__jv_int(o, "spill_bytes", 0);
            x->fetch_wait_ms = em__jv_num(o, "fetch_wait_ms", 0);
        } else {
            x->has_failed = 1;
            x->state = AT_FAILED;
        }
        if (x->state == AT_FAILED && !(x->has_end && x->has_failed)) /* the second of the two adds nothing */
            add_mark(r, ts, "task_failed", x->rank, "action %d stage %d part %d attempt %d on r%d failed: %s", a, s,
                     x->part, x->attempt, x->rank, x->error ? x->error : "(no message)");
    } else if (!strcmp(e, "rank_fenced")) {
        int v = (int)em__jv_int(o, "victim", -1);
        note_rank(r, v);
        char *why = em__jv_strdup(o, "reason");
        add_mark(r, ts, e, v, "r%d fenced (%s), silent %lld ms; epoch %lld", v, why ? why : "no reason given",
                 em__jv_int(o, "silent_ms", -1), em__jv_int(o, "epoch", -1));
        free(why);
    } else if (!strcmp(e, "election_start")) {
        add_mark(r, ts, e, (int)em__jv_int(o, "candidate", -1), "election by r%lld: leader r%lld silent %lld ms (epoch %lld)",
                 em__jv_int(o, "candidate", -1), em__jv_int(o, "previous_leader", -1), em__jv_int(o, "silent_ms", -1),
                 em__jv_int(o, "epoch", -1));
    } else if (!strcmp(e, "leader_elected")) {
        add_mark(r, ts, e, (int)em__jv_int(o, "leader", -1), "r%lld leads from epoch %lld (previous leader r%lld)",
                 em__jv_int(o, "leader", -1), em__jv_int(o, "epoch", -1), em__jv_int(o, "previous_leader", -1));
    } else if (!strcmp(e, "recompute")) {
        if (s >= 0) get_stage(r, a, s)->recomputes++;
        add_mark(r, ts, e, (int)em__jv_int(o, "lost_rank", -1), "recompute shuffle %lld map part %lld (output lost with r%lld)",
                 em__jv_int(o, "shuffle", -1), em__jv_int(o, "map_part", -1), em__jv_int(o, "lost_rank", -1));
    } else if (!strcmp(e, "retry")) {
        if (s >= 0) get_stage(r, a, s)->retries++;
        members_text(o, buf, sizeof buf);
        add_mark(r, ts, e, -1, "retry %s", buf);
    }
}

/* Reads one event log into h; malformed lines are reported on errf as "FILE:LINE: ..." and skipped.
 * Returns 0, or -1 if the file cannot be read. */
#define MAX_REPORTED 20 /* malformed lines named one by one; the rest are counted */

/* Says why line lineno is skipped (the first MAX_REPORTED of a file). */
static void skipped(history *h, FILE *errf, const char *path, long long lineno, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void skipped(history *h, FILE *errf, const char *path, long long lineno, const char *fmt, ...)
{
    if (h->bad_lines++ >= MAX_REPORTED) return;
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    fprintf(errf, WHO ": %s:%lld: %s; line skipped\n", path, lineno, why);
}

static int history_load(history *h, const char *path, FILE *errf)
{
    long long bad0 = h->bad_lines;
    gzFile g = gzopen(path, "rb");
    if (!g) {
        fprintf(errf, WHO ": cannot open %s: %s\n", path, strerror(errno ? errno : ENOENT));
        return -1;
    }
    size_t cap = 1 << 16, len = 0;
    char *line = em__realloc(NULL, cap);
    long long lineno = 0;
    int rc = 0, eof = 0;
    while (!eof) {
        len = 0;
        int too_long = 0;
        for (;;) { /* one whole line, however long */
            if (!gzgets(g, line + len, (int)(cap - len))) {
                eof = 1;
                break;
            }
            len += strlen(line + len);
            if (len && line[len - 1] == '\n') break;
            if (len > MAX_LINE) too_long = 1, len = 0;
            if (cap - len < 2) line = em__realloc(line, cap *= 2);
        }
        int errnum;
        const char *gerr = gzerror(g, &errnum);
        if (eof && errnum != Z_OK && errnum != Z_STREAM_END) {
            fprintf(errf, WHO ": %s:%lld: cannot read further: %s\n", path, lineno + 1, gerr);
            rc = -1;
        }
        if (len == 0 && eof && !too_long) break;
        lineno++;
        h->lines++;
        if (too_long) {
            skipped(h, errf, path, lineno, "line longer than %u bytes", MAX_LINE);
            continue;
        }
        if (line[len - 1] == '\n') line[--len] = 0;
        if (len && line[len - 1] == '\r') line[--len] = 0;
        if (len == 0) continue; /* blank lines are allowed */
        em__jv o;
        size_t col;
        const char *what;
        if (em__json_parse_line(line, len, &o, &col, &what) < 0) {
            skipped(h, errf, path, lineno, "column %zu: expected %s", col, what);
            continue;
        }
        const em__jv *ev = em__jv_get(&o, "event"), *ts = em__jv_get(&o, "ts");
        if (!ev || ev->type != EM__JV_STR || !ts || ts->type != EM__JV_NUM) {
            skipped(h, errf, path, lineno, "an event needs \"event\" (string) and \"ts\" (number)");
        } else
            apply_event(h, &o);
        em__jv_release(&o);
    }
    if (h->bad_lines - bad0 > MAX_REPORTED)
        fprintf(errf, WHO ": %s: %lld more malformed lines skipped\n", path, h->bad_lines - bad0 - MAX_REPORTED);
    free(line);
    gzclose(g);
    return rc;
}

static void history_release(history *h)
{
    for (int i = 0; i < h->nruns; i++) {
        run *r = &h->runs[i];
        free(r->app_id); free(r->program); free(r->argv); free(r->status);
        for (int k = 0; k < r->nat; k++) free(r->at[k].error);
        for (int k = 0; k < r->nst; k++) free(r->st[k].name);
        for (int k = 0; k < r->nmk; k++) { free(r->mk[k].event); free(r->mk[k].text); }
        free(r->at); free(r->hash); free(r->st); free(r->mk);
    }
    free(h->runs);
    memset(h, 0, sizeof *h);
}

/* ---- per-stage numbers ----------------------------------------------------------------------------------------- */

typedef struct stage_sum {
    const stage *st;
    int index;             /* colour */
    int tasks;             /* distinct parts with an ok attempt */
    int attempts, failed, unfinished;
    double duration;       /* s, -1 unknown */
    double median, max;    /* s over ok attempts, -1 none */
    long long rec_in, rec_out, b_in, b_out, spill;
    double fetch_wait_ms;
} stage_sum;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

static double attempt_seconds(const attempt *x)
{
    if (x->seconds >= 0) return x->seconds;
    if (x->start_ms >= 0 && x->end_ms >= x->start_ms) return (x->end_ms - x->start_ms) / 1000.0;
    return -1;
}

static void stage_summary(const run *r, int si, stage_sum *out)
{
    const stage *st = &r->st[si];
    memset(out, 0, sizeof *out);
    out->st = st;
    out->index = si;
    double *secs = em__realloc(NULL, (size_t)(r->nat + 1) * sizeof *secs);
    int *parts = em__realloc(NULL, (size_t)(r->nat + 1) * sizeof *parts);
    int ns = 0, np = 0;
    double first = -1, last = -1;
    for (int i = 0; i < r->nat; i++) {
        const attempt *x = &r->at[i];
        if (x->action != st->action || x->stage != st->stage) continue;
        out->attempts++;
        if (x->start_ms >= 0 && (first < 0 || x->start_ms < first)) first = x->start_ms;
        if (x->end_ms > last) last = x->end_ms;
        if (x->state == AT_FAILED) out->failed++;
        if (x->state == AT_RUNNING) out->unfinished++;
        if (x->state != AT_OK) continue;
        parts[np++] = x->part;
        double s = attempt_seconds(x);
        if (s >= 0) secs[ns++] = s;
        out->rec_in += x->rec_in, out->rec_out += x->rec_out, out->b_in += x->b_in, out->b_out += x->b_out;
        out->spill += x->spill, out->fetch_wait_ms += x->fetch_wait_ms;
    }
    qsort(parts, (size_t)np, sizeof *parts, cmp_int);
    for (int i = 0; i < np; i++) out->tasks += i == 0 || parts[i] != parts[i - 1];
    qsort(secs, (size_t)ns, sizeof *secs, cmp_double);
    out->median = ns == 0 ? -1 : ns % 2 ? secs[ns / 2] : (secs[ns / 2 - 1] + secs[ns / 2]) / 2;
    out->max = ns ? secs[ns - 1] : -1;
    if (st->seconds >= 0) out->duration = st->seconds;
    else if (st->submitted_ms >= 0 && st->completed_ms >= st->submitted_ms)
        out->duration = (st->completed_ms - st->submitted_ms) / 1000.0;
    else if (first >= 0 && last >= first) out->duration = (last - first) / 1000.0;
    else out->duration = -1;
    free(secs);
    free(parts);
}

/* Indexes of r->st ordered by (action, stage). Free with free(). */
static const run *order_run;
static int cmp_stage(const void *a, const void *b)
{
    const stage *x = &order_run->st[*(const int *)a], *y = &order_run->st[*(const int *)b];
    if (x->action != y->action) return (x->action > y->action) - (x->action < y->action);
    return (x->stage > y->stage) - (x->stage < y->stage);
}

static int *stage_order(const run *r)
{
    int *o = em__malloc((size_t)(r->nst + 1) * sizeof *o);
    for (int i = 0; i < r->nst; i++) o[i] = i;
    order_run = r;
    qsort(o, (size_t)r->nst, sizeof *o, cmp_stage);
    return o;
}

/* A stage that completed without running a task: its output was still there (Spark says "skipped"). */
static const char *skipped_note(const stage_sum *x)
{
    return x->attempts == 0 && x->st->completed_ms >= 0 ? " (skipped)" : "";
}

/* When an attempt that never ended was lost: its rank's fencing after it started, else the end of the run. */
static double lost_at(const run *r, const attempt *x)
{
    for (int i = 0; i < r->nmk; i++)
        if (r->mk[i].rank == x->rank && !strcmp(r->mk[i].event, "rank_fenced") && r->mk[i].ts >= x->start_ms)
            return r->mk[i].ts;
    return r->last_ts;
}

/* ---- text ---------------------------------------------------------------------------------------------------- */

static const char *human_bytes(long long n, char *b, size_t cap)
{
    static const char *u[] = {"KiB", "MiB", "GiB", "TiB"};
    if (n < 1024) {
        snprintf(b, cap, "%lld B", n);
        return b;
    }
    double v = (double)n;
    for (int i = 0; i < 4; i++) {
        v /= 1024;
        if (v < 1024 || i == 3) {
            snprintf(b, cap, "%.1f %s", v, u[i]);
            break;
        }
    }
    return b;
}

static const char *fmt_secs(double s, char *b, size_t cap)
{
    if (s < 0) snprintf(b, cap, "-");
    else snprintf(b, cap, "%.3fs", s);
    return b;
}

static const char *fmt_skew(const stage_sum *x, char *b, size_t cap)
{
    if (x->median > 0) snprintf(b, cap, "%.2fx", x->max / x->median);
    else snprintf(b, cap, "-");
    return b;
}

static const char *fmt_time(double ms, char *b, size_t cap)
{
    if (ms < 0) {
        snprintf(b, cap, "unknown");
        return b;
    }
    time_t t = (time_t)(ms / 1000);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(b, cap, "%Y-%m-%d %H:%M:%S", &tm);
    return b;
}

/* "program args..." (job_start's argv may or may not repeat the program). */
static const char *run_cmdline(const run *r, char *b, size_t cap)
{
    const char *p = r->program ? r->program : "", *a = r->argv ? r->argv : "";
    size_t pl = strlen(p);
    if (*p && strncmp(a, p, pl) == 0 && (a[pl] == ' ' || a[pl] == 0)) snprintf(b, cap, "%s", a);
    else snprintf(b, cap, "%s%s%s", p, *p && *a ? " " : "", a);
    return b;
}

static double run_seconds(const run *r)
{
    if (r->seconds >= 0) return r->seconds;
    return r->first_ts >= 0 && r->last_ts >= r->first_ts ? (r->last_ts - r->first_ts) / 1000.0 : -1;
}

static const char *run_status(const run *r, char *b, size_t cap)
{
    if (!r->status) snprintf(b, cap, "unfinished (no job_end: still running, or the job died with its leader)");
    else if (status_ok(r->status)) snprintf(b, cap, "ok");
    else snprintf(b, cap, "failed (%s)", r->status);
    return b;
}

static void print_text(FILE *f, const history *h, const char *path)
{
    char b1[64], b2[64], b3[64], b4[64], b5[64], b6[64], b7[64], b8[256];
    fprintf(f, "event log %s: %lld lines", path, h->lines);
    if (h->bad_lines) fprintf(f, " (%lld malformed, skipped)", h->bad_lines);
    fprintf(f, "\n");
    for (int ri = 0; ri < h->nruns; ri++) {
        const run *r = &h->runs[ri];
        fprintf(f, "\njob %s", r->app_id ? r->app_id : "(no job_start)");
        if (r->program) fprintf(f, ": %s", run_cmdline(r, b8, sizeof b8));
        fprintf(f, "\n  ranks %d, started %s, duration %s, status %s\n", r->ranks >= 0 ? r->ranks : r->max_rank + 1,
                fmt_time(r->start_ms >= 0 ? r->start_ms : r->first_ts, b1, sizeof b1),
                fmt_secs(run_seconds(r), b2, sizeof b2), run_status(r, b8, sizeof b8));
        long long tf = 0;
        int fences = 0, elections = 0, recomputes = 0, retries = 0;
        for (int i = 0; i < r->nmk; i++) {
            const char *e = r->mk[i].event;
            tf += !strcmp(e, "task_failed");
            fences += !strcmp(e, "rank_fenced");
            elections += !strcmp(e, "leader_elected");
            recomputes += !strcmp(e, "recompute");
            retries += !strcmp(e, "retry");
        }
        int lost = 0;
        for (int i = 0; i < r->nat; i++) lost += r->at[i].state == AT_RUNNING;
        fprintf(f, "  %d stages, %d task attempts (%lld failed, %d never ended), %d ranks fenced, %d elections, "
                   "%d recomputes, %d retries\n",
                r->nst, r->nat, tf, lost, fences, elections, recomputes, retries);
        if (r->nst) {
            fprintf(f, "\n  %-6s %-5s %5s %8s %6s %4s %10s %9s %9s %7s %11s %11s %10s %10s %10s %9s  %s\n", "ACTION",
                    "STAGE", "TASKS", "ATTEMPTS", "FAILED", "LOST", "DURATION", "MEDIAN", "MAX", "SKEW", "RECORDS_IN",
                    "RECORDS_OUT", "BYTES_IN", "BYTES_OUT", "SPILL", "FETCH_WAIT", "NAME");
        }
        int *order = stage_order(r);
        for (int k = 0; k < r->nst; k++) {
            int si = order[k];
            stage_sum x;
            stage_summary(r, si, &x);
            char fw[32];
            snprintf(fw, sizeof fw, "%.0fms", x.fetch_wait_ms);
            fprintf(f, "  %-6d %-5d %5d %8d %6d %4d %10s %9s %9s %7s %11lld %11lld %10s %10s %10s %9s  %s%s\n",
                    x.st->action, x.st->stage, x.tasks, x.attempts, x.failed, x.unfinished,
                    fmt_secs(x.duration, b1, sizeof b1),
                    fmt_secs(x.median, b2, sizeof b2), fmt_secs(x.max, b3, sizeof b3), fmt_skew(&x, b4, sizeof b4),
                    x.rec_in, x.rec_out, human_bytes(x.b_in, b5, sizeof b5), human_bytes(x.b_out, b6, sizeof b6),
                    human_bytes(x.spill, b7, sizeof b7), fw, x.st->name ? x.st->name : "", skipped_note(&x));
        }
        free(order);
        if (r->nmk) {
            fprintf(f, "\n  failures and recoveries:\n");
            for (int i = 0; i < r->nmk; i++)
                fprintf(f, "  %+10.3fs  %-15s %s\n", (r->mk[i].ts - r->first_ts) / 1000.0, r->mk[i].event,
                        r->mk[i].text);
        }
    }
}

/* ---- HTML ---------------------------------------------------------------------------------------------------- */

static void html_esc(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default:
            /* XML 1.0 forbids most control characters even as references */
            if ((unsigned char)*s < 0x20 && *s != '\t' && *s != '\n') fputc('?', f);
            else fputc(*s, f);
        }
    }
}

static const char *const palette[] = {"#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2",
                                      "#edc948", "#9c755f", "#bab0ac", "#ff9da7", "#86bcb6"};
#define NPAL (sizeof palette / sizeof palette[0])

static double nice_step(double span)
{
    double raw = span / 10, p = pow(10, floor(log10(raw > 0 ? raw : 1e-3)));
    double m = raw / p;
    return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

static void html_timeline(FILE *f, const run *r)
{
    const int left = 70, width = 1000, row = 24, top = 30;
    int nranks = r->max_rank + 1 > r->ranks ? r->max_rank + 1 : r->ranks;
    if (nranks < 1) nranks = 1;
    double t0 = r->first_ts, t1 = r->last_ts;
    double span = (t1 - t0) / 1000.0;
    if (span <= 0) span = 0.001;
    double scale = width / span; /* px per second */
    int height = top + nranks * row + 30;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"timeline\" width=\"%d\" height=\"%d\" "
               "viewBox=\"0 0 %d %d\" role=\"img\" aria-label=\"tasks per rank over time\">\n",
            left + width + 20, height, left + width + 20, height);
    double step = nice_step(span);
    for (double t = 0; t <= span + 1e-9; t += step) {
        double x = left + t * scale;
        fprintf(f, "<line class=\"grid\" x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>"
                   "<text class=\"tick\" x=\"%.1f\" y=\"%d\">%gs</text>\n",
                x, top - 4, x, top + nranks * row, x, top - 8, t);
    }
    for (int k = 0; k < nranks; k++)
        fprintf(f, "<text class=\"rank\" x=\"%d\" y=\"%d\">r%d</text><line class=\"lane\" x1=\"%d\" y1=\"%d\" "
                   "x2=\"%d\" y2=\"%d\"/>\n",
                left - 8, top + k * row + 16, k, left, top + (k + 1) * row, left + width, top + (k + 1) * row);
    for (int i = 0; i < r->nmk; i++) { /* a fenced rank's lane is shaded from then on */
        const mark *m = &r->mk[i];
        if (strcmp(m->event, "rank_fenced") || m->rank < 0 || m->rank >= nranks) continue;
        double x = left + (m->ts - t0) / 1000.0 * scale;
        fprintf(f, "<rect class=\"fenced\" x=\"%.1f\" y=\"%d\" width=\"%.1f\" height=\"%d\"><title>r%d fenced</title>"
                   "</rect>\n",
                x, top + m->rank * row + 1, left + width - x, row - 2, m->rank);
    }
    for (int i = 0; i < r->nat; i++) {
        const attempt *x = &r->at[i];
        if (x->rank < 0 || x->rank >= nranks) continue;
        double end = x->end_ms >= 0 ? x->end_ms : lost_at(r, x);
        double sec = attempt_seconds(x);
        double start = x->start_ms >= 0 ? x->start_ms : sec >= 0 ? end - sec * 1000 : end;
        int si = 0;
        for (int k = 0; k < r->nst; k++)
            if (r->st[k].action == x->action && r->st[k].stage == x->stage) si = k;
        double bx = left + (start - t0) / 1000.0 * scale, bw = (end - start) / 1000.0 * scale;
        if (bw < 1) bw = 1;
        int by = top + x->rank * row + 4;
        const char *cls = x->state == AT_OK ? "ok" : x->state == AT_FAILED ? "failed" : "lost";
        const char *src = x->has_end ? "task_end" : x->has_failed ? "task_failed" : "task_start";
        fprintf(f, "<rect class=\"task %s\" data-ev=\"%s\" x=\"%.2f\" y=\"%d\" width=\"%.2f\" height=\"16\" "
                   "fill=\"%s\"><title>action %d stage %d ",
                cls, src, bx, by, bw, palette[si % NPAL], x->action, x->stage);
        html_esc(f, r->st[si].name);
        fprintf(f, " part %d attempt %d on r%d: %s, %.3f s", x->part, x->attempt, x->rank, cls, sec);
        if (x->error) {
            fputs(": ", f);
            html_esc(f, x->error);
        }
        fputs("</title></rect>\n", f);
        if (x->state == AT_FAILED)
            fprintf(f, "<text class=\"x\" x=\"%.2f\" y=\"%d\">&#215;</text>\n", bx + bw + 1, by + 13);
    }
    /* markers, fencing last so that it is on top of a recompute at the same moment */
    static const char *const order[] = {"retry", "recompute", "election_start", "leader_elected", "rank_fenced"};
    for (int k = 0; k < 5; k++)
    for (int i = 0; i < r->nmk; i++) {
        const mark *m = &r->mk[i];
        if (strcmp(m->event, order[k])) continue; /* task_failed: drawn on its bar */
        double x = left + (m->ts - t0) / 1000.0 * scale;
        fprintf(f, "<g class=\"mark %s\"><line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\"/>", m->event, x, top,
                x, top + nranks * row);
        if (m->rank >= 0 && m->rank < nranks)
            fprintf(f, "<circle cx=\"%.1f\" cy=\"%d\" r=\"5\"/>", x, top + m->rank * row + 12);
        fprintf(f, "<title>%+.3fs %s: ", (m->ts - t0) / 1000.0, m->event);
        html_esc(f, m->text);
        fputs("</title></g>\n", f);
    }
    fprintf(f, "<text class=\"tick\" x=\"%d\" y=\"%d\">time since the first event</text>\n", left,
            top + nranks * row + 20);
    fputs("</svg>\n", f);
}

static int write_html(const history *h, const char *path, const char *out)
{
    FILE *f = fopen(out, "w");
    if (!f) {
        fprintf(stderr, WHO ": cannot create %s: %s\n", out, strerror(errno));
        return -1;
    }
    char b1[64], b2[64], b3[64], b4[64], b5[64], b6[64], b7[64], b8[256];
    fputs("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n<title>Ember history: ", f);
    html_esc(f, h->nruns && h->runs[0].app_id ? h->runs[0].app_id : path);
    fputs("</title>\n<style>\n"
          "body{font:14px/1.4 system-ui,sans-serif;margin:24px;color:#222;background:#fff}\n"
          "h1{font-size:20px} h2{font-size:17px;margin-top:28px} table{border-collapse:collapse;margin:8px 0}\n"
          "th,td{border:1px solid #ccc;padding:3px 8px;text-align:right} th{background:#f3f3f3}\n"
          "td.l,th.l{text-align:left} .sw{display:inline-block;width:12px;height:12px;margin-right:6px}\n"
          ".fenced{fill:#d00;fill-opacity:0.08} .wide{overflow-x:auto} td{white-space:nowrap}\n"
          "svg.timeline{border:1px solid #ddd;background:#fcfcfc;max-width:100%;height:auto}\n"
          ".grid{stroke:#e4e4e4} .lane{stroke:#eee} .tick{font-size:11px;fill:#666;text-anchor:middle}\n"
          ".rank{font-size:12px;fill:#333;text-anchor:end} .task{stroke:#fff;stroke-width:0.5}\n"
          ".task.failed{stroke:#d00;stroke-width:2;fill-opacity:0.55} .task.lost{stroke:#d00;stroke-dasharray:3 2;"
          "fill-opacity:0.3} .x{fill:#d00;font-size:14px;font-weight:bold}\n"
          ".mark line{stroke-width:1.5;stroke-dasharray:4 3} .mark circle{stroke:#fff}\n"
          ".rank_fenced line,.rank_fenced circle{stroke:#d00;fill:#d00} .leader_elected line,.leader_elected circle"
          "{stroke:#7b2cbf;fill:#7b2cbf} .election_start line,.election_start circle{stroke:#c77dff;fill:#c77dff}\n"
          ".recompute line,.recompute circle{stroke:#e07a00;fill:#e07a00} .retry line{stroke:#999}\n"
          "li.task_failed,li.rank_fenced{color:#b00} li.leader_elected,li.election_start{color:#6a1b9a}\n"
          "</style>\n</head>\n<body>\n",
          f);
    fputs("<h1>Ember history</h1>\n<p>Event log <code>", f);
    html_esc(f, path);
    fprintf(f, "</code>: %lld lines", h->lines);
    if (h->bad_lines) fprintf(f, ", %lld malformed (skipped)", h->bad_lines);
    fputs(".</p>\n", f);
    for (int ri = 0; ri < h->nruns; ri++) {
        const run *r = &h->runs[ri];
        fputs("<h2>Job ", f);
        html_esc(f, r->app_id ? r->app_id : "(no job_start)");
        fputs("</h2>\n<p>", f);
        if (r->program) {
            fputs("<code>", f);
            html_esc(f, run_cmdline(r, b8, sizeof b8));
            fputs("</code><br/>", f);
        }
        fprintf(f, "%d ranks, started %s, duration %s, status <b>", r->ranks >= 0 ? r->ranks : r->max_rank + 1,
                fmt_time(r->start_ms >= 0 ? r->start_ms : r->first_ts, b1, sizeof b1),
                fmt_secs(run_seconds(r), b2, sizeof b2));
        html_esc(f, run_status(r, b8, sizeof b8));
        fputs("</b></p>\n<h3>Tasks per rank</h3>\n", f);
        html_timeline(f, r);
        fputs("<p>Bars are task attempts coloured by stage; red outline and &#215;: failed; dashed: never finished. "
              "Vertical lines: red fencing (the lane of a fenced rank is shaded from then on), purple election, orange "
              "recompute. Hover for details.</p>\n",
              f);
        fputs("<h3>Stages</h3>\n<div class=\"wide\"><table class=\"stages\">\n<tr><th class=\"l\">stage</th><th>action</th>"
              "<th>tasks</th><th>attempts</th><th>failed</th><th>lost</th><th>duration</th><th>median task</th><th>max task</th>"
              "<th>skew</th><th>records in</th><th>records out</th><th>bytes in</th><th>bytes out</th><th>spill</th>"
              "<th>fetch wait</th><th>retries</th><th>recomputes</th></tr>\n",
              f);
        int *order = stage_order(r);
        for (int k = 0; k < r->nst; k++) {
            int si = order[k];
            stage_sum x;
            stage_summary(r, si, &x);
            fprintf(f, "<tr><td class=\"l\"><span class=\"sw\" style=\"background:%s\"></span>%d ",
                    palette[si % NPAL], x.st->stage);
            html_esc(f, x.st->name);
            html_esc(f, skipped_note(&x));
            fprintf(f, "</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%d</td><td>%s</td><td>%s</td><td>%s</td>"
                       "<td>%s</td><td>%lld</td><td>%lld</td><td>%s</td><td>%s</td><td>%s</td><td>%.0f ms</td>"
                       "<td>%d</td><td>%d</td></tr>\n",
                    x.st->action, x.tasks, x.attempts, x.failed, x.unfinished, fmt_secs(x.duration, b1, sizeof b1),
                    fmt_secs(x.median, b2, sizeof b2), fmt_secs(x.max, b3, sizeof b3), fmt_skew(&x, b4, sizeof b4),
                    x.rec_in, x.rec_out, human_bytes(x.b_in, b5, sizeof b5), human_bytes(x.b_out, b6, sizeof b6),
                    human_bytes(x.spill, b7, sizeof b7), x.fetch_wait_ms, x.st->retries, x.st->recomputes);
        }
        free(order);
        fputs("</table></div>\n<h3>Failures and recoveries</h3>\n", f);
        if (!r->nmk) fputs("<p>None.</p>\n", f);
        else {
            fputs("<ul class=\"marks\">\n", f);
            for (int i = 0; i < r->nmk; i++) {
                fprintf(f, "<li class=\"%s\">%+.3fs <b>%s</b> ", r->mk[i].event, (r->mk[i].ts - r->first_ts) / 1000.0,
                        r->mk[i].event);
                html_esc(f, r->mk[i].text);
                fputs("</li>\n", f);
            }
            fputs("</ul>\n", f);
        }
    }
    fputs("</body>\n</html>\n", f);
    if (fclose(f) != 0) {
        fprintf(stderr, WHO ": cannot write %s: %s\n", out, strerror(errno));
        return -1;
    }
    return 0;
}

/* ---- the verb ------------------------------------------------------------------------------------------------ */

static void usage(FILE *out)
{
    fputs("usage: ember history [ID|FILE] [--html OUT.html]\n"
          "\n"
          "Summarizes the event log of a run: the job, its stages (tasks, duration, skew = slowest / median task,\n"
          "records and bytes in and out, spills, fetch waits), failures, fencing, elections and recomputes.\n"
          "\n"
          "  ID        a job id of the queue ($EMBER_HOME/jobs/ID/events.jsonl) or an app id\n"
          "            ($EMBER_HOME/events/ID.jsonl); without ID or FILE: the newest log in $EMBER_HOME/events\n"
          "  FILE      an event log (plain or gzip-compressed)\n"
          "  --html OUT.html   also write a self-contained page with a timeline of tasks per rank\n"
          "  -h, --help        print this help\n",
          out);
}

static int exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 && S_ISREG(st.st_mode);
}

/* An id names a file below $EMBER_HOME, so it may not reach outside it. */
static int id_ok(const char *s)
{
    if (!*s || *s == '.' || strlen(s) > 200) return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '-' ||
              *s == '_' || *s == '.'))
            return 0;
    return 1;
}

static const char *home_dir(char *b, size_t cap)
{
    const char *h = getenv("EMBER_HOME"), *u = getenv("HOME");
    if (h && *h) snprintf(b, cap, "%s", h);
    else snprintf(b, cap, "%s/.ember", u && *u ? u : ".");
    return b;
}

/* Tries p, then p.gz; copies the one that exists to out. */
static int try_path(const char *p, char *out, size_t cap)
{
    if (exists(p)) return snprintf(out, cap, "%s", p), 1;
    char gz[4200];
    snprintf(gz, sizeof gz, "%s.gz", p);
    if (exists(gz)) return snprintf(out, cap, "%s", gz), 1;
    return 0;
}

/* The newest *.jsonl or *.jsonl.gz in $EMBER_HOME/events. */
static int newest_log(char *out, size_t cap)
{
    char home[4096], dir[4200];
    snprintf(dir, sizeof dir, "%s/events", home_dir(home, sizeof home));
    DIR *d = opendir(dir);
    if (!d) return 0;
    double best = -1;
    for (struct dirent *e; (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        if (!(n > 6 && !strcmp(e->d_name + n - 6, ".jsonl")) && !(n > 9 && !strcmp(e->d_name + n - 9, ".jsonl.gz")))
            continue;
        char p[4500];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(p, &st) < 0 || !S_ISREG(st.st_mode)) continue;
        double t = (double)st.st_mtim.tv_sec + st.st_mtim.tv_nsec / 1e9;
        if (t > best) {
            best = t;
            snprintf(out, cap, "%s", p);
        }
    }
    closedir(d);
    return best >= 0;
}

static int resolve(const char *arg, char *out, size_t cap)
{
    char home[4096], p[4500];
    if (!arg) {
        if (newest_log(out, cap)) return 0;
        fprintf(stderr, WHO ": no event logs in %s/events; name an ID or a FILE\n", home_dir(home, sizeof home));
        return -1;
    }
    if (try_path(arg, out, cap)) return 0;
    if (!strchr(arg, '/') && id_ok(arg)) {
        home_dir(home, sizeof home);
        int digits = strspn(arg, "0123456789") == strlen(arg);
        if (digits) {
            snprintf(p, sizeof p, "%s/jobs/%s/events.jsonl", home, arg);
            if (try_path(p, out, cap)) return 0;
        }
        snprintf(p, sizeof p, "%s/events/%s.jsonl", home, arg);
        if (try_path(p, out, cap)) return 0;
        if (digits)
            fprintf(stderr, WHO ": no event log for '%s' (neither %s/jobs/%s/events.jsonl[.gz] nor %s/events/%s.jsonl[.gz])\n",
                    arg, home, arg, home, arg);
        else
            fprintf(stderr, WHO ": no event log for '%s' (no %s/events/%s.jsonl[.gz])\n", arg, home, arg);
        return -1;
    }
    fprintf(stderr, WHO ": %s: no such file\n", arg);
    return -1;
}

int em__cli_history(int argc, char **argv)
{
    const char *arg = NULL, *html = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--html") || !strncmp(argv[i], "--html=", 7)) {
            if (argv[i][6] == '=') html = argv[i] + 7;
            else if (i + 1 < argc) html = argv[++i];
            else {
                fprintf(stderr, WHO ": --html needs a file name\n");
                return 2;
            }
            if (!*html) {
                fprintf(stderr, WHO ": --html needs a file name\n");
                return 2;
            }
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, WHO ": unknown option '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        } else if (arg) {
            fprintf(stderr, WHO ": one ID or FILE at a time ('%s' and '%s')\n", arg, argv[i]);
            return 2;
        } else
            arg = argv[i];
    }
    char path[4600];
    if (resolve(arg, path, sizeof path) < 0) return 1;
    history h = {0};
    int rc = history_load(&h, path, stderr);
    if (rc == 0 && h.nruns == 0) {
        fprintf(stderr, WHO ": %s holds no events\n", path);
        rc = -1;
    }
    if (h.nruns) {
        print_text(stdout, &h, path);
        if (html && write_html(&h, path, html) < 0) rc = -1;
    }
    history_release(&h);
    return rc < 0 ? 1 : 0;
}
