/* fault.c — deterministic fault injection, part of the product (DESIGN section 6): --ember-fault=SPEC.
 *
 *   SPEC    = ACTION ":" WHO { ":" COND }
 *   ACTION  = "kill" (SIGKILL self) | "exit" (exit with code=N, default 1) | "stop" (SIGSTOP self; with
 *             resume-after-ms=N a helper process sends SIGCONT after N ms)
 *   WHO     = "rank=N" | "leader" (whoever leads when the condition first holds)
 *   COND    = "stage=N" | "after-tasks=N" (N tasks finished on this rank, in that stage if given)
 *           | "during=map|shuffle|fetch|reduce|result|serve" | "action=N" | "after-ms=N" (since start)
 *
 * A fault fires once, at the first fault point where every condition holds: at the start of a task
 * (map/reduce/shuffle), while serving or doing a fetch (fetch/shuffle), right before a task's result is sent
 * (result), or right after this rank started sending a fetch answer above Open MPI's eager size (serve: the peer
 * then finds the sender dead while it pulls the data). "after-ms" is checked by a timer thread as well, so it fires
 * even on an idle rank.
 */
#include "runtime/log.h"
#include "scheduler/sched.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct fault {
    int action; /* 0 kill, 1 exit, 2 stop */
    int rank;   /* -1: leader */
    int code;
    int stage;       /* -1: any */
    int after_tasks; /* -1: none */
    int during;      /* -1: any; else EM__FP_* class, see below */
    int act;         /* action number, -1: any */
    int64_t after_ms, resume_ms;
    int fired;
    char spec[128];
} fault;

enum { D_MAP, D_SHUFFLE, D_FETCH, D_REDUCE, D_RESULT, D_SERVE };

static fault faults[EM__MAX_FAULTS];
static int nfaults;
static _Atomic int tasks_done_any;
static int tasks_done_stage[64];
static pthread_mutex_t fault_mu = PTHREAD_MUTEX_INITIALIZER;

static int parse_fault(const char *spec, fault *f)
{
    memset(f, 0, sizeof *f);
    f->rank = -2;
    f->code = 1;
    f->stage = f->after_tasks = f->during = f->act = -1;
    f->after_ms = f->resume_ms = -1;
    snprintf(f->spec, sizeof f->spec, "%s", spec);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", spec);
    char *save = NULL;
    char *tok = strtok_r(buf, ":", &save);
    if (!tok) return -1;
    if (!strcmp(tok, "kill")) f->action = 0;
    else if (!strcmp(tok, "exit")) f->action = 1;
    else if (!strcmp(tok, "stop")) f->action = 2;
    else return em__fail(EM_EINVAL, "--ember-fault=%s: '%s' is not kill, exit or stop", spec, tok);
    while ((tok = strtok_r(NULL, ":", &save))) {
        char *eq = strchr(tok, '=');
        const char *v = eq ? eq + 1 : "";
        if (eq) *eq = 0;
        char *end = NULL;
        long long n = strtoll(v, &end, 10);
        int num_ok = eq && *v && end && !*end && n >= 0;
        if (!strcmp(tok, "leader") && !eq) f->rank = -1;
        else if (!strcmp(tok, "rank") && num_ok) f->rank = (int)n;
        else if (!strcmp(tok, "code") && num_ok) f->code = (int)n;
        else if (!strcmp(tok, "stage") && num_ok) f->stage = (int)n;
        else if (!strcmp(tok, "after-tasks") && num_ok) f->after_tasks = (int)n;
        else if (!strcmp(tok, "action") && num_ok) f->act = (int)n;
        else if (!strcmp(tok, "after-ms") && num_ok) f->after_ms = n;
        else if (!strcmp(tok, "resume-after-ms") && num_ok) f->resume_ms = n;
        else if (!strcmp(tok, "during") && eq) {
            static const char *names[] = {"map", "shuffle", "fetch", "reduce", "result", "serve"};
            f->during = -1;
            for (int i = 0; i < 6; i++)
                if (!strcmp(v, names[i])) f->during = i;
            if (f->during < 0)
                return em__fail(EM_EINVAL, "--ember-fault=%s: during=%s is not map, shuffle, fetch, reduce, result or serve",
                                spec, v);
        } else
            return em__fail(EM_EINVAL, "--ember-fault=%s: cannot parse '%s%s%s'", spec, tok, eq ? "=" : "", v);
    }
    if (f->rank == -2) return em__fail(EM_EINVAL, "--ember-fault=%s: say which rank (rank=N or leader)", spec);
    return 0;
}

static void fire(em_ctx *ctx, fault *f)
{
    f->fired = 1;
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    EM_LOG_W("fault injection: %s fires now (at %.3f ms since the epoch)", f->spec, now.tv_sec * 1e3 + now.tv_nsec / 1e6);
    fflush(stdout);
    switch (f->action) {
    case 0: kill(getpid(), SIGKILL); break;
    case 1: _exit(f->code);
    case 2:
        if (f->resume_ms >= 0) {
            pid_t me = getpid();
            if (fork() == 0) {
                usleep((useconds_t)(f->resume_ms * 1000));
                kill(me, SIGCONT);
                _exit(0);
            }
        }
        raise(SIGSTOP);
        EM_LOG_W("fault injection: resumed after SIGSTOP");
        break;
    }
    (void)ctx;
}

static int who_matches(em_ctx *ctx, const fault *f)
{
    /* "leader" fires only on a rank that leads and has seen no leader change: killing "the leader" must not
     * cascade through every newly elected one (name that one by rank=N). */
    if (f->rank == -1) return em_is_leader(ctx) && atomic_load(&ctx->rt.leader_changes) == 0;
    return f->rank == ctx->rt.rank;
}

static void *timer_main(void *arg)
{
    em_ctx *ctx = arg;
    for (;;) {
        usleep(5000);
        int64_t el = em__now_ms() - ctx->rt.t0_ms;
        int left = 0;
        pthread_mutex_lock(&fault_mu);
        for (int i = 0; i < nfaults; i++) {
            fault *f = &faults[i];
            if (f->fired || f->after_ms < 0) continue;
            left++;
            if (el >= f->after_ms && f->stage < 0 && f->after_tasks < 0 && f->during < 0 && f->act < 0 && who_matches(ctx, f))
                fire(ctx, f);
        }
        pthread_mutex_unlock(&fault_mu);
        if (!left) return NULL;
    }
}

static em_ctx *fault_ctx;
/* Bytes of a fetch answer past which during=serve fires: far above Open MPI's eager limits (vader's is 4 KiB), so
 * the receiver pulls the data from this rank's memory after the send has started. */
#define SERVE_BYTES 65536
static void on_fetch(void) { em__fault_point(fault_ctx, EM__FP_FETCH, NULL); }
static void on_send(int type, size_t len)
{
    if (type == EM__MSG_FETCH_RESP && len > SERVE_BYTES) em__fault_point(fault_ctx, EM__FP_SERVE, NULL);
}

int em__fault_init(em_ctx *ctx)
{
    fault_ctx = ctx;
    if (ctx->rt.cfg.nfault) em__fetch_hook = on_fetch;
    int rc;
    for (int i = 0; i < ctx->rt.cfg.nfault; i++)
        if ((rc = parse_fault(ctx->rt.cfg.fault[i], &faults[nfaults++])) < 0) return rc;
    for (int i = 0; i < nfaults; i++)
        if (faults[i].during == D_SERVE) em__comm_send_hook = on_send;
    int timed = 0;
    for (int i = 0; i < nfaults; i++) timed |= faults[i].after_ms >= 0;
    if (timed) {
        pthread_t t;
        if (pthread_create(&t, NULL, timer_main, ctx) == 0) pthread_detach(t);
    }
    return 0;
}

void em__fault_point(em_ctx *ctx, int point, const em__task *t)
{
    if (!nfaults) return;
    pthread_mutex_lock(&fault_mu);
    if (point == EM__FP_RESULT && t) { /* a task just finished */
        atomic_fetch_add(&tasks_done_any, 1);
        if (t->stage < 64) tasks_done_stage[t->stage]++;
    }
    int64_t el = em__now_ms() - ctx->rt.t0_ms;
    for (int i = 0; i < nfaults; i++) {
        fault *f = &faults[i];
        if (f->fired || !who_matches(ctx, f)) continue;
        if (f->after_ms >= 0 && el < f->after_ms) continue;
        if (f->act >= 0 && (!t || t->action != (uint32_t)f->act)) continue;
        if (f->stage >= 0 && (!t || t->stage != (uint32_t)f->stage)) continue;
        if (f->during >= 0) {
            int d = point == EM__FP_FETCH ? D_FETCH : point == EM__FP_RESULT ? D_RESULT : point == EM__FP_SERVE ? D_SERVE : D_MAP;
            /* a shuffle is its fetches; reduce/map are task starts (stage kinds come with the shuffle) */
            if (!(f->during == d || (f->during == D_SHUFFLE && d == D_FETCH) || (f->during == D_REDUCE && d == D_MAP)))
                continue;
        } else if (point == EM__FP_RESULT || point == EM__FP_SERVE) {
            continue; /* without during=result/serve, faults fire at task starts */
        }
        if (f->after_tasks >= 0) {
            int done = f->stage >= 0 && f->stage < 64 ? tasks_done_stage[f->stage] : atomic_load(&tasks_done_any);
            if (done < f->after_tasks) continue;
        }
        fire(ctx, f);
    }
    pthread_mutex_unlock(&fault_mu);
}
