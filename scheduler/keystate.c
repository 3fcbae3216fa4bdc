/* keystate.c — the window state of a streaming query partitioned by key (shared DESIGN.md §7: "shuffled by (window,
 * key) to the owners of the window state"), and the checkpoint's format: a manifest plus one state file per key
 * partition. The micro-batch loop that drives it is stream.c; the state of one partition is window.c's em__wstate.
 *
 * Keys are cut into K key partitions by em__key_part: K is the log's number of partitions and a key's partition is
 * the one `ember log append` puts it in (em__log_hash mod K), so a log partition is a key partition (Kafka Streams
 * and Flink key groups work the same way). The tasks that touch partition k's state are those of a pinned dataset
 * (scheduler/driver.c): they run on rank k mod size (or the next live rank), its home, so the state of k lives there
 * from batch to batch in this rank's em__kstore and no other rank holds or merges it.
 *
 *   fused mode (no transform)   one "batch" dataset per batch (em__kstore_batch_ds): task k finishes the previous
 *                               batch of k (the windows its watermark closed become row records, the task's output;
 *                               the state file of that batch), then folds log partition k's new range (wtask.c) and
 *                               merges it into the state. A range holding a key of another partition (a log not
 *                               written by `ember log append`) fails the task with a message saying so.
 *   with a transform            a batch's tasks emit their partials grouped by key partition; em_collect hands them
 *                               to every rank, which keeps them until the checkpoint on disk covers the batch; then
 *                               the batch's "close" dataset runs: task k merges the partials of k into the state,
 *                               takes out the closed windows (row records) and writes the state file.
 *
 * Every rank keeps what each uncommitted batch was (its log ranges, or its partials), so a task that runs anywhere
 * else than the home of k (the home died, or a retry) or that missed batches rebuilds the state of k first: the
 * checkpoint on disk (its state file of k) plus the kept batches after it, their log ranges read again. An
 * executor's death costs a rebuild of its partitions, not a restart. The checkpoint directory must therefore be on a
 * file system every rank sees (as in Spark and Flink): tasks read and write state files there.
 *
 * Exactly once: a task writes CHECKPOINT/state/<batch>.<k> (temporary name, then rename) before it finishes, so
 * when its action returns every state file of the batch is complete; the leader's commit fsyncs them, then renames
 * the manifest that names them (with their sizes and crcs) over the old one. Files of batches older than the
 * previous commit are removed after a commit (a rebuild that reads the manifest just before a commit still finds
 * its files; if not, it reads the manifest again).
 */
#include "scheduler/stream.h"

#include "operators/dataset.h"
#include "runtime/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* ---- the checkpoint ----
 * CHECKPOINT/checkpoint (the manifest), written whole after every batch by the leader (tmp file, fsync, rename,
 * fsync of the directory), all integers little-endian:
 *
 *   offset   bytes  field
 *   0        8      magic "EMWCKPT3"
 *   8        8      batch: the last batch folded in (0: none yet)
 *   16       8      output bytes: the length of the output file that holds exactly the rows of batches <= batch
 *   24       8      window ms          \
 *   32       8      slide ms            |  the query: a checkpoint is refused by a query that differs
 *   40       8      lateness ms         |
 *   48       4      aggregate: em_stream_agg; for EM_STREAM_USER, bits 8-31 are the low 24 bits of the
 *                   crc32 (zlib) of the combine's name and its acc_size (u32), so another combine is refused
 *   52       4      N log partitions   /
 *   56       8N     next offset of each partition
 *   +0       8      largest event time seen (INT64_MIN: none)
 *   +8       8      watermark (INT64_MIN: none; INT64_MAX after a flush)
 *   +16      32     events, late, bad, rows: totals since the query began
 *   +48      4+L    L, then the output file's absolute path (L bytes)
 *   ...      4      K: key partitions of the window state
 *   ...      12K    per key partition k: 8 size of its state file CHECKPOINT/state/<batch>.<k> (0: the state of k is
 *                   empty, there is no file), 4 that file's crc32 (its last 4 bytes)
 *   end      4      crc32 (zlib) of every byte before it
 *
 * A state file CHECKPOINT/state/<batch, 20 digits>.<k>, written by the close task of partition k:
 *
 *   offset   bytes  field
 *   0        8      magic "EMWSTAT1"
 *   8        8      batch
 *   16       4      k
 *   20       4      K
 *   24       ...    the windows section: 8 number of open windows, then per window (by start): 8 start, 8 number
 *                   of keys, then per key: LEB128 key length, the key, the accumulator: for count the LEB128 of n,
 *                   else the aggregate's accumulator bytes as stream.h draws them; keys sorted, no key twice
 *   end      4      crc32 (zlib) of every byte before it
 *
 * Still read: "EMWCKPT2" is the manifest up to the output path, then the windows section of the whole state
 * (every key partition) inline, then the crc; "EMWCKPT1" the same with a 4-byte key length and 8-byte counts. Their
 * K is the running query's; each partition's task takes its keys from the inline state. The next commit writes
 * EMWCKPT3.
 */
#define CK_MAGIC "EMWCKPT3"
#define CK_MAGIC2 "EMWCKPT2"
#define CK_MAGIC1 "EMWCKPT1"
#define ST_MAGIC "EMWSTAT1"
#define ST_HEAD 24
#define REBUILD_TRIES 5 /* a rebuild that loses its state file to a newer commit reads the manifest again */

static void add64(em__buf *b, uint64_t v)
{
    uint8_t t[8];
    em__put64(t, v);
    em__buf_add(b, t, 8);
}
static void add32(em__buf *b, uint32_t v)
{
    uint8_t t[4];
    em__put32(t, v);
    em__buf_add(b, t, 4);
}

void em__ckpt_encode(const em__ckpt *c, const uint8_t *part_size_crc, em__buf *b)
{
    em__buf_add(b, CK_MAGIC, 8);
    add64(b, c->batch);
    add64(b, c->out_bytes);
    add64(b, (uint64_t)c->window_ms);
    add64(b, (uint64_t)c->slide_ms);
    add64(b, (uint64_t)c->lateness_ms);
    add32(b, c->agg);
    add32(b, c->nlog);
    em__buf_add(b, c->offsets, 8 * (size_t)c->nlog);
    add64(b, (uint64_t)c->max_seen);
    add64(b, (uint64_t)c->wm);
    add64(b, c->events);
    add64(b, c->late);
    add64(b, c->bad);
    add64(b, c->rows);
    add32(b, c->out_len);
    em__buf_add(b, c->out_path, c->out_len);
    add32(b, (uint32_t)c->kparts);
    em__buf_add(b, part_size_crc, 12 * (size_t)c->kparts);
}

void em__ckpt_seal(em__buf *b, uint64_t out_bytes)
{
    em__put64(b->p + EM__CK_OUT_BYTES, out_bytes);
    add32(b, (uint32_t)crc32_z(0L, b->p, b->len));
}

int em__ckpt_parse(const uint8_t *p, size_t n, const char *path, int kparts_default, em__ckpt *c)
{
    memset(c, 0, sizeof *c);
    if (n >= 8) c->version = !memcmp(p, CK_MAGIC, 8) ? 3 : !memcmp(p, CK_MAGIC2, 8) ? 2 : !memcmp(p, CK_MAGIC1, 8);
    if (n < 28 || !c->version)
        return em__fail(EM_EPARSE, "%s: not a windowcount checkpoint (bad magic or too short)", path);
    if (em__get32(p + n - 4) != (uint32_t)crc32_z(0L, p, n - 4))
        return em__fail(EM_EPARSE, "%s: bad crc: the checkpoint is corrupt", path);
    em__rd r;
    em__rd_init(&r, p + 8, n - 12);
    c->batch = em__rd_le64(&r);
    c->out_bytes = em__rd_le64(&r);
    c->window_ms = (int64_t)em__rd_le64(&r);
    c->slide_ms = (int64_t)em__rd_le64(&r);
    c->lateness_ms = (int64_t)em__rd_le64(&r);
    c->agg = em__rd_le32(&r);
    c->nlog = em__rd_le32(&r);
    c->offsets = em__rd_take(&r, 8 * (size_t)c->nlog);
    c->max_seen = (int64_t)em__rd_le64(&r);
    c->wm = (int64_t)em__rd_le64(&r);
    c->events = em__rd_le64(&r);
    c->late = em__rd_le64(&r);
    c->bad = em__rd_le64(&r);
    c->rows = em__rd_le64(&r);
    c->out_len = em__rd_le32(&r);
    c->out_path = em__rd_take(&r, c->out_len);
    if (c->version == 3) {
        uint32_t K = em__rd_le32(&r);
        if (!r.err && (K == 0 || K > EM__KPARTS_MAX))
            return em__fail(EM_EPARSE, "%s: malformed checkpoint (%u key partitions)", path, K);
        c->kparts = (int)K;
        c->parts = em__rd_take(&r, 12 * (size_t)K);
        if (!r.err && r.p != r.end)
            return em__fail(EM_EPARSE, "%s: malformed checkpoint (length fields disagree)", path);
    } else {
        c->kparts = kparts_default;
        c->state = r.p;
        c->state_end = r.end;
    }
    if (r.err) return em__fail(EM_EPARSE, "%s: malformed checkpoint (length fields disagree)", path);
    return 0;
}

char *em__state_path(const char *ckdir, uint64_t batch, int k)
{
    size_t n = strlen(ckdir) + 64;
    char *p = em__malloc(n);
    snprintf(p, n, "%s/state/%020" PRIu64 ".%d", ckdir, batch, k);
    return p;
}

int em__read_file(const char *path, em__buf *b)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? EM_ENOENT : em__fail(EM_EIO, "cannot open %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) == 0 && sb.st_size > 0) em__buf_grow(b, (size_t)sb.st_size);
    for (;;) {
        em__buf_grow(b, 1 << 16);
        ssize_t r = read(fd, b->p + b->len, b->cap - b->len);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            int e = errno;
            close(fd);
            return em__fail(EM_EIO, "cannot read %s: %s", path, strerror(e));
        }
        if (r == 0) break;
        b->len += (size_t)r;
    }
    close(fd);
    return 0;
}

/* ---- the keyed state on this rank ---- */

typedef struct kbatch {
    uint64_t batch;
    int64_t wm;       /* the watermark after the batch (fused: at its start) */
    em_records r;     /* its collected partials (none: r.n == 0) */
    em__prun *runs;   /* em__partials_index of r */
    size_t *first;
    uint64_t *from, *to; /* fused: [K] the log range of each partition (else NULL) */
} kbatch;

typedef struct kpart {
    em__wstate ws;
    uint64_t batch;   /* the last batch folded in */
    int valid;        /* 0: not held here (or abandoned halfway by a failed task) */
} kpart;

struct em__kstore {
    em_ctx *ctx;
    const em_stream_opts *o;
    int K;
    char *ckdir, *ckpt_path, *state_dir;
    pthread_mutex_t mu; /* the close tasks (executor thread) and the main thread's add and trim */
    kpart *parts;       /* [K] */
    kbatch *b;          /* kept batches, by batch */
    size_t nb, bcap;
};

em__kstore *em__kstore_new(em_ctx *ctx, const em_stream_opts *o, int kparts, const char *ckdir, const char *ckpt_path)
{
    em__kstore *ks = em__calloc(1, sizeof *ks);
    ks->ctx = ctx;
    ks->o = o;
    ks->K = kparts;
    ks->ckdir = em__strdup(ckdir);
    ks->ckpt_path = em__strdup(ckpt_path);
    size_t n = strlen(ckdir) + 8;
    ks->state_dir = em__malloc(n);
    snprintf(ks->state_dir, n, "%s/state", ckdir);
    pthread_mutex_init(&ks->mu, NULL);
    ks->parts = em__calloc((size_t)kparts, sizeof *ks->parts);
    for (int k = 0; k < kparts; k++) ks->parts[k].ws = (em__wstate){.ag = em__agg_of(o), .window_ms = o->window_ms};
    return ks;
}

static void kbatch_release(kbatch *b)
{
    em_records_free(&b->r);
    free(b->runs);
    free(b->first);
    free(b->from);
    free(b->to);
}

void em__kstore_free(em__kstore *ks)
{
    if (!ks) return;
    for (int k = 0; k < ks->K; k++) em__wstate_release(&ks->parts[k].ws);
    for (size_t i = 0; i < ks->nb; i++) kbatch_release(&ks->b[i]);
    free(ks->b);
    free(ks->parts);
    pthread_mutex_destroy(&ks->mu);
    free(ks->ckdir);
    free(ks->ckpt_path);
    free(ks->state_dir);
    free(ks);
}

static void kstore_push(em__kstore *ks, const kbatch *kb)
{
    pthread_mutex_lock(&ks->mu);
    EM_ASSERT(!ks->nb || ks->b[ks->nb - 1].batch < kb->batch);
    if (ks->nb == ks->bcap) {
        ks->bcap = ks->bcap ? 2 * ks->bcap : 8;
        ks->b = em__realloc(ks->b, ks->bcap * sizeof *ks->b);
    }
    ks->b[ks->nb++] = *kb;
    pthread_mutex_unlock(&ks->mu);
}

void em__kstore_add_fused(em__kstore *ks, uint64_t batch, int64_t wm0, const uint64_t *from, const uint64_t *to)
{
    kbatch kb = {.batch = batch, .wm = wm0};
    kb.from = em__malloc((size_t)ks->K * sizeof *kb.from);
    kb.to = em__malloc((size_t)ks->K * sizeof *kb.to);
    memcpy(kb.from, from, (size_t)ks->K * sizeof *kb.from);
    memcpy(kb.to, to, (size_t)ks->K * sizeof *kb.to);
    kstore_push(ks, &kb);
}

void em__kstore_add(em__kstore *ks, uint64_t batch, int64_t wm, em_records *r, em__prun *runs, size_t *first)
{
    kbatch kb = {.batch = batch, .wm = wm, .runs = runs, .first = first};
    if (r) {
        kb.r = *r;
        memset(r, 0, sizeof *r);
    } else {
        em__wbatch unused;
        em__partials_index(NULL, ks->K, &kb.runs, &kb.first, &unused);
    }
    kstore_push(ks, &kb);
}

void em__kstore_trim(em__kstore *ks, int64_t c)
{
    pthread_mutex_lock(&ks->mu);
    size_t k = 0;
    while (k < ks->nb && (int64_t)ks->b[k].batch <= c) kbatch_release(&ks->b[k++]);
    memmove(ks->b, ks->b + k, (ks->nb - k) * sizeof *ks->b);
    ks->nb -= k;
    pthread_mutex_unlock(&ks->mu);
}

static const kbatch *find_batch(const em__kstore *ks, uint64_t batch)
{
    for (size_t i = 0; i < ks->nb; i++)
        if (ks->b[i].batch == batch) return &ks->b[i];
    return NULL;
}

/* Folds kept batch kb into the state of partition k and takes out the windows its watermark closed. */
static void fold_batch(const kbatch *kb, int k, em__wstate *ws, em__win **closed, size_t *nclosed, uint64_t *nrows)
{
    em__wstate_merge(ws, &kb->r, kb->runs + kb->first[k], kb->first[k + 1] - kb->first[k]);
    *nclosed = em__wstate_close(ws, kb->wm, closed, nrows);
}

/* Fused batch kb's log range of partition k, folded (wtask.c) and merged into the state; its counters record is
 * copied to wstats (EM__WSTATS_LEN bytes, zeros when the range is empty). Fails when the range holds a key of
 * another partition. */
static int fold_range(const em__kstore *ks, const kbatch *kb, int k, em__wstate *ws, uint8_t *wstats)
{
    memset(wstats, 0, EM__WSTATS_LEN);
    if (kb->from[k] >= kb->to[k]) return 0;
    em__wtask_arg a = {ks->o, kb->wm, ks->K, NULL};
    em__win *w;
    size_t n;
    int rc = em__wtask_fold_runs(&a, k, kb->from[k], kb->to[k], &w, &n, wstats);
    for (size_t i = 0; i < n && rc == 0; i++) em__wstate_merge_run(ws, &w[i]);
    em__wins_free(w, n);
    return rc;
}

/* Reads the state of key partition k from the state file the manifest c names into ws. */
static int read_state_file(const em__kstore *ks, const em__ckpt *c, int k, em__wstate *ws)
{
    const uint8_t *e = c->parts + 12 * (size_t)k;
    uint64_t size = em__get64(e);
    uint32_t crc = em__get32(e + 8);
    if (!size) return 0;
    char *path = em__state_path(ks->ckdir, c->batch, k);
    em__buf b;
    em__buf_init(&b);
    int rc = em__read_file(path, &b);
    if (rc < 0) goto out;
    int64_t bad_win = 0;
    const uint8_t *p = b.p + ST_HEAD;
    if (b.len != size || b.len < ST_HEAD + 4 || memcmp(b.p, ST_MAGIC, 8) != 0 || em__get32(b.p + b.len - 4) != crc ||
        (uint32_t)crc32_z(0L, b.p, b.len - 4) != crc) {
        rc = em__fail(EM_EPARSE, "%s: not the state file the checkpoint %s names (size %zu, want %" PRIu64 "; or a "
                      "bad crc)", path, ks->ckpt_path, b.len, size);
    } else if (em__get64(b.p + 8) != c->batch || (int)em__get32(b.p + 16) != k || (int)em__get32(b.p + 20) != ks->K) {
        rc = em__fail(EM_EPARSE, "%s: the state file's batch or key partition is not its name's", path);
    } else if ((rc = em__wstate_decode(ws, &p, b.p + b.len - 4, 0, 0, 0, &bad_win)) == -2) {
        rc = em__fail(EM_EPARSE, "%s: malformed state file (a key twice in window %" PRId64 ")", path, bad_win);
    } else if (rc < 0 || p != b.p + b.len - 4) {
        rc = em__fail(EM_EPARSE, "%s: malformed state file (length fields disagree)", path);
    }
out:
    em__buf_release(&b);
    free(path);
    return rc;
}

/* Applies the kept batches after batch c up to batch - 1 to ws, the state of partition k after batch c: their
 * closed windows were written by the tasks that first ran them (dropped here). Called with ks->mu held. */
static int apply_kept(const em__kstore *ks, int k, em__wstate *ws, uint64_t c, uint64_t batch)
{
    int rc = 0;
    for (uint64_t j = c + 1; j < batch && rc == 0; j++) {
        const kbatch *kb = find_batch(ks, j);
        if (!kb)
            return em__fail(EM_EINVAL, "stream: cannot rebuild key partition %d: batch %" PRIu64 " is neither in the "
                            "checkpoint (batch %" PRIu64 ") nor kept on this rank", k, j, c);
        em__win *w;
        size_t n;
        uint64_t nrows;
        uint8_t wstats[EM__WSTATS_LEN];
        if (kb->from) { /* as part_compute: close by the watermark at its start, then read its range */
            n = em__wstate_close(ws, kb->wm, &w, &nrows);
            rc = fold_range(ks, kb, k, ws, wstats);
        } else {
            fold_batch(kb, k, ws, &w, &n, &nrows);
        }
        em__wins_free(w, n);
    }
    return rc;
}

/* The state of partition k after batch `batch` - 1, on a rank that does not hold it: the checkpoint on disk (batch
 * c), then the kept batches c + 1 .. batch - 1 (their partials, or for fused batches their log ranges read again;
 * their closed windows were written by the tasks that first ran them: dropped here). Called with ks->mu held. */
static int rebuild(em__kstore *ks, int k, uint64_t batch, kpart *kp)
{
    int rc = 0;
    em__buf b;
    em__buf_init(&b);
    for (int tries = 0;; tries++) {
        em__wstate_release(&kp->ws);
        kp->valid = 0;
        b.len = 0;
        em__ckpt c = {.batch = 0, .kparts = ks->K};
        rc = em__read_file(ks->ckpt_path, &b);
        if (rc == EM_ENOENT) {
            rc = 0; /* nothing committed yet: the query starts empty */
        } else if (rc < 0 || (rc = em__ckpt_parse(b.p, b.len, ks->ckpt_path, ks->K, &c)) < 0) {
            break;
        } else if (c.kparts != ks->K) {
            rc = em__fail(EM_EPARSE, "%s: %d key partitions, the query runs with %d: was it replaced?", ks->ckpt_path,
                          c.kparts, ks->K);
            break;
        } else if (c.batch >= batch) {
            rc = em__fail(EM_EINVAL, "stream: the task of key partition %d for batch %" PRIu64 " is stale: the "
                          "checkpoint already holds batch %" PRIu64, k, batch, c.batch);
            break;
        } else if (c.version == 3) {
            rc = read_state_file(ks, &c, k, &kp->ws);
            if (rc == EM_ENOENT && tries < REBUILD_TRIES) continue; /* removed by a newer commit: read it again */
            if (rc < 0) break;
        } else {
            const uint8_t *p = c.state;
            int64_t bad_win = 0;
            int d = em__wstate_decode(&kp->ws, &p, c.state_end, c.version == 1, ks->K, k, &bad_win);
            if (d == -2) {
                rc = em__fail(EM_EPARSE, "%s: malformed checkpoint (a key twice in window %" PRId64 ")",
                              ks->ckpt_path, bad_win);
                break;
            }
            if (d < 0 || p != c.state_end) {
                rc = em__fail(EM_EPARSE, "%s: malformed checkpoint (length fields disagree)", ks->ckpt_path);
                break;
            }
        }
        if (rc == 0) rc = apply_kept(ks, k, &kp->ws, c.batch, batch);
        if (rc == 0) EM_LOG_I("stream: rebuilt key partition %d from the checkpoint of batch %" PRIu64 " and %" PRIu64
                              " kept batch(es): %" PRIu64 " keys", k, c.batch, batch - 1 - c.batch,
                              em__wstate_keys(&kp->ws));
        break;
    }
    em__buf_release(&b);
    return rc;
}

/* Writes the state of partition k after `batch` to its state file (temporary name, then rename; the leader's
 * commit fsyncs it). *size: its bytes, 0 when the state is empty (no file); *crc its crc32. */
static int write_state_file(const em__kstore *ks, int k, uint64_t batch, const em__wstate *ws, uint64_t *size,
                            uint32_t *crc)
{
    *size = 0;
    *crc = 0;
    if (!ws->n) return 0;
    em__buf b;
    em__buf_init(&b);
    em__buf_add(&b, ST_MAGIC, 8);
    add64(&b, batch);
    add32(&b, (uint32_t)k);
    add32(&b, (uint32_t)ks->K);
    em__wstate_encode(ws, &b);
    *crc = (uint32_t)crc32_z(0L, b.p, b.len);
    add32(&b, *crc);
    char *path = em__state_path(ks->ckdir, batch, k);
    size_t tl = strlen(path) + 32;
    char *tmp = em__malloc(tl);
    snprintf(tmp, tl, "%s.tmp%d", path, em_rank(ks->ctx));
    int rc = 0;
    if (mkdir(ks->state_dir, 0755) < 0 && errno != EEXIST) {
        rc = em__fail(EM_EIO, "cannot create %s: %s", ks->state_dir, strerror(errno));
        goto out;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = em__fail(EM_EIO, "cannot create %s: %s", tmp, strerror(errno));
        goto out;
    }
    for (size_t off = 0; off < b.len;) {
        ssize_t w = write(fd, b.p + off, b.len - off);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
            rc = em__fail(EM_EIO, "cannot write %s: %s", tmp, strerror(errno));
            break;
        }
        off += (size_t)w;
    }
    if (close(fd) < 0 && rc == 0) rc = em__fail(EM_EIO, "cannot write %s: %s", tmp, strerror(errno));
    if (rc == 0 && rename(tmp, path) < 0) rc = em__fail(EM_EIO, "cannot rename %s: %s", tmp, strerror(errno));
    if (rc < 0) unlink(tmp);
    else *size = b.len;
out:
    free(tmp);
    free(path);
    em__buf_release(&b);
    return rc;
}

/* ---- the close and batch datasets ---- */

typedef struct close_src {
    em__kstore *ks;
    uint64_t batch;
    int (*poll)(void *arg, em_emitter *sink); /* batch dataset: partition 0 emits the poll's record first */
    void *poll_arg;
} close_src;

/* The counters record: key empty, value EM__KSTATS_LEN bytes, little-endian:
 *
 *   offset  bytes  field
 *   0       4      key partition
 *   4       4      the rank that ran the task
 *   8       8      (window, key) entries left in the state
 *   16      8      rows of the windows it closed
 *   24      8      bytes of its state file (0: none)
 *   32      4      that file's crc32
 *   36      4      flags: bit 0 set when the task saw an event time (the next field is valid)
 *   40      24     events, late, bad: the task's log range (batch dataset; 0 for a close task)
 *   64      8      largest event time seen
 */
int em__kstats_get(const em_rec *x, em__kstats *st)
{
    if (x->klen != 0 || x->vlen != EM__KSTATS_LEN) return 0;
    const uint8_t *v = x->val;
    st->k = (int)em__get32(v);
    st->rank = (int)em__get32(v + 4);
    st->keys = em__get64(v + 8);
    st->rows = em__get64(v + 16);
    st->size = em__get64(v + 24);
    st->crc = em__get32(v + 32);
    st->events = em__get64(v + 40);
    st->late = em__get64(v + 48);
    st->bad = em__get64(v + 56);
    st->max_t = em__get32(v + 36) & 1 ? (int64_t)em__get64(v + 64) : INT64_MIN;
    return 1;
}

/* One task of a close or batch dataset: partition k's state (rebuilt first if this rank does not hold it after the
 * previous batch) takes the batch, the windows it closes are emitted as row records, its state file is written,
 * then the counters record. */
static int part_compute(const em__node *n, int k, em_emitter *sink)
{
    const close_src *cs = n->src;
    em__kstore *ks = cs->ks;
    em__win *closed = NULL;
    size_t nclosed = 0;
    uint64_t nrows = 0, size = 0;
    uint32_t crc = 0;
    uint8_t wstats[EM__WSTATS_LEN] = {0};
    int rc = 0;
    if (k == 0 && cs->poll && (rc = cs->poll(cs->poll_arg, sink)) < 0) return rc;
    pthread_mutex_lock(&ks->mu);
    kpart *kp = &ks->parts[k];
    const kbatch *kb = find_batch(ks, cs->batch);
    if (!kb) {
        rc = em__fail(EM_EINVAL, "stream: the task of key partition %d for batch %" PRIu64 " is stale: this rank no "
                      "longer keeps the batch", k, cs->batch);
        goto out;
    }
    if (kp->valid && kp->batch + 1 < cs->batch && find_batch(ks, kp->batch + 1)) {
        /* held here, but batches ran elsewhere since (or none did: --flush's batch of no events): catch up */
        kp->valid = 0;
        if (apply_kept(ks, k, &kp->ws, kp->batch, cs->batch) == 0) kp->valid = 1, kp->batch = cs->batch - 1;
        else em__set_error("");
    }
    if (!(kp->valid && kp->batch + 1 == cs->batch) && (rc = rebuild(ks, k, cs->batch, kp)) < 0) goto out;
    kp->valid = 0; /* until the task is through */
    if (kb->from) {
        /* fused: the previous batch's part first (the windows its watermark closed, its state file), then this
         * batch's log range */
        nclosed = em__wstate_close(&kp->ws, kb->wm, &closed, &nrows);
        if ((rc = em__wins_emit(&kp->ws.ag, closed, nclosed, sink)) < 0) goto out;
        if ((rc = write_state_file(ks, k, cs->batch - 1, &kp->ws, &size, &crc)) < 0) goto out;
        if ((rc = fold_range(ks, kb, k, &kp->ws, wstats)) < 0) goto out;
    } else {
        fold_batch(kb, k, &kp->ws, &closed, &nclosed, &nrows);
        if ((rc = em__wins_emit(&kp->ws.ag, closed, nclosed, sink)) < 0) goto out;
        if ((rc = write_state_file(ks, k, cs->batch, &kp->ws, &size, &crc)) < 0) goto out;
    }
    uint8_t v[EM__KSTATS_LEN] = {0};
    em__put32(v, (uint32_t)k);
    em__put32(v + 4, (uint32_t)em_rank(ks->ctx));
    em__put64(v + 8, em__wstate_keys(&kp->ws));
    em__put64(v + 16, nrows);
    em__put64(v + 24, size);
    em__put32(v + 32, crc);
    em__put32(v + 36, wstats[32] & 1);
    em__put64(v + 40, em__get64(wstats));
    em__put64(v + 48, em__get64(wstats + 8));
    em__put64(v + 56, em__get64(wstats + 16));
    em__put64(v + 64, em__get64(wstats + 24));
    if ((rc = em_emit(sink, "", 0, v, sizeof v)) < 0) goto out;
    kp->batch = cs->batch;
    kp->valid = 1;
out:
    pthread_mutex_unlock(&ks->mu);
    em__wins_free(closed, nclosed);
    return rc < 0 ? rc : 0;
}

static em_ds *part_node(em__kstore *ks, uint64_t batch, int (*poll)(void *, em_emitter *), void *poll_arg)
{
    em__node *n = em__node_add(ks->ctx, EM__K_SOURCE, NULL, ks->K);
    close_src *cs = em__calloc(1, sizeof *cs);
    cs->ks = ks;
    cs->batch = batch;
    cs->poll = poll;
    cs->poll_arg = poll_arg;
    n->src = cs;
    n->src_free = free;
    n->src_compute = part_compute;
    n->pinned = 1;
    return (em_ds *)n;
}

em_ds *em__kstore_close_ds(em__kstore *ks, uint64_t batch) { return part_node(ks, batch, NULL, NULL); }

em_ds *em__kstore_batch_ds(em__kstore *ks, uint64_t batch, int (*poll)(void *arg, em_emitter *sink), void *poll_arg)
{
    return part_node(ks, batch, poll, poll_arg);
}
