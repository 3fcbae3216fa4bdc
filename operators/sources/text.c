/* text.c — em_text: lines of files, directories and globs as records (em_text_chunks: runs of whole lines), split
 * by byte ranges aligned to line starts (DESIGN section 8). Planning (expanding inputs, cutting splits) happens when the dataset is built, on
 * every rank alike; a task reads only its own split with the line reader of textsplit.c. */
#include "operators/dataset.h"
#include "operators/sources/textsplit.h"
#include "runtime/log.h"

#include <stdlib.h>
#include <string.h>

static em_ds *text_source(em_ctx *ctx, const char *const *paths, int npaths, int nparts, int chunks)
{
    if (nparts <= 0) nparts = em_default_partitions(ctx);
    em__node *n = em__node_add(ctx, EM__K_TEXT, NULL, 0);
    n->text_chunks = chunks;
    char err[600] = "";
    int rc = em__text_plan(paths, npaths, 0, nparts, &n->splits, &n->nsplits, err, sizeof err);
    if (rc < 0) {
        n->err = em__strdup(*err ? err : em_strerror(rc));
        n->err_code = rc;
        n->nsplits = 0;
    }
    n->nparts = n->nsplits;
    return (em_ds *)n;
}

em_ds *em_text(em_ctx *ctx, const char *const *paths, int npaths, int nparts)
{
    return text_source(ctx, paths, npaths, nparts, 0);
}

em_ds *em_text_chunks(em_ctx *ctx, const char *const *paths, int npaths, int nparts)
{
    return text_source(ctx, paths, npaths, nparts, 1);
}

int em__text_compute(const em__node *n, int part, em_emitter *sink)
{
    if (n->err) return em__fail(n->err_code, "%s", n->err);
    const em__split *s = &n->splits[part];
    em__line_reader r;
    int rc = em__line_reader_open(&r, s->path, s->start, s->end, 0, 0);
    if (rc < 0) {
        em__fail(rc, "%s", r.err);
        em__line_reader_release(&r);
        return rc;
    }
    const char *line;
    size_t len;
    while ((rc = n->text_chunks ? em__line_reader_chunk(&r, &line, &len) : em__line_reader_next(&r, &line, &len, NULL)) > 0) {
        if (len > UINT32_MAX) {
            rc = em__fail(EM_EPARSE, "%s: a line of %zu bytes is longer than a record can be (4 GiB)", s->path, len);
            break;
        }
        em_rec rec = {line, line, (uint32_t)len, 0};
        if ((rc = sink->push(sink, &rec)) < 0) break;
    }
    if (rc < 0 && *r.err) em__fail(rc, "%s", r.err);
    em__line_reader_release(&r);
    return rc < 0 ? rc : 0;
}
