/* hdf5.c — em_hdf5: the rows of an HDF5 dataset as records, split into contiguous row ranges; each task reads only
 * its own hyperslab with the serial library (DESIGN section 8: no MPI-IO collectives, which hang when a rank
 * dies). Planning opens the file on every rank alike to learn the shape and type; a task reopens it and reads its
 * rows in blocks of a few MiB under the process-wide HDF5 lock, releasing the lock before pushing records on.
 * Also the lock itself and the schema of em_save_hdf5 (hdf5util.h), shared with sinks/hdf5.c. */
#include "operators/dataset.h"
#include "operators/sources/hdf5util.h"
#include "runtime/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- the lock and the schema (hdf5util.h) ---------------------------------------------------------------- */

static pthread_mutex_t h5_mu = PTHREAD_MUTEX_INITIALIZER;

void em__h5_lock(void)
{
    pthread_mutex_lock(&h5_mu);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

void em__h5_unlock(void) { pthread_mutex_unlock(&h5_mu); }

int em__h5_schema_parse(const char *text, em__h5_schema *s, char *err, size_t errlen)
{
    memset(s, 0, sizeof *s);
    if (!text || !*text) {
        snprintf(err, errlen, "empty schema (expected e.g. \"name:str16,count:i64,mean:f64\")");
        return EM_EINVAL;
    }
    for (const char *p = text;;) {
        const char *e = strchr(p, ','), *c = strchr(p, ':');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (!c || c >= p + len) {
            snprintf(err, errlen, "schema item '%.*s': expected NAME:TYPE with TYPE i32, i64, f32, f64 or strN", (int)len, p);
            goto bad;
        }
        size_t nl = (size_t)(c - p), tl = len - nl - 1;
        if (nl == 0 || nl >= sizeof s->col[0].name) {
            snprintf(err, errlen, "schema item '%.*s': the name must have 1 to 255 bytes", (int)len, p);
            goto bad;
        }
        em__h5_col col = {.size = 0};
        memcpy(col.name, p, nl);
        const char *t = c + 1;
        if (tl == 3 && strncmp(t, "i32", 3) == 0) col.type = EM__H5_I32, col.size = 4;
        else if (tl == 3 && strncmp(t, "i64", 3) == 0) col.type = EM__H5_I64, col.size = 8;
        else if (tl == 3 && strncmp(t, "f32", 3) == 0) col.type = EM__H5_F32, col.size = 4;
        else if (tl == 3 && strncmp(t, "f64", 3) == 0) col.type = EM__H5_F64, col.size = 8;
        else if (tl > 3 && tl < 9 && strncmp(t, "str", 3) == 0 && strspn(t + 3, "0123456789") == tl - 3) {
            col.type = EM__H5_STR;
            col.size = (size_t)strtoul(t + 3, NULL, 10);
        }
        if (col.size == 0 || col.size > 65535) {
            snprintf(err, errlen, "schema item '%.*s': unknown type '%.*s' (expected i32, i64, f32, f64 or strN with "
                     "1 <= N <= 65535)", (int)len, p, (int)tl, t);
            goto bad;
        }
        for (int i = 0; i < s->n; i++)
            if (strcmp(s->col[i].name, col.name) == 0) {
                snprintf(err, errlen, "schema: member '%s' is named twice", col.name);
                goto bad;
            }
        col.off = s->rowsize;
        s->rowsize += col.size;
        s->col = em__realloc(s->col, (size_t)(s->n + 1) * sizeof *s->col);
        s->col[s->n++] = col;
        if (!e) return 0;
        p = e + 1;
    }
bad:
    em__h5_schema_release(s);
    return EM_EINVAL;
}

void em__h5_schema_release(em__h5_schema *s)
{
    free(s->col);
    memset(s, 0, sizeof *s);
}

hid_t em__h5_schema_type(const em__h5_schema *s)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, s->rowsize ? s->rowsize : 1);
    for (int i = 0; i < s->n; i++) {
        const em__h5_col *c = &s->col[i];
        hid_t m = -1;
        switch (c->type) {
        case EM__H5_I32: m = H5Tcopy(H5T_STD_I32LE); break;
        case EM__H5_I64: m = H5Tcopy(H5T_STD_I64LE); break;
        case EM__H5_F32: m = H5Tcopy(H5T_IEEE_F32LE); break;
        case EM__H5_F64: m = H5Tcopy(H5T_IEEE_F64LE); break;
        case EM__H5_STR:
            m = H5Tcopy(H5T_C_S1);
            H5Tset_size(m, c->size);
            H5Tset_strpad(m, H5T_STR_NULLPAD);
            break;
        }
        H5Tinsert(t, c->name, c->off, m);
        H5Tclose(m);
    }
    return t;
}

/* ---- the source ------------------------------------------------------------------------------------------ */

enum { M_INT, M_UINT64, M_FLOAT, M_STR };

typedef struct h5_member {
    int kind;    /* M_* */
    size_t size; /* in the memory row */
    size_t off;
} h5_member;

typedef struct h5_src {
    char *file, *dset;
    int compound;
    int rank;         /* of the dataset: 1 or 2 */
    uint64_t nrows;
    int nm;           /* fields per row: 1 (1-D), columns (2-D), members (compound) */
    h5_member *m;
    size_t rowsize;   /* bytes of one row in memory */
    char **mname;     /* compound member names (for the memory type) */
} h5_src;

static void h5_free(void *p)
{
    h5_src *s = p;
    if (!s) return;
    for (int i = 0; s->mname && i < s->nm; i++) free(s->mname[i]);
    free(s->mname);
    free(s->m);
    free(s->file);
    free(s->dset);
    free(s);
}

static int h5_compute(const em__node *n, int part, em_emitter *sink);

const char *em__hdf5_source_file(const em__node *n);
const char *em__hdf5_source_file(const em__node *n)
{
    return n->kind == EM__K_SOURCE && n->src_compute == h5_compute && n->src ? ((h5_src *)n->src)->file : NULL;
}

static const char *class_name(H5T_class_t c)
{
    switch (c) {
    case H5T_INTEGER: return "integer";
    case H5T_FLOAT: return "float";
    case H5T_STRING: return "string";
    case H5T_COMPOUND: return "compound";
    case H5T_ENUM: return "enum";
    case H5T_ARRAY: return "array";
    case H5T_VLEN: return "variable-length";
    case H5T_OPAQUE: return "opaque";
    case H5T_REFERENCE: return "reference";
    case H5T_BITFIELD: return "bitfield";
    case H5T_TIME: return "time";
    default: return "unknown";
    }
}

/* A numeric type's reading kind, or -1. */
static int numeric_kind(hid_t t)
{
    H5T_class_t c = H5Tget_class(t);
    if (c == H5T_FLOAT) return M_FLOAT;
    if (c == H5T_INTEGER) return H5Tget_sign(t) == H5T_SGN_NONE && H5Tget_size(t) >= 8 ? M_UINT64 : M_INT;
    return -1;
}

/* The memory type that rows are read into (H5Tclose it). */
static hid_t mem_type(const h5_src *s, hid_t ftype)
{
    if (!s->compound) return H5Tcopy(s->m[0].kind == M_FLOAT ? H5T_NATIVE_DOUBLE : s->m[0].kind == M_UINT64 ? H5T_NATIVE_UINT64 : H5T_NATIVE_INT64);
    hid_t t = H5Tcreate(H5T_COMPOUND, s->rowsize);
    for (int i = 0; i < s->nm; i++) {
        hid_t m;
        if (s->m[i].kind == M_STR) {
            hid_t ft = H5Tget_member_type(ftype, (unsigned)i);
            m = H5Tcopy(ft);
            H5Tclose(ft);
        } else {
            m = H5Tcopy(s->m[i].kind == M_FLOAT ? H5T_NATIVE_DOUBLE : s->m[i].kind == M_UINT64 ? H5T_NATIVE_UINT64 : H5T_NATIVE_INT64);
        }
        H5Tinsert(t, s->mname[i], s->m[i].off, m);
        H5Tclose(m);
    }
    return t;
}

/* Learns the shape of file:dataset into s. Runs under the lock. Returns 0 or an error with the message in err. */
static int h5_plan(h5_src *s, char *err, size_t errlen)
{
    static const char expect[] = "expected a 1-D or 2-D integer/float dataset or a 1-D compound dataset of integer, "
                                 "float and fixed-length string members";
    hid_t f = -1, d = -1, t = -1, sp = -1;
    int rc = 0;
    if (access(s->file, F_OK) < 0) {
        snprintf(err, errlen, "em_hdf5: %s: no such file (reading dataset '%s')", s->file, s->dset);
        return EM_ENOENT;
    }
    if (H5Fis_hdf5(s->file) <= 0) {
        snprintf(err, errlen, "em_hdf5: %s: not an HDF5 file (reading dataset '%s')", s->file, s->dset);
        return EM_ETYPE;
    }
    if ((f = H5Fopen(s->file, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0) {
        snprintf(err, errlen, "em_hdf5: %s: cannot open (reading dataset '%s')", s->file, s->dset);
        return EM_EIO;
    }
    if ((d = H5Dopen2(f, s->dset, H5P_DEFAULT)) < 0) {
        snprintf(err, errlen, "em_hdf5: %s: no dataset '%s' (%s)", s->file, s->dset, expect);
        rc = EM_ENOENT;
        goto out;
    }
    t = H5Dget_type(d);
    sp = H5Dget_space(d);
    int rank = H5Sget_simple_extent_ndims(sp);
    hsize_t dims[H5S_MAX_RANK];
    H5Sget_simple_extent_dims(sp, dims, NULL);
    H5T_class_t cls = H5Tget_class(t);
    int nk = numeric_kind(t);
    if (nk >= 0) {
        if (rank != 1 && rank != 2) {
            snprintf(err, errlen, "em_hdf5: %s: dataset '%s' has rank %d (%s)", s->file, s->dset, rank, expect);
            rc = EM_ETYPE;
            goto out;
        }
        s->rank = rank;
        s->nrows = dims[0];
        s->nm = rank == 2 ? (int)dims[1] : 1;
        s->m = em__calloc((size_t)(s->nm ? s->nm : 1), sizeof *s->m);
        for (int i = 0; i < s->nm; i++) s->m[i] = (h5_member){nk, 8, (size_t)i * 8};
        s->rowsize = (size_t)s->nm * 8;
    } else if (cls == H5T_COMPOUND) {
        if (rank != 1) {
            snprintf(err, errlen, "em_hdf5: %s: compound dataset '%s' has rank %d (%s)", s->file, s->dset, rank, expect);
            rc = EM_ETYPE;
            goto out;
        }
        s->compound = 1;
        s->rank = 1;
        s->nrows = dims[0];
        s->nm = H5Tget_nmembers(t);
        s->m = em__calloc((size_t)(s->nm ? s->nm : 1), sizeof *s->m);
        s->mname = em__calloc((size_t)(s->nm ? s->nm : 1), sizeof *s->mname);
        for (int i = 0; i < s->nm; i++) {
            char *nm = H5Tget_member_name(t, (unsigned)i);
            s->mname[i] = em__strdup(nm ? nm : "");
            H5free_memory(nm);
            hid_t mt = H5Tget_member_type(t, (unsigned)i);
            int k = numeric_kind(mt);
            if (k < 0 && H5Tget_class(mt) == H5T_STRING && H5Tis_variable_str(mt) == 0) k = M_STR;
            if (k < 0) {
                snprintf(err, errlen, "em_hdf5: %s: dataset '%s': member '%s' is %s%s (%s)", s->file, s->dset,
                         s->mname[i], H5Tget_class(mt) == H5T_STRING ? "a variable-length " : "of class ",
                         H5Tget_class(mt) == H5T_STRING ? "string" : class_name(H5Tget_class(mt)), expect);
                H5Tclose(mt);
                rc = EM_ETYPE;
                goto out;
            }
            s->m[i].kind = k;
            s->m[i].size = k == M_STR ? H5Tget_size(mt) : 8;
            s->m[i].off = s->rowsize;
            s->rowsize += s->m[i].size;
            H5Tclose(mt);
        }
        if (s->rowsize == 0) s->rowsize = 1;
    } else {
        snprintf(err, errlen, "em_hdf5: %s: dataset '%s' holds %s values (%s)", s->file, s->dset, class_name(cls), expect);
        rc = EM_ETYPE;
    }
out:
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
    if (d >= 0) H5Dclose(d);
    if (f >= 0) H5Fclose(f);
    return rc;
}

em_ds *em_hdf5(em_ctx *ctx, const char *file, const char *dataset, int nparts)
{
    if (nparts <= 0) nparts = em_default_partitions(ctx);
    em__node *n = em__node_add(ctx, EM__K_SOURCE, NULL, nparts);
    h5_src *s = em__calloc(1, sizeof *s);
    s->file = em__strdup(file ? file : "");
    s->dset = em__strdup(dataset ? dataset : "");
    n->src = s;
    n->src_free = h5_free;
    n->src_compute = h5_compute;
    char err[1024];
    em__h5_lock();
    int rc = h5_plan(s, err, sizeof err);
    em__h5_unlock();
    if (rc < 0) {
        n->err = em__strdup(err);
        n->err_code = rc;
    }
    return (em_ds *)n;
}

/* Rows [lo, hi) of the partition: contiguous, balanced within one row. */
static void part_rows(uint64_t nrows, int nparts, int part, uint64_t *lo, uint64_t *hi)
{
    uint64_t q = nrows / (uint64_t)nparts, r = nrows % (uint64_t)nparts, p = (uint64_t)part;
    *lo = q * p + (p < r ? p : r);
    *hi = *lo + q + (p < r ? 1 : 0);
}

static int h5_compute(const em__node *n, int part, em_emitter *sink)
{
    const h5_src *s = n->src;
    uint64_t lo, hi;
    part_rows(s->nrows, n->nparts, part, &lo, &hi);
    if (lo == hi) return 0;
    uint64_t block = (4u << 20) / s->rowsize;
    if (block == 0) block = 1;
    if (block > hi - lo) block = hi - lo;
    uint8_t *buf = em__malloc((size_t)block * s->rowsize);
    em_tup t = {0};
    int rc = 0;
    hid_t f = -1, d = -1, fs = -1, ms = -1, mt = -1, ft = -1;
    em__h5_lock();
    if ((f = H5Fopen(s->file, H5F_ACC_RDONLY, H5P_DEFAULT)) < 0 || (d = H5Dopen2(f, s->dset, H5P_DEFAULT)) < 0) {
        rc = em__fail(f < 0 ? EM_EIO : EM_ENOENT, "em_hdf5: %s: cannot open dataset '%s' any more", s->file, s->dset);
    } else {
        ft = H5Dget_type(d);
        mt = mem_type(s, ft);
        fs = H5Dget_space(d);
    }
    em__h5_unlock();
    for (uint64_t row = lo; rc == 0 && row < hi; row += block) {
        uint64_t cnt = hi - row < block ? hi - row : block;
        em__h5_lock();
        hsize_t start[2] = {row, 0}, count[2] = {cnt, (hsize_t)s->nm}, mdims[2] = {cnt, (hsize_t)s->nm};
        if (ms >= 0) H5Sclose(ms);
        ms = H5Screate_simple(s->rank, mdims, NULL);
        herr_t e = H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
        if (e >= 0) e = H5Dread(d, mt, ms, fs, H5P_DEFAULT, buf);
        em__h5_unlock();
        if (e < 0) {
            rc = em__fail(EM_EIO, "em_hdf5: %s: reading rows %llu..%llu of dataset '%s' failed", s->file,
                          (unsigned long long)row, (unsigned long long)(row + cnt - 1), s->dset);
            break;
        }
        for (uint64_t i = 0; i < cnt && rc == 0; i++) {
            const uint8_t *r = buf + (size_t)i * s->rowsize;
            uint8_t key[8];
            em_tup_clear(&t);
            for (int k = 0; k < s->nm; k++) {
                const h5_member *m = &s->m[k];
                if (m->kind == M_STR) {
                    const char *str = (const char *)r + m->off;
                    em_tup_str(&t, str, strnlen(str, m->size));
                } else if (m->kind == M_FLOAT) {
                    double v;
                    memcpy(&v, r + m->off, 8);
                    em_tup_f64(&t, v);
                } else {
                    int64_t v;
                    memcpy(&v, r + m->off, 8);
                    if (m->kind == M_UINT64 && v < 0) {
                        rc = em__fail(EM_ETYPE, "em_hdf5: %s: dataset '%s' row %llu field %d: %llu does not fit an int64",
                                      s->file, s->dset, (unsigned long long)(row + i), k, (unsigned long long)(uint64_t)v);
                        break;
                    }
                    em_tup_i64(&t, v);
                }
            }
            if (rc) break;
            em_i64_put(key, (int64_t)(row + i));
            em_rec rec = {key, t.p, 8, (uint32_t)t.len};
            rc = sink->push(sink, &rec);
        }
    }
    em__h5_lock();
    if (ms >= 0) H5Sclose(ms);
    if (fs >= 0) H5Sclose(fs);
    if (mt >= 0) H5Tclose(mt);
    if (ft >= 0) H5Tclose(ft);
    if (d >= 0) H5Dclose(d);
    if (f >= 0) H5Fclose(f);
    em__h5_unlock();
    em_tup_free(&t);
    free(buf);
    return rc < 0 ? rc : 0;
}
