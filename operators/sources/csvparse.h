/*
 * csvparse.h — RFC 4180 CSV: a streaming record parser over a byte buffer, headers, typed field access, and
 * record-aligned splits of CSV files (DESIGN.md §8). Pure and LOCAL: no MPI, no engine state.
 *
 * Grammar (what the parser accepts, and what it reports as malformed):
 *   - records end at '\n' or "\r\n"; fields are separated by opts->sep (default ',');
 *   - a field whose FIRST byte is '"' is quoted: it runs to the next '"' not followed by another '"'; inside it
 *     "" is one quote and separators, '\r' and '\n' are data;
 *   - a '"' anywhere else is data, but the record is reported malformed ("quote inside unquoted field");
 *   - bytes between a closing quote and the next separator / record end (other than the '\r' of a CRLF) make the
 *     record malformed ("unexpected 'x' after closing quote");
 *   - a quoted field still open at end of file makes the rest of the file one malformed record;
 *   - a record whose field count differs from the header's is malformed;
 *   - blank lines ("" or "\r" between two newlines) are not records: they are skipped silently;
 *   - a UTF-8 byte-order mark at the start of the header is dropped.
 * Malformed records are skipped whole (the parser always knows where the record ends) with a message
 * "FILE:LINE: what" naming the line where the record starts; the caller counts them and decides strict vs
 * permissive.
 *
 * Record framing depends only on the position of quotes at field starts, which is what makes CSV files
 * splittable by byte ranges: em__csv_plan() walks each file once, tracking that state with memchr(), and moves
 * every cut to the next record start. See csvparse.c for why this is correct and what it costs.
 */
#ifndef EMBER_OPERATORS_SOURCES_CSVPARSE_H
#define EMBER_OPERATORS_SOURCES_CSVPARSE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "operators/sources/textsplit.h"

/* Options; zero-initialised means: ',' separator, first record is a header, default buffer. */
typedef struct em__csv_opts {
    char sep;           /* field separator, 0 = ',' (must not be '"', '\r' or '\n') */
    int no_header;      /* 1: no header row (column names unknown, any field count accepted) */
    size_t bufsize;     /* initial read buffer of readers in bytes, 0 = EM__LINE_READER_DEFAULT_BUF */
} em__csv_opts;

/* Column names of a file: the first record. */
typedef struct em__csv_header {
    int ncols;          /* 0 when the file has no header */
    char **name;        /* ncols NUL-terminated names, owned (unescaped; a name may contain NUL, then the
                           lookup sees it truncated) */
} em__csv_header;

/* Index of the first column called `name`, or -1 (also for a NULL / empty header). LOCAL. */
int em__csv_col(const em__csv_header *hdr, const char *name);

/* Frees the names. Safe on a zeroed header and twice. */
void em__csv_header_release(em__csv_header *hdr);

/* One record. Fields are borrowed from the parser's buffer: valid until the next call on the parser / reader.
 * They are NOT NUL-terminated; quoted fields are already unescaped (quotes removed, "" turned into "). */
typedef struct em__csv_row {
    int nfields;
    const char *const *field;   /* field[i] points at len[i] bytes */
    const uint32_t *len;
    uint64_t line;              /* 1-based line where the record starts, 0 if unknown */
    const char *file;           /* for messages, may be NULL */
    const em__csv_header *hdr;  /* for messages (column names), may be NULL */
} em__csv_row;

/* Typed access to field `idx` (e.g. from em__csv_col()). The whole field must parse: no surrounding spaces, not
 * empty. i64: decimal with optional sign, within int64. f64: what strtod() accepts (incl. inf, nan, hex),
 * overflow to infinity rejected. Returns 0, EM_EPARSE with "FILE:LINE: NAME: 'abc' is not a number" in `err`
 * (may be NULL), or EM_EINVAL if idx is out of range ("FILE:LINE: no field 7 (the record has 5)"). LOCAL. */
int em__csv_field_i64(const em__csv_row *row, int idx, int64_t *out, char *err, size_t errlen);
int em__csv_field_f64(const em__csv_row *row, int idx, double *out, char *err, size_t errlen);

/* ---- streaming parser over a caller's buffer --------------------------------------------------------- */

typedef struct em__csv_parser {
    char sep;
    int ncols;                  /* expected field count, 0 = any */
    const char *file;           /* for messages, may be NULL */
    const em__csv_header *hdr;  /* for messages and row->hdr, may be NULL */
    uint64_t line;              /* line where the next record starts, 0 = unknown (then stays 0) */
    uint64_t nbad;              /* malformed records seen */
    const char **field;         /* reused between records: no allocation per record once warm */
    uint32_t *flen;
    int fcap;
    char err[512];              /* last message, "FILE:LINE: what" */
} em__csv_parser;

/* Prepares a parser (caller's storage). `file` (borrowed) names the input in messages, `line` is the line number
 * of the first byte that will be parsed (1 at a file start, 0 if unknown). ncols 0 accepts any field count. */
void em__csv_parser_init(em__csv_parser *p, char sep, const char *file, uint64_t line, int ncols,
                         const em__csv_header *hdr);
void em__csv_parser_release(em__csv_parser *p);

#define EM__CSV_ROW 1       /* a record is in *row */
#define EM__CSV_BLANK 2     /* a blank line was consumed, no record */
#define EM__CSV_MORE 0      /* no complete record in buf: append bytes (or set eof) and call again */

/*
 * Parses the record at buf[0, len). `eof` says that no byte follows buf[len) in the input. The buffer is
 * modified in place (quoted fields are unescaped), so only pass bytes the caller will not read again.
 * Returns EM__CSV_ROW / EM__CSV_BLANK with *used = bytes consumed (terminator included), EM__CSV_MORE with
 * *used = 0 (at eof that means the input is exhausted), EM_EPARSE for a malformed record (skipped: *used is its
 * length, p->err says why, p->nbad is incremented), or EM_ENOMEM. p->line advances past consumed bytes.
 */
int em__csv_parse(em__csv_parser *p, char *buf, size_t len, int eof, size_t *used, em__csv_row *row);

/* ---- files: planning and reading ------------------------------------------------------------------------- */

/*
 * Expands `paths` (files, directories, globs: exactly as em__text_plan()) and cuts the files into splits aligned
 * to record starts, so that every data record is read exactly once whatever the split size, even with newlines
 * inside quoted fields. LOCAL, but READS EVERY INPUT FILE ONCE (memchr over quotes and newlines, stopping after
 * the last cut of each file): call it where planning happens, once per dataset.
 *
 * Each split has start >= the end of its file's header, exact start/end record boundaries (a reader never reads
 * past `end`) and `line` = the line number at `start`. Splits holding no record start are dropped; files with no
 * data get no splits. The header is not in any split: every reader re-reads it from its file (one small read).
 * Free *out with em__text_plan_free(). Errors as em__text_plan(), plus EM_EPARSE for an unreadable header
 * (message "FILE:1: ...") and EM_EIO.
 */
int em__csv_plan(const char *const *paths, int npaths, uint64_t split_bytes, int min_splits,
                 const em__csv_opts *opts, em__split **out, int *nsplits, char *err, size_t errlen);

/*
 * Reader of the records of one split (any record-aligned range, typically from em__csv_plan(); [0, file size)
 * reads the whole file). Reads the file's header first unless opts->no_header.
 *
 *     em__csv_reader r;
 *     if ((rc = em__csv_reader_open(&r, s->path, s->start, s->end, s->line, &opts)) < 0) fail(r.err);
 *     int amount = em__csv_col(&r.hdr, "amount");
 *     while ((rc = em__csv_reader_next(&r, &row)) != 0) {
 *         if (rc == EM_EPARSE) { report(r.err); if (strict) break; continue; }   // row skipped, r.nbad counted
 *         if (rc < 0) break;                                                      // EM_EIO / EM_ENOMEM
 *         ...
 *     }
 *     em__csv_reader_release(&r);     // always, also after a failed open
 */
typedef struct em__csv_reader {
    em__line_reader io;         /* file, buffer and offsets (its line logic is not used) */
    em__csv_parser p;
    em__csv_header hdr;
    uint64_t nbad;              /* malformed records skipped so far */
    char err[512];              /* message of the last error */
} em__csv_reader;

/* Opens `path` for the records starting in [start, end); `line` is the line number at `start` (0 if unknown;
 * computed when start is 0 or within the header). Returns 0, EM_ENOENT / EM_EIO, EM_EPARSE (bad header),
 * EM_ENOMEM, EM_EINVAL; message in r->err. */
int em__csv_reader_open(em__csv_reader *r, const char *path, uint64_t start, uint64_t end, uint64_t line,
                        const em__csv_opts *opts);

/* Next record: 1 and *row, 0 at the end of the split, EM_EPARSE (a malformed record was skipped; r->err names
 * file, line and problem; calling again continues after it), EM_EIO or EM_ENOMEM. */
int em__csv_reader_next(em__csv_reader *r, em__csv_row *row);

void em__csv_reader_release(em__csv_reader *r);

/* ---- writing --------------------------------------------------------------------------------------------- */

/* The field s[0, n) as RFC 4180 writes it: quoted when it holds a comma, a quote, CR or LF, its quotes doubled.
 * Writes at most 2 n + 2 bytes to d and returns how many. LOCAL. Inline: windowcount writes millions of rows. */
extern const uint8_t em__csv_special[256]; /* 1 for , " CR LF */
size_t em__csv_quote_slow(char *d, const uint8_t *s, size_t n);
static inline size_t em__csv_quote(char *d, const void *s, size_t n)
{
    const uint8_t *k = (const uint8_t *)s;
    for (size_t i = 0; i < n; i++)
        if (em__csv_special[k[i]]) return em__csv_quote_slow(d, k, n);
    if (n) memcpy(d, k, n);
    return n;
}
/* The same, written to f. */
void em__csv_fput(FILE *f, const void *s, size_t n);

#endif
