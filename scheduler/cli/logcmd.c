/*
 * logcmd.c — `ember log create|append|info|dump|verify`: the command-line face of the streaming input log
 * (operators/sources/streamlog.h; shared DESIGN.md sections 7 and 9).
 *
 * Exit statuses: 0 success; 1 the data or the system said no (missing topic, bad input lines, a bad record found,
 * an I/O error), with a message on stderr naming the file and place; 2 usage errors.
 *
 * `log append` input. With none of --key-field/--time-field/--value-field every input is headerless CSV with
 * exactly three fields `time,key,value` (quote a value holding commas, RFC 4180). With any of them the first row of
 * every input is a header and fields are picked by name: the key (default: empty), the event time (default: the
 * time of the append) and the value (default: the remaining fields, re-joined as a CSV row, so that a file
 * `time,user,amount` with --key-field user --time-field time gives values like `12.5`). Times are integers, ms since
 * the epoch. Bad lines are reported as FILE:LINE: FIELD: what, skipped, and make the command exit 1 after the good
 * lines are appended. We chose "append the good ones" over "reject the whole input" because input can be far larger
 * than memory (the benchmark appends 20M events from one pipe) and a reject-all would have to hold or re-read all of
 * it; the messages name every bad line, so a user can fix those and append just them.
 *
 * Batching: records are buffered per partition and appended (one lock, one fdatasync per partition) when 8 MiB are
 * buffered, at the end, and whenever the input has nothing more to read at once: a pipe fed slowly gets its
 * records appended as they come, a file in large batches.
 */
#include "scheduler/cli/cli.h"

#include "ember.h"
#include "operators/sources/csvparse.h"
#include "operators/sources/streamlog.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_REPORTED 20                 /* bad input lines printed one by one; the rest are counted */
#define FLUSH_BYTES (8u << 20)          /* buffered bytes of records before a durable batch append */

static void usage(FILE *out)
{
    fputs("usage: ember log create DIR --partitions N [--segment-bytes B]\n"
          "       ember log append DIR [--key-field K] [--time-field T] [--value-field V] [FILE...]\n"
          "       ember log info DIR\n"
          "       ember log dump DIR [--from OFF] [--partition P]\n"
          "       ember log verify DIR [--repair]\n"
          "\n"
          "The input log of streaming jobs: a topic directory of partitions, each a sequence of checksummed records\n"
          "(offset, event time in ms since the epoch, key, value).\n"
          "\n"
          "  create   make a topic with N partitions (1..10000); segment files roll at B bytes (default 64m;\n"
          "           suffixes k, m, g)\n"
          "  append   append CSV records from FILEs or stdin ('-'); a record goes to partition hash(key) mod N\n"
          "           (FNV-1a 64). Without field options each line is `time,key,value`; with them the first row\n"
          "           is a header and fields are named: key (default empty), time (default: now), value\n"
          "           (default: the other fields as a CSV row). Bad lines are reported as FILE:LINE and skipped;\n"
          "           the good ones are appended and the command exits 1. Durable when the command returns.\n"
          "  info     partitions with start/end offsets, records, segments, bytes, event-time range\n"
          "  dump     every record as a CSV line partition,offset,time,key,value (from offset OFF of each\n"
          "           partition, or of partition P only)\n"
          "  verify   check every record and index; exit 0 when clean, 1 naming the first problem of each bad\n"
          "           partition; --repair cuts each partition at its first bad record (later records are lost)\n"
          "           and rebuilds indexes, then appends continue at the offset that was cut\n",
          out);
}

static int usage_err(const char *sub, const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "ember log %s: ", sub);
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    return 2;
}

/* Matches option `name` at argv[*i] as "--name VALUE" or "--name=VALUE": 1 (value in *val), 0 (not this option),
 * -1 (no value: message printed). */
static int opt_value(int argc, char **argv, int *i, const char *name, const char *sub, const char **val)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0) return 0;
    if (argv[*i][n] == '=') {
        *val = argv[*i] + n + 1;
        return 1;
    }
    if (argv[*i][n] != 0) return 0;
    if (*i + 1 >= argc) {
        usage_err(sub, "%s needs a value%s", name, "");
        return -1;
    }
    *val = argv[++*i];
    return 1;
}

/* Unsigned decimal with an optional k/m/g (1024-based) suffix when `suffix`; 0 on success. */
static int parse_u64(const char *s, int suffix, uint64_t *out)
{
    uint64_t v = 0;
    const char *p = s;
    if (*p < '0' || *p > '9') return -1;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > (UINT64_MAX - 9) / 10) return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (suffix && *p) {
        int sh = (*p == 'k' || *p == 'K') ? 10 : (*p == 'm' || *p == 'M') ? 20 : (*p == 'g' || *p == 'G') ? 30 : -1;
        if (sh < 0 || p[1] || v > (UINT64_MAX >> sh)) return -1;
        v <<= sh;
        p++;
    }
    if (*p) return -1;
    *out = v;
    return 0;
}

static int is_help(const char *s) { return strcmp(s, "--help") == 0 || strcmp(s, "-h") == 0; }

static int open_topic(const char *sub, const char *dir, em__log_topic **t)
{
    char err[600];
    if (em__log_open(dir, t, err, sizeof err) < 0) {
        fprintf(stderr, "ember log %s: %s\n", sub, err);
        return 1;
    }
    return 0;
}

/* ---- create ------------------------------------------------------------------------------------------------- */

static int cmd_create(int argc, char **argv)
{
    const char *dir = NULL, *v;
    uint64_t nparts = 0, segbytes = 0;
    int have_parts = 0, m;
    char err[600];
    for (int i = 1; i < argc; i++) {
        if ((m = opt_value(argc, argv, &i, "--partitions", "create", &v)) < 0) return 2;
        if (m) {
            if (parse_u64(v, 0, &nparts) < 0 || nparts < 1 || nparts > EM__LOG_MAX_PARTITIONS)
                return usage_err("create", "--partitions: expected an integer from 1 to 10000, got '%s'%s", v, "");
            have_parts = 1;
            continue;
        }
        if ((m = opt_value(argc, argv, &i, "--segment-bytes", "create", &v)) < 0) return 2;
        if (m) {
            if (parse_u64(v, 1, &segbytes) < 0 || segbytes < EM__LOG_MIN_SEGMENT_BYTES ||
                segbytes > EM__LOG_MAX_SEGMENT_BYTES)
                return usage_err("create", "--segment-bytes: expected a size from 64 to 1g, got '%s'%s", v, "");
            continue;
        }
        if (argv[i][0] == '-' && argv[i][1]) return usage_err("create", "unknown option '%s'%s", argv[i], "");
        if (dir) return usage_err("create", "one topic directory only ('%s', then '%s')", dir, argv[i]);
        dir = argv[i];
    }
    if (!dir) return usage_err("create", "which directory? (ember log create DIR --partitions N)%s%s", "", "");
    if (!have_parts) return usage_err("create", "--partitions N is required%s%s", "", "");
    if (em__log_create(dir, (int)nparts, segbytes, err, sizeof err) < 0) {
        fprintf(stderr, "ember log create: %s\n", err);
        return 1;
    }
    return 0;
}

/* ---- append ------------------------------------------------------------------------------------------------- */

/* Records buffered for one partition: key and value bytes in one growing block (no allocation per record). */
typedef struct pbatch {
    char *data;
    size_t len, cap;
    em__log_rec *recs;  /* key/value pointers are filled at flush time: data may move while it grows */
    size_t *koff;
    size_t n, ncap;
} pbatch;

typedef struct appender {
    em__log_topic *t;
    pbatch *b;          /* one per partition */
    size_t buffered;    /* bytes over all partitions */
    uint64_t appended;
    uint64_t nbad;
    const char *kname, *tname, *vname;
    int header;         /* inputs have a header row */
    char *vtmp;         /* joined value of the remaining fields */
    size_t vcap;
} appender;

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "ember log append: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return q;
}

static void bad_line(appender *a, const char *msg)
{
    if (a->nbad++ < MAX_REPORTED) fprintf(stderr, "ember log append: %s\n", msg);
}

static int flush_all(appender *a)
{
    char err[600];
    for (int p = 0; p < em__log_partitions(a->t); p++) {
        pbatch *b = &a->b[p];
        if (!b->n) continue;
        for (size_t i = 0; i < b->n; i++) {
            b->recs[i].key = b->data + b->koff[i];
            b->recs[i].value = b->recs[i].key + b->recs[i].klen;
        }
        if (em__log_append(a->t, p, b->recs, b->n, NULL, err, sizeof err) < 0) {
            fprintf(stderr, "ember log append: %s\n", err);
            fprintf(stderr, "ember log append: %" PRIu64 " records were appended before this failure\n", a->appended);
            return -1;
        }
        a->appended += b->n;
        b->n = b->len = 0;
    }
    a->buffered = 0;
    return 0;
}

static int add_record(appender *a, int64_t tms, const char *key, size_t klen, const char *val, size_t vlen)
{
    int p = em__log_partition_of(a->t, key, klen);
    pbatch *b = &a->b[p];
    if (b->n == b->ncap) {
        b->ncap = b->ncap ? 2 * b->ncap : 1024;
        b->recs = xrealloc(b->recs, b->ncap * sizeof *b->recs);
        b->koff = xrealloc(b->koff, b->ncap * sizeof *b->koff);
    }
    if (b->len + klen + vlen > b->cap) {
        size_t nc = b->cap ? b->cap : 65536;
        while (nc < b->len + klen + vlen) nc *= 2;
        b->data = xrealloc(b->data, nc);
        b->cap = nc;
    }
    if (klen) memcpy(b->data + b->len, key, klen);
    if (vlen) memcpy(b->data + b->len + klen, val, vlen);
    b->koff[b->n] = b->len;
    b->recs[b->n] = (em__log_rec){0, tms, NULL, (uint32_t)klen, NULL, (uint32_t)vlen};
    b->n++;
    b->len += klen + vlen;
    a->buffered += klen + vlen + EM__LOG_REC_HEADER;
    return a->buffered >= FLUSH_BYTES ? flush_all(a) : 0;
}

/* Appends field f to a->vtmp at *len as a CSV field (quoted when it holds ',', '"', CR or LF). */
static void join_field(appender *a, size_t *len, const char *s, size_t n, int first)
{
    size_t need = *len + 2 * n + 3;
    if (need > a->vcap) {
        a->vcap = need * 2;
        a->vtmp = xrealloc(a->vtmp, a->vcap);
    }
    if (!first) a->vtmp[(*len)++] = ',';
    *len += em__csv_quote(a->vtmp + *len, s, n);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* One data row: checks it, turns it into a record. Returns 0, or -1 when appending failed (fatal). */
static int take_row(appender *a, const em__csv_row *row, int kcol, int tcol, int vcol)
{
    char msg[800];
    int64_t tms;
    const char *key = "", *val;
    size_t klen = 0, vlen;
    if (!a->header && row->nfields != 3) {
        snprintf(msg, sizeof msg, "%s:%" PRIu64 ": expected 3 fields (time,key,value), got %d", row->file, row->line,
                 row->nfields);
        bad_line(a, msg);
        return 0;
    }
    if (tcol >= 0) {
        if (em__csv_field_i64(row, tcol, &tms, msg, sizeof msg) < 0) {
            bad_line(a, msg);
            return 0;
        }
    } else {
        tms = now_ms();
    }
    if (kcol >= 0) {
        key = row->field[kcol];
        klen = row->len[kcol];
    }
    if (vcol >= 0) {
        val = row->field[vcol];
        vlen = row->len[vcol];
    } else { /* header mode without --value-field: the other fields, as a CSV row */
        size_t len = 0;
        int first = 1;
        for (int f = 0; f < row->nfields; f++) {
            if (f == kcol || f == tcol) continue;
            join_field(a, &len, row->field[f], row->len[f], first);
            first = 0;
        }
        val = a->vtmp ? a->vtmp : "";
        vlen = len;
    }
    if ((uint64_t)klen + vlen > EM__LOG_MAX_RECORD - EM__LOG_REC_HEADER) {
        snprintf(msg, sizeof msg, "%s:%" PRIu64 ": key and value take %zu bytes, a record holds at most %u", row->file,
                 row->line, klen + vlen, EM__LOG_MAX_RECORD - EM__LOG_REC_HEADER);
        bad_line(a, msg);
        return 0;
    }
    return add_record(a, tms, key, klen, val, vlen);
}

/* Copies the header row's names into hdr (em__csv_header_release frees them). */
static void header_copy(em__csv_header *hdr, const em__csv_row *row)
{
    hdr->name = xrealloc(NULL, (size_t)row->nfields * sizeof *hdr->name);
    for (int i = 0; i < row->nfields; i++) {
        const char *s = row->field[i];
        size_t n = row->len[i];
        if (i == 0 && n >= 3 && memcmp(s, "\xEF\xBB\xBF", 3) == 0) s += 3, n -= 3; /* UTF-8 BOM */
        hdr->name[i] = xrealloc(NULL, n + 1);
        memcpy(hdr->name[i], s, n);
        hdr->name[i][n] = 0;
        hdr->ncols = i + 1;
    }
}

/* Finds column `name` of the header, or reports it missing. */
static int find_col(const em__csv_header *hdr, const char *file, const char *opt, const char *name)
{
    int c = em__csv_col(hdr, name);
    if (c < 0 && name) {
        char msg[900];
        size_t n = (size_t)snprintf(msg, sizeof msg, "%s:1: %s: no column '%s' in the header (columns:", file, opt, name);
        for (int i = 0; i < hdr->ncols && n < sizeof msg - 2; i++)
            n += (size_t)snprintf(msg + n, sizeof msg - n, "%s %s", i ? "," : "", hdr->name[i]);
        if (n < sizeof msg - 2) snprintf(msg + n, sizeof msg - n, ")");
        fprintf(stderr, "ember log append: %s\n", msg);
        return -2;
    }
    return c;
}

/* Reads one input (fd) to the end. Returns 0, 1 (this input could not be used: counted as bad), -1 (fatal). */
static int append_input(appender *a, int fd, const char *name)
{
    static const char *const fixed[3] = {"time", "key", "value"};
    em__csv_header hdr = {0, NULL}, fixed_hdr = {3, (char **)fixed};
    em__csv_parser ps;
    em__csv_row row;
    size_t cap = 1u << 20, len = 0, pos = 0, used;
    char *buf = xrealloc(NULL, cap);
    int eof = 0, rc, ret = 0, have_hdr = !a->header;
    int kcol = 1, tcol = 0, vcol = 2;
    em__csv_parser_init(&ps, ',', name, 1, 0, a->header ? NULL : &fixed_hdr);
    for (;;) {
        rc = em__csv_parse(&ps, buf + pos, len - pos, eof, &used, &row);
        if (rc == EM__CSV_MORE) {
            if (eof) break;
            memmove(buf, buf + pos, len - pos);
            len -= pos;
            pos = 0;
            if (len == cap) buf = xrealloc(buf, cap *= 2);
            /* About to wait for input: make what we hold durable first, so that a slow producer (a pipe fed by
             * `tail -f`) sees its records appended within one read, while files are still appended in big
             * batches (a regular file is always readable). */
            struct pollfd pf = {fd, POLLIN, 0};
            if (a->buffered && poll(&pf, 1, 0) == 0 && flush_all(a) < 0) {
                ret = -1;
                break;
            }
            ssize_t k = read(fd, buf + len, cap - len);
            if (k < 0 && errno == EINTR) continue;
            if (k < 0) {
                fprintf(stderr, "ember log append: %s: read: %s\n", name, strerror(errno));
                ret = 1;
                a->nbad++;
                break;
            }
            if (k == 0) eof = 1;
            len += (size_t)k;
            continue;
        }
        pos += used;
        if (rc == EM__CSV_BLANK) continue;
        if (rc == EM_EPARSE) {
            if (!have_hdr) { /* without its header the rest of the input cannot be read */
                fprintf(stderr, "ember log append: %s (in the header row; %s skipped)\n", ps.err, name);
                a->nbad++;
                ret = 1;
                break;
            }
            bad_line(a, ps.err);
            continue;
        }
        if (rc < 0) {
            fprintf(stderr, "ember log append: %s: out of memory\n", name);
            ret = -1;
            break;
        }
        if (!have_hdr) { /* the header row: find the named columns, then parse data rows against it */
            header_copy(&hdr, &row);
            kcol = find_col(&hdr, name, "--key-field", a->kname);
            tcol = find_col(&hdr, name, "--time-field", a->tname);
            vcol = find_col(&hdr, name, "--value-field", a->vname);
            if (kcol == -2 || tcol == -2 || vcol == -2) {
                a->nbad++;
                ret = 1;
                break;
            }
            uint64_t line = ps.line;
            em__csv_parser_release(&ps);
            em__csv_parser_init(&ps, ',', name, line, hdr.ncols, &hdr);
            have_hdr = 1;
            continue;
        }
        if (take_row(a, &row, kcol, tcol, vcol) < 0) {
            ret = -1;
            break;
        }
    }
    em__csv_parser_release(&ps);
    em__csv_header_release(&hdr);
    free(buf);
    return ret;
}

static int cmd_append(int argc, char **argv)
{
    const char *dir = NULL, **files = xrealloc(NULL, (size_t)argc * sizeof *files);
    int nfiles = 0, m, rc = 0;
    appender a;
    memset(&a, 0, sizeof a);
    for (int i = 1; i < argc; i++) {
        static const char *const names[3] = {"--key-field", "--time-field", "--value-field"};
        const char **slots[3] = {&a.kname, &a.tname, &a.vname};
        const char *v;
        int k;
        for (k = 0, m = 0; k < 3; k++)
            if ((m = opt_value(argc, argv, &i, names[k], "append", &v)) != 0) break;
        if (m < 0) goto usage;
        if (m) {
            if (!*v) {
                usage_err("append", "%s: expected a column name, got ''%s", names[k], "");
                goto usage;
            }
            *slots[k] = v;
            a.header = 1;
            continue;
        }
        if (argv[i][0] == '-' && argv[i][1]) {
            usage_err("append", "unknown option '%s'%s", argv[i], "");
            goto usage;
        }
        if (!dir) dir = argv[i];
        else files[nfiles++] = argv[i];
    }
    if (!dir) {
        usage_err("append", "which topic? (ember log append DIR [FILE...])%s%s", "", "");
        goto usage;
    }
    if (open_topic("append", dir, &a.t)) {
        free(files);
        return 1;
    }
    a.b = xrealloc(NULL, (size_t)em__log_partitions(a.t) * sizeof *a.b);
    memset(a.b, 0, (size_t)em__log_partitions(a.t) * sizeof *a.b);
    if (nfiles == 0) files[nfiles++] = "-";
    for (int f = 0; f < nfiles && rc >= 0; f++) {
        int stdin_ = strcmp(files[f], "-") == 0;
        int fd = stdin_ ? 0 : open(files[f], O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            fprintf(stderr, "ember log append: %s: cannot open: %s\n", files[f], strerror(errno));
            a.nbad++;
            continue;
        }
        rc = append_input(&a, fd, stdin_ ? "<stdin>" : files[f]);
        if (!stdin_) close(fd);
    }
    if (rc >= 0 && flush_all(&a) < 0) rc = -1;
    if (a.nbad > MAX_REPORTED)
        fprintf(stderr, "ember log append: ... %" PRIu64 " more bad lines not shown\n", a.nbad - MAX_REPORTED);
    if (rc >= 0 && a.nbad)
        fprintf(stderr, "ember log append: appended %" PRIu64 " records; skipped %" PRIu64 " bad line%s or input%s\n",
                a.appended, a.nbad, a.nbad == 1 ? "" : "s", a.nbad == 1 ? "" : "s");
    for (int p = 0; p < em__log_partitions(a.t); p++) {
        free(a.b[p].data);
        free(a.b[p].recs);
        free(a.b[p].koff);
    }
    free(a.b);
    free(a.vtmp);
    free(files);
    em__log_close(a.t);
    return (rc < 0 || a.nbad) ? 1 : 0;
usage:
    free(files);
    return 2;
}

/* ---- info, dump, verify -------------------------------------------------------------------------------------- */

/* Parses "DIR" plus the options a subcommand takes; returns 0 or the usage exit status. */
static int one_dir(const char *sub, const char *arg, const char **dir)
{
    if (arg[0] == '-' && arg[1]) return usage_err(sub, "unknown option '%s'%s", arg, "");
    if (*dir) return usage_err(sub, "one topic directory only ('%s', then '%s')", *dir, arg);
    *dir = arg;
    return 0;
}

static int cmd_info(int argc, char **argv)
{
    const char *dir = NULL;
    em__log_topic *t;
    char err[600];
    int rc = 0;
    for (int i = 1; i < argc; i++)
        if ((rc = one_dir("info", argv[i], &dir))) return rc;
    if (!dir) return usage_err("info", "which topic? (ember log info DIR)%s%s", "", "");
    if (open_topic("info", dir, &t)) return 1;
    int np = em__log_partitions(t);
    printf("topic %s: %d partition%s, segments of %" PRIu64 " bytes, format %d\n", dir, np, np == 1 ? "" : "s",
           em__log_segment_bytes(t), EM__LOG_FORMAT);
    printf("%9s %12s %12s %12s %8s %14s %15s %15s\n", "partition", "start", "end", "records", "segments", "bytes",
           "min_time", "max_time");
    uint64_t recs = 0, bytes = 0;
    int64_t tmin = 0, tmax = 0;
    int any = 0, nsegs = 0;
    for (int p = 0; p < np; p++) {
        em__log_part_stat st;
        if (em__log_stat(t, p, &st, err, sizeof err) < 0) {
            fprintf(stderr, "ember log info: %s\n", err);
            rc = 1;
            continue;
        }
        char a[24] = "-", b[24] = "-";
        if (st.end > st.start) {
            snprintf(a, sizeof a, "%" PRId64, st.min_time);
            snprintf(b, sizeof b, "%" PRId64, st.max_time);
            if (!any || st.min_time < tmin) tmin = st.min_time;
            if (!any || st.max_time > tmax) tmax = st.max_time;
            any = 1;
        }
        printf("%9d %12" PRIu64 " %12" PRIu64 " %12" PRIu64 " %8d %14" PRIu64 " %15s %15s\n", p, st.start, st.end,
               st.end - st.start, st.nsegments, st.bytes, a, b);
        recs += st.end - st.start;
        bytes += st.bytes;
        nsegs += st.nsegments;
        if (st.bad) {
            fprintf(stderr, "ember log info: %s/p%05d: %s (records after it are not counted; see ember log verify)\n",
                    dir, p, st.what);
            rc = 1;
        }
    }
    char a[24] = "-", b[24] = "-";
    if (any) {
        snprintf(a, sizeof a, "%" PRId64, tmin);
        snprintf(b, sizeof b, "%" PRId64, tmax);
    }
    printf("%9s %12s %12s %12" PRIu64 " %8d %14" PRIu64 " %15s %15s\n", "total", "", "", recs, nsegs, bytes, a, b);
    em__log_close(t);
    return rc;
}

static int dump_one(void *arg, const em__log_rec *r)
{
    int p = *(int *)arg;
    printf("%d,%" PRIu64 ",%" PRId64 ",", p, r->offset, r->time_ms);
    em__csv_fput(stdout, r->key, r->klen);
    putchar(',');
    em__csv_fput(stdout, r->value, r->vlen);
    putchar('\n');
    return 0;
}

static int cmd_dump(int argc, char **argv)
{
    const char *dir = NULL, *v;
    uint64_t from = 0, part = 0;
    int only = -1, m, rc = 0;
    em__log_topic *t;
    char err[600];
    for (int i = 1; i < argc; i++) {
        if ((m = opt_value(argc, argv, &i, "--from", "dump", &v)) < 0) return 2;
        if (m) {
            if (parse_u64(v, 0, &from) < 0)
                return usage_err("dump", "--from: expected an offset (an integer >= 0), got '%s'%s", v, "");
            continue;
        }
        if ((m = opt_value(argc, argv, &i, "--partition", "dump", &v)) < 0) return 2;
        if (m) {
            if (parse_u64(v, 0, &part) < 0 || part >= EM__LOG_MAX_PARTITIONS)
                return usage_err("dump", "--partition: expected a partition number, got '%s'%s", v, "");
            only = (int)part;
            continue;
        }
        if ((rc = one_dir("dump", argv[i], &dir))) return rc;
    }
    if (!dir) return usage_err("dump", "which topic? (ember log dump DIR)%s%s", "", "");
    if (open_topic("dump", dir, &t)) return 1;
    int np = em__log_partitions(t);
    if (only >= np) {
        fprintf(stderr, "ember log dump: --partition %d: the topic has partitions 0 to %d\n", only, np - 1);
        em__log_close(t);
        return 2;
    }
    uint64_t *ends = xrealloc(NULL, (size_t)np * sizeof *ends);
    if (em__log_end_offsets(t, ends, err, sizeof err) < 0) {
        fprintf(stderr, "ember log dump: %s\n", err);
        rc = 1;
    }
    static char obuf[1 << 16];
    setvbuf(stdout, obuf, _IOFBF, sizeof obuf);
    for (int p = 0; p < np && !rc; p++) {
        if (only >= 0 && p != only) continue;
        if (from > ends[p]) continue; /* nothing at or after --from in this partition */
        if (em__log_read(t, p, from, EM__LOG_END, dump_one, &p, NULL, err, sizeof err) < 0) {
            fflush(stdout);
            fprintf(stderr, "ember log dump: %s\n", err);
            rc = 1;
        }
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        fprintf(stderr, "ember log dump: writing stdout: %s\n", strerror(errno));
        rc = 1;
    }
    free(ends);
    em__log_close(t);
    return rc;
}

static int cmd_verify(int argc, char **argv)
{
    const char *dir = NULL;
    int repair = 0, rc = 0, nbad = 0;
    em__log_topic *t;
    char err[600];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--repair") == 0) repair = 1;
        else if ((rc = one_dir("verify", argv[i], &dir))) return rc;
    }
    if (!dir) return usage_err("verify", "which topic? (ember log verify DIR [--repair])%s%s", "", "");
    if (open_topic("verify", dir, &t)) return 1;
    for (int p = 0; p < em__log_partitions(t); p++) {
        em__log_part_stat st;
        uint64_t dropped = 0;
        int r = repair ? em__log_repair(t, p, &st, &dropped, err, sizeof err) : em__log_stat(t, p, &st, err, sizeof err);
        if (r < 0) {
            fprintf(stderr, "ember log verify: %s\n", err);
            rc = 1;
            continue;
        }
        if (!st.bad && !st.bad_index) {
            printf("p%05d: ok: offsets %" PRIu64 " to %" PRIu64 "\n", p, st.start, st.end);
            continue;
        }
        nbad++;
        if (st.bad)
            printf("p%05d: %s: %s\n", p, repair ? "repaired" : "BAD", st.what);
        if (st.bad_index && !st.bad)
            printf("p%05d: %s: an index entry points at no record of its segment\n", p,
                   repair ? "repaired" : "BAD INDEX");
        if (repair && st.bad)
            printf("p%05d: cut at offset %" PRIu64 ": %" PRIu64 " bytes removed; appends continue at offset %" PRIu64
                   "\n", p, st.where.offset, dropped, st.where.offset);
    }
    if (nbad && !repair) {
        fprintf(stderr, "ember log verify: %s: %d partition%s with problems (ember log verify --repair %s cuts them)\n",
                dir, nbad, nbad == 1 ? "" : "s", dir);
        rc = 1;
    }
    em__log_close(t);
    return rc;
}

int em__cli_log(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } subs[] = {{"create", cmd_create}, {"append", cmd_append}, {"info", cmd_info}, {"dump", cmd_dump},
                {"verify", cmd_verify}};
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (is_help(argv[1]) || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof subs / sizeof subs[0]; i++)
        if (strcmp(argv[1], subs[i].name) == 0) {
            for (int j = 2; j < argc; j++)
                if (is_help(argv[j])) {
                    usage(stdout);
                    return 0;
                }
            return subs[i].fn(argc - 1, argv + 1);
        }
    fprintf(stderr, "ember log: unknown subcommand '%s' (create, append, info, dump, verify)\n", argv[1]);
    return 2;
}
