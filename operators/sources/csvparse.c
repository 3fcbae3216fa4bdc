/*
 * csvparse.c — RFC 4180 CSV records, headers, typed fields and record-aligned splits (shared DESIGN.md §8:
 * "malformed CSV rows are counted and reported with file and line").
 *
 * Why splitting is correct. Whether a '\n' ends a record depends on the quote state, which a byte range cannot
 * know locally. But the state is simple: outside quotes, a '"' opens a quoted field only when it is the first
 * byte of a field (right after the data start, a separator or a '\n' that is itself outside quotes); inside
 * quotes, the next '"' closes unless another '"' follows. em__csv_parse() frames records by exactly this rule
 * (everything else it checks — stray quotes, junk after a closing quote, field counts — changes whether a record
 * is malformed, never where it ends), and align_cuts() walks a file with the same rule, jumping from quote to
 * quote with memchr(). So both agree on record starts, and splits cut at those starts partition the records.
 *
 * What it costs. The walk reads each file once, on the planning rank, up to its last cut, at memchr speed
 * (a few GB/s from the page cache). The alternative — every split scanning from its file's start at read time —
 * spreads the work over ranks but reads k/2 times the file in total for k splits of a file; planning once is
 * less total I/O and gives every split its exact line number for messages.
 */
#include "operators/sources/csvparse.h"

#include "ember.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define ESC_BIT 0x80000000u /* in flen during parsing: the quoted field holds "" pairs to unescape */
#define MAX_FIELD 0x7fffffffu

/* "FILE:LINE: " (or less when unknown) into buf. */
static const char *where(char *buf, size_t n, const char *file, uint64_t line)
{
    if (file && line) snprintf(buf, n, "%s:%llu: ", file, (unsigned long long)line);
    else if (file) snprintf(buf, n, "%s: ", file);
    else if (line) snprintf(buf, n, "line %llu: ", (unsigned long long)line);
    else buf[0] = 0;
    return buf;
}

/* "field 3 (amount)" / "field 3": 1-based, as a user counts columns. */
static const char *field_name(char *buf, size_t n, const em__csv_header *hdr, int idx)
{
    if (hdr && idx >= 0 && idx < hdr->ncols) snprintf(buf, n, "field %d (%s)", idx + 1, hdr->name[idx]);
    else snprintf(buf, n, "field %d", idx + 1);
    return buf;
}

#define BYTES8(b) (0x0101010101010101ULL * (uint8_t)(b))

/* Newlines in s[0, n). One memchr per newline, as before, made planning a 350 MB file take most of a second.
 * With SSE2 (every x86-64): 16 bytes per step, the compare results (0 or -1 per byte) subtracted into byte counters
 * that _mm_sad_epu8 adds up before they can wrap (255 steps). Then (or without SSE2) eight bytes per step: a byte
 * b of w = word ^ "\n\n..." is zero exactly when the 0x80 bit of ((b & 0x7f) + 0x7f) | b is clear (no carry
 * crosses a byte), and the multiply adds the eight flags up. */
static size_t count_nl(const char *s, size_t n)
{
    size_t c = 0, i = 0;
#ifdef __SSE2__
    const __m128i nl = _mm_set1_epi8('\n'), zero = _mm_setzero_si128();
    while (i + 16 <= n) {
        __m128i acc = zero;
        size_t stop = n - i > 16 * 255 ? i + 16 * 255 : n;
        for (; i + 16 <= stop; i += 16)
            acc = _mm_sub_epi8(acc, _mm_cmpeq_epi8(_mm_loadu_si128((const __m128i *)(const void *)(s + i)), nl));
        __m128i sum = _mm_sad_epu8(acc, zero);
        c += (size_t)_mm_cvtsi128_si64(sum) + (size_t)_mm_extract_epi16(sum, 4);
    }
#endif
    const uint64_t lo7 = BYTES8(0x7f);
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, 8);
        w ^= BYTES8('\n');
        uint64_t z = ~(((w & lo7) + lo7) | w) & BYTES8(0x80);
        c += (size_t)(((z >> 7) * BYTES8(1)) >> 56);
    }
    for (; i < n; i++) c += s[i] == '\n';
    return c;
}

/* ---- header ---------------------------------------------------------------------------------------------- */

int em__csv_col(const em__csv_header *hdr, const char *name)
{
    if (!hdr || !name) return -1;
    for (int i = 0; i < hdr->ncols; i++)
        if (strcmp(hdr->name[i], name) == 0) return i;
    return -1;
}

void em__csv_header_release(em__csv_header *hdr)
{
    for (int i = 0; i < hdr->ncols; i++) free(hdr->name[i]);
    free(hdr->name);
    hdr->name = NULL;
    hdr->ncols = 0;
}

static int header_from_row(em__csv_header *hdr, const em__csv_row *row)
{
    if (!(hdr->name = calloc((size_t)row->nfields, sizeof *hdr->name))) return EM_ENOMEM;
    for (int i = 0; i < row->nfields; i++) {
        const char *s = row->field[i];
        size_t n = row->len[i];
        if (i == 0 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) s += 3, n -= 3; /* UTF-8 BOM */
        if (!(hdr->name[i] = malloc(n + 1))) return EM_ENOMEM;
        memcpy(hdr->name[i], s, n);
        hdr->name[i][n] = 0;
        hdr->ncols = i + 1;
    }
    return 0;
}

/* ---- typed fields ---------------------------------------------------------------------------------------- */

/* Copies field idx NUL-terminated into tmp for strtoll/strtod, or explains why it cannot be a number. */
static int field_text(const em__csv_row *row, int idx, char *tmp, size_t tmpsz, const char *what, char *err,
                      size_t errlen)
{
    char w[600], fname[300];
    if (idx < 0 || idx >= row->nfields) {
        em__set_err(err, errlen, "%sno field %d (the record has %d)", where(w, sizeof w, row->file, row->line), idx + 1,
                row->nfields);
        return EM_EINVAL;
    }
    const char *s = row->field[idx];
    size_t n = row->len[idx];
    if (row->hdr && idx < row->hdr->ncols) snprintf(fname, sizeof fname, "%s", row->hdr->name[idx]);
    else field_name(fname, sizeof fname, NULL, idx);
    if (n == 0) {
        em__set_err(err, errlen, "%s%s: empty field is not %s", where(w, sizeof w, row->file, row->line), fname, what);
        return EM_EPARSE;
    }
    if (n >= tmpsz || memchr(s, 0, n) || s[0] == ' ' || (s[0] >= '\t' && s[0] <= '\r')) {
        em__set_err(err, errlen, "%s%s: '%.*s%s' is not %s", where(w, sizeof w, row->file, row->line), fname,
                n > 40 ? 40 : (int)n, s, n > 40 ? "..." : "", what);
        return EM_EPARSE;
    }
    memcpy(tmp, s, n);
    tmp[n] = 0;
    return 0;
}

static int number_error(const em__csv_row *row, int idx, const char *why, char *err, size_t errlen)
{
    char w[600], fname[300];
    size_t n = row->len[idx];
    if (row->hdr && idx < row->hdr->ncols) snprintf(fname, sizeof fname, "%s", row->hdr->name[idx]);
    else field_name(fname, sizeof fname, NULL, idx);
    em__set_err(err, errlen, "%s%s: '%.*s%s' %s", where(w, sizeof w, row->file, row->line), fname,
            n > 40 ? 40 : (int)n, row->field[idx], n > 40 ? "..." : "", why);
    return EM_EPARSE;
}

int em__csv_field_i64(const em__csv_row *row, int idx, int64_t *out, char *err, size_t errlen)
{
    char tmp[96], *end;
    long long v;
    int rc = field_text(row, idx, tmp, sizeof tmp, "an integer", err, errlen);
    if (rc < 0) return rc;
    errno = 0;
    v = strtoll(tmp, &end, 10);
    if (end == tmp || *end) return number_error(row, idx, "is not an integer", err, errlen);
    if (errno == ERANGE) return number_error(row, idx, "is out of range for a 64-bit integer", err, errlen);
    *out = (int64_t)v;
    return 0;
}

int em__csv_field_f64(const em__csv_row *row, int idx, double *out, char *err, size_t errlen)
{
    char tmp[512], *end;
    double v;
    int rc = field_text(row, idx, tmp, sizeof tmp, "a number", err, errlen);
    if (rc < 0) return rc;
    errno = 0;
    v = strtod(tmp, &end);
    if (end == tmp || *end) return number_error(row, idx, "is not a number", err, errlen);
    if (errno == ERANGE && isinf(v)) return number_error(row, idx, "is out of range for a double", err, errlen);
    *out = v;
    return 0;
}

/* ---- the record parser ----------------------------------------------------------------------------------- */

void em__csv_parser_init(em__csv_parser *p, char sep, const char *file, uint64_t line, int ncols,
                         const em__csv_header *hdr)
{
    memset(p, 0, sizeof *p);
    p->sep = sep ? sep : ',';
    p->file = file;
    p->line = line;
    p->ncols = ncols;
    p->hdr = hdr;
}

void em__csv_parser_release(em__csv_parser *p)
{
    free(p->field);
    free(p->flen);
    p->field = NULL;
    p->flen = NULL;
    p->fcap = 0;
}

static int grow_fields(em__csv_parser *p)
{
    int ncap = p->fcap ? p->fcap * 2 : 16;
    const char **nf = realloc(p->field, (size_t)ncap * sizeof *nf);
    if (!nf) return EM_ENOMEM;
    p->field = nf;
    uint32_t *nl = realloc(p->flen, (size_t)ncap * sizeof *nl);
    if (!nl) return EM_ENOMEM;
    p->flen = nl;
    p->fcap = ncap;
    return 0;
}

/* The 0x80 bit of each byte of x that is zero. The lowest bit set is exact (higher ones may be false positives of
 * the borrow), which is all unquoted_end needs. */
static inline uint64_t zero_bytes(uint64_t x) { return (x - BYTES8(1)) & ~x & BYTES8(0x80); }

/* The first sep, '\n' or '"' in buf[k, len), or len: eight bytes per step (fields of numbers are short, but a
 * byte loop with three compares was a third of the parse). */
static inline size_t unquoted_end(const char *buf, size_t k, size_t len, char sep)
{
    const uint64_t ms = BYTES8(sep), mn = BYTES8('\n'), mq = BYTES8('"');
    for (; k + 8 <= len; k += 8) {
        uint64_t w;
        memcpy(&w, buf + k, 8);
        uint64_t t = zero_bytes(w ^ ms) | zero_bytes(w ^ mn) | zero_bytes(w ^ mq);
        if (t) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
            return k + (size_t)(__builtin_ctzll(t) >> 3);
#else
            break; /* the byte loop below finds it */
#endif
        }
    }
    for (; k < len; k++)
        if (buf[k] == sep || buf[k] == '\n' || buf[k] == '"') break;
    return k;
}

/* Problems found while framing a record; the first one is reported. */
enum { BAD_NONE, BAD_UNTERMINATED, BAD_QUOTE_IN_FIELD, BAD_AFTER_QUOTE, BAD_TOO_LONG };

int em__csv_parse(em__csv_parser *p, char *buf, size_t len, int eof, size_t *used, em__csv_row *row)
{
    const char sep = p->sep;
    size_t i = 0, e, nl = 0, consumed;
    int nf = 0, bad = BAD_NONE, badfield = 0, rc;
    char badch = 0;

    *used = 0;
    if (len == 0) return EM__CSV_MORE;
    for (;;) {
        if (nf == p->fcap && (rc = grow_fields(p)) < 0) return rc;
        if (i < len && buf[i] == '"') {
            /* quoted: find the closing quote, stepping over "" pairs */
            size_t j = i + 1, q;
            int esc = 0;
            for (;;) {
                char *qp = memchr(buf + j, '"', len - j);
                if (!qp) {
                    if (!eof) return EM__CSV_MORE;
                    /* open quote at end of input: the rest of the input is this (malformed) record */
                    nl += count_nl(buf + i, len - i);
                    bad = bad ? bad : BAD_UNTERMINATED;
                    badfield = bad == BAD_UNTERMINATED ? nf : badfield;
                    e = len;
                    consumed = len;
                    goto done;
                }
                q = (size_t)(qp - buf);
                if (q + 1 == len && !eof) return EM__CSV_MORE; /* "" or closing: need the next byte */
                if (q + 1 < len && buf[q + 1] == '"') {
                    esc = 1;
                    j = q + 2;
                    continue;
                }
                break;
            }
            nl += count_nl(buf + i + 1, q - i - 1);
            for (e = q + 1; e < len && buf[e] != sep && buf[e] != '\n'; e++) {}
            if (e == len && !eof) return EM__CSV_MORE;
            if (e > q + 1 && !(e == q + 2 && buf[q + 1] == '\r' && (e == len || buf[e] == '\n')) && !bad) {
                bad = BAD_AFTER_QUOTE;
                badfield = nf;
                badch = buf[q + 1];
            }
            if (q - i - 1 > MAX_FIELD) {
                if (!bad) bad = BAD_TOO_LONG, badfield = nf;
                p->flen[nf] = 0;
            } else {
                p->flen[nf] = (uint32_t)(q - i - 1) | (esc ? ESC_BIT : 0);
            }
            p->field[nf] = buf + i + 1;
        } else {
            size_t k = i;
            int quote = 0;
            for (;;) {
                k = unquoted_end(buf, k, len, sep);
                if (k < len && buf[k] == '"') { /* data, but the record is malformed: keep looking for the end */
                    quote = 1;
                    k++;
                    continue;
                }
                break;
            }
            e = k;
            if (e == len && !eof) return EM__CSV_MORE;
            size_t n = e - i;
            if ((e == len || buf[e] == '\n') && n && buf[e - 1] == '\r') n--; /* CRLF */
            if (quote && !bad) bad = BAD_QUOTE_IN_FIELD, badfield = nf;
            if (n > MAX_FIELD) {
                if (!bad) bad = BAD_TOO_LONG, badfield = nf;
                n = 0;
            }
            p->field[nf] = buf + i;
            p->flen[nf] = (uint32_t)n;
        }
        nf++;
        if (e < len && buf[e] == sep) {
            i = e + 1;
            continue;
        }
        consumed = e < len ? e + 1 : len;
        if (e < len) nl++;
        break;
    }
done:
    *used = consumed;
    row->line = p->line;
    if (p->line) p->line += nl;
    if (!bad && nf == 1 && p->field[0] == buf && p->flen[0] == 0) return EM__CSV_BLANK;
    if (!bad && p->ncols && nf != p->ncols) {
        char w[600];
        p->nbad++;
        em__set_err(p->err, sizeof p->err, "%sexpected %d fields as in the header, got %d",
                 where(w, sizeof w, p->file, row->line), p->ncols, nf);
        return EM_EPARSE;
    }
    if (bad) {
        char w[600], f[300];
        where(w, sizeof w, p->file, row->line);
        field_name(f, sizeof f, p->hdr, badfield);
        p->nbad++;
        switch (bad) {
        case BAD_UNTERMINATED:
            em__set_err(p->err, sizeof p->err, "%sunterminated quoted %s: no closing quote before end of file", w, f);
            break;
        case BAD_QUOTE_IN_FIELD:
            em__set_err(p->err, sizeof p->err, "%squote inside unquoted %s (quote the whole field and double it)", w, f);
            break;
        case BAD_AFTER_QUOTE:
            if (badch >= 0x20 && badch < 0x7f)
                em__set_err(p->err, sizeof p->err, "%sunexpected '%c' after the closing quote of %s", w, badch, f);
            else
                em__set_err(p->err, sizeof p->err, "%sunexpected byte 0x%02x after the closing quote of %s", w,
                         (unsigned char)badch, f);
            break;
        default:
            em__set_err(p->err, sizeof p->err, "%s%s is longer than 2 GiB", w, f);
            break;
        }
        return EM_EPARSE;
    }
    /* The record is complete and valid: unescape "" in place (the text only shrinks). */
    for (int f = 0; f < nf; f++) {
        if (!(p->flen[f] & ESC_BIT)) continue;
        uint32_t n = p->flen[f] & ~ESC_BIT, r = 0, w = 0;
        char *s = (char *)p->field[f];
        while (r < n) {
            s[w++] = s[r];
            r += (s[r] == '"') ? 2 : 1;
        }
        p->flen[f] = w;
    }
    row->nfields = nf;
    row->field = p->field;
    row->len = p->flen;
    row->file = p->file;
    row->hdr = p->hdr;
    return EM__CSV_ROW;
}

/* ---- reader ---------------------------------------------------------------------------------------------- */

/* Parses the header at offset 0 (blank lines before it are skipped). Sets *data_start / *data_line to where the
 * data records begin. An empty file has no header and data_start 0. */
static int read_header(em__csv_reader *r, char sep, uint64_t *data_start, uint64_t *data_line)
{
    em__csv_parser hp;
    em__csv_row row;
    size_t used;
    int rc;
    em__csv_parser_init(&hp, sep, r->io.path, 1, 0, NULL);
    for (;;) {
        rc = em__csv_parse(&hp, r->io.buf + r->io.pos, r->io.len - r->io.pos, r->io.eof, &used, &row);
        if (rc == EM__CSV_MORE) {
            if (r->io.eof) break;
            if ((rc = em__line_reader_fill(&r->io)) < 0) {
                em__set_err(r->err, sizeof r->err, "%s", r->io.err);
                goto out;
            }
            continue;
        }
        if (rc == EM__CSV_BLANK) {
            r->io.pos += used;
            continue;
        }
        if (rc == EM_EPARSE) em__set_err(r->err, sizeof r->err, "%s (in the header row)", hp.err);
        if (rc == EM__CSV_ROW) {
            r->io.pos += used;
            rc = header_from_row(&r->hdr, &row);
        }
        break;
    }
    if (rc >= 0) rc = 0;
    *data_start = r->io.off + r->io.pos;
    *data_line = hp.line;
out:
    em__csv_parser_release(&hp);
    return rc;
}

int em__csv_reader_open(em__csv_reader *r, const char *path, uint64_t start, uint64_t end, uint64_t line,
                        const em__csv_opts *opts)
{
    static const em__csv_opts defaults;
    uint64_t dstart = 0, dline = 1;
    int rc;
    if (!opts) opts = &defaults;
    memset(r, 0, sizeof *r);
    r->io.fd = -1;
    char sep = opts->sep ? opts->sep : ',';
    if (sep == '"' || sep == '\n' || sep == '\r') {
        em__set_err(r->err, sizeof r->err, "%s: bad csv separator 0x%02x", path, (unsigned char)sep);
        return EM_EINVAL;
    }
    if ((rc = em__line_reader_open(&r->io, path, 0, end, opts->bufsize, 0)) < 0) {
        em__set_err(r->err, sizeof r->err, "%s", r->io.err);
        return rc;
    }
    r->io.done = 0;
    if (!opts->no_header && (rc = read_header(r, sep, &dstart, &dline)) < 0) return rc;
    if (start <= dstart) {
        start = dstart;
        line = dline;
    }
    /* Restart reading at `start` (the header's bytes may be re-read: one small read per split). */
    r->io.off = start;
    r->io.pos = r->io.len = 0;
    r->io.eof = 0;
    r->io.start = start;
    em__csv_parser_init(&r->p, sep, path, line, r->hdr.ncols, &r->hdr);
    return 0;
}

int em__csv_reader_next(em__csv_reader *r, em__csv_row *row)
{
    size_t used;
    int rc;
    for (;;) {
        if (r->io.off + r->io.pos >= r->io.end) return 0; /* the next record belongs to the following split */
        rc = em__csv_parse(&r->p, r->io.buf + r->io.pos, r->io.len - r->io.pos, r->io.eof, &used, row);
        if (rc == EM__CSV_MORE) {
            if (r->io.eof) return 0;
            if ((rc = em__line_reader_fill(&r->io)) < 0) {
                em__set_err(r->err, sizeof r->err, "%s", r->io.err);
                return rc;
            }
            continue;
        }
        r->io.pos += used;
        if (rc == EM__CSV_BLANK) continue;
        if (rc == EM__CSV_ROW) return 1;
        if (rc == EM_EPARSE) {
            r->nbad++;
            em__set_err(r->err, sizeof r->err, "%s", r->p.err);
        }
        return rc;
    }
}

void em__csv_reader_release(em__csv_reader *r)
{
    em__line_reader_release(&r->io);
    em__csv_parser_release(&r->p);
    em__csv_header_release(&r->hdr);
}

/* ---- planning -------------------------------------------------------------------------------------------- */

/*
 * Moves every cut of one file to the first record start at or after it. Record starts are data_start and
 * x + 1 for every '\n' at x outside quotes (blank lines included: the parser consumes them as empty records).
 * The walk is the framing rule of em__csv_parse() (see the top of this file), state carried across chunks:
 *
 *   in_q     inside a quoted field
 *   fstart   outside quotes, and the next byte is the first of a field
 *   pend     inside quotes, the chunk ended on a '"' whose meaning depends on the next byte
 *
 * It stops as soon as the last cut is resolved. bound[i] / bline[i] get the record start and its line number;
 * cuts beyond the last record start get the file size.
 */
static int align_cuts(em__csv_reader *r, char sep, uint64_t data_start, uint64_t data_line, uint64_t fsize,
                      const uint64_t *cut, int ncut, uint64_t *bound, uint64_t *bline)
{
    uint64_t off = data_start, line = data_line;
    int in_q = 0, fstart = 1, pend = 0, ci = 0;
    char *buf = r->io.buf;
    size_t cap = r->io.cap;

    while (ci < ncut && cut[ci] <= data_start) bound[ci] = data_start, bline[ci] = data_line, ci++;
    while (ci < ncut && off < fsize) {
        ssize_t got = pread(r->io.fd, buf, cap, (off_t)off);
        size_t n, i = 0;
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            em__set_err(r->err, sizeof r->err, "%s: read at offset %llu failed: %s", r->io.path,
                     (unsigned long long)off, strerror(errno));
            return EM_EIO;
        }
        if (got == 0) break;
        n = (size_t)got;
        if (pend) {
            pend = 0;
            if (buf[0] == '"') i = 1;   /* "" inside quotes */
            else in_q = 0, fstart = 0;  /* it was the closing quote */
        }
        while (i < n && ci < ncut) {
            char *qp = memchr(buf + i, '"', n - i);
            size_t e = qp ? (size_t)(qp - buf) : n;
            if (in_q) {
                line += count_nl(buf + i, e - i);
                if (!qp) break;
                if (e + 1 == n) {
                    pend = 1;
                    break;
                }
                if (buf[e + 1] == '"') {
                    i = e + 2;
                } else {
                    in_q = 0;
                    fstart = 0;
                    i = e + 1;
                }
                continue;
            }
            if (fstart && e == i) { /* a quote as the first byte of a field opens it */
                in_q = 1;
                fstart = 0;
                i = e + 1;
                continue;
            }
            /* Outside quotes from i to e: every '\n' is a record start candidate. Record starts up to off + e
             * cannot resolve a cut beyond it: then only count the lines. */
            char *x = buf + i, *xe = buf + e;
            if (off + e < cut[ci]) {
                line += count_nl(x, (size_t)(xe - x));
                x = xe;
            }
            for (; ci < ncut && (x = memchr(x, '\n', (size_t)(xe - x))); x++) {
                uint64_t b = off + (uint64_t)(x - buf) + 1;
                line++;
                while (ci < ncut && cut[ci] <= b) bound[ci] = b, bline[ci] = line, ci++;
            }
            if (ci == ncut) break;
            if (e > i) fstart = buf[e - 1] == sep || buf[e - 1] == '\n';
            if (!qp) break;
            if (fstart) in_q = 1;
            fstart = 0;
            i = e + 1;
        }
        off += n;
    }
    while (ci < ncut) bound[ci] = fsize, bline[ci] = line, ci++;
    return 0;
}

int em__csv_plan(const char *const *paths, int npaths, uint64_t split_bytes, int min_splits,
                 const em__csv_opts *opts, em__split **out, int *nsplits, char *err, size_t errlen)
{
    static const em__csv_opts defaults;
    em__split *sp = NULL;
    uint64_t *cut = NULL, *bound = NULL, *bline = NULL;
    int n = 0, w = 0, rc;

    if (!opts) opts = &defaults;
    if (!out || !nsplits) return EM_EINVAL;
    *out = NULL;
    *nsplits = 0;
    if ((rc = em__text_plan(paths, npaths, split_bytes, min_splits, &sp, &n, err, errlen)) < 0) return rc;
    if (n == 0) return 0;
    if (!(cut = malloc((size_t)n * sizeof *cut)) || !(bound = malloc((size_t)n * sizeof *bound)) ||
        !(bline = malloc((size_t)n * sizeof *bline))) {
        rc = EM_ENOMEM;
        goto out;
    }
    /* Splits of one file are consecutive. Output index w never passes input index g, so rewriting in place is
     * safe once the group's cuts are copied out. */
    for (int g = 0; g < n;) {
        int ge = g + 1, ncut;
        em__split f = sp[g];
        em__csv_reader r;
        uint64_t dstart = 0, dline = 1;
        while (ge < n && sp[ge].file == f.file) ge++;
        ncut = ge - g - 1;
        for (int k = 0; k < ncut; k++) cut[k] = sp[g + 1 + k].start;
        rc = em__csv_reader_open(&r, f.path, 0, f.file_size, 1, opts);
        if (rc == 0) {
            dstart = r.io.start;
            dline = r.p.line;
            rc = align_cuts(&r, r.p.sep, dstart, dline, f.file_size, cut, ncut, bound, bline);
        }
        if (rc < 0) em__set_err(err, errlen, "%s", r.err);
        em__csv_reader_release(&r);
        if (rc < 0) goto out;
        for (int k = 0; k <= ncut; k++) {
            uint64_t s = k == 0 ? dstart : bound[k - 1], e = k == ncut ? f.file_size : bound[k];
            if (s >= e) continue;
            sp[w] = f;
            sp[w].start = s;
            sp[w].end = e;
            sp[w].line = k == 0 ? dline : bline[k - 1];
            w++;
        }
        g = ge;
    }
    *out = sp;
    *nsplits = w;
    sp = NULL;
out:
    free(cut);
    free(bound);
    free(bline);
    em__text_plan_free(sp);
    return rc;
}

/* ---- writing --------------------------------------------------------------------------------------------- */

const uint8_t em__csv_special[256] = {[','] = 1, ['"'] = 1, ['\r'] = 1, ['\n'] = 1};

/* The length of the prefix of s[0, n) that needs no quotes (n: none of it does). */
static size_t csv_plain(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n && !em__csv_special[s[i]]) i++;
    return i;
}

/* em__csv_quote's field that needs quotes. */
size_t em__csv_quote_slow(char *d, const uint8_t *k, size_t n)
{
    char *q = d;
    *q++ = '"';
    for (size_t i = 0; i < n; i++) {
        *q++ = (char)k[i];
        if (k[i] == '"') *q++ = '"';
    }
    *q++ = '"';
    return (size_t)(q - d);
}

void em__csv_fput(FILE *f, const void *s, size_t n)
{
    const uint8_t *k = s;
    if (csv_plain(k, n) == n) {
        fwrite(k, 1, n, f);
        return;
    }
    putc('"', f);
    for (size_t i = 0; i < n; i++) {
        if (k[i] == '"') putc('"', f);
        putc(k[i], f);
    }
    putc('"', f);
}
