/*
 * textsplit.c — expanding text inputs (files, directories, globs) into byte-range splits, and reading the lines
 * a split owns. Follows shared DESIGN.md §8 ("text and CSV inputs split by byte ranges aligned to line starts").
 * The ownership rule is stated in textsplit.h; the reader is the only place that implements it.
 */
#include "operators/sources/textsplit.h"

#include "ember.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

void em__set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (!err || !errlen) return;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- input expansion ------------------------------------------------------------------------------------ */

typedef struct file_list {
    char **path;
    uint64_t *size;
    int n, cap;
} file_list;

static int files_add(file_list *fl, const char *path, uint64_t size)
{
    if (fl->n == fl->cap) {
        int ncap = fl->cap ? fl->cap * 2 : 16;
        char **np = realloc(fl->path, (size_t)ncap * sizeof *np);
        if (!np) return EM_ENOMEM;
        fl->path = np;
        uint64_t *ns = realloc(fl->size, (size_t)ncap * sizeof *ns);
        if (!ns) return EM_ENOMEM;
        fl->size = ns;
        fl->cap = ncap;
    }
    if (!(fl->path[fl->n] = strdup(path))) return EM_ENOMEM;
    fl->size[fl->n++] = (uint64_t)size;
    return 0;
}

static void files_release(file_list *fl)
{
    for (int i = 0; i < fl->n; i++) free(fl->path[i]);
    free(fl->path);
    free(fl->size);
}

static int skipped_name(const char *name)
{
    return name[0] == '.' || name[0] == '_';
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Regular files directly inside `dir`, sorted by name in byte order (strcmp, not the locale's collation, so
 * every rank and every machine agrees on the order). */
static int add_dir(file_list *fl, const char *dir, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    char **names = NULL;
    int n = 0, cap = 0, rc = 0;
    struct dirent *de;
    if (!d) {
        em__set_err(err, errlen, "%s: cannot open directory: %s", dir, strerror(errno));
        return errno == ENOENT ? EM_ENOENT : EM_EIO;
    }
    while ((de = readdir(d))) {
        if (skipped_name(de->d_name)) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            char **nn = realloc(names, (size_t)cap * sizeof *nn);
            if (!nn) { rc = EM_ENOMEM; goto out; }
            names = nn;
        }
        if (!(names[n] = strdup(de->d_name))) { rc = EM_ENOMEM; goto out; }
        n++;
    }
    if (n > 1) qsort(names, (size_t)n, sizeof *names, cmp_str);
    for (int i = 0; i < n && rc == 0; i++) {
        size_t len = strlen(dir) + strlen(names[i]) + 2;
        char *full = malloc(len);
        struct stat st;
        if (!full) { rc = EM_ENOMEM; break; }
        snprintf(full, len, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", names[i]);
        if (stat(full, &st) == 0 && S_ISREG(st.st_mode)) rc = files_add(fl, full, (uint64_t)st.st_size);
        free(full);
    }
out:
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    closedir(d);
    return rc;
}

static int add_path(file_list *fl, const char *path, int from_glob, char *err, size_t errlen)
{
    struct stat st;
    if (from_glob) {
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        if (skipped_name(base)) return 0;
    }
    if (stat(path, &st) < 0) {
        em__set_err(err, errlen, "%s: %s", path, strerror(errno));
        return errno == ENOENT || errno == ENOTDIR ? EM_ENOENT : EM_EIO;
    }
    if (S_ISDIR(st.st_mode)) return add_dir(fl, path, err, errlen);
    if (!S_ISREG(st.st_mode)) {
        em__set_err(err, errlen, "%s: not a regular file or directory", path);
        return EM_EINVAL;
    }
    return files_add(fl, path, (uint64_t)st.st_size);
}

static int add_input(file_list *fl, const char *path, char *err, size_t errlen)
{
    glob_t g;
    int rc = 0, grc;
    if (!strpbrk(path, "*?[")) return add_path(fl, path, 0, err, errlen);
    memset(&g, 0, sizeof g);
    grc = glob(path, 0, NULL, &g);
    if (grc == GLOB_NOMATCH) {
        em__set_err(err, errlen, "%s: no file matches the pattern", path);
        rc = EM_ENOENT;
    } else if (grc != 0) {
        em__set_err(err, errlen, "%s: glob failed (%s)", path, grc == GLOB_NOSPACE ? "out of memory" : "read error");
        rc = grc == GLOB_NOSPACE ? EM_ENOMEM : EM_EIO;
    } else {
        for (size_t i = 0; i < g.gl_pathc && rc == 0; i++) rc = add_path(fl, g.gl_pathv[i], 1, err, errlen);
    }
    globfree(&g);
    return rc;
}

/* ---- planning ------------------------------------------------------------------------------------------- */

int em__text_plan(const char *const *paths, int npaths, uint64_t split_bytes, int min_splits, em__split **out,
                  int *nsplits, char *err, size_t errlen)
{
    file_list fl = {0};
    uint64_t total = 0, size, count = 0;
    size_t strbytes = 0;
    em__split *sp = NULL;
    char *strs;
    int rc = 0, k = 0;

    if (!out || !nsplits || npaths < 0 || (npaths > 0 && !paths)) {
        em__set_err(err, errlen, "text plan: invalid arguments");
        return EM_EINVAL;
    }
    *out = NULL;
    *nsplits = 0;
    for (int i = 0; i < npaths && rc == 0; i++) {
        if (!paths[i] || !paths[i][0]) {
            em__set_err(err, errlen, "input path %d is empty", i);
            rc = EM_EINVAL;
        } else {
            rc = add_input(&fl, paths[i], err, errlen);
        }
    }
    if (rc < 0) goto out;

    for (int i = 0; i < fl.n; i++) total += fl.size[i];
    size = split_bytes ? split_bytes : EM__SPLIT_DEFAULT_BYTES;
    /* floor(total / min_splits) guarantees sum(ceil(size_i / size)) >= total / size >= min_splits. */
    if (min_splits > 1 && total / (uint64_t)min_splits < size) size = total / (uint64_t)min_splits;
    if (size == 0) size = 1;
    for (int i = 0; i < fl.n; i++) {
        count += (fl.size[i] + size - 1) / size;
        if (fl.size[i]) strbytes += strlen(fl.path[i]) + 1;
    }
    if (count > (uint64_t)INT_MAX / 2 || count > SIZE_MAX / sizeof(em__split) / 2) {
        em__set_err(err, errlen, "text plan: %llu splits is too many (split size %llu bytes)",
                (unsigned long long)count, (unsigned long long)size);
        rc = EM_EINVAL;
        goto out;
    }
    if (count == 0) goto out;
    /* One block: the split array followed by the path strings, so that the plan is freed with one free(). */
    if (!(sp = malloc((size_t)count * sizeof *sp + strbytes))) { rc = EM_ENOMEM; goto out; }
    strs = (char *)(sp + count);
    for (int i = 0; i < fl.n; i++) {
        if (!fl.size[i]) continue;
        size_t plen = strlen(fl.path[i]) + 1;
        memcpy(strs, fl.path[i], plen);
        for (uint64_t s = 0; s < fl.size[i]; s += size) {
            sp[k].file = i;
            sp[k].path = strs;
            sp[k].start = s;
            sp[k].end = fl.size[i] - s > size ? s + size : fl.size[i];
            sp[k].file_size = fl.size[i];
            sp[k].line = s == 0 ? 1 : 0;
            k++;
        }
        strs += plen;
    }
    *out = sp;
    *nsplits = k;
out:
    files_release(&fl);
    return rc;
}

void em__text_plan_free(em__split *splits)
{
    free(splits);
}

/* ---- line reader ---------------------------------------------------------------------------------------- */

/* Reads more bytes after buf[len), first dropping the consumed prefix buf[0, pos) and growing the buffer when it
 * is full of one unfinished line. Sets r->eof when the file has nothing more. */
int em__line_reader_fill(em__line_reader *r)
{
    ssize_t n;
    if (r->pos > 0) {
        memmove(r->buf, r->buf + r->pos, r->len - r->pos);
        r->off += r->pos;
        r->len -= r->pos;
        r->pos = 0;
    }
    if (r->len == r->cap) {
        size_t ncap = r->cap * 2;
        char *nb = ncap > r->cap ? realloc(r->buf, ncap) : NULL;
        if (!nb) {
            snprintf(r->err, sizeof r->err, "%s: out of memory for a line longer than %zu bytes", r->path, r->cap);
            return EM_ENOMEM;
        }
        r->buf = nb;
        r->cap = ncap;
    }
    do {
        n = pread(r->fd, r->buf + r->len, r->cap - r->len, (off_t)(r->off + r->len));
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        snprintf(r->err, sizeof r->err, "%s: read at offset %llu failed: %s", r->path,
                 (unsigned long long)(r->off + r->len), strerror(errno));
        return EM_EIO;
    }
    if (n == 0) r->eof = 1;
    r->len += (size_t)n;
    return 0;
}

/* Counts '\n' in [0, upto) with large preads, for the optional line numbers of non-first splits. */
static int count_newlines(em__line_reader *r, uint64_t upto, uint64_t *count)
{
    uint64_t off = 0, c = 0;
    while (off < upto) {
        size_t want = upto - off < r->cap ? (size_t)(upto - off) : r->cap;
        ssize_t n = pread(r->fd, r->buf, want, (off_t)off);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            snprintf(r->err, sizeof r->err, "%s: read at offset %llu failed: %s", r->path, (unsigned long long)off,
                     strerror(errno));
            return EM_EIO;
        }
        if (n == 0) break;
        for (const char *p = r->buf, *e = r->buf + n; (p = memchr(p, '\n', (size_t)(e - p))); p++) c++;
        off += (uint64_t)n;
    }
    *count = c;
    return 0;
}

int em__line_reader_open(em__line_reader *r, const char *path, uint64_t start, uint64_t end, size_t bufsize,
                         int count_lines)
{
    int rc;
    memset(r, 0, sizeof *r);
    r->fd = -1;
    r->path = path;
    if (start > end) {
        snprintf(r->err, sizeof r->err, "%s: bad split [%llu, %llu)", path, (unsigned long long)start,
                 (unsigned long long)end);
        return EM_EINVAL;
    }
    r->start = start;
    r->end = end;
    r->cap = bufsize ? bufsize : EM__LINE_READER_DEFAULT_BUF;
    if (!(r->buf = malloc(r->cap))) return EM_ENOMEM;
    if ((r->fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        snprintf(r->err, sizeof r->err, "%s: cannot open: %s", path, strerror(errno));
        return errno == ENOENT ? EM_ENOENT : EM_EIO;
    }
    if (start >= end) {
        r->done = 1;
        return 0;
    }
    if (start == 0) {
        r->lineno = 1;
        return 0;
    }
    /* The first owned line starts right after the first '\n' at or after start-1; reading begins there. */
    r->off = start - 1;
    r->skipping = 1;
    if (count_lines) {
        uint64_t c;
        if ((rc = count_newlines(r, start - 1, &c)) < 0) return rc;
        r->lineno = c + 2; /* lines before start-1, plus the one ended by the '\n' we skip to */
    }
    return 0;
}

/* Moves past the line a split that does not start the file starts in (it belongs to the split before). Returns
 * 0, 1 when the file ends first (nothing is owned), or an error. */
static int skip_first(em__line_reader *r)
{
    int rc;
    while (r->skipping) {
        char *nl = memchr(r->buf + r->pos, '\n', r->len - r->pos);
        if (nl) {
            r->pos = (size_t)(nl - r->buf) + 1;
            r->skipping = 0;
        } else if (r->eof) {
            r->done = 1;
            return 1;
        } else {
            r->pos = r->len; /* nothing before here matters: let the fill drop it */
            if ((rc = em__line_reader_fill(r)) < 0) return rc;
        }
    }
    return 0;
}

int em__line_reader_chunk(em__line_reader *r, const char **chunk, size_t *len)
{
    int rc;
    if (r->done) return 0;
    if ((rc = skip_first(r)) != 0) return rc < 0 ? rc : 0;
    for (;;) {
        if (r->off + r->pos >= r->end) break; /* the next line starts in the following split */
        char *b = r->buf + r->pos;
        char *nl = memrchr(b, '\n', r->len - r->pos);
        if (nl) {
            size_t stop = (size_t)(nl - r->buf) + 1, limit = (size_t)(r->end - r->off);
            /* Lines that start at limit or later are the next split's: ours end with the first '\n' at limit - 1
             * or later (pos <= limit - 1 < stop - 1 here, so there is one). */
            if (stop > limit) stop = (size_t)((char *)memchr(r->buf + limit - 1, '\n', stop - (limit - 1)) - r->buf) + 1;
            *chunk = b;
            *len = stop - r->pos;
            r->pos = stop;
            return 1;
        }
        if (!r->eof) {
            if ((rc = em__line_reader_fill(r)) < 0) return rc;
            continue;
        }
        if (r->pos < r->len) { /* the file's last line, without a final newline */
            *chunk = b;
            *len = r->len - r->pos;
            r->pos = r->len;
            return 1;
        }
        break;
    }
    r->done = 1;
    return 0;
}

int em__line_reader_next(em__line_reader *r, const char **line, size_t *len, uint64_t *lineno)
{
    int rc;
    if (r->done) return 0;
    if ((rc = skip_first(r)) != 0) return rc < 0 ? rc : 0;
    for (;;) {
        char *b = r->buf + r->pos, *nl;
        size_t n;
        if (r->off + r->pos >= r->end) break; /* the next line starts in the following split */
        if ((nl = memchr(b, '\n', r->len - r->pos))) {
            n = (size_t)(nl - b);
            r->pos += n + 1;
        } else if (!r->eof) {
            if ((rc = em__line_reader_fill(r)) < 0) return rc;
            continue;
        } else if (r->pos < r->len) {
            n = r->len - r->pos; /* last line without a final newline */
            r->pos = r->len;
        } else {
            break;
        }
        if (n && b[n - 1] == '\r') n--;
        *line = b;
        *len = n;
        if (lineno) *lineno = r->lineno;
        if (r->lineno) r->lineno++;
        return 1;
    }
    r->done = 1;
    return 0;
}

void em__line_reader_release(em__line_reader *r)
{
    if (r->fd >= 0) close(r->fd);
    r->fd = -1;
    free(r->buf);
    r->buf = NULL;
    r->done = 1;
}
