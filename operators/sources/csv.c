/* csv.c — em_csv: rows of RFC 4180 CSV files as records (DESIGN section 8). A generic source node
 * (EM__K_SOURCE): planning (expanding the inputs, reading the header, cutting record-aligned splits with
 * em__csv_plan) happens when the dataset is built, identically on every rank; a task reads only its own split
 * with em__csv_reader and emits one record per row: an empty key (or, with line_keys, the tuple (file index, line)),
 * and a tuple of the row's fields as strings.
 *
 * All files must have the header of the first one (same names, same order): rows of a file whose columns
 * differ would otherwise be read under the wrong names. That is checked when planning, so a mismatch fails the
 * first action that reads the dataset, before any task runs. */
#include "operators/dataset.h"
#include "operators/sources/csvparse.h"
#include "runtime/log.h"

#include <stdlib.h>
#include <string.h>

/* Malformed rows reported on stderr per task; the rest are only counted. */
#define CSV_REPORT_MAX 10

typedef struct csv_src {
    em__split *splits;
    int nsplits;
    em__csv_header hdr; /* of the first file */
    char sep;
    int strict;
    int line_keys;
    char **files; /* [nfiles] path of each input file by index (NULL for an empty file) */
    int nfiles;
} csv_src;

static void csv_free(void *p)
{
    csv_src *s = p;
    if (!s) return;
    em__text_plan_free(s->splits);
    em__csv_header_release(&s->hdr);
    for (int i = 0; i < s->nfiles; i++) free(s->files[i]);
    free(s->files);
    free(s);
}

static int csv_compute(const em__node *n, int part, em_emitter *sink);

static const csv_src *csv_of(const em_ds *ds)
{
    const em__node *n = (const em__node *)ds;
    if (!n || n->kind != EM__K_SOURCE || n->src_compute != csv_compute) return NULL;
    return n->src;
}

/* Reads the header of `path` into *hdr. Returns 0 or an error with the message in err. */
static int read_header(const char *path, uint64_t size, char sep, em__csv_header *hdr, char *err, size_t errlen)
{
    em__csv_reader r;
    em__csv_opts o = {.sep = sep, .bufsize = 64 << 10};
    int rc = em__csv_reader_open(&r, path, 0, size, 1, &o);
    if (rc < 0) {
        em__set_err(err, errlen, "%s", r.err);
    } else {
        *hdr = r.hdr;
        r.hdr = (em__csv_header){0};
    }
    em__csv_reader_release(&r);
    return rc;
}

static int same_header(const em__csv_header *a, const em__csv_header *b)
{
    if (a->ncols != b->ncols) return 0;
    for (int i = 0; i < a->ncols; i++)
        if (strcmp(a->name[i], b->name[i]) != 0) return 0;
    return 1;
}

/* Plans the dataset into s: splits, the first file's header, and every other file's header checked against it. */
static int csv_plan(const char *const *paths, int npaths, int nparts, csv_src *s, char *err, size_t errlen)
{
    em__csv_opts o = {.sep = s->sep};
    em__split *files = NULL;
    int nfiles = 0, rc;
    /* One split per non-empty file (stat only): the files whose header must agree. */
    if ((rc = em__text_plan(paths, npaths, (uint64_t)1 << 60, 1, &files, &nfiles, err, errlen)) < 0) return rc;
    if (nfiles) {
        s->nfiles = files[nfiles - 1].file + 1;
        s->files = em__calloc((size_t)s->nfiles, sizeof *s->files);
        for (int i = 0; i < nfiles; i++)
            if (!s->files[files[i].file]) s->files[files[i].file] = em__strdup(files[i].path);
    }
    for (int i = 0; i < nfiles && rc == 0; i++) {
        if (i > 0 && files[i].file == files[i - 1].file) continue;
        if (s->hdr.ncols == 0) {
            rc = read_header(files[i].path, files[i].file_size, s->sep, &s->hdr, err, errlen);
            continue;
        }
        em__csv_header h = {0};
        if ((rc = read_header(files[i].path, files[i].file_size, s->sep, &h, err, errlen)) == 0 && !same_header(&h, &s->hdr)) {
            int k = 0;
            while (k < h.ncols && k < s->hdr.ncols && strcmp(h.name[k], s->hdr.name[k]) == 0) k++;
            if (k < h.ncols && k < s->hdr.ncols)
                em__set_err(err, errlen, "%s:1: column %d is '%s' where %s has '%s': every file of one CSV dataset "
                            "needs the same header", files[i].path, k + 1, h.name[k], files[0].path, s->hdr.name[k]);
            else
                em__set_err(err, errlen, "%s:1: the header has %d columns where %s has %d: every file of one CSV "
                            "dataset needs the same header", files[i].path, h.ncols, files[0].path, s->hdr.ncols);
            rc = EM_EPARSE;
        }
        em__csv_header_release(&h);
    }
    em__text_plan_free(files);
    if (rc < 0) return rc;
    return em__csv_plan(paths, npaths, 0, nparts, &o, &s->splits, &s->nsplits, err, errlen);
}

em_ds *em_csv(em_ctx *ctx, const char *const *paths, int npaths, const em_csv_opts *opts, int nparts)
{
    if (nparts <= 0) nparts = em_default_partitions(ctx);
    em__node *n = em__node_add(ctx, EM__K_SOURCE, NULL, 0);
    csv_src *s = em__calloc(1, sizeof *s);
    s->sep = opts && opts->sep ? opts->sep : ',';
    s->strict = opts ? opts->strict : 0;
    s->line_keys = opts ? opts->line_keys : 0;
    n->src = s;
    n->src_free = csv_free;
    n->src_compute = csv_compute;
    char err[1024] = "";
    int rc = csv_plan(paths, npaths, nparts, s, err, sizeof err);
    if (rc < 0) {
        n->err = em__strdup(*err ? err : em_strerror(rc));
        n->err_code = rc;
        em__text_plan_free(s->splits);
        s->splits = NULL;
        s->nsplits = 0;
    }
    n->nparts = s->nsplits;
    return (em_ds *)n;
}

static int csv_compute(const em__node *n, int part, em_emitter *sink)
{
    const csv_src *s = n->src;
    EM_ASSERT(part >= 0 && part < s->nsplits);
    const em__split *sp = &s->splits[part];
    em__csv_opts o = {.sep = s->sep};
    em__csv_reader r;
    em__csv_row row;
    em_tup t = {0}, k = {0};
    uint64_t nbad = 0;
    int rc = em__csv_reader_open(&r, sp->path, sp->start, sp->end, sp->line, &o);
    if (rc < 0) {
        em__fail(rc, "%s", r.err);
        goto out;
    }
    while ((rc = em__csv_reader_next(&r, &row)) != 0) {
        if (rc == EM_EPARSE) {
            nbad++;
            if (s->strict) {
                em__fail(rc, "%s (strict CSV: a malformed row fails the job)", r.err);
                goto out;
            }
            if (nbad <= CSV_REPORT_MAX) EM_LOG_W("skipped a malformed CSV row: %s", r.err);
            continue;
        }
        if (rc < 0) {
            em__fail(rc, "%s", r.err);
            goto out;
        }
        em_tup_clear(&t);
        for (int i = 0; i < row.nfields; i++) em_tup_str(&t, row.field[i], row.len[i]);
        if (t.len > UINT32_MAX) {
            rc = em__fail(EM_EPARSE, "%s:%llu: a row of %zu bytes is longer than a record can be (4 GiB)", sp->path,
                          (unsigned long long)row.line, t.len);
            goto out;
        }
        em_rec rec = {t.p, t.p, 0, (uint32_t)t.len};
        if (s->line_keys) {
            em_tup_clear(&k);
            em_tup_i64(&k, sp->file);
            em_tup_i64(&k, (int64_t)row.line);
            rec.key = k.p;
            rec.klen = (uint32_t)k.len;
        }
        if ((rc = sink->push(sink, &rec)) < 0) goto out;
    }
    if (nbad > CSV_REPORT_MAX)
        EM_LOG_W("%s: %llu more malformed CSV rows in bytes [%llu, %llu) skipped and not listed", sp->path,
                 (unsigned long long)(nbad - CSV_REPORT_MAX), (unsigned long long)sp->start,
                 (unsigned long long)sp->end);
out:
    em_tup_free(&t);
    em_tup_free(&k);
    em__csv_reader_release(&r);
    return rc < 0 ? rc : 0;
}

int em_csv_ncols(const em_ds *csv)
{
    const csv_src *s = csv_of(csv);
    return s ? s->hdr.ncols : EM_EINVAL;
}

int em_csv_col(const em_ds *csv, const char *name)
{
    const csv_src *s = csv_of(csv);
    return s ? em__csv_col(&s->hdr, name) : -1;
}

const char *em_csv_colname(const em_ds *csv, int idx)
{
    const csv_src *s = csv_of(csv);
    return s && idx >= 0 && idx < s->hdr.ncols ? s->hdr.name[idx] : NULL;
}

const char *em_csv_file(const em_ds *csv, int file_index)
{
    const csv_src *s = csv_of(csv);
    return s && file_index >= 0 && file_index < s->nfiles ? s->files[file_index] : NULL;
}
