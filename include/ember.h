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
 * double keys sort numerically in sortByKey. Both write exactly 8 bytes. -0.0 is stored as 0.0 (they are equal);
 * NaNs sort after +inf (or before -inf, by sign). */
void em_i64_put(void *dst, int64_t v);
int64_t em_i64_get(const void *src);
void em_f64_put(void *dst, double v);
double em_f64_get(const void *src);

/* Emit helpers for common shapes: int64 key or string key, with an int64 value. */
int em_emit_i64(em_emitter *out, int64_t key, int64_t val);
int em_emit_str_i64(em_emitter *out, const char *key, size_t klen, int64_t val);

/* Built-in aggregations. The plain ones read int64 values (em_i64_get of the record's value, 8 bytes); the _F64
 * ones read doubles (em_f64_get). COUNT and the int64 ones produce int64 values; MEAN and the _F64 ones produce
 * doubles (em_f64_put). An empty input gives no record for a key (reduceByKey) or EM_EINVAL (em_reduce_i64). */
typedef enum em_agg {
    EM_AGG_COUNT, /* number of records */
    EM_AGG_SUM,   /* sum of values */
    EM_AGG_MIN,
    EM_AGG_MAX,
    EM_AGG_MEAN,     /* mean of int64 values, as a double */
    EM_AGG_SUM_F64,  /* the same over double values */
    EM_AGG_MIN_F64,
    EM_AGG_MAX_F64,
    EM_AGG_MEAN_F64
} em_agg;

/* ---- tuples: small sequences of typed fields in one byte string ---------------------------------------------
 * A tuple is a record key or value made of fields: NULL, int64, double or string (bytes, may hold NUL). The
 * encoding preserves order: memcmp of two tuples compares them field by field (int64 and double fields each
 * numerically, strings bytewise); fields of different types order by type: NULL < int64 < double < string,
 * whatever their values. So tuple keys sort right in em_sort_by_key and group right in every shuffle.
 *
 *     em_tup t = {0};
 *     em_tup_str(&t, "fr", 2); em_tup_i64(&t, 2024);
 *     em_emit(out, t.p, (uint32_t)t.len, v, 8);
 *     em_tup_free(&t);
 *
 *     em_field f;
 *     if (em_tup_get(rec->key, rec->klen, 1, &f) == 0 && f.type == EM_F_I64) use(f.i64);
 */
typedef struct em_tup {
    uint8_t *p;
    size_t len, cap;
} em_tup;
void em_tup_clear(em_tup *t); /* len = 0, keeps the memory */
void em_tup_free(em_tup *t);
void em_tup_null(em_tup *t);
void em_tup_i64(em_tup *t, int64_t v);
void em_tup_f64(em_tup *t, double v);
void em_tup_str(em_tup *t, const void *s, size_t n);

typedef enum em_ftype { EM_F_NULL, EM_F_I64, EM_F_F64, EM_F_STR } em_ftype;
typedef struct em_field {
    em_ftype type;
    int64_t i64;
    double f64;
    const char *str; /* EM_F_STR: points into the tuple, or (when the string holds NUL bytes) into a per-thread
                        buffer valid until the next em_tup_get on this thread; not NUL-terminated */
    size_t len;
} em_field;
/* Field idx (0-based) of the tuple p[0, n). Returns 0, EM_EINVAL (no such field) or EM_EPARSE (not a tuple).
 * LOCAL. */
int em_tup_get(const void *p, size_t n, int idx, em_field *f);
/* Number of fields, or EM_EPARSE. LOCAL. */
int em_tup_count(const void *p, size_t n);

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
/* em_text's input and splits, but a record is a run of whole lines as the file holds them (each with its '\n' and
 * any '\r'; only a file's last line may lack the '\n'): key = the bytes, empty value; about 1 MiB per record, more
 * only for a longer line. Every line is in exactly one record. For jobs that scan text for tokens (word count):
 * a record per line costs more than the scan. LOCAL (lazy). */
em_ds *em_text_chunks(em_ctx *ctx, const char *const *paths, int npaths, int nparts);

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

/* ---- more narrow operators (pipelined, LOCAL and lazy) ------------------------------------------------------- */

/* mapPartitions: open() once per partition (its return value is the partition's state; NULL is fine), each()
 * for every record, close() at the end of the partition (may emit; must free the state). A negative return
 * fails the task with EM_EUSER. open may be NULL. */
typedef void *(*em_part_open_fn)(int part, void *arg);
typedef int (*em_part_each_fn)(void *state, const em_rec *in, em_emitter *out, void *arg);
typedef int (*em_part_close_fn)(void *state, em_emitter *out, void *arg);
em_ds *em_map_partitions(em_ds *parent, em_part_open_fn open, em_part_each_fn each, em_part_close_fn close,
                         void *arg);

/* The records of a, then those of b: partitions of a followed by partitions of b. Both from the same ctx. */
em_ds *em_union(em_ds *a, em_ds *b);

/* Keeps each record with probability `fraction` (0..1), independently, with a pseudo-random stream seeded by
 * (seed, partition): the same seed gives the same sample on any number of ranks and across retries. */
em_ds *em_sample(em_ds *parent, double fraction, uint64_t seed);

/* ---- more wide operators (a shuffle each; nparts: output partitions, 0 = default; LOCAL and lazy) ---------- */

/* aggregateByKey: per key, acc = zero; acc = seq(acc, value) for each value (map side, into a per-task table),
 * then the per-task accumulators are merged with comb (reduce side). seq has em_combine_fn's shape with
 * (acc, value). Output: (key, final acc). */
em_ds *em_aggregate_by_key(em_ds *parent, const void *zero, uint32_t zlen, em_combine_fn seq, em_combine_fn comb,
                           void *arg, int nparts);

/* Values of one key, as a stream: em_values_next gives 1 and the next value (borrowed until the next call), or 0
 * at the end (or a negative error code, which the callback should return). The values of a key need not fit in
 * memory: they are merged from sorted runs on disk when the data exceeds --ember-memory. */
typedef struct em_values em_values;
int em_values_next(em_values *it, const void **val, uint32_t *vlen);

/* groupByKey: fn is called once per distinct key (keys in byte order within a partition) with its values in no
 * particular order; it emits any records. */
typedef int (*em_group_fn)(const void *key, uint32_t klen, em_values *vals, em_emitter *out, void *arg);
em_ds *em_group_by_key(em_ds *parent, em_group_fn fn, void *arg, int nparts);

/* cogroup: fn is called once per key present in a or b, with a's values and b's values for that key (either may
 * be empty). */
typedef int (*em_cogroup_fn)(const void *key, uint32_t klen, em_values *a, em_values *b, em_emitter *out, void *arg);
em_ds *em_cogroup(em_ds *a, em_ds *b, em_cogroup_fn fn, void *arg, int nparts);

/* join of a and b on equal keys. Output records: the key, and as value a 2-field tuple (a's value, b's value) as
 * strings (em_tup_get fields 0 and 1, type EM_F_STR); a missing side (outer joins) is EM_F_NULL. */
typedef enum em_join_kind { EM_JOIN_INNER, EM_JOIN_LEFT, EM_JOIN_RIGHT, EM_JOIN_FULL } em_join_kind;
em_ds *em_join(em_ds *a, em_ds *b, em_join_kind kind, int nparts);

/* One copy of each distinct record (key and value both compared). */
em_ds *em_distinct(em_ds *parent, int nparts);

/* Sorted by key bytes (memcmp; use em_i64_put/em_f64_put/tuples for numbers) across partitions: every key of
 * partition i sorts before every key of partition i+1. The boundaries come from a sample of the keys taken when
 * an action first needs this dataset. Equal keys keep no particular order. */
em_ds *em_sort_by_key(em_ds *parent, int ascending, int nparts);

/* The same records spread evenly over nparts partitions (no combine, no order). */
em_ds *em_repartition(em_ds *parent, int nparts);

/* Keeps the partitions of ds on the ranks that computed them the first time an action needs them; later actions
 * read them from there (or recompute them from lineage if that rank is gone). Returns ds. LOCAL. */
em_ds *em_cache(em_ds *ds);

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

/* The first n records (in partition order) as em_collect gives them. COLLECTIVE. */
int em_take(em_ds *ds, size_t n, em_records *out);

/* Calls fn for every record on the executors (side effects only; runs wherever the task runs, possibly twice for
 * a retried task). A negative return fails the task with EM_EUSER. COLLECTIVE. */
int em_foreach(em_ds *ds, em_filter_fn fn, void *arg);

/* ---- CSV ------------------------------------------------------------------------------------------------ */

/* Rows of RFC 4180 CSV files (quotes, "" escapes, separators and newlines inside quotes; first row = header)
 * from files, directories and globs as em_text takes them, split by byte ranges aligned to record starts.
 * One record per row: key empty, value = a tuple of the row's fields as strings (EM_F_STR, unescaped).
 * Malformed rows (bad quoting, wrong field count) are skipped, counted and reported on stderr as FILE:LINE: what
 * (at most 10 per task), or fail the task with EM_EPARSE when opts->strict. Column names: em_csv_columns.
 * LOCAL (lazy; reads each file once when built, to cut it into splits). A missing file fails the first action. */
typedef struct em_csv_opts {
    char sep;   /* 0: ',' */
    int strict; /* 1: a malformed row fails the job */
    int line_keys; /* 1: key = tuple (int64 file index, int64 line where the row starts) instead of empty, so a
                      job can name the row in its own messages (em_csv_file names the file) */
} em_csv_opts;
em_ds *em_csv(em_ctx *ctx, const char *const *paths, int npaths, const em_csv_opts *opts, int nparts);
/* Number of columns of a CSV dataset's header (the first file's), and the index of a column by name (-1 if
 * absent) and its name. LOCAL. */
int em_csv_ncols(const em_ds *csv);
int em_csv_col(const em_ds *csv, const char *name);
const char *em_csv_colname(const em_ds *csv, int idx);
/* Path of input file `file_index` (0-based, in the expanded order of paths: see em_text), or NULL. LOCAL. */
const char *em_csv_file(const em_ds *csv, int file_index);

/* ---- HDF5 ------------------------------------------------------------------------------------------------
 * Serial HDF5 only (no MPI-IO: its collectives hang when a rank dies); each task opens the file on its own.
 *
 * Record shape of em_hdf5, one record per row:
 *   key   = em_i64_put(row index), 8 bytes (0-based row of the dataset)
 *   value = a tuple of the row's fields:
 *             1-D integer or float dataset   one field (EM_F_I64 for integers, EM_F_F64 for floats)
 *             2-D integer or float dataset   one field per column
 *             1-D compound dataset           one field per member, in member order: integers EM_F_I64, floats
 *                                            EM_F_F64, fixed-length strings EM_F_STR (up to the first NUL)
 * Integers of 8 to 64 bits, signed or unsigned (unsigned 64-bit values above INT64_MAX fail the task), float
 * and double are read; variable-length strings, enums, arrays and nested compounds are not.
 */

/* Rows of dataset `dataset` (a path inside the file, e.g. "/results/t") of HDF5 file `file`, in nparts
 * partitions of contiguous row ranges (0: default); a task reads only its own hyperslab. The file is opened when
 * the dataset is built, on every rank, to learn the shape: a missing file, a missing dataset, a wrong type or rank
 * fail the first action that reads it (EM_ENOENT / EM_ETYPE) with a message naming file, dataset and what was
 * expected. LOCAL (lazy). */
em_ds *em_hdf5(em_ctx *ctx, const char *file, const char *dataset, int nparts);

/* Writes ds as a 1-D compound dataset `dataset` of HDF5 file `file`, one row per record (key ignored), rows in
 * partition order. `schema` maps the fields of each record's VALUE tuple, in order, to compound members:
 *     "country:str16,orders:i64,total:f64,avg:f64"
 * types: i32, i64 (from EM_F_I64), f32, f64 (from EM_F_I64 or EM_F_F64; a NULL field becomes NaN), strN (a
 * fixed-length string of N bytes, 1 <= N <= 65535, from EM_F_STR; a NULL field becomes ""). A record with fewer
 * fields, a field of another type, an integer out of i32 range or a string longer than N fails the task
 * (EM_ETYPE, naming the field). Names: not empty, no ',' or ':', not repeated.
 * Each task writes a part file into a hidden directory next to `file` (".NAME.ember-parts.*"); then one more task
 * merges the parts in partition order into "FILE.tmp.PID" (chunked, deflate-compressed, with attributes
 * ember_job, ember_inputs (the files the lineage read through parent links, when known) and ember_created (UTC,
 * ISO 8601)) and rename()s it onto `file`, which is replaced atomically: readers see the old file or the complete
 * new one, never a part. The parts are removed after the rename. If the merging rank dies, the merge task is
 * retried elsewhere from the parts (a dead rank's "FILE.tmp.PID" stays behind; the final name is never half
 * written). A failed save leaves no FILE; the leader removes its parts, though a task of the failed action still
 * running elsewhere may leave a hidden parts directory behind. Parts and file must be on a file system every rank
 * sees (one host, or a shared directory).
 * COLLECTIVE: every rank returns after the file is in place. Errors: EM_EINVAL (bad schema), EM_ETYPE, EM_EIO,
 * and those of em_count. */
int em_save_hdf5(em_ds *ds, const char *file, const char *dataset, const char *schema);

/* ---- streaming: windowed aggregation over an input log (shared DESIGN.md section 7) ------------------------
 * A streaming query reads a topic of the input log (`ember log create/append`), assigns each event to event-time
 * windows, aggregates per (window, key) and appends one CSV row per window and key to a file when the watermark
 * passes the window's end. It runs as micro-batches and commits offsets, window state and output after each one to
 * a checkpoint directory, so a restart with the same checkpoint resumes exactly once.
 *
 * Semantics:
 *   - Windows are [start, start + window) with start a multiple of `slide` (counted from the epoch, so windows line
 *     up across runs); an event at time t belongs to every window with start <= t < start + window (one window when
 *     slide == window: tumbling).
 *   - The watermark is the largest event time seen so far minus `lateness` (none before the first event). It only
 *     moves between micro-batches. A window is closed when its end <= watermark.
 *   - An event adds to each of its windows that is still open at the start of its batch; an event all of whose
 *     windows are closed is late: dropped and counted. Which events are late depends on batch boundaries (as in
 *     Spark).
 *   - After each batch every newly closed window is written once, as `window_start,window_end,key,value` rows (times
 *     in ms since the epoch, the key quoted as in RFC 4180 when it holds , " CR or LF) ordered by (window_end,
 *     window_start, key bytes). The watermark never goes back, so the whole output file is in that order too; a
 *     header row starts it.
 */

/* The aggregate of a window's values per key. COUNT counts events and ignores values; the others read the event's
 * value as a number: an integer literal ([+-]digits within int64) is kept exact (sums in 128 bits), any other
 * decimal number (1.5, -2e3, .5; at most 127 bytes, finite) is a double. Values that are not numbers are skipped
 * and counted as bad. */
typedef enum em_stream_agg {
    EM_STREAM_COUNT,
    EM_STREAM_SUM,
    EM_STREAM_MIN, /* of an integer and a double of equal value, min and max keep the integer */
    EM_STREAM_MAX,
    EM_STREAM_AVG,
    EM_STREAM_USER /* the user's combine function: em_stream_opts.combine */
} em_stream_agg;

/* "count", "sum", "min", "max", "avg" -> the aggregate, or -1 (also for NULL and "user", which needs functions).
 * And back ("user" for EM_STREAM_USER, "?" if unknown). LOCAL. */
int em_stream_agg_parse(const char *name);
const char *em_stream_agg_name(em_stream_agg agg);

#define EM_STREAM_ACC_MAX 1024  /* bytes of a user's accumulator, at most */
#define EM_STREAM_VALUE_MAX 256 /* bytes of a user's printed value, at most */

/*
 * A user's aggregate (agg = EM_STREAM_USER), as a combine function over accumulators of a fixed size: each event
 * becomes an accumulator (from_event), the accumulators of one (window, key) are combined two at a time (merge),
 * and a closed window's accumulator is printed as the row's value (format). For example the value of the latest
 * event: {time, value} from each event, merge keeps the later. An accumulator is acc_size plain bytes: Ember moves
 * them between ranks and into the checkpoint as they are, so they must hold no pointers, and every rank must run
 * the same functions on the same architecture. The functions get accumulators aligned to 16 bytes: cast them to
 * a struct of acc_size bytes.
 *
 * merge must be associative and commutative: Ember combines in whatever order tasks, batches and ranks give it,
 * first inside each task, then across tasks, batches and restarts. (The output is only reproducible when it is.)
 * The functions may run on several threads at once and on every rank: they must not change *arg or anything
 * outside the accumulator they are given.
 */
typedef struct em_stream_combine {
    const char *name; /* names the aggregate in the checkpoint: a checkpoint of another name or acc_size is refused */
    size_t acc_size;  /* 1 .. EM_STREAM_ACC_MAX */
    /* Sets *acc (acc_size bytes, zeroed) from one event: its time (ms since the epoch), key and value bytes
     * (borrowed; with a transform, the value is the tuple's [1] string). Returns 0, or -1 when the event's value is
     * bad: the event is skipped and counted as bad (em_stream_stats.bad), as a non-number is for sum. */
    int (*from_event)(void *acc, int64_t time, const void *key, size_t klen, const void *val, size_t vlen, void *arg);
    /* acc = acc combined with other (both from events of the same window and key; other is read-only). */
    void (*merge)(void *acc, const void *other, void *arg);
    /* Writes the value of the row into out (at most cap = EM_STREAM_VALUE_MAX bytes, no NUL needed) and returns its
     * length (a longer one is cut to cap). Ember quotes it as RFC 4180 asks when it holds , " CR or LF. */
    size_t (*format)(const void *acc, char *out, size_t cap, void *arg);
    void *arg;
} em_stream_combine;

typedef struct em_stream_opts {
    const char *log_dir;         /* the topic */
    const char *checkpoint_dir;  /* created if missing; must be on a file system every rank sees */
    const char *out_path;        /* the CSV output, appended by the leader (its directory must exist) */
    int64_t window_ms, slide_ms; /* ms: 0 < slide_ms <= window_ms <= 2^61, window / slide <= 10000;
                                    slide_ms == window_ms: tumbling */
    int64_t lateness_ms;         /* ms, 0 .. 2^61 */
    em_stream_agg agg;
    const em_stream_combine *combine; /* agg == EM_STREAM_USER: the functions (else ignored) */
    int until_end;               /* 1: process what the log holds at start-up, then stop; 0: follow the log */
    int flush;                   /* with until_end: at the end the watermark becomes +infinity and every open window
                                    is written (the input is complete; events appended later are all late) */
    int64_t trigger_ms;          /* ms, follow mode: at most one batch per trigger interval when idle */
    uint64_t max_batch_events;   /* a batch reads at most this many records (0: no limit) */
    /* Optional: applied to each batch's events before windowing, e.g. an em_filter, or an em_map that keeps the
     * record shape: key = the event's key bytes; value = a tuple [0] int64 event time (ms since the epoch),
     * [1] string value, [2] int64 log partition, [3] int64 offset. Must build the same graph on every rank.
     * NULL: none (the engine then reads the log without building records at all, which is faster). */
    em_ds *(*transform)(em_ds *events, void *arg);
    void *transform_arg;
} em_stream_opts;

typedef struct em_stream_stats {
    uint64_t batches;   /* batches committed by this run */
    uint64_t events;    /* totals since the query began (restored from the checkpoint) */
    uint64_t late;      /* events dropped because all their windows were closed */
    uint64_t bad;       /* events whose value is not a number (sum/min/max/avg) or was refused by a user's
                           from_event, or whose time is beyond +-2^62 ms */
    uint64_t rows;      /* output rows written */
    int64_t watermark;  /* ms; INT64_MIN: none yet; INT64_MAX: after a flush */
    int resumed;        /* 1: started from an existing checkpoint */
} em_stream_stats;

/*
 * Runs the query until the log's end at start-up (until_end) or until em_stream_stop() was called on any rank
 * (follow mode; the current batch is committed first). Every rank must call it with the same options.
 * COLLECTIVE (runs actions). Restarting with the same checkpoint directory resumes exactly once: the output file is
 * cut back to the length recorded in the checkpoint, then the batches after it are replayed from the log. Bad
 * values are named on stderr as "LOG: partition P offset O: ..." (10 per task). The window state is kept on every
 * rank; one batch's partial aggregates must fit --ember-max-result.
 * Returns 0 and fills *st (may be NULL), or a negative code with em_last_error() set:
 *   EM_ENOENT  the log directory is not a topic, or the output's directory does not exist;
 *   EM_EINVAL  bad options, or a checkpoint written by a different query (window, slide, lateness, aggregate,
 *              a user aggregate's name or acc_size, partition count or output file differ), or an output file
 *              shorter than its checkpoint records;
 *   EM_EPARSE  a corrupt checkpoint, or a torn or corrupt record in the log range of a batch;
 *   EM_EIO     the checkpoint directory cannot be created;   or an action's error (EM_ETASK, EM_ETOOBIG, ...).
 * An I/O error while the leader writes the output or a checkpoint ends the leader's process (_exit(1)): the
 * survivors elect a new leader that retries the commit from its replica of the state.
 */
int em_stream_run(em_ctx *ctx, const em_stream_opts *o, em_stream_stats *st);

/* Asks the running query to stop after its current batch. Async-signal-safe (call it from SIGINT/SIGTERM
 * handlers); any rank may call it. LOCAL. */
void em_stream_stop(void);

#ifdef __cplusplus
}
#endif
#endif /* EMBER_H */
