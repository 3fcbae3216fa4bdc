/* action.c — start-up, collective actions and shutdown of a job (DESIGN sections 2 and 6).
 *
 * An action is collective: every rank enters it in the same order and numbers it the same way. The leader runs
 * the driver; every rank (the leader too) keeps executing tasks on its executor thread; the leader then sends the
 * result to every live rank point-to-point, so main() sees the same value everywhere. If the leader changes
 * during an action, the new leader's main thread takes over as driver for the same action.
 *
 * Shutdown never hangs: each rank tells the leader BYE, the leader answers FIN once every live rank said BYE,
 * and a watchdog _exit()s the process if MPI_Finalize (or anything else) takes longer than the grace period.
 */
#include "operators/sinks/sink.h"
#include "runtime/events.h"
#include "runtime/log.h"
#include "runtime/progress.h"
#include "scheduler/sched.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <sys/stat.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <stdint.h>
#include <unistd.h>

/* Messages that arrived on main_mb before main() wanted them (a result of a later action, an early BYE). */
typedef struct stash {
    em__msg *head;
} stash;
static stash main_stash;

static em__msg *stash_take(int type, uint32_t action, int match_action)
{
    for (em__msg **pp = &main_stash.head; *pp; pp = &(*pp)->next) {
        em__msg *m = *pp;
        uint32_t a = 0;
        if (m->len >= 4) memcpy(&a, m->payload, 4);
        if (m->hdr->type == type && (!match_action || a == action)) {
            *pp = m->next;
            m->next = NULL;
            return m;
        }
    }
    return NULL;
}

static void stash_put(em__msg *m)
{
    m->next = main_stash.head;
    main_stash.head = m;
}

int em_rank(const em_ctx *ctx) { return ctx->rt.rank; }
int em_size(const em_ctx *ctx) { return ctx->rt.size; }
int em_is_leader(const em_ctx *ctx) { return em__rt_leader((em__rt *)&ctx->rt) == ctx->rt.rank; }

int em_default_partitions(const em_ctx *ctx)
{
    return ctx->rt.cfg.partitions > 0 ? (int)ctx->rt.cfg.partitions : 4 * ctx->rt.size;
}

/* Writes the status file atomically (write a temp file, then rename over the final name). */
static void write_status(em_ctx *ctx, const char *text)
{
    const char *path = ctx->rt.cfg.status_file;
    if (!path || !*path || atomic_load(&ctx->rt.fenced)) return;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.r%d.tmp", path, ctx->rt.rank);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        EM_LOG_W("cannot write the status file %s", tmp);
        return;
    }
    ssize_t w = write(fd, text, strlen(text));
    (void)w;
    fsync(fd);
    close(fd);
    if (rename(tmp, path) < 0) EM_LOG_W("cannot rename %s to %s", tmp, path);
}

static int env_rank(void)
{
    const char *v = getenv("OMPI_COMM_WORLD_RANK");
    if (!v) v = getenv("PMI_RANK");
    return v ? atoi(v) : 0;
}

/* The event log of this run: app id from rank 0's start time and pid (every rank knows rank 0's pid). */
static double job_t0;

static void open_events(em_ctx *ctx, int argc, char **argv)
{
    char app[64], ts[20];
    time_t now = time(NULL);
    struct tm tmv;
    gmtime_r(&now, &tmv);
    strftime(ts, sizeof ts, "%Y%m%d%H%M%S", &tmv);
    snprintf(app, sizeof app, "app-%s-%d", ts, (int)(ctx->rt.pids ? ctx->rt.pids[0] : getpid()));
    job_t0 = em__now_s();
    if (em__events_open(ctx->rt.cfg.event_log, app, ctx->rt.rank) < 0) return;
    char args[2048] = "";
    size_t l = 0;
    for (int i = 1; i < argc && l + 8 < sizeof args; i++) {
        const char *q = em__json_str(argv[i]);
        int n = snprintf(args + l, sizeof args - l, "%s\"%s\"", i > 1 ? "," : "", q);
        if (n < 0 || (size_t)n >= sizeof args - l) break;
        l += (size_t)n;
    }
    em__event("job_start", "\"app_id\":\"%s\",\"ranks\":%d,\"program\":\"%s\",\"argv\":[%s]", app, ctx->rt.size,
              em__json_str(argc > 0 ? argv[0] : ""), args);
}

/* In the same object as em_init, so that every Ember program has it (see EM__JOB_MARKER). */
__attribute__((used)) static const char job_marker[] = EM__JOB_MARKER;

int em_init(int *argc, char ***argv, em_ctx **out)
{
    /* Shuffle buffers, messages and fetched buckets are big and short-lived: keep freed memory in the heap rather
     * than returning it to the system at once, so the next buffer does not fault every page in again (costly in
     * VMs: a shuffle spent most of its time in page faults). */
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    int rc, help = 0;
    *out = NULL;
    em_ctx *ctx = em__calloc(1, sizeof *ctx);
    if ((rc = em__config_load(&ctx->rt.cfg, argc, argv, &help)) < 0) {
        if (env_rank() == 0) fprintf(stderr, "ember: %s\n", em_last_error());
        em__config_release(&ctx->rt.cfg);
        free(ctx);
        return rc;
    }
    if (help) {
        if (env_rank() == 0) em__config_print_help(&ctx->rt.cfg, stdout);
        exit(0);
    }
    em__log_setup(env_rank(), em__log_parse_level(ctx->rt.cfg.log_level));
    pthread_mutex_init(&ctx->graph_mu, NULL);
    pthread_mutex_init(&ctx->act_mu, NULL);
    em__cond_init(&ctx->act_cv);
    if ((rc = em__rt_start(&ctx->rt, argc, argv)) < 0) {
        fprintf(stderr, "ember: %s\n", em_last_error());
        return rc;
    }
    em__log_setup(ctx->rt.rank, em__log_parse_level(ctx->rt.cfg.log_level));
    if (ctx->rt.rank == 0) write_status(ctx, "running\n");
    open_events(ctx, *argc, *argv);
    em__progress_init(ctx->rt.cfg.progress);
    if ((rc = em__fault_init(ctx)) < 0) {
        if (ctx->rt.rank == 0) fprintf(stderr, "ember: %s\n", em_last_error());
        return rc;
    }
    em__store_init(&ctx->rt);
    if ((rc = em__executor_start(ctx)) < 0) return rc;
    EM_LOG_I("started: %d ranks, pid %d on %s", ctx->rt.size, (int)getpid(), em__comm_host());
    *out = ctx;
    return 0;
}

/* Runs one collective action; result gets the combined op-specific bytes. */
/* em_save_text's output directory: refuse a finished one, prepare it, and after the tasks mark it complete. */
static int save_prepare(const char *dir)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/_SUCCESS", dir);
    if (access(p, F_OK) == 0) return em__fail(EM_EEXISTS, "save: %s already holds a complete output (_SUCCESS)", dir);
    if (mkdir(dir, 0755) < 0 && errno != EEXIST) return em__fail(EM_EIO, "save: cannot create %s: %s", dir, strerror(errno));
    snprintf(p, sizeof p, "%s/_temporary", dir);
    if (mkdir(p, 0755) < 0 && errno != EEXIST) return em__fail(EM_EIO, "save: cannot create %s: %s", p, strerror(errno));
    return 0;
}

static int save_commit(const char *dir)
{
    char p[4096];
    snprintf(p, sizeof p, "%s/_temporary", dir);
    DIR *d = opendir(p);
    if (d) { /* attempts that lost the race, and files of dead ranks */
        for (struct dirent *e; (e = readdir(d));) {
            if (e->d_name[0] == '.') continue;
            char f[4096 + 256];
            snprintf(f, sizeof f, "%s/%s", p, e->d_name);
            unlink(f);
        }
        closedir(d);
    }
    rmdir(p);
    snprintf(p, sizeof p, "%s/_SUCCESS", dir);
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return em__fail(EM_EIO, "save: cannot create %s: %s", p, strerror(errno));
    close(fd);
    return 0;
}

static int run_action(em_ctx *ctx, em__node *node, em__op op, int64_t op_arg, const char *extra, size_t extra_len,
                      em__buf *result)
{
    em__rt *rt = &ctx->rt;
    pthread_mutex_lock(&ctx->act_mu);
    uint32_t a = ++ctx->action_seq;
    pthread_cond_broadcast(&ctx->act_cv);
    pthread_mutex_unlock(&ctx->act_mu);
    int rc;
    const em__node *bad = em__node_find_error(node);
    if (bad) { /* a source that could not be planned: the same on every rank, so no communication needed */
        rc = em__fail(bad->err_code, "%s", bad->err);
        if (em_is_leader(ctx)) EM_LOG_E("%s", em_last_error());
        ctx->job_failed = 1;
        return rc;
    }
    double t0 = em__now_s();
    em__event("action_start", "\"action\":%u,\"op\":%d", a, (int)op);
    for (;;) {
        if (em__rt_leader(rt) == rt->rank) {
            rc = op == EM__OP_SAVE ? save_prepare(extra) : 0;
            if (rc == 0) rc = em__driver_run(ctx, a, node, op, op_arg, extra, extra_len, result);
            if (rc == 1) continue; /* lost the lead mid-action: wait for the new leader's result */
            if (rc == 0 && op == EM__OP_SAVE) rc = save_commit(extra);
            const char *err = rc < 0 ? em_last_error() : "";
            size_t blen = rc < 0 ? strlen(err) : result->len;
            em__msg *m = em__msg_new(EM__MSG_ACTION_RESULT, 12 + blen);
            int32_t st = rc;
            uint32_t l = (uint32_t)blen;
            memcpy(m->payload, &a, 4);
            memcpy(m->payload + 4, &st, 4);
            memcpy(m->payload + 8, &l, 4);
            if (blen) memcpy(m->payload + 12, rc < 0 ? (const void *)err : result->p, blen);
            em__send_all(rt, m);
            break;
        }
        em__msg *m = stash_take(EM__MSG_ACTION_RESULT, a, 1);
        if (!m) m = em__mbox_get(&rt->main_mb, 200);
        if (!m) continue;
        uint32_t ma = 0;
        if (m->len >= 4) memcpy(&ma, m->payload, 4);
        if (m->hdr->type == EM__MSG_ACTION_RESULT && ma == a) {
            em__rd rd;
            em__rd_init(&rd, m->payload + 4, m->len - 4);
            rc = (int32_t)em__rd_u32(&rd);
            uint32_t blen;
            const void *body = em__rd_bytes(&rd, &blen);
            if (rd.err) rc = em__fail(EM_ECOMM, "malformed action result from r%d", m->hdr->src);
            else if (rc < 0) em__fail(rc, "%.*s", (int)blen, (const char *)body);
            else {
                result->len = 0;
                em__buf_add(result, body, blen);
            }
            em__msg_free(m);
            break;
        }
        if (m->hdr->type == EM__MSG_WAKE || (m->hdr->type == EM__MSG_ACTION_RESULT && ma < a)) em__msg_free(m);
        else stash_put(m);
    }
    em__event("action_end", "\"action\":%u,\"status\":%d,\"seconds\":%.6f", a, rc, em__now_s() - t0);
    if (rc < 0) {
        ctx->job_failed = 1;
        if (em_is_leader(ctx)) EM_LOG_E("%s", em_last_error());
    }
    return rc;
}

int em_count(em_ds *ds, int64_t *out)
{
    em__node *n = (em__node *)ds;
    em__buf res;
    em__buf_init(&res);
    int rc = run_action(n->ctx, n, EM__OP_COUNT, 0, NULL, 0, &res);
    if (rc == 0) {
        EM_ASSERT(res.len == 8);
        memcpy(out, res.p, 8);
    }
    em__buf_release(&res);
    return rc;
}

int em_reduce_i64(em_ds *ds, em_agg agg, int64_t *out)
{
    em__node *n = (em__node *)ds;
    if ((int)agg < EM_AGG_COUNT || agg > EM_AGG_MAX) return em__fail(EM_EINVAL, "em_reduce_i64: unknown aggregation %d", agg);
    em__buf res;
    em__buf_init(&res);
    int rc = run_action(n->ctx, n, EM__OP_AGG, agg, NULL, 0, &res);
    if (rc == 0) {
        int64_t cnt, acc;
        EM_ASSERT(res.len == 16);
        memcpy(&cnt, res.p, 8);
        memcpy(&acc, res.p + 8, 8);
        if (agg == EM_AGG_COUNT) *out = cnt;
        else if (cnt == 0 && agg != EM_AGG_SUM) rc = em__fail(EM_EINVAL, "em_reduce_i64: min/max of an empty dataset");
        else *out = acc;
    }
    em__buf_release(&res);
    return rc;
}

/* COLLECT and TAKE: the records, at most `limit` of them. */
static int collect_records(em__node *n, em__op op, size_t limit, em_records *out)
{
    memset(out, 0, sizeof *out);
    em__buf res;
    em__buf_init(&res);
    int64_t arg = limit > INT64_MAX ? INT64_MAX : (int64_t)limit;
    int rc = run_action(n->ctx, n, op, arg, NULL, 0, &res);
    if (rc < 0) {
        em__buf_release(&res);
        return rc;
    }
    size_t cnt = 0, pos = 0;
    em_rec r;
    while (cnt < limit && em__rec_next(res.p, res.len, &pos, &r) > 0) cnt++;
    out->recs = em__malloc(sizeof(em_rec) * (cnt ? cnt : 1));
    pos = 0;
    while (out->n < cnt && em__rec_next(res.p, res.len, &pos, &r) > 0) out->recs[out->n++] = r;
    out->mem = res.p; /* recs point into it */
    return 0;
}

int em_collect(em_ds *ds, em_records *out) { return collect_records((em__node *)ds, EM__OP_COLLECT, SIZE_MAX, out); }

int em_take(em_ds *ds, size_t n, em_records *out)
{
    if (n == 0) { /* still collective: every rank returns at once, the same way */
        memset(out, 0, sizeof *out);
        out->recs = em__malloc(sizeof(em_rec));
        return 0;
    }
    return collect_records((em__node *)ds, EM__OP_TAKE, n, out);
}

int em_foreach(em_ds *ds, em_filter_fn fn, void *arg)
{
    em__node *p = (em__node *)ds;
    EM_ASSERT(p && fn);
    em__node *n = em__node_add(p->ctx, EM__K_FOREACH, p, p->nparts);
    n->filter = fn;
    n->arg = arg;
    int64_t cnt;
    return em_count((em_ds *)n, &cnt);
}

void em_records_free(em_records *r)
{
    if (!r) return;
    free(r->recs);
    free(r->mem);
    memset(r, 0, sizeof *r);
}

int em__save(em_ds *ds, const char *dir, const char *sink, const char *args)
{
    em__node *n = (em__node *)ds;
    if (!dir || !*dir) return em__fail(EM_EINVAL, "save: no output directory given");
    if (!em__sink_find(sink)) return em__fail(EM_EINVAL, "save: unknown output format '%s'", sink);
    if (!args) args = "";
    size_t dl = strlen(dir), sl = strlen(sink), al = strlen(args);
    char *extra = em__malloc(dl + sl + al + 3);
    memcpy(extra, dir, dl + 1);
    memcpy(extra + dl + 1, sink, sl + 1);
    memcpy(extra + dl + sl + 2, args, al + 1);
    em__buf res;
    em__buf_init(&res);
    int rc = run_action(n->ctx, n, EM__OP_SAVE, 0, extra, dl + sl + al + 3, &res);
    em__buf_release(&res);
    free(extra);
    return rc;
}

int em_save_text(em_ds *ds, const char *dir, const char *fmt)
{
    if (fmt && *fmt && strcmp(fmt, "str_i64") != 0) return em__fail(EM_EINVAL, "em_save_text: unknown format '%s'", fmt);
    return em__save(ds, dir, fmt && *fmt ? fmt : "text", "");
}

/* ---- shutdown ---- */

static int watchdog_status;
static int64_t watchdog_ms;

static void *watchdog_main(void *arg)
{
    (void)arg;
    struct timespec ts = {watchdog_ms / 1000, (watchdog_ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
    fflush(stdout);
    fflush(stderr);
    _exit(watchdog_status);
}

int em_finalize(em_ctx *ctx, int status)
{
    if (!ctx) return status;
    em__rt *rt = &ctx->rt;
    fflush(stdout);
    fflush(stderr);
    watchdog_status = status;
    watchdog_ms = rt->cfg.exit_grace_ms + 2 * rt->cfg.timeout_ms;
    pthread_t wd;
    if (pthread_create(&wd, NULL, watchdog_main, NULL) == 0) pthread_detach(wd);

    /* BYE / FIN handshake: bounded by failure detection (a dead rank is fenced and no longer awaited). */
    uint8_t *bye = em__calloc((size_t)rt->size, 1);
    int sent_bye_to = -1;
    for (;;) {
        int leader = em__rt_leader(rt);
        if (leader == rt->rank) {
            for (em__msg *m; (m = stash_take(EM__MSG_BYE, 0, 0));) {
                bye[m->hdr->src] = 1;
                em__msg_free(m);
            }
            int waiting = 0;
            for (int r = 0; r < rt->size; r++)
                if (r != rt->rank && em__rt_is_alive(rt, r) && !bye[r]) waiting++;
            if (!waiting) {
                em__send_all(rt, em__msg_new(EM__MSG_FIN, 0));
                break;
            }
        } else if (sent_bye_to != leader) {
            em__send(rt, leader, em__msg_new(EM__MSG_BYE, 0));
            sent_bye_to = leader;
        }
        em__msg *m = em__mbox_get(&rt->main_mb, 100);
        if (!m) continue;
        if (m->hdr->type == EM__MSG_FIN && m->hdr->src == em__rt_leader(rt)) {
            em__msg_free(m);
            break;
        }
        if (m->hdr->type == EM__MSG_BYE) bye[m->hdr->src] = 1;
        em__msg_free(m);
    }
    free(bye);
    em__event("job_end", "\"status\":%d,\"seconds\":%.6f", status, em__now_s() - job_t0);
    em__events_close();
    if (em_is_leader(ctx) && !atomic_load(&rt->fenced)) {
        char text[32];
        snprintf(text, sizeof text, "exit %d\n", status);
        write_status(ctx, text);
    }
    fflush(stdout);
    em__executor_stop(ctx);
    em__rt_stop(rt);
    em__store_drop_all(); /* deletes spilled blocks */
    em__results_drop();
    for (em__msg *m; (m = main_stash.head);) {
        main_stash.head = m->next;
        em__msg_free(m);
    }
    em__tracker_free(ctx);
    em__graph_release(ctx);
    em__config_release(&rt->cfg);
    em__comm_finalize(status);
    free(ctx);
    return status;
}
