/* hdf5.c — em_save_hdf5 (DESIGN section 8: "HDF5 output is written per task and stitched into one file,
 * committed atomically").
 *
 * Two collective steps:
 *   1. em__save through the "hdf5" sink below: every task writes its partition as a part file (a compound dataset
 *      "rows", uncompressed) into a hidden directory next to the target; the save commit renames the first
 *      successful attempt of each partition to part-NNNNN, so retried tasks land once.
 *   2. em_count over a one-partition source whose "computation" is the merge: it copies the parts, in partition
 *      order, into FILE.tmp.PID (chunked, shuffle + deflate), adds the attributes, fsyncs and rename()s it onto
 *      FILE, then removes the parts. As a task it is retried elsewhere if its rank dies (the parts are still
 *      there: they go only after the rename), and every rank returns from em_count after it, with its error.
 *      A retry that finds FILE already carrying this save's token (a rank that died after the rename) only
 *      cleans up. What a dead merger leaves: its FILE.tmp.PID, never a partial FILE.
 */
#include "operators/dataset.h"
#include "operators/sinks/sink.h"
#include "operators/sources/hdf5util.h"
#include "operators/sources/textsplit.h"
#include "runtime/log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PART_DSET "rows"

/* ---- step 1: the part sink ------------------------------------------------------------------------------- */

typedef struct part_state {
    em__h5_schema sc;
    hid_t f, d, t;
    uint8_t *buf;     /* rows not yet written */
    size_t nbuf, cap; /* rows */
    uint64_t nrows;   /* rows written to the file */
    uint64_t seen;    /* records pushed, for messages */
    int part;
    char path[];
} part_state;

static int part_flush(part_state *s)
{
    if (!s->nbuf) return 0;
    hsize_t newsize = s->nrows + s->nbuf, start = s->nrows, count = s->nbuf;
    em__h5_lock();
    herr_t e = H5Dset_extent(s->d, &newsize);
    hid_t fs = e >= 0 ? H5Dget_space(s->d) : -1, ms = H5Screate_simple(1, &count, NULL);
    if (fs >= 0) e = H5Sselect_hyperslab(fs, H5S_SELECT_SET, &start, NULL, &count, NULL);
    if (fs < 0 || e < 0 || H5Dwrite(s->d, s->t, ms, fs, H5P_DEFAULT, s->buf) < 0) e = -1;
    if (fs >= 0) H5Sclose(fs);
    H5Sclose(ms);
    em__h5_unlock();
    if (e < 0) return em__fail(EM_EIO, "save_hdf5: cannot write %s", s->path);
    s->nrows = newsize;
    s->nbuf = 0;
    return 0;
}

static void part_free(part_state *s)
{
    em__h5_lock();
    if (s->t >= 0) H5Tclose(s->t);
    if (s->d >= 0) H5Dclose(s->d);
    if (s->f >= 0) H5Fclose(s->f);
    em__h5_unlock();
    em__h5_schema_release(&s->sc);
    free(s->buf);
    free(s);
}

static int part_open(void **state, const char *path, int part, const char *args)
{
    size_t pl = strlen(path) + 1;
    part_state *s = em__calloc(1, sizeof *s + pl);
    char err[512];
    memcpy(s->path, path, pl);
    s->part = part;
    s->f = s->d = s->t = -1;
    int rc = em__h5_schema_parse(args, &s->sc, err, sizeof err);
    if (rc < 0) {
        free(s);
        return em__fail(rc, "save_hdf5: %s", err);
    }
    s->cap = (1u << 20) / s->sc.rowsize + 1;
    s->buf = em__malloc(s->cap * s->sc.rowsize);
    hsize_t zero = 0, unlim = H5S_UNLIMITED, chunk = s->cap;
    em__h5_lock();
    s->t = em__h5_schema_type(&s->sc);
    hid_t sp = H5Screate_simple(1, &zero, &unlim), pl_ = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(pl_, 1, &chunk);
    if ((s->f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)) >= 0)
        s->d = H5Dcreate2(s->f, PART_DSET, s->t, sp, H5P_DEFAULT, pl_, H5P_DEFAULT);
    H5Sclose(sp);
    H5Pclose(pl_);
    em__h5_unlock();
    if (s->d < 0) {
        part_free(s);
        return em__fail(EM_EIO, "save_hdf5: cannot create %s", path);
    }
    *state = s;
    return 0;
}

static const char *ftype_name(em_ftype t)
{
    return t == EM_F_NULL ? "NULL" : t == EM_F_I64 ? "an int64" : t == EM_F_F64 ? "a double" : "a string";
}

static int part_push(void *state, const em_rec *r)
{
    part_state *s = state;
    uint8_t *row = s->buf + s->nbuf * s->sc.rowsize;
    s->seen++;
    for (int i = 0; i < s->sc.n; i++) {
        const em__h5_col *c = &s->sc.col[i];
        em_field f;
        int rc = em_tup_get(r->val, r->vlen, i, &f);
        if (rc < 0)
            return em__fail(EM_ETYPE, "save_hdf5: record %llu of partition %d: %s for member %d (%s) of the schema",
                            (unsigned long long)s->seen, s->part, rc == EM_EINVAL ? "the value tuple has no field" :
                            "the value is not a tuple", i + 1, c->name);
        const char *want = NULL;
        switch (c->type) {
        case EM__H5_I32:
        case EM__H5_I64:
            if (f.type != EM_F_I64) { want = "an int64"; break; }
            if (c->type == EM__H5_I64) { memcpy(row + c->off, &f.i64, 8); break; }
            if (f.i64 < INT32_MIN || f.i64 > INT32_MAX) {
                return em__fail(EM_ETYPE, "save_hdf5: record %llu of partition %d: field %d (%s): %lld is out of "
                                "i32 range", (unsigned long long)s->seen, s->part, i + 1, c->name, (long long)f.i64);
            }
            int32_t v32 = (int32_t)f.i64;
            memcpy(row + c->off, &v32, 4);
            break;
        case EM__H5_F32:
        case EM__H5_F64: {
            double d = f.type == EM_F_I64 ? (double)f.i64 : f.type == EM_F_F64 ? f.f64 : __builtin_nan("");
            if (f.type == EM_F_STR) { want = "a number or NULL"; break; }
            if (c->type == EM__H5_F64) memcpy(row + c->off, &d, 8);
            else {
                float x = (float)d;
                memcpy(row + c->off, &x, 4);
            }
            break;
        }
        case EM__H5_STR:
            if (f.type != EM_F_STR && f.type != EM_F_NULL) { want = "a string or NULL"; break; }
            if (f.type == EM_F_STR && f.len > c->size)
                return em__fail(EM_ETYPE, "save_hdf5: record %llu of partition %d: field %d (%s): a string of %zu "
                                "bytes does not fit str%zu", (unsigned long long)s->seen, s->part, i + 1, c->name,
                                f.len, c->size);
            memset(row + c->off, 0, c->size);
            if (f.type == EM_F_STR && f.len) memcpy(row + c->off, f.str, f.len);
            break;
        }
        if (want)
            return em__fail(EM_ETYPE, "save_hdf5: record %llu of partition %d: field %d (%s) is %s, expected %s",
                            (unsigned long long)s->seen, s->part, i + 1, c->name, ftype_name(f.type), want);
    }
    if (++s->nbuf == s->cap) return part_flush(s);
    return 0;
}

static int fsync_path(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static int part_close(void *state, int ok)
{
    part_state *s = state;
    int rc = ok ? part_flush(s) : 0;
    em__h5_lock();
    if (s->t >= 0) H5Tclose(s->t);
    if (s->d >= 0) H5Dclose(s->d);
    if (s->f >= 0 && H5Fclose(s->f) < 0 && ok && rc == 0) rc = em__fail(EM_EIO, "save_hdf5: cannot write %s", s->path);
    s->t = s->d = s->f = -1;
    em__h5_unlock();
    /* durable before the save commit renames it */
    if (ok && rc == 0 && fsync_path(s->path) < 0) rc = em__fail(EM_EIO, "save_hdf5: cannot write %s: %s", s->path, strerror(errno));
    part_free(s);
    return rc;
}

const em__sink_ops em__sink_hdf5 = {"hdf5", part_open, part_push, part_close};

/* ---- step 2: the merge task --------------------------------------------------------------------------------- */

typedef struct merge_spec {
    char *parts, *file, *dset, *schema, *token, *inputs;
} merge_spec;

static void merge_free(void *p)
{
    merge_spec *m = p;
    if (!m) return;
    free(m->parts), free(m->file), free(m->dset), free(m->schema), free(m->token), free(m->inputs);
    free(m);
}

/* Removes the parts directory (the part files, _SUCCESS, leftovers of lost attempts). */
static void remove_parts(const char *dir)
{
    char p[PATH_MAX + 300];
    for (int pass = 0; pass < 2; pass++) {
        snprintf(p, sizeof p, "%s%s", dir, pass ? "" : "/_temporary");
        DIR *d = opendir(p);
        if (d) {
            for (struct dirent *e; (e = readdir(d));) {
                if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
                char f[PATH_MAX + 600];
                snprintf(f, sizeof f, "%s/%s", p, e->d_name);
                unlink(f);
            }
            closedir(d);
        }
        rmdir(p);
    }
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Whether `file` holds this save's token already (a previous attempt of the merge renamed it in place). */
static int already_committed(const merge_spec *m)
{
    int done = 0;
    if (access(m->file, F_OK) < 0 || H5Fis_hdf5(m->file) <= 0) return 0;
    hid_t f = H5Fopen(m->file, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) return 0;
    hid_t d = H5Dopen2(f, m->dset, H5P_DEFAULT);
    if (d >= 0 && H5Aexists(d, "ember_save_token") > 0) {
        hid_t a = H5Aopen(d, "ember_save_token", H5P_DEFAULT), t = H5Aget_type(a);
        size_t n = H5Tget_size(t);
        char *v = em__calloc(1, n + 1);
        if (H5Aread(a, t, v) >= 0) done = strcmp(v, m->token) == 0;
        free(v);
        H5Tclose(t);
        H5Aclose(a);
    }
    if (d >= 0) H5Dclose(d);
    H5Fclose(f);
    return done;
}

static void put_attr(hid_t obj, const char *name, const char *value)
{
    hid_t t = H5Tcopy(H5T_C_S1), sp = H5Screate(H5S_SCALAR);
    H5Tset_size(t, strlen(value) + 1);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) {
        H5Awrite(a, t, value);
        H5Aclose(a);
    }
    H5Sclose(sp);
    H5Tclose(t);
}

/* The merge itself, under the HDF5 lock. Returns 0 or an error (message set). */
static int merge_locked(const merge_spec *m, char **names, int n)
{
    em__h5_schema sc;
    char err[512], tmp[PATH_MAX + 32];
    int rc = em__h5_schema_parse(m->schema, &sc, err, sizeof err);
    if (rc < 0) return em__fail(rc, "save_hdf5: %s", err);
    hid_t t = em__h5_schema_type(&sc), out = -1, d = -1, lcpl = -1, dcpl = -1, sp = -1;
    hsize_t total = 0, at = 0;
    uint8_t *buf = NULL;
    /* Sizes first: the target is created at its final size. */
    for (int i = 0; i < n && rc == 0; i++) {
        char p[PATH_MAX + 300];
        snprintf(p, sizeof p, "%s/%s", m->parts, names[i]);
        hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT), pd = f >= 0 ? H5Dopen2(f, PART_DSET, H5P_DEFAULT) : -1;
        if (pd < 0) rc = em__fail(EM_EIO, "save_hdf5: cannot read part %s", p);
        else {
            hid_t ps = H5Dget_space(pd);
            hsize_t dim;
            H5Sget_simple_extent_dims(ps, &dim, NULL);
            total += dim;
            H5Sclose(ps);
        }
        if (pd >= 0) H5Dclose(pd);
        if (f >= 0) H5Fclose(f);
    }
    if (rc < 0) goto out;
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", m->file, (int)getpid());
    hsize_t maxd = H5S_UNLIMITED, chunk = (1u << 20) / sc.rowsize + 1;
    if (total && chunk > total) chunk = total;
    sp = H5Screate_simple(1, &total, &maxd);
    lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, &chunk);
    H5Pset_shuffle(dcpl);
    H5Pset_deflate(dcpl, 4);
    if ((out = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT)) < 0 ||
        (d = H5Dcreate2(out, m->dset, t, sp, lcpl, dcpl, H5P_DEFAULT)) < 0) {
        rc = em__fail(EM_EIO, "save_hdf5: cannot create dataset '%s' in %s", m->dset, tmp);
        goto out;
    }
    size_t block = (size_t)chunk * 4;
    buf = em__malloc(block * sc.rowsize);
    for (int i = 0; i < n && rc == 0; i++) {
        char p[PATH_MAX + 300];
        snprintf(p, sizeof p, "%s/%s", m->parts, names[i]);
        hid_t f = H5Fopen(p, H5F_ACC_RDONLY, H5P_DEFAULT), pd = f >= 0 ? H5Dopen2(f, PART_DSET, H5P_DEFAULT) : -1;
        hid_t ps = pd >= 0 ? H5Dget_space(pd) : -1;
        hsize_t dim = 0;
        if (ps >= 0) H5Sget_simple_extent_dims(ps, &dim, NULL);
        for (hsize_t r = 0; r < dim && pd >= 0; r += block) {
            hsize_t cnt = dim - r < block ? dim - r : block, dst = at + r;
            hid_t ms = H5Screate_simple(1, &cnt, NULL), fs = H5Dget_space(d);
            herr_t e = H5Sselect_hyperslab(ps, H5S_SELECT_SET, &r, NULL, &cnt, NULL);
            if (e >= 0) e = H5Dread(pd, t, ms, ps, H5P_DEFAULT, buf);
            if (e >= 0) e = H5Sselect_hyperslab(fs, H5S_SELECT_SET, &dst, NULL, &cnt, NULL);
            if (e >= 0) e = H5Dwrite(d, t, ms, fs, H5P_DEFAULT, buf);
            H5Sclose(ms);
            H5Sclose(fs);
            if (e < 0) {
                rc = em__fail(EM_EIO, "save_hdf5: copying %s into %s failed", p, tmp);
                break;
            }
        }
        if (pd < 0) rc = em__fail(EM_EIO, "save_hdf5: cannot read part %s", p);
        at += dim;
        if (ps >= 0) H5Sclose(ps);
        if (pd >= 0) H5Dclose(pd);
        if (f >= 0) H5Fclose(f);
    }
    if (rc == 0) {
        char when[64];
        time_t now = time(NULL);
        struct tm tmv;
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&now, &tmv));
        put_attr(d, "ember_job", program_invocation_short_name);
        put_attr(d, "ember_inputs", m->inputs);
        put_attr(d, "ember_created", when);
        put_attr(d, "ember_schema", m->schema);
        put_attr(d, "ember_save_token", m->token);
    }
out:
    if (d >= 0) H5Dclose(d);
    if (out >= 0 && H5Fclose(out) < 0 && rc == 0) rc = em__fail(EM_EIO, "save_hdf5: cannot write %s", tmp);
    if (sp >= 0) H5Sclose(sp);
    if (lcpl >= 0) H5Pclose(lcpl);
    if (dcpl >= 0) H5Pclose(dcpl);
    H5Tclose(t);
    free(buf);
    em__h5_schema_release(&sc);
    if (rc == 0 && fsync_path(tmp) < 0) rc = em__fail(EM_EIO, "save_hdf5: cannot write %s: %s", tmp, strerror(errno));
    if (rc == 0 && rename(tmp, m->file) < 0)
        rc = em__fail(EM_EIO, "save_hdf5: cannot rename %s to %s: %s", tmp, m->file, strerror(errno));
    if (rc < 0 && out >= 0) unlink(tmp);
    return rc;
}

static int merge_compute(const em__node *node, int part, em_emitter *sink)
{
    const merge_spec *m = node->src;
    (void)part, (void)sink;
    char **names = NULL;
    int n = 0, cap = 0, rc = 0;
    em__h5_lock();
    int done = already_committed(m);
    em__h5_unlock();
    if (done) {
        remove_parts(m->parts);
        return 0;
    }
    DIR *dir = opendir(m->parts);
    if (!dir) return em__fail(EM_EIO, "save_hdf5: the parts of %s are gone (%s: %s)", m->file, m->parts, strerror(errno));
    for (struct dirent *e; (e = readdir(dir));) {
        if (strncmp(e->d_name, "part-", 5) != 0) continue;
        if (n == cap) names = em__realloc(names, (size_t)(cap = cap ? cap * 2 : 64) * sizeof *names);
        names[n++] = em__strdup(e->d_name);
    }
    closedir(dir);
    qsort(names, (size_t)n, sizeof *names, cmp_str); /* part-00000, part-00001, ...: partition order */
    em__h5_lock();
    rc = merge_locked(m, names, n);
    em__h5_unlock();
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    if (rc == 0) remove_parts(m->parts);
    return rc;
}

/* ---- em_save_hdf5 ---------------------------------------------------------------------------------------- */

const char *em__hdf5_source_file(const em__node *n);

/* The input files of ds's lineage, as far as parent links show them: "a.csv, b.csv" (at most ~4 KiB). */
static void lineage_inputs(const em__node *n, char *buf, size_t cap, int depth)
{
    if (!n || depth > 64) return;
    const char *one[1] = {NULL};
    if (n->kind == EM__K_TEXT) {
        for (int i = 0; i < n->nsplits; i++)
            if (i == 0 || strcmp(n->splits[i].path, n->splits[i - 1].path) != 0) {
                one[0] = n->splits[i].path;
                if (!strstr(buf, one[0])) snprintf(buf + strlen(buf), cap - strlen(buf), "%s%s", *buf ? ", " : "", one[0]);
            }
    } else if (n->kind == EM__K_SOURCE) {
        const char *f = em__hdf5_source_file(n);
        for (int i = 0; !f && em_csv_file((const em_ds *)n, i); i++) {
            const char *c = em_csv_file((const em_ds *)n, i);
            if (!strstr(buf, c)) snprintf(buf + strlen(buf), cap - strlen(buf), "%s%s", *buf ? ", " : "", c);
        }
        if (f && !strstr(buf, f)) snprintf(buf + strlen(buf), cap - strlen(buf), "%s%s", *buf ? ", " : "", f);
    }
    lineage_inputs(n->parent, buf, cap, depth + 1);
    lineage_inputs(n->parent2, buf, cap, depth + 1);
}

int em_save_hdf5(em_ds *ds, const char *file, const char *dataset, const char *schema)
{
    em__node *n = (em__node *)ds;
    em_ctx *ctx = n->ctx;
    static int saves; /* the same count on every rank: saves are collective */
    em__h5_schema sc;
    char err[512];
    if (!file || !*file) return em__fail(EM_EINVAL, "save_hdf5: no output file given");
    if (!dataset || !*dataset) return em__fail(EM_EINVAL, "save_hdf5: %s: no dataset name given", file);
    int rc = em__h5_schema_parse(schema, &sc, err, sizeof err);
    if (rc < 0) return em__fail(rc, "save_hdf5: %s: dataset '%s': %s", file, dataset, err);
    for (int i = 0; i < sc.n; i++)
        if (strpbrk(sc.col[i].name, ",:")) rc = em__fail(EM_EINVAL, "save_hdf5: member name '%s' holds ',' or ':'", sc.col[i].name);
    em__h5_schema_release(&sc);
    if (rc < 0) return rc;

    /* Parts next to the target (same file system, so the final rename is atomic), hidden, and named by the pid of
     * rank 0 and a save counter: the same on every rank, unique between runs. */
    char dir[PATH_MAX], parts[PATH_MAX + 300], token[128];
    snprintf(dir, sizeof dir, "%s", file);
    char *slash = strrchr(dir, '/');
    const char *base = slash ? slash + 1 : dir;
    if (slash == dir) dir[1] = 0;
    else if (slash) *slash = 0;
    snprintf(token, sizeof token, "%d-%d-%d", (int)ctx->rt.pids[0], n->id, saves++);
    if (slash) snprintf(parts, sizeof parts, "%s/.%s.ember-parts.%s", strcmp(dir, "/") == 0 ? "" : dir, base, token);
    else snprintf(parts, sizeof parts, ".%s.ember-parts.%s", base, token);
    if ((rc = em__save(ds, parts, "hdf5", schema)) < 0) {
        if (em_is_leader(ctx)) remove_parts(parts);
        return rc;
    }
    merge_spec *m = em__calloc(1, sizeof *m);
    char inputs[4096] = "";
    lineage_inputs(n, inputs, sizeof inputs, 0);
    m->parts = em__strdup(parts);
    m->file = em__strdup(file);
    m->dset = em__strdup(dataset);
    m->schema = em__strdup(schema);
    m->token = em__strdup(token);
    m->inputs = em__strdup(inputs);
    em__node *mn = em__node_add(ctx, EM__K_SOURCE, NULL, 1);
    mn->src = m;
    mn->src_free = merge_free;
    mn->src_compute = merge_compute;
    int64_t cnt;
    return em_count((em_ds *)mn, &cnt);
}
