/* stream.c — the micro-batch driver of the streaming engine: agreeing on batch boundaries, running a batch, the
 * exactly-once commit, follow mode and stopping (shared DESIGN.md §7; the semantics are in the em_stream_* section
 * of include/ember.h; windows and accumulators are in window.c, the keyed window state and the checkpoint's format
 * in keystate.c).
 *
 * How one query runs (every rank runs this same code, SPMD, DESIGN §2):
 *
 *   1. Agreement. Batch boundaries must be the same on every rank, and only actions give every rank the same bytes.
 *      So a 1-partition source node (the "poll") reads the end offsets of the log (and whether a stop was
 *      requested) inside a task, and em_collect hands its one record to every rank. The first such action (the
 *      "load") also carries the bytes of the checkpoint's manifest, so every rank starts from the same checkpoint
 *      even if the leader commits a new one before a slow rank gets to read the disk. Later polls ride in the
 *      batches' actions: one action per batch, not two.
 *   2. State partitioned by key. The window state is cut into K key partitions, K = the log's partitions, a key's
 *      partition being the one `ember log append` puts it in (em__key_part). Partition p's state lives on its home,
 *      rank p mod size: the tasks that touch it are pinned there (scheduler/driver.c), so no other rank holds or
 *      merges it (keystate.c). A task that runs elsewhere (its home died) first rebuilds the state from the
 *      checkpoint and the kept batches. Each task writes its partition's state file into the checkpoint directory,
 *      which must therefore be on a file system every rank sees.
 *   3. A batch, fused mode (no transform: the usual case). One action, its poll riding along in task 0: task p
 *      first finishes the previous batch of partition p (takes out the windows that batch's watermark closed: their
 *      rows are the task's output; writes the state file), then folds log partition p's new range straight into
 *      sorted partials (wtask.c) and merges them into the state. No partials travel. The commit after the action is
 *      the previous batch's; an action that reads nothing finishes the last batch when no batch follows at once
 *      (the input's end, a stop, a follow-mode pause), so rows are not held back.
 *      With a transform (which may change keys) a batch is two actions: its tasks' partials, grouped by key
 *      partition, collected by every rank (kept until committed, so that any rank can rebuild any partition), then
 *      a close task per key partition on its home that merges its group, takes out the closed windows and writes
 *      the state file. (No shuffle either way: a shuffle leaves its map output in the block store for the life of
 *      the job, unbounded growth in follow mode.)
 *   4. Commit. The leader merges the rows of the key partitions (window by window, by key: the output is the same
 *      as if one rank held all the state), appends them to the output file, fsyncs it and the state files of the
 *      batch, then writes the manifest (offsets, watermark, counters, output length, the state files' sizes and
 *      crcs) to a temporary file, fsyncs and renames it over the old one; on a commit thread, while the next batch
 *      runs (see "the commit" below). On start the output is cut back to the length the checkpoint records: rows
 *      appended by a run that died before its commit disappear and are written again, exactly once. Every rank
 *      keeps the rows (as collected) of batches not yet known to be committed (it reads the manifest's header after
 *      each batch), so a new leader elected after the old one died between a batch and its commit writes them
 *      itself: a commit always writes "rows of every batch after the one on disk".
 *
 * Stopping: a signal handler only sets a flag (em_stream_stop); the main loop of that rank then creates
 * CHECKPOINT/stop, and the next poll task (on whatever rank it runs) reports it, so all ranks agree to stop at the
 * same batch boundary. The leader removes the file when the query ends.
 */
#include "scheduler/stream.h"

#include "operators/dataset.h"
#include "operators/sources/streamlog.h"
#include "runtime/events.h"
#include "runtime/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define MIN_SPLIT 10000 /* records: a log range is not cut into smaller pieces */

__extension__ typedef unsigned __int128 u128;

static volatile sig_atomic_t stop_requested;
void em_stream_stop(void) { stop_requested = 1; }


static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = em__malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* ---- the poll: end offsets (and the checkpoint) agreed through an action ----
 * One record with key "E": u8 stop requested, then u64 end offset of each log partition. The load node adds one
 * with key "C": the checkpoint file's bytes (absent when there is none). */
typedef struct poll_src {
    char *log_dir, *stop_path, *ckpt_path;
    int with_ckpt;
} poll_src;

static void poll_free(void *p)
{
    poll_src *s = p;
    if (!s) return;
    free(s->log_dir);
    free(s->stop_path);
    free(s->ckpt_path);
    free(s);
}


static int poll_compute(const em__node *n, int part, em_emitter *sink)
{
    const poll_src *s = n->src;
    char err[600] = "";
    em__log_topic *t = NULL;
    em__buf b;
    em__buf_init(&b);
    (void)part;
    int rc = em__log_open(s->log_dir, &t, err, sizeof err);
    if (rc == 0) {
        int np = em__log_partitions(t);
        em__buf_grow(&b, 1 + 8 * (size_t)np);
        b.p[0] = access(s->stop_path, F_OK) == 0;
        uint64_t *ends = em__calloc((size_t)np, sizeof *ends);
        rc = em__log_end_offsets(t, ends, err, sizeof err);
        for (int p = 0; p < np; p++) em__put64(b.p + 1 + 8 * p, ends[p]);
        b.len = 1 + 8 * (size_t)np;
        free(ends);
    }
    em__log_close(t);
    if (rc < 0) {
        em__fail(rc, "%s", *err ? err : em_strerror(rc));
        goto out;
    }
    if ((rc = em_emit(sink, "E", 1, b.p, (uint32_t)b.len)) < 0) goto out;
    if (s->with_ckpt) {
        b.len = 0;
        rc = em__read_file(s->ckpt_path, &b);
        if (rc == EM_ENOENT) rc = 0;
        else if (rc == 0 && b.len > UINT32_MAX) rc = em__fail(EM_ETOOBIG, "%s: checkpoint over 4 GiB", s->ckpt_path);
        else if (rc == 0) rc = em_emit(sink, "C", 1, b.p, (uint32_t)b.len);
    }
out:
    em__buf_release(&b);
    return rc < 0 ? rc : 0;
}

static em_ds *poll_node(em_ctx *ctx, const char *log_dir, const char *stop_path, const char *ckpt_path, int with_ckpt)
{
    em__node *n = em__node_add(ctx, EM__K_SOURCE, NULL, 1);
    poll_src *s = em__calloc(1, sizeof *s);
    s->log_dir = em__strdup(log_dir);
    s->stop_path = em__strdup(stop_path);
    s->ckpt_path = em__strdup(ckpt_path);
    s->with_ckpt = with_ckpt;
    n->src = s;
    n->src_free = poll_free;
    n->src_compute = poll_compute;
    return (em_ds *)n;
}

/* ---- the query's state ---- */

/* The rows of one batch: the row records its close tasks emitted (sorted runs of keys and accumulators per key
 * partition and window). Only the leader turns them into text, on its commit thread while the next batch runs; the
 * other ranks keep them unformatted until the checkpoint on disk covers them (or until one of them becomes the
 * leader and commits them). */
typedef struct seg {
    uint64_t batch;
    em_records r;
} seg;

static void segs_free(seg *g, size_t n)
{
    for (size_t i = 0; i < n; i++) em_records_free(&g[i].r);
}

typedef struct stream {
    em_ctx *ctx;
    const em_stream_opts *o;
    int np;            /* log partitions */
    uint64_t *off;     /* next offset to read, per partition */
    uint64_t *ends;    /* the last agreed end offsets */
    uint64_t *target;  /* until_end: the end offsets at start-up */
    uint64_t batch;    /* the last batch folded into the state (0: the initial state) */
    int64_t max_seen;  /* largest event time seen, INT64_MIN: none */
    int64_t wm;        /* watermark, INT64_MIN: none */
    uint64_t events, late, bad, rows;
    int kparts;        /* key partitions of the window state */
    int fused;         /* the key partitions are the log partitions: one action per batch (run_fused) */
    int unfinished;    /* fused: batch s->batch read events, and the next action must finish it */
    struct {           /* what the next commit records: the state after batch cv.batch (see snap) */
        uint64_t batch, events, late, bad;
        uint64_t *off;
        int64_t max_seen, wm;
    } cv;
    uint8_t *parts;    /* kparts x (u64 size, u32 crc32): the state files of batch `batch` (the manifest's) */
    em__kstore *ks;    /* the key partitions held on this rank, the kept partials */
    seg *segs;         /* output rows of batches not known to be committed, by batch */
    size_t nsegs, scap;
    char *out_abs;     /* the output file, absolute */
    char *ckpt_path, *tmp_path, *stop_path, *ckdir;
    em__wtask_arg *args;
    int stop_file_made;
    struct committer *cm; /* the leader's commit thread, started by its first commit */
} stream;

/* Forgets the rows and the kept partials of batches <= c (the checkpoint on disk covers them). */
static void trim_rows(stream *s, int64_t c)
{
    if (s->ks) em__kstore_trim(s->ks, c);
    size_t k = 0;
    while (k < s->nsegs && (int64_t)s->segs[k].batch <= c) k++;
    if (!k) return;
    segs_free(s->segs, k);
    memmove(s->segs, s->segs + k, (s->nsegs - k) * sizeof *s->segs);
    s->nsegs -= k;
}

/* ---- the checkpoint (its format is drawn in keystate.c) ---- */

#define CK_HEAD 24

/* What the next commit records := the state as it is now, after batch s->batch. */
static void snap(stream *s)
{
    s->cv.batch = s->batch;
    memcpy(s->cv.off, s->off, (size_t)s->np * sizeof *s->off);
    s->cv.max_seen = s->max_seen;
    s->cv.wm = s->wm;
    s->cv.events = s->events;
    s->cv.late = s->late;
    s->cv.bad = s->bad;
}

/* The aggregate as the checkpoint records it (keystate.c draws the field). */
static uint32_t agg_code(const em_stream_opts *o)
{
    if (o->agg != EM_STREAM_USER) return (uint32_t)o->agg;
    uint8_t sz[4];
    em__put32(sz, (uint32_t)o->combine->acc_size);
    uLong crc = crc32_z(0L, (const Bytef *)o->combine->name, strlen(o->combine->name));
    crc = crc32_z(crc, sz, 4);
    return EM_STREAM_USER | (uint32_t)(crc & 0xFFFFFF) << 8;
}

/* The manifest of batch s->cv.batch, unsealed (the committer sets the output length and the crc: em__ckpt_seal). */
static void ck_encode(const stream *s, em__buf *b)
{
    const em_stream_opts *o = s->o;
    uint8_t *offs = em__malloc(8 * (size_t)s->np);
    for (int p = 0; p < s->np; p++) em__put64(offs + 8 * p, s->cv.off[p]);
    em__ckpt c = {.version = 3, .batch = s->cv.batch, .window_ms = o->window_ms, .slide_ms = o->slide_ms,
                  .lateness_ms = o->lateness_ms, .agg = agg_code(o), .nlog = (uint32_t)s->np, .offsets = offs,
                  .max_seen = s->cv.max_seen, .wm = s->cv.wm, .events = s->cv.events, .late = s->cv.late,
                  .bad = s->cv.bad,
                  .rows = s->rows, .out_path = (const uint8_t *)s->out_abs, .out_len = (uint32_t)strlen(s->out_abs),
                  .kparts = s->kparts};
    em__ckpt_encode(&c, s->parts, b);
    free(offs);
}

/* Loads the checkpoint's bytes (every rank, from the same bytes): offsets, watermark, counters, key partitions;
 * the window state stays on disk for the close tasks (keystate.c). Returns 0, EM_EPARSE (corrupt) or EM_EINVAL
 * (written by a different query), with the message set. */
static int ck_load(stream *s, const uint8_t *p, size_t n, uint64_t *out_bytes)
{
    const em_stream_opts *o = s->o;
    const char *path = s->ckpt_path;
    em__ckpt c;
    int rc = em__ckpt_parse(p, n, path, s->kparts, &c);
    if (rc < 0) return rc;
    if (c.window_ms != o->window_ms || c.slide_ms != o->slide_ms || c.lateness_ms != o->lateness_ms ||
        c.agg != agg_code(o)) {
        const em_stream_agg ca = (em_stream_agg)(c.agg & 255);
        return em__fail(EM_EINVAL, "%s was written by a different query (--window %" PRId64 "ms --slide %" PRId64
                        "ms --lateness %" PRId64 "ms --agg %s%s): use another checkpoint directory", path, c.window_ms,
                        c.slide_ms, c.lateness_ms, em_stream_agg_name(ca),
                        ca == EM_STREAM_USER && o->agg == EM_STREAM_USER ? " of another name or acc_size" : "");
    }
    if (c.nlog != (uint32_t)s->np)
        return em__fail(EM_EINVAL, "%s: the checkpoint is for a log of %u partitions, %s has %d", path, c.nlog,
                        o->log_dir, s->np);
    if (strlen(s->out_abs) != c.out_len || memcmp(c.out_path, s->out_abs, c.out_len) != 0)
        return em__fail(EM_EINVAL, "%s: the checkpoint's output file is %.*s, not %s: use the same --out", path,
                        (int)c.out_len, (const char *)c.out_path, s->out_abs);
    s->batch = c.batch;
    *out_bytes = c.out_bytes;
    for (int q = 0; q < s->np; q++) s->off[q] = em__get64(c.offsets + 8 * q);
    s->max_seen = c.max_seen;
    s->wm = c.wm;
    s->events = c.events;
    s->late = c.late;
    s->bad = c.bad;
    s->rows = c.rows;
    s->kparts = c.kparts;
    free(s->parts);
    s->parts = em__calloc((size_t)s->kparts, 12);
    if (c.parts) memcpy(s->parts, c.parts, 12 * (size_t)s->kparts);
    return 0;
}

/* The committed batch and output length from the checkpoint's header on disk: 0, or EM_ENOENT (none yet). */
static int ck_head(const stream *s, int64_t *batch, uint64_t *out_bytes)
{
    uint8_t h[CK_HEAD];
    int fd = open(s->ckpt_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return EM_ENOENT;
    ssize_t r = pread(fd, h, sizeof h, 0);
    close(fd);
    if (r != (ssize_t)sizeof h || memcmp(h, "EMWCKPT", 7) != 0 || h[7] < '1' || h[7] > '3') return EM_ENOENT;
    *batch = (int64_t)em__get64(h + 8);
    *out_bytes = em__get64(h + 16);
    return 0;
}

/* The leader cannot commit: this process ends, and the survivors' new leader retries (see em_stream_run). */
__attribute__((noreturn)) static void commit_failed(const char *what, const char *path)
{
    EM_LOG_E("stream: cannot %s %s: %s; this rank leaves so that another one retries the commit", what, path,
             strerror(errno));
    fflush(stderr);
    _exit(1);
}

static void write_all(int fd, const void *p, size_t n, const char *path)
{
    const uint8_t *q = p;
    while (n) {
        ssize_t w = write(fd, q, n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) commit_failed("write", path);
        q += w;
        n -= (size_t)w;
    }
}

static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0) commit_failed("fsync the directory", dir);
    close(fd);
}

static const char header_row[] = "window_start,window_end,key,value\n";

/* ---- the commit ----
 * The leader commits each batch on a thread of its own, while the next batch runs: the rows of a batch (about
 * 25 MB in the benchmark) and the checkpoint (about 12 MB) take as long to write and fsync as the batch takes to
 * compute, and the order of the steps below, not the thread that runs them, is what makes a commit exactly once.
 * One job at a time: the main thread waits for the previous job before it hands over the next (so the checkpoint
 * on disk is never more than one batch behind), and before the query returns. The thread touches only the job
 * (files, buffers it owns), never the stream's state, and makes no MPI call. A failure ends the process
 * (commit_failed), as a failed commit on the main thread did: the survivors' new leader commits instead. */
typedef struct commit_job {
    uint64_t batch;
    int64_t c;       /* the batch the checkpoint on disk covers (-1: none) */
    uint64_t ob;     /* the output length it records */
    seg *segs;       /* rows of the batches after c, in output order */
    size_t nsegs, scap;
    em__buf ck;      /* the new checkpoint, unsealed (ck_encode) */
    int kparts;
    uint8_t *parts;  /* the state files it names: kparts x (u64 size, u32 crc) */
} commit_job;

typedef struct committer {
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int busy, quit;
    const char *out_abs, *tmp_path, *ckpt_path, *ckdir;
    char *state_dir;
    em__agg ag;
    int64_t window_ms;
    em__buf text; /* the rows of one batch as text, reused */
    commit_job job;
} committer;

/* Removes the state files (and temporary files) of batches before `before` from dir: the checkpoint on disk and
 * the one before it name none of them. */
static void remove_state_files(const char *dir, uint64_t before)
{
    DIR *d = opendir(dir);
    if (!d) return;
    size_t dl = strlen(dir);
    for (struct dirent *e; (e = readdir(d));) {
        const char *nm = e->d_name;
        size_t i = 0;
        while (nm[i] >= '0' && nm[i] <= '9') i++;
        if (i != 20 || nm[i] != '.' || strtoull(nm, NULL, 10) >= before) continue;
        char *p = em__malloc(dl + strlen(nm) + 2);
        sprintf(p, "%s/%s", dir, nm);
        unlink(p);
        free(p);
    }
    closedir(d);
}

/* The durable part of a commit: the output is first cut back to what the checkpoint on disk covers, then the rows of
 * later batches are appended, synced, and only then the new checkpoint replaces the old one: a crash anywhere in
 * between leaves the old checkpoint, and the next start cuts the output back to it. */
static void commit_write(committer *m, commit_job *j)
{
    double t0 = em__now_s();
    int fd = open(m->out_abs, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) commit_failed("open", m->out_abs);
    if (ftruncate(fd, (off_t)j->ob) < 0 || lseek(fd, (off_t)j->ob, SEEK_SET) < 0) commit_failed("truncate", m->out_abs);
    if (j->ob == 0) write_all(fd, header_row, sizeof header_row - 1, m->out_abs);
    size_t nbytes = 0;
    for (size_t i = 0; i < j->nsegs; i++) {
        m->text.len = 0;
        em__rows_text(&m->ag, m->window_ms, &j->segs[i].r, &m->text);
        write_all(fd, m->text.p, m->text.len, m->out_abs);
        nbytes += m->text.len;
    }
    if (fdatasync(fd) < 0) commit_failed("fsync", m->out_abs);
    off_t size = lseek(fd, 0, SEEK_CUR);
    /* The rows are on disk: their page cache pages go back now (clean, so at no cost), and the next commit's writes
     * get them again instead of pages the VM has not backed yet (the copy into fresh pages was most of the write). */
    posix_fadvise(fd, 0, size, POSIX_FADV_DONTNEED);
    close(fd);
    if (j->c < 0) { /* the output file may be new: make its directory entry durable */
        char *d = em__strdup(m->out_abs);
        char *sl = strrchr(d, '/');
        if (sl) *(sl == d ? sl + 1 : sl) = '\0';
        fsync_dir(d);
        free(d);
    }
    /* the state files the manifest names were written (not synced) by the close tasks, on whatever rank */
    int nfiles = 0;
    for (int k = 0; k < j->kparts; k++) {
        if (!em__get64(j->parts + 12 * (size_t)k)) continue;
        char *sp = em__state_path(m->ckdir, j->batch, k);
        int sfd = open(sp, O_RDONLY | O_CLOEXEC);
        if (sfd < 0 || fsync(sfd) < 0) commit_failed("fsync", sp);
        close(sfd);
        free(sp);
        nfiles++;
    }
    if (nfiles) fsync_dir(m->state_dir);
    em__ckpt_seal(&j->ck, (uint64_t)size);
    fd = open(m->tmp_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) commit_failed("create", m->tmp_path);
    write_all(fd, j->ck.p, j->ck.len, m->tmp_path);
    if (fsync(fd) < 0) commit_failed("fsync", m->tmp_path);
    close(fd);
    if (rename(m->tmp_path, m->ckpt_path) < 0) commit_failed("rename to", m->ckpt_path);
    fsync_dir(m->ckdir);
    if (j->c > 0) remove_state_files(m->state_dir, (uint64_t)j->c);
    EM_LOG_D("stream: commit of batch %" PRIu64 ": %.3f s (%zu bytes of rows, checkpoint %zu bytes)", j->batch,
             em__now_s() - t0, nbytes, j->ck.len);
}

static void *committer_main(void *arg)
{
    committer *m = arg;
    pthread_mutex_lock(&m->mu);
    for (;;) {
        while (!m->busy && !m->quit) pthread_cond_wait(&m->cv, &m->mu);
        if (!m->busy) break;
        pthread_mutex_unlock(&m->mu);
        commit_write(m, &m->job);
        pthread_mutex_lock(&m->mu);
        m->busy = 0;
        pthread_cond_broadcast(&m->cv);
    }
    pthread_mutex_unlock(&m->mu);
    return NULL;
}

/* Waits until the commit thread (if any) has finished its job: the checkpoint on disk then holds it. */
static void commit_wait(stream *s)
{
    committer *m = s->cm;
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    while (m->busy) pthread_cond_wait(&m->cv, &m->mu);
    pthread_mutex_unlock(&m->mu);
}

static committer *committer_start(stream *s)
{
    committer *m = em__calloc(1, sizeof *m);
    m->out_abs = s->out_abs;
    m->tmp_path = s->tmp_path;
    m->ckpt_path = s->ckpt_path;
    m->ckdir = s->ckdir;
    m->state_dir = path_join(s->ckdir, "state");
    m->ag = em__agg_of(s->o);
    m->window_ms = s->o->window_ms;
    em__buf_init(&m->text);
    em__buf_init(&m->job.ck);
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    /* signals (SIGINT, SIGTERM: a stop) go to the main thread, whose sleeps they cut short */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&m->th, NULL, committer_main, m);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        errno = rc;
        commit_failed("start the commit thread for", s->out_abs);
    }
    return m;
}

/* Waits for the last job and ends the thread. */
static void committer_stop(stream *s)
{
    committer *m = s->cm;
    if (!m) return;
    pthread_mutex_lock(&m->mu);
    m->quit = 1;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->th, NULL);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cv);
    segs_free(m->job.segs, m->job.nsegs);
    free(m->job.segs);
    free(m->job.parts);
    free(m->state_dir);
    em__buf_release(&m->job.ck);
    em__buf_release(&m->text);
    free(m);
    s->cm = NULL;
}

/* Leader: starts making the output and the checkpoint hold every batch up to s->batch (see commit_write); with
 * `sync`, returns only when they do. The rows handed over leave s->segs: if this process dies before they are
 * on disk, every other rank still holds them (it trims only what the checkpoint on disk covers). */
static void commit(stream *s, int sync)
{
    double t0 = em__now_s();
    commit_wait(s);
    double t1 = em__now_s();
    int64_t c = -1;
    uint64_t ob = 0;
    if (ck_head(s, &c, &ob) < 0) c = -1, ob = 0;
    trim_rows(s, c);
    if (c >= (int64_t)s->cv.batch) return; /* a previous leader already got this far */
    if (!s->cm) s->cm = committer_start(s);
    committer *m = s->cm;
    commit_job *j = &m->job;
    j->batch = s->cv.batch;
    j->c = c;
    j->ob = ob;
    /* the rows left after trim_rows are exactly those of batches > c: hand them over (the job's previous rows are
     * on disk: freed) */
    segs_free(j->segs, j->nsegs);
    seg *g = j->segs;
    size_t gc = j->scap;
    j->segs = s->segs;
    j->nsegs = s->nsegs;
    j->scap = s->scap;
    s->segs = g;
    s->scap = gc;
    s->nsegs = 0;
    j->ck.len = 0;
    ck_encode(s, &j->ck);
    j->kparts = s->kparts;
    j->parts = em__realloc(j->parts, 12 * (size_t)s->kparts);
    memcpy(j->parts, s->parts, 12 * (size_t)s->kparts);
    EM_LOG_D("stream: commit of batch %" PRIu64 " handed over: waited %.3f s for the previous one, encoded %zu "
             "bytes of checkpoint in %.3f s", s->cv.batch, t1 - t0, j->ck.len, em__now_s() - t1);
    pthread_mutex_lock(&m->mu);
    m->busy = 1;
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);
    if (sync) commit_wait(s);
}

/* After each batch: the leader commits; every other rank forgets the rows the checkpoint on disk already covers. */
static void after_batch(stream *s)
{
    if (em_is_leader(s->ctx)) {
        commit(s, 0);
        return;
    }
    int64_t c;
    uint64_t ob;
    if (ck_head(s, &c, &ob) == 0) trim_rows(s, c);
}

/* ---- one batch ---- */

/* Reads the poll record(s) of a collect into s->ends (and *stop); *ck and *cklen: the checkpoint bytes, if any. */
static int take_poll(stream *s, const em_records *r, int *stop, const uint8_t **ck, size_t *cklen)
{
    int got = 0;
    if (ck) *ck = NULL, *cklen = 0;
    for (size_t i = 0; i < r->n; i++) {
        const em_rec *x = &r->recs[i];
        if (x->klen == 1 && *(const char *)x->key == 'E' && x->vlen == 1 + 8 * (uint32_t)s->np) {
            const uint8_t *v = x->val;
            *stop = v[0];
            for (int p = 0; p < s->np; p++) s->ends[p] = em__get64(v + 1 + 8 * p);
            got = 1;
        } else if (x->klen == 1 && *(const char *)x->key == 'C' && ck) {
            *ck = x->val;
            *cklen = x->vlen;
        }
    }
    if (!got) return em__fail(EM_EPARSE, "stream: the poll of %s returned no end offsets (did the topic change its "
                                         "number of partitions?)", s->o->log_dir);
    return 0;
}

/* to[p] for the next batch: everything up to lim[p], or, above max_batch_events, a share of the cap proportional to
 * each partition's backlog (the remainder to the lowest partitions that still have records). A pure function of
 * (s->off, lim, cap), so it is the same on every rank and on a restart. Returns the records in the batch. */
static uint64_t plan_batch(const stream *s, const uint64_t *lim, uint64_t *to, int *capped)
{
    uint64_t total = 0, cap = s->o->max_batch_events;
    for (int p = 0; p < s->np; p++) total += lim[p] > s->off[p] ? lim[p] - s->off[p] : 0;
    *capped = cap && total > cap;
    if (!*capped) {
        for (int p = 0; p < s->np; p++) to[p] = lim[p] > s->off[p] ? lim[p] : s->off[p];
        return total;
    }
    uint64_t taken = 0;
    for (int p = 0; p < s->np; p++) {
        uint64_t avail = lim[p] > s->off[p] ? lim[p] - s->off[p] : 0;
        uint64_t take = (uint64_t)((u128)avail * cap / total);
        to[p] = s->off[p] + take;
        taken += take;
    }
    for (int p = 0; taken < cap; p = (p + 1) % s->np)
        if (to[p] < lim[p]) to[p]++, taken++;
    return cap;
}

/* Pieces of at most this many records, so that a batch with few partitions still keeps every rank busy. */
static uint64_t split_size(const stream *s, const uint64_t *to, uint64_t total)
{
    int ranges = 0;
    for (int p = 0; p < s->np; p++) ranges += to[p] > s->off[p];
    uint64_t want = 2 * (uint64_t)em_size(s->ctx);
    if ((uint64_t)ranges >= want) return 0;
    uint64_t piece = (total + want - 1) / want;
    return piece < MIN_SPLIT ? MIN_SPLIT : piece;
}

static void publish_stop(stream *s);

/* Takes the collected output r of batch s->batch's close or batch tasks: their counters (the state files for the
 * manifest, where the state is, the events' counters into *wb), and keeps r for the commit (its row records).
 * `phases` names the time spent, for the log line. */
static void take_parts(stream *s, em_records *r, em__wbatch *wb, const char *phases)
{
    const int size = em_size(s->ctx);
    uint64_t *by_rank = em__calloc((size_t)size, sizeof *by_rank), keys = 0, rows = 0;
    int got = 0;
    for (size_t i = 0; i < r->n; i++) {
        em__kstats st;
        if (!em__kstats_get(&r->recs[i], &st)) continue;
        EM_ASSERT(st.k >= 0 && st.k < s->kparts && st.rank >= 0 && st.rank < size);
        em__put64(s->parts + 12 * (size_t)st.k, st.size);
        em__put32(s->parts + 12 * (size_t)st.k + 8, st.crc);
        by_rank[st.rank] += st.keys;
        keys += st.keys;
        rows += st.rows;
        wb->events += st.events;
        wb->late += st.late;
        wb->bad += st.bad;
        if (st.max_t > wb->max_t) wb->max_t = st.max_t;
        got++;
    }
    EM_ASSERT(got == s->kparts);
    s->rows += rows;
    if (s->nsegs == s->scap) {
        s->scap = s->scap ? 2 * s->scap : 16;
        s->segs = em__realloc(s->segs, s->scap * sizeof *s->segs);
    }
    s->segs[s->nsegs++] = (seg){s->cv.batch, *r};
    memset(r, 0, sizeof *r);
    /* Where the state is: the event log's stream_state events (tests/e2e/windowcount.sh checks the split). */
    em__buf b;
    em__buf_init(&b);
    for (int q = 0; q < size; q++) {
        char t[32];
        int n = snprintf(t, sizeof t, "%s%" PRIu64, q ? "," : "", by_rank[q]);
        em__buf_add(&b, t, (size_t)n);
    }
    em__buf_add(&b, "", 1);
    em__event("stream_state", "\"batch\":%" PRIu64 ",\"key_partitions\":%d,\"keys\":%" PRIu64 ",\"keys_by_rank\":[%s]",
              s->cv.batch, s->kparts, keys, (const char *)b.p);
    EM_LOG_I("stream: batch %" PRIu64 ": %" PRIu64 " events (%" PRIu64 " late, %" PRIu64 " bad), %" PRIu64 " rows, %"
             PRIu64 " keys in the state (by rank: %s); %s", s->batch, wb->events, wb->late, wb->bad, rows, keys,
             (const char *)b.p, phases);
    em__buf_release(&b);
    free(by_rank);
}

/* Runs the close tasks of batch s->batch (kept in s->ks): each key partition's state takes the batch's partials
 * and gives up the windows the watermark closed; their rows are kept for the commit, and the state files they wrote
 * for the manifest. COLLECTIVE. */
static int close_batch(stream *s, double t0, const em__wbatch *wb)
{
    em_records r;
    double t1 = em__now_s();
    int rc = em_collect(em__kstore_close_ds(s->ks, s->batch), &r);
    if (rc < 0) return rc;
    em__wbatch logged = *wb; /* the close tasks add no events: the batch's counters, for the log line */
    char ph[64];
    snprintf(ph, sizeof ph, "partials %.3f s, close %.3f s", t1 - t0, em__now_s() - t1);
    take_parts(s, &r, &logged, ph);
    return 0;
}

/* The watermark after a batch whose events had the largest time max_t. */
static void advance_wm(stream *s, int64_t max_t)
{
    if (max_t > s->max_seen) s->max_seen = max_t;
    if (s->max_seen != INT64_MIN) {
        int64_t w = s->max_seen - s->o->lateness_ms; /* |max_seen| <= 2^62 and lateness <= 2^61: no overflow */
        if (w > s->wm) s->wm = w;
    }
}

static int poll_emit(void *arg, em_emitter *sink) { return poll_compute(arg, 0, sink); }

/* Fused mode (the log partitions are the key partitions: no transform): one action whose task p first finishes
 * the previous batch for key partition p (takes out the windows its watermark closed: their rows; writes its state
 * file), then reads partition p's range [s->off, to) of the new batch into the state of p, where it lives. So the
 * commit after it is the previous batch's, and the new batch is committed by the next action; with to == s->off
 * the action only finishes the previous batch. The poll rides along (*stop, s->ends). COLLECTIVE. */
static int run_fused(stream *s, const uint64_t *to, em_ds *pn, int *stop)
{
    snap(s); /* this action's tasks finish batch s->batch: its closed windows and state files */
    em__kstore_add_fused(s->ks, s->batch + 1, s->wm, s->off, to);
    s->unfinished = 0;
    for (int p = 0; p < s->np; p++) s->unfinished |= to[p] > s->off[p];
    em_records r;
    publish_stop(s);
    double t0 = em__now_s();
    int rc = em_collect(em__kstore_batch_ds(s->ks, s->batch + 1, poll_emit, (void *)pn), &r);
    if (rc < 0) return rc;
    if ((rc = take_poll(s, &r, stop, NULL, NULL)) < 0) {
        em_records_free(&r);
        return rc;
    }
    s->batch++;
    memcpy(s->off, to, (size_t)s->np * sizeof *to);
    em__wbatch wb = {0, 0, 0, INT64_MIN};
    char ph[64];
    snprintf(ph, sizeof ph, "batch %.3f s", em__now_s() - t0);
    take_parts(s, &r, &wb, ph);
    s->events += wb.events;
    s->late += wb.late;
    s->bad += wb.bad;
    advance_wm(s, wb.max_t);
    return 0;
}

/* Runs the batch [s->off, to): its tasks' partials, collected with the next poll (*stop, s->ends), then its close
 * tasks (fused mode: run_fused). COLLECTIVE. */
static int run_batch(stream *s, const uint64_t *to, uint64_t total, em_ds *pn, int *stop)
{
    if (s->fused) return run_fused(s, to, pn, stop);
    const em_stream_opts *o = s->o;
    em__wtask_arg *b = em__calloc(1, sizeof *b);
    b->o = o;
    b->wm = s->wm;
    b->kparts = s->kparts;
    b->next = s->args;
    s->args = b;
    em_ds *parts = em__wtask_dataset(s->ctx, b, s->off, to, split_size(s, to, total));
    /* The next poll rides along (one action per batch, not two): the end offsets and the stop flag as read while
     * the batch ran. */
    em_records r;
    publish_stop(s);
    double t0 = em__now_s();
    int rc = em_collect(em_union(parts, pn), &r);
    if (rc < 0) return rc;
    if ((rc = take_poll(s, &r, stop, NULL, NULL)) < 0) {
        em_records_free(&r);
        return rc;
    }
    em__wbatch wb;
    em__prun *runs;
    size_t *first;
    em__partials_index(&r, s->kparts, &runs, &first, &wb);
    memcpy(s->off, to, (size_t)s->np * sizeof *to);
    s->events += wb.events;
    s->late += wb.late;
    s->bad += wb.bad;
    advance_wm(s, wb.max_t);
    s->batch++;
    snap(s);
    em__kstore_add(s->ks, s->batch, s->wm, &r, runs, first);
    return close_batch(s, t0, &wb);
}

/* ---- the query ---- */

/* The output file's absolute path (its directory must exist). */
static int abs_out(const char *out, char **res)
{
    char *d = em__strdup(out), *sl = strrchr(d, '/');
    const char *base = sl ? sl + 1 : out;
    char *dir = sl ? (sl == d ? "/" : (*sl = '\0', d)) : ".";
    char real[PATH_MAX];
    int rc = 0;
    if (!*base) rc = em__fail(EM_EINVAL, "--out %s: names a directory, not a file", out);
    else if (!realpath(dir, real)) rc = em__fail(EM_ENOENT, "--out %s: %s: %s", out, dir, strerror(errno));
    else *res = path_join(strcmp(real, "/") == 0 ? "" : real, base);
    free(d);
    return rc;
}

static void stream_release(stream *s)
{
    committer_stop(s);
    em__kstore_free(s->ks);
    free(s->parts);
    free(s->cv.off);
    free(s->off);
    free(s->ends);
    free(s->target);
    segs_free(s->segs, s->nsegs);
    free(s->segs);
    free(s->out_abs);
    free(s->ckpt_path);
    free(s->tmp_path);
    free(s->stop_path);
    free(s->ckdir);
    for (em__wtask_arg *b = s->args, *nx; b; b = nx) {
        nx = b->next;
        free(b);
    }
}

static int check_opts(const em_stream_opts *o)
{
    if (!o->log_dir || !o->checkpoint_dir || !o->out_path)
        return em__fail(EM_EINVAL, "stream: the log, the checkpoint directory and the output file are required");
    if (o->window_ms <= 0 || o->window_ms > EM__STREAM_MAX_DURATION)
        return em__fail(EM_EINVAL, "--window must be more than 0 and at most 2^61 ms");
    if (o->slide_ms <= 0 || o->slide_ms > o->window_ms)
        return em__fail(EM_EINVAL, "--slide must be more than 0 and at most the window (%" PRId64 " ms)", o->window_ms);
    if (o->window_ms / o->slide_ms > EM__STREAM_MAX_WINDOWS_PER_EVENT)
        return em__fail(EM_EINVAL, "--window / --slide is %" PRId64 ": an event would fall into more than %d windows",
                        o->window_ms / o->slide_ms, EM__STREAM_MAX_WINDOWS_PER_EVENT);
    if (o->lateness_ms < 0 || o->lateness_ms > EM__STREAM_MAX_DURATION)
        return em__fail(EM_EINVAL, "--lateness must be at least 0 and at most 2^61 ms");
    if ((unsigned)o->agg > EM_STREAM_USER) return em__fail(EM_EINVAL, "stream: unknown aggregate %d", (int)o->agg);
    const em_stream_combine *u = o->combine;
    if (o->agg == EM_STREAM_USER &&
        (!u || !u->from_event || !u->merge || !u->format || !u->name || !*u->name || u->acc_size == 0 ||
         u->acc_size > EM_STREAM_ACC_MAX))
        return em__fail(EM_EINVAL, "stream: a user aggregate needs a combine with a name, from_event, merge and format, "
                                   "and an acc_size of 1 to %d bytes", EM_STREAM_ACC_MAX);
    if (o->trigger_ms < 0) return em__fail(EM_EINVAL, "--trigger must not be negative");
    return 0;
}

/* Sleeps until `until` (em__now_s() seconds), waking early when a stop is requested. */
static void sleep_until(double until)
{
    for (double now; !stop_requested && (now = em__now_s()) < until;) {
        double d = until - now > 0.05 ? 0.05 : until - now;
        struct timespec ts = {0, (long)(d * 1e9)};
        nanosleep(&ts, NULL);
    }
}

/* A stop asked on this rank becomes visible to every rank's next poll. */
static void publish_stop(stream *s)
{
    if (!stop_requested || s->stop_file_made) return;
    int fd = open(s->stop_path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    if (fd >= 0) {
        close(fd);
        s->stop_file_made = 1;
        EM_LOG_I("stream: stop requested; stopping after the current batch");
    }
}

static int poll(stream *s, em_ds *node, int *stop)
{
    em_records r;
    publish_stop(s);
    int rc = em_collect(node, &r);
    if (rc < 0) return rc;
    rc = take_poll(s, &r, stop, NULL, NULL);
    em_records_free(&r);
    return rc;
}

int em_stream_run(em_ctx *ctx, const em_stream_opts *o, em_stream_stats *st)
{
    stream s = {.ctx = ctx, .o = o, .max_seen = INT64_MIN, .wm = INT64_MIN};
    char err[600] = "";
    em__log_topic *t = NULL;
    em_records r = {0};
    int rc, stop = 0;
    if ((rc = check_opts(o)) < 0) goto out;
    if ((rc = em__log_open(o->log_dir, &t, err, sizeof err)) < 0) {
        em__fail(rc, "%s", err);
        goto out;
    }
    s.np = em__log_partitions(t);
    em__log_close(t);
    if ((rc = abs_out(o->out_path, &s.out_abs)) < 0) goto out;
    if (mkdir(o->checkpoint_dir, 0755) < 0 && errno != EEXIST) {
        rc = em__fail(EM_EIO, "cannot create the checkpoint directory %s: %s", o->checkpoint_dir, strerror(errno));
        goto out;
    }
    s.ckdir = em__strdup(o->checkpoint_dir);
    s.ckpt_path = path_join(o->checkpoint_dir, "checkpoint");
    s.tmp_path = path_join(o->checkpoint_dir, "checkpoint.tmp");
    s.stop_path = path_join(o->checkpoint_dir, "stop");
    s.off = em__calloc((size_t)s.np, sizeof *s.off);
    s.ends = em__calloc((size_t)s.np, sizeof *s.ends);
    s.target = em__calloc((size_t)s.np, sizeof *s.target);
    uint64_t *to = em__calloc((size_t)s.np, sizeof *to);
    /* A stop file left by an earlier run that died is stale: the leader removes it before the first poll. */
    if (em_is_leader(ctx)) unlink(s.stop_path);

    /* Start: every rank gets the same checkpoint bytes from one action, whatever the disk holds later. */
    em_ds *load = poll_node(ctx, o->log_dir, s.stop_path, s.ckpt_path, 1);
    em_ds *pn = poll_node(ctx, o->log_dir, s.stop_path, s.ckpt_path, 0);
    const uint8_t *ck;
    size_t cklen;
    if ((rc = em_collect(load, &r)) < 0) goto out_to;
    if ((rc = take_poll(&s, &r, &stop, &ck, &cklen)) < 0) goto out_to;
    memcpy(s.target, s.ends, (size_t)s.np * sizeof *s.ends);
    /* The key partitions are the log's partitions (em__key_part), as the checkpoint records them. */
    s.kparts = s.np < EM__KPARTS_MAX ? s.np : EM__KPARTS_MAX;
    s.parts = em__calloc((size_t)s.kparts, 12);
    s.cv.off = em__calloc((size_t)s.np, sizeof *s.cv.off);
    if (ck) {
        uint64_t ob = 0;
        struct stat sb;
        if ((rc = ck_load(&s, ck, cklen, &ob)) < 0) goto out_to;
        /* the rows the checkpoint covers must still be there (every rank sees the same file and decides alike) */
        if (stat(s.out_abs, &sb) < 0 || (uint64_t)sb.st_size < ob) {
            rc = em__fail(EM_EINVAL, "%s: the checkpoint %s records %" PRIu64 " bytes of output, the file has %lld: "
                          "it was changed or removed outside of the query", s.out_abs, s.ckpt_path, ob,
                          stat(s.out_abs, &sb) < 0 ? -1LL : (long long)sb.st_size);
            goto out_to;
        }
        if (st) st->resumed = 1;
        /* exactly once: cut off rows a run that died appended after its last commit */
        if (em_is_leader(ctx) && (uint64_t)sb.st_size > ob && truncate(s.out_abs, (off_t)ob) < 0)
            commit_failed("truncate", s.out_abs);
        EM_LOG_I("stream: resumed from batch %" PRIu64 " (watermark %" PRId64 ", %d key partitions)", s.batch, s.wm,
                 s.kparts);
    }
    snap(&s);
    if (!ck && em_is_leader(ctx))
        commit(&s, 1); /* batch 0: the header row and an empty state, so that a restart never finds an unknown file */
    em_records_free(&r);
    s.ks = em__kstore_new(ctx, o, s.kparts, o->checkpoint_dir, s.ckpt_path);
    s.fused = !o->transform && s.kparts == s.np;

    /* Until the end of the log at start-up, or (follow mode) until a stop is agreed. */
    for (int polled = 1;;) { /* polled: s.ends and stop are fresh (the load, or a batch without a sleep after it) */
        double t0 = em__now_s();
        if (!polled && (rc = poll(&s, pn, &stop)) < 0) goto out_to;
        polled = 0;
        if (stop) break;
        int capped;
        uint64_t n = plan_batch(&s, o->until_end ? s.target : s.ends, to, &capped);
        if (n == 0) {
            if (o->until_end) break;
            sleep_until(t0 + (double)o->trigger_ms / 1000);
            continue;
        }
        if ((rc = run_batch(&s, to, n, pn, &stop)) < 0) goto out_to;
        after_batch(&s);
        if (st) st->batches++;
        /* Fused mode: the next action finishes this batch (its rows, its commit). When it would not start at once
         * (the end of the input for now, or a stop), an action that reads nothing does it now. */
        if (s.unfinished && (stop || !capped)) {
            memcpy(to, s.off, (size_t)s.np * sizeof *to);
            if ((rc = run_batch(&s, to, 0, pn, &stop)) < 0) goto out_to;
            after_batch(&s);
        }
        if (!o->until_end && !capped) sleep_until(t0 + (double)o->trigger_ms / 1000);
        else polled = 1;
    }
    memcpy(to, s.off, (size_t)s.np * sizeof *to);
    if (s.unfinished) { /* fused: the last batch is not finished yet */
        if ((rc = run_batch(&s, to, 0, pn, &stop)) < 0) goto out_to;
        after_batch(&s);
    }
    if (o->until_end && o->flush && !stop && s.wm != INT64_MAX) {
        /* --flush: the input is over. The watermark goes to +infinity (recorded, so later events are all late):
         * a batch of no events after which every window is closed. */
        if (s.fused) {
            s.batch++; /* it reads nothing: kept as such, and the next action finishes it */
            em__kstore_add_fused(s.ks, s.batch, s.wm, s.off, s.off);
            s.wm = INT64_MAX;
            if ((rc = run_batch(&s, to, 0, pn, &stop)) < 0) goto out_to;
        } else {
            s.wm = INT64_MAX;
            s.batch++;
            snap(&s);
            em__kstore_add(s.ks, s.batch, s.wm, NULL, NULL, NULL);
            em__wbatch none = {0, 0, 0, INT64_MIN};
            if ((rc = close_batch(&s, em__now_s(), &none)) < 0) goto out_to;
        }
        after_batch(&s);
    }
    /* One more action: if the leader died after the last batch but before its commit, the new leader (known once
     * this action elected it) still holds the rows and commits them here. */
    if ((rc = poll(&s, pn, &stop)) < 0) goto out_to;
    if (em_is_leader(ctx)) {
        commit(&s, 1);
        unlink(s.stop_path);
    }
    if (st) {
        st->events = s.events;
        st->late = s.late;
        st->bad = s.bad;
        st->rows = s.rows;
        st->watermark = s.wm;
    }
out_to:
    free(to);
out:
    em_records_free(&r);
    stream_release(&s);
    return rc;
}
