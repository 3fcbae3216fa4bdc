/* text.c — the text sinks of em_save_text: one line per record, key TAB value (raw bytes, or an int64 value in
 * decimal for "str_i64"); a record with an empty value is just its key. */
#include "operators/sinks/sink.h"
#include "runtime/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct text_state {
    FILE *f;
    int i64;
    char path[];
} text_state;

static int text_open_mode(void **state, const char *path, int i64)
{
    size_t n = strlen(path) + 1;
    text_state *s = em__malloc(sizeof *s + n);
    memcpy(s->path, path, n);
    s->i64 = i64;
    if (!(s->f = fopen(path, "w"))) {
        free(s);
        return em__fail(EM_EIO, "save: cannot create %s", path);
    }
    *state = s;
    return 0;
}

static int text_open(void **state, const char *path, int part, const char *args)
{
    (void)part, (void)args;
    return text_open_mode(state, path, 0);
}

static int text_i64_open(void **state, const char *path, int part, const char *args)
{
    (void)part, (void)args;
    return text_open_mode(state, path, 1);
}

static int text_push(void *state, const em_rec *r)
{
    text_state *s = state;
    fwrite(r->key, 1, r->klen, s->f);
    if (s->i64) {
        if (r->vlen != 8) return em__fail(EM_ETYPE, "save: a value is %u bytes, not an int64", r->vlen);
        fprintf(s->f, "\t%lld", (long long)em_i64_get(r->val));
    } else if (r->vlen) {
        fputc('\t', s->f);
        fwrite(r->val, 1, r->vlen, s->f);
    }
    if (fputc('\n', s->f) == EOF) return em__fail(EM_EIO, "save: cannot write %s", s->path);
    return 0;
}

static int text_close(void *state, int ok)
{
    text_state *s = state;
    int rc = 0;
    if (ok && (fflush(s->f) != 0 || fsync(fileno(s->f)) != 0)) rc = em__fail(EM_EIO, "save: cannot write %s", s->path);
    fclose(s->f);
    free(s);
    return rc;
}

const em__sink_ops em__sink_text = {"text", text_open, text_push, text_close};
const em__sink_ops em__sink_text_i64 = {"str_i64", text_i64_open, text_push, text_close};
