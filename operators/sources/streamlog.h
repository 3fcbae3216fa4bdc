/*
 * streamlog.h — the input log of streaming jobs (shared DESIGN.md §7): a topic of partitions, each an append-only
 * sequence of checksummed records {offset, event time, key, value} in size-rolled segment files with a sparse
 * offset index. Plain POSIX + zlib crc32: no MPI, no engine state; every function here is LOCAL.
 *
 * On disk (the byte formats are drawn as tables in streamlog.c, next to the code that reads them):
 *
 *   DIR/topic                              "ember-log 1\npartitions N\nsegment-bytes B\n"
 *   DIR/p00000/lock                        flock()ed: LOCK_EX by an appender for one batch, LOCK_SH by readers
 *   DIR/p00000/00000000000000000000.log    records with offsets 0, 1, ... (a segment is named by its first offset)
 *   DIR/p00000/00000000000000000000.idx    sparse index: (offset - base, byte position) every ~4 KiB of records
 *   DIR/p00000/00000000000000012345.log    the next segment, started when the previous one reached B bytes
 *
 * Offsets are dense per partition (0, 1, 2, ... with no gap) and assigned by the log at append time. A key goes
 * to partition em__log_hash(key) % N (FNV-1a 64, see em__log_hash()).
 *
 * Errors: functions return 0 (or a count) or a negative EM_E* code (include/ember.h) and, when `err` is not NULL,
 * write a message "DIR/p00001/00000000000000000000.log: offset 41 at byte 1234: bad crc" into err[errlen]:
 *   EM_EINVAL  bad arguments (partition out of range, offset beyond the end, record too large ...)
 *   EM_ENOENT  the topic directory or its metadata file does not exist
 *   EM_EEXISTS em__log_create() on a non-empty directory
 *   EM_EPARSE  bad metadata, or a record that fails its checks (torn, bad crc, wrong offset, missing segment)
 *   EM_EIO     a system call failed (message names the file and strerror)
 *   EM_ENOMEM  out of memory
 *
 * Crash safety: an append is durable when em__log_append() returns 0 (log and index fdatasync'ed, a new segment's
 * directory entry fsync'ed). A crash mid-append leaves a torn or corrupt tail; readers stop at the last good
 * record and report where; appenders refuse to write after it (they never destroy bytes they cannot prove were
 * never acknowledged: a tail cut by `truncate` or a bad disk looks the same as a crash), and em__log_repair()
 * truncates it, after which appends continue at the first offset that was cut.
 */
#ifndef EMBER_OPERATORS_SOURCES_STREAMLOG_H
#define EMBER_OPERATORS_SOURCES_STREAMLOG_H

#include <stddef.h>
#include <stdint.h>

#define EM__LOG_FORMAT 1                        /* version written to the metadata file */
#define EM__LOG_MAX_PARTITIONS 10000
#define EM__LOG_DEFAULT_SEGMENT_BYTES (64u << 20)
#define EM__LOG_MIN_SEGMENT_BYTES 64u           /* tiny segments are for tests */
#define EM__LOG_MAX_SEGMENT_BYTES (1u << 30)    /* index positions are u32 */
#define EM__LOG_INDEX_INTERVAL 4096u            /* bytes of records between two index entries */
#define EM__LOG_REC_HEADER 32u                  /* bytes of a record before its key */
#define EM__LOG_MAX_RECORD (16u << 20)          /* bytes of one whole record, header included */
#define EM__LOG_END UINT64_MAX                  /* em__log_read(): "to the end as it is now" */

/* An open topic (metadata only: files are opened per call). Opaque. */
typedef struct em__log_topic em__log_topic;

/* One record. In em__log_append() the caller fills time_ms, key and value (offset is ignored: the log assigns
 * it); in em__log_read() callbacks everything is borrowed and valid only during the call. */
typedef struct em__log_rec {
    uint64_t offset;
    int64_t time_ms;    /* event time, ms since the epoch */
    const char *key;
    uint32_t klen;
    const char *value;
    uint32_t vlen;
} em__log_rec;

/* Where a read or a scan stopped. For a clean stop `offset` is the next offset to read. For a bad record it is
 * the offset the bad record should have had; `segment` is the base offset of the segment file holding it and
 * `byte` its byte position in that file. */
typedef struct em__log_pos {
    uint64_t offset;
    uint64_t segment;
    uint64_t byte;
} em__log_pos;

/*
 * Creates a topic: the directory `dir` (which must not exist, or be empty), the metadata file, and per partition
 * a subdirectory with its lock file and an empty first segment. The topic is built in a sibling temporary
 * directory and renamed into place, so a crash never leaves a half-made topic under `dir`.
 * segment_bytes 0 means EM__LOG_DEFAULT_SEGMENT_BYTES. Returns 0, EM_EINVAL (nparts outside
 * 1..EM__LOG_MAX_PARTITIONS, segment_bytes outside [EM__LOG_MIN_SEGMENT_BYTES, EM__LOG_MAX_SEGMENT_BYTES]),
 * EM_EEXISTS, EM_EIO, EM_ENOMEM.
 */
int em__log_create(const char *dir, int nparts, uint64_t segment_bytes, char *err, size_t errlen);

/* Opens a topic: reads and checks its metadata file. *out is freed with em__log_close(). Returns 0, EM_ENOENT,
 * EM_EPARSE (bad or newer-format metadata), EM_EIO, EM_ENOMEM. */
int em__log_open(const char *dir, em__log_topic **out, char *err, size_t errlen);
/* em__log_close(NULL) is a no-op. */
void em__log_close(em__log_topic *t);

int em__log_partitions(const em__log_topic *t);
uint64_t em__log_segment_bytes(const em__log_topic *t);
const char *em__log_dir(const em__log_topic *t);

/* FNV-1a 64 of the key bytes (offset basis 14695981039346656037, prime 1099511628211), and the partition a key
 * goes to: em__log_hash(key) % N. Stable across versions: the e2e test recomputes it in python3. */
static inline uint64_t em__log_hash(const void *key, size_t len) /* inline: a loop over keys overlaps the hashes */
{
    const unsigned char *p = key;
    uint64_t h = 14695981039346656037ULL;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h;
}
int em__log_partition_of(const em__log_topic *t, const void *key, size_t len);

/*
 * Appends n records to partition `part` as one batch, durably: under an exclusive flock of the partition's lock
 * file it finds the end (the last segment scanned from its last valid index entry), writes the records (rolling
 * segments at the size limit), fdatasyncs log and index, then unlocks. Several processes may append to one topic
 * at once: batches never interleave and offsets stay dense. *first (may be NULL) gets the offset of recs[0].
 * Records are copied; recs[i].offset is ignored. n == 0 is a no-op.
 * Returns 0, EM_EINVAL (bad partition, record over EM__LOG_MAX_RECORD), EM_EPARSE (the partition has a torn or
 * corrupt tail: nothing is written, the message names the place and says to repair), EM_EIO (on a failed write
 * the partition is truncated back to where the batch began), EM_ENOMEM.
 */
int em__log_append(em__log_topic *t, int part, const em__log_rec *recs, size_t n, uint64_t *first, char *err,
                   size_t errlen);

/*
 * End offset (next offset to be written) of every partition: ends[0 .. em__log_partitions(t)). Each is found
 * under a shared lock (so a batch being appended is either wholly counted or not at all) by scanning the last
 * segment from its last valid index entry; a torn or corrupt tail is not an error here: the end is the offset
 * after the last good record. Returns 0, EM_EIO, EM_ENOMEM.
 */
int em__log_end_offsets(em__log_topic *t, uint64_t *ends, char *err, size_t errlen);

/*
 * Calls fn for every record of partition `part` with offset in [from, to), in offset order, seeking with the
 * index. to == EM__LOG_END means the end as it is when the call starts (found under a shared lock). fn returns 0
 * to go on; a non-zero return stops the read and is returned (use a negative EM_E* code for errors).
 * *stop (may be NULL) gets where the read stopped. Returns
 *   0          all records of [from, to) were delivered;
 *   EM_EPARSE  a bad record (torn, bad crc, wrong offset, missing segment) was met before `to`: fn saw every
 *              record before it; *stop and the message say where (this includes a bad tail when to == END);
 *   EM_EINVAL  bad partition, from > to, from before the first segment, or the log ends cleanly before `to`
 *              (*stop->offset is the end) or before `from`;
 *   EM_EIO, EM_ENOMEM, or fn's non-zero return.
 */
typedef int (*em__log_fn)(void *arg, const em__log_rec *rec);
int em__log_read(em__log_topic *t, int part, uint64_t from, uint64_t to, em__log_fn fn, void *arg,
                 em__log_pos *stop, char *err, size_t errlen);

/* What a full scan of one partition found (em__log_stat, em__log_repair). */
typedef struct em__log_part_stat {
    uint64_t start;         /* first offset held (base of the first segment) */
    uint64_t end;           /* offset after the last good record */
    uint64_t bytes;         /* bytes of its .log files */
    int nsegments;
    int64_t min_time;       /* ms; event-time range of the good records, valid when end > start */
    int64_t max_time;
    int bad;                /* 1: a problem was found at `where` (the good records stop there) */
    em__log_pos where;
    char what[300];         /* "segment 00000000000000000000.log offset 41 byte 1234: bad crc" */
    int bad_index;          /* 1: an index entry points at no record boundary (a read falls back to scanning) */
} em__log_part_stat;

/*
 * Reads every byte of partition `part` (under a shared lock: appenders to it wait) and checks every record (crc,
 * length, dense offsets, segment names matching the offsets they hold) and every index entry.
 * Returns 0 (problems are reported in *st, not as errors), EM_EINVAL (bad partition), EM_EIO, EM_ENOMEM.
 */
int em__log_stat(em__log_topic *t, int part, em__log_part_stat *st, char *err, size_t errlen);

/*
 * Under an exclusive lock, scans partition `part` as em__log_stat() and, if it is bad, cuts it at the first bad
 * record: that segment is truncated there and every later segment is removed (the records after a hole cannot be
 * renumbered without changing offsets readers may have committed). Indexes of damaged segments are rebuilt.
 * *st reports what was found before the repair, *dropped (may be NULL) the bytes removed. Returns 0, EM_EINVAL,
 * EM_EIO, EM_ENOMEM.
 */
int em__log_repair(em__log_topic *t, int part, em__log_part_stat *st, uint64_t *dropped, char *err, size_t errlen);

#endif
