/*
 * textsplit.h — input expansion, byte-range splits and a fast line reader for text sources (DESIGN.md §8).
 *
 * Pure and LOCAL: no MPI, no engine state; everything here can be unit-tested in one process.
 *
 * Ownership rule of splits: a split [start, end) of a file OWNS exactly the lines whose first byte lies in
 * [start, end). A line starts at offset 0 and right after every '\n' (an offset equal to the file size starts
 * nothing). The reader of a split therefore skips, when start > 0, to just after the first '\n' at or after
 * offset start-1, and reads past `end` to finish its last line. Any set of splits that tiles a file reads every
 * line exactly once, whatever the split size (1 byte included).
 */
#ifndef EMBER_OPERATORS_SOURCES_TEXTSPLIT_H
#define EMBER_OPERATORS_SOURCES_TEXTSPLIT_H

#include <stddef.h>
#include <stdint.h>

/* Default split size when em__text_plan() is given split_bytes == 0. */
#define EM__SPLIT_DEFAULT_BYTES ((uint64_t)64 << 20)
/* Default initial buffer of a line reader (grown for longer lines). */
#define EM__LINE_READER_DEFAULT_BUF ((size_t)1 << 20)

/* One byte range of one input file. */
typedef struct em__split {
    int file;           /* index of the file in the expanded, ordered input list (0-based) */
    const char *path;   /* the file's path; points into the plan's own allocation */
    uint64_t start;     /* bytes: first offset of the range */
    uint64_t end;       /* bytes: one past the last offset; start < end */
    uint64_t file_size; /* bytes, as seen by stat() at planning time */
    uint64_t line;      /* 1-based line number of the first line owned, 0 if unknown (text: known only when
                           start == 0; CSV plans always fill it) */
} em__split;

/*
 * Expands `paths` into an ordered list of regular files and cuts them into byte-range splits. LOCAL.
 *
 *   - a path containing '*', '?' or '[' is a glob(3) pattern (matches in glob's sorted order; a pattern that
 *     matches nothing is EM_ENOENT); each match is then treated like a plain path below;
 *   - a directory contributes its regular files (not recursive), sorted by name in byte order, skipping names
 *     that start with '.' or '_' (hidden files, _SUCCESS, _temporary ...);
 *   - glob matches whose base name starts with '.' or '_' are skipped too; a file named explicitly never is;
 *   - the files keep the order of `paths`; a file listed twice is read twice.
 *
 * Split size: split_bytes (EM__SPLIT_DEFAULT_BYTES if 0), lowered to max(1, total_bytes / min_splits) when that
 * is smaller, so that there are at least min_splits splits whenever total_bytes >= min_splits. Each file is cut
 * on its own into ceil(size / split_size) ranges; empty files give no splits.
 *
 * On success *out is one heap block (splits and the path strings they point to) that the caller frees with
 * em__text_plan_free(); *nsplits may be 0 (e.g. only empty files), then *out may be NULL.
 * Errors: EM_ENOENT (missing path, glob without match), EM_EIO (stat/opendir/glob failure),
 * EM_EINVAL (bad arguments, too many splits), EM_ENOMEM. `err` (may be NULL) gets a message naming the path.
 */
int em__text_plan(const char *const *paths, int npaths, uint64_t split_bytes, int min_splits, em__split **out,
                  int *nsplits, char *err, size_t errlen);

/* Formats a message into err[errlen] (nothing if err is NULL or errlen 0); shared by the text and CSV readers. */
void em__set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Frees a plan from em__text_plan() or em__csv_plan(). NULL is a no-op. */
void em__text_plan_free(em__split *splits);

/*
 * Line reader over one split. Reads with pread() into one buffer (EM__LINE_READER_DEFAULT_BUF, doubled for lines
 * that do not fit) and finds line ends with memchr(); no stdio, no per-line allocation.
 *
 *     em__line_reader r;
 *     if ((rc = em__line_reader_open(&r, s->path, s->start, s->end, 0, 0)) < 0) ... r.err has the message;
 *     while ((rc = em__line_reader_next(&r, &line, &len, &lineno)) > 0) use(line, len);
 *     em__line_reader_release(&r);          // always, also after a failed open
 *
 * Lines come without their '\n' and without one trailing '\r' (CRLF files); the last line of a file without a
 * final newline is returned too. A line is borrowed: valid until the next call on the reader (it is NOT
 * NUL-terminated).
 */
typedef struct em__line_reader {
    int fd;
    const char *path;   /* borrowed, for messages */
    uint64_t start;     /* bytes: owned lines start in [start, end) */
    uint64_t end;
    uint64_t off;       /* file offset of buf[0] */
    char *buf;
    size_t cap;         /* bytes allocated */
    size_t len;         /* bytes valid in buf */
    size_t pos;         /* index in buf of the next line start */
    int eof;            /* the file has no bytes beyond off + len */
    int skipping;       /* still looking for the first line start (start > 0) */
    int done;
    uint64_t lineno;    /* line number of the next line, 0 if unknown */
    char err[512];
} em__line_reader;

/*
 * Opens `path` for the split [start, end). bufsize is the initial buffer (0 = default). With count_lines != 0
 * and start > 0, the reader counts the '\n' bytes in [0, start) (one extra read of that prefix, memchr speed)
 * so that line numbers are known; otherwise they are known only when start == 0 and reported as 0.
 * Returns 0, EM_ENOENT / EM_EIO (message in r->err), EM_ENOMEM, EM_EINVAL (start > end).
 */
int em__line_reader_open(em__line_reader *r, const char *path, uint64_t start, uint64_t end, size_t bufsize,
                         int count_lines);

/* Next owned line: 1 and (*line, *len, *lineno — lineno may be NULL, 0 if unknown), 0 at the end of the split,
 * or EM_EIO (message in r->err) / EM_ENOMEM. */
int em__line_reader_next(em__line_reader *r, const char **line, size_t *len, uint64_t *lineno);

/* Next run of whole owned lines, as bytes of the file: 1 and (*chunk, *len), 0 at the end of the split, or
 * EM_EIO / EM_ENOMEM. The run is every owned line the buffer holds complete, each with its '\n' (and any '\r'
 * before it); only the split's last line may lack a '\n', at the end of the file. Longer than the buffer only when
 * one line is. Valid until the next call. Do not mix with em__line_reader_next on one reader (lineno is not
 * kept). */
int em__line_reader_chunk(em__line_reader *r, const char **chunk, size_t *len);

/* Low-level, for other readers that reuse this buffer management (the CSV reader): drops buf[0, pos), grows the
 * buffer if it is full, then appends what pread() gives at off + len; sets r->eof at end of file.
 * Returns 0, EM_EIO or EM_ENOMEM (message in r->err). */
int em__line_reader_fill(em__line_reader *r);

/* Closes the file and frees the buffer. Safe after a failed open and when called twice. */
void em__line_reader_release(em__line_reader *r);

#endif
