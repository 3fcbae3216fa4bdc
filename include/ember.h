/*
 * ember.h — the one public header of Ember, a Spark-like compute framework in C11 over MPI.
 *
 * A job is an ordinary MPI program (every rank runs main()). It builds datasets lazily; actions such as
 * em_count() are COLLECTIVE: every live rank calls them in the same order, the current leader schedules
 * the tasks, every rank (leader included) executes them, and every rank returns the same result.
 *
 *     em_ctx *ctx;
 *     if (em_init(&argc, &argv, &ctx) < 0) return 1;
 *     em_ds *nums  = em_range(ctx, 0, 1000000, 0);
 *     em_ds *evens = em_filter(nums, is_even, NULL);
 *     int64_t n;
 *     if (em_count(evens, &n) == 0 && em_is_leader(ctx)) printf("%lld\n", (long long)n);
 *     return em_finalize(ctx, 0);
 *
 * Conventions (see shared STYLE.md):
 *   - functions that can fail return 0 or a negative EM_E* code; em_strerror() names it;
 *   - "COLLECTIVE" means every live rank must call it in the same order; "LOCAL" means no communication;
 *   - records given to callbacks are borrowed (valid only during the call); em_emit() copies.
 */
#ifndef EMBER_H
#define EMBER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ------------------------------------------------------------------------------------------- */

/* X-macro list of error codes: generates the enum, em_err_name() and em_strerror(). */
#define EM_ERRNO_MAP(X)                                                    \
    X(INVAL, 1, "invalid argument")                                        \
    X(NOMEM, 2, "out of memory")                                           \
    X(IO, 3, "i/o error")                                                  \
    X(PARSE, 4, "malformed input")                                         \
    X(COMM, 5, "communication failure")                                    \
    X(FENCED, 6, "this rank was fenced out of the job")                    \
    X(TASK, 7, "task failed too many times")                               \
    X(NORANKS, 8, "too few live ranks to make progress")                   \
    X(TOOBIG, 9, "result larger than --ember-max-result")                  \
    X(USER, 10, "user callback returned an error")                         \
    X(NOENT, 11, "no such file or dataset")                                \
    X(EXISTS, 12, "output already exists")                                 \
    X(TYPE, 13, "wrong type")                                              \
    X(CANCELED, 14, "job canceled")

enum {
#define EM__ERR_ENUM(name, num, msg) EM_E##name = -(num),
    EM_ERRNO_MAP(EM__ERR_ENUM)
#undef EM__ERR_ENUM
};

/* Short name ("EM_EINVAL") and human message of an error code. LOCAL. Unknown codes give "EM_EUNKNOWN". */
const char *em_err_name(int err);
const char *em_strerror(int err);

/* The last error message of this rank (names the file, line, field, task, ...), or "" if none. LOCAL.
 * The string stays valid until the next failing call on this thread. */
const char *em_last_error(void);

/* ---- context ------------------------------------------------------------------------------------------ */

typedef struct em_ctx em_ctx;

/* Starts Ember on this rank: MPI (MPI_THREAD_MULTIPLE, errors returned), configuration from --ember-* flags
 * (removed from argv before the job sees them) and EMBER_* environment, logging, the progress thread
 * (heartbeats, fetch service) and the executor thread. `--ember-help` prints the configuration table and
 * exits 0. COLLECTIVE (start-up only). Returns 0, EM_EINVAL (bad flag, message printed) or EM_ECOMM. */
int em_init(int *argc, char ***argv, em_ctx **out);

/* Ends the job on this rank: waits until every rank is done, flushes stdout/stderr, writes the job status
 * (status file for `ember run`, when this rank leads), finalizes MPI. Never hangs: a watchdog _exit()s after
 * --ember-exit-grace-ms. Returns the exit status the process should end with (pass `status` through, or
 * non-zero if the job failed or this rank was fenced). COLLECTIVE. Frees ctx and every dataset. */
int em_finalize(em_ctx *ctx, int status);

/* This rank, the number of ranks at start, and whether this rank currently leads (schedules tasks and
 * should print results). LOCAL. */
int em_rank(const em_ctx *ctx);
int em_size(const em_ctx *ctx);
int em_is_leader(const em_ctx *ctx);

/* Default number of partitions for sources and wide operators (--ember-partitions, else 4 x ranks). LOCAL. */
int em_default_partitions(const em_ctx *ctx);

/* ---- records ------------------------------------------------------------------------------------------ */

/* A record: a key and a value, both byte strings (may contain NUL bytes). Borrowed inside callbacks. */
typedef struct em_rec {
    const void *key;
    const void *val;
    uint32_t klen;
    uint32_t vlen;
} em_rec;

/* Where a callback sends its output records. */
typedef struct em_emitter em_emitter;

/* Emits one record (copied). LOCAL. Returns 0 or a negative code that the callback should return. */
int em_emit(em_emitter *out, const void *key, uint32_t klen, const void *val, uint32_t vlen);

/* Order-preserving encodings: the bytes of em_i64_put(a) compare (memcmp) like a and b compare, so int64 and
 * double keys sort numerically in sortByKey. Both write exactly 8 bytes. */
void em_i64_put(void *dst, int64_t v);
int64_t em_i64_get(const void *src);
void em_f64_put(void *dst, double v);
double em_f64_get(const void *src);

/* Emit helpers for common shapes: int64 key or string key, with an int64 value. */
int em_emit_i64(em_emitter *out, int64_t key, int64_t val);
int em_emit_str_i64(em_emitter *out, const char *key, size_t klen, int64_t val);

/* Built-in aggregations over int64 values (em_i64_get of the record's value). */
typedef enum em_agg {
    EM_AGG_COUNT, /* number of records */
    EM_AGG_SUM,   /* sum of values */
    EM_AGG_MIN,
    EM_AGG_MAX
} em_agg;

/* ---- datasets (lineage nodes) -------------------------------------------------------------------------- */

typedef struct em_ds em_ds;

/* Callback types. A callback returns 0 (or, for filter, 1 keep / 0 drop) on success and a negative value
 * on error: the task fails with EM_EUSER (and is retried up to --ember-max-task-failures). `arg` is the
 * pointer given when the dataset was built; it must be valid on every rank until em_finalize. */
typedef int (*em_map_fn)(const em_rec *in, em_emitter *out, void *arg);
typedef int (*em_filter_fn)(const em_rec *in, void *arg);

/* Integers [from, to) in `nparts` contiguous partitions (0: default). Record key: em_i64_put(i), empty value.
 * LOCAL (lazy). */
em_ds *em_range(em_ctx *ctx, int64_t from, int64_t to, int nparts);

/* For each record, fn emits 0..n records (map and flatMap in one). LOCAL (lazy), pipelined in the task. */
em_ds *em_map(em_ds *parent, em_map_fn fn, void *arg);

/* Keeps the records for which fn returns 1. LOCAL (lazy), pipelined in the task. */
em_ds *em_filter(em_ds *parent, em_filter_fn fn, void *arg);

/* Number of partitions of a dataset. LOCAL. */
int em_ds_partitions(const em_ds *ds);

/* Lines of text files: paths may be files, directories (every regular file inside, sorted, skipping names that
 * start with '.' or '_') and globs. One record per line: key = the line without '\n' (and without a trailing
 * '\r'), empty value. Files are split by byte ranges aligned to line starts, so every line is read exactly once.
 * nparts: minimum number of splits (0: default). A missing input fails the first action that reads it with
 * EM_ENOENT naming the path. LOCAL (lazy). */
em_ds *em_text(em_ctx *ctx, const char *const *paths, int npaths, int nparts);

/* Records from memory: recs[0..n) are copied now (on every rank; pass the same data everywhere, e.g. constants
 * or data every rank read) and spread over nparts partitions. LOCAL (lazy). */
em_ds *em_parallelize(em_ctx *ctx, const em_rec *recs, size_t n, int nparts);

/* Combines two values of one key into one: write the combined value into *out (an em_buf-like sink, see
 * em_value_set). Must be associative and commutative. */
typedef struct em_value em_value;
typedef int (*em_combine_fn)(const void *a, uint32_t alen, const void *b, uint32_t blen, em_value *out, void *arg);
/* Sets the combined value inside an em_combine_fn. LOCAL. */
int em_value_set(em_value *out, const void *val, uint32_t len);

/* reduceByKey: one record per distinct key, its values combined by fn, with map-side combine. nparts: output
 * partitions (0: default). A shuffle. LOCAL (lazy). */
em_ds *em_reduce_by_key(em_ds *parent, em_combine_fn fn, void *arg, int nparts);
/* reduceByKey with a built-in aggregator over int64 values (EM_AGG_COUNT counts records; the value of a COUNT
 * output is the count as int64). LOCAL (lazy). */
em_ds *em_reduce_by_key_agg(em_ds *parent, em_agg agg, int nparts);

/* ---- actions (COLLECTIVE) ------------------------------------------------------------------------------ */


/* Number of records. COLLECTIVE. Returns 0 or EM_ETASK / EM_ENORANKS / EM_EFENCED (see em_last_error()). */
int em_count(em_ds *ds, int64_t *out);

/* Aggregates the int64 values of all records with `agg`; an empty dataset gives 0 for COUNT and SUM and
 * EM_EINVAL for MIN/MAX. COLLECTIVE. Errors as em_count. */
int em_reduce_i64(em_ds *ds, em_agg agg, int64_t *out);

/* Every record, in partition order, as one buffer the caller frees with em_records_free. Fails with EM_ETOOBIG
 * when the result exceeds --ember-max-result bytes (uncompressed). COLLECTIVE. */
typedef struct em_records {
    em_rec *recs;
    size_t n;
    void *mem; /* owns the bytes recs point into */
} em_records;
int em_collect(em_ds *ds, em_records *out);
void em_records_free(em_records *r);

/* Writes one part file per partition under dir ("part-00000", ...) with one line per record: key, a TAB, value
 * (records with an empty value: just the key), then `_SUCCESS` when every part is in place. Each task writes a
 * temporary file that the leader's commit renames, so a retried task's output lands once. Fails with EM_EEXISTS
 * when dir already holds _SUCCESS. fmt: NULL for raw bytes, or "str_i64" to print an int64 value in decimal.
 * COLLECTIVE. */
int em_save_text(em_ds *ds, const char *dir, const char *fmt);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_H */
