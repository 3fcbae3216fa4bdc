/*
 * streamlog.c — the input log of streaming jobs: topics, partitions, segment files with sparse offset indexes,
 * checksummed records, locked batch appends, indexed reads, verification and repair (shared DESIGN.md §7).
 * The contract of each function is in streamlog.h; this file holds the byte formats and why the code is shaped so.
 *
 * Concurrency: each partition has a lock file. An appender holds LOCK_EX on it for one batch (find the end, write,
 * fdatasync); readers take LOCK_SH only to learn where the end is (a batch is then either wholly visible or not
 * at all) and read without it: records below that end are never rewritten, except by em__log_repair(), which
 * holds LOCK_EX for its whole scan.
 */
#include "operators/sources/streamlog.h"

#include "ember.h"
#include "operators/sources/textsplit.h" /* em__set_err */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

struct em__log_topic {
    char *dir;
    int nparts;
    uint64_t segbytes;
};

#define PATHLEN 4096
#define IT_END 0    /* clean end of a segment */
#define IT_REC 1    /* a good record */
#define IT_BAD 2    /* a bad record: it->why says what, it->pos where */

/* ---- little helpers ---------------------------------------------------------------------------------------- */

static void put32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static void put64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static uint32_t get32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get64(const unsigned char *p) { return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32; }

/* The records' crc32 is zlib's (polynomial 0xEDB88320, reflected), but zlib's crc32 goes a byte at a time below
 * about 48 bytes, and a benchmark record is about 40: it was a fifth of a streaming job's run. Slicing-by-8 (eight
 * 256-entry tables, one 8-byte step per 8 lookups) computes the same value about three times faster on short
 * records; long buffers go to zlib, whose braided code is as fast there. tests/e2e/streamlog.sh checks the log's
 * crcs with python's zlib.crc32. */
static uint32_t crc_tab[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_tab_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? (c >> 1) ^ 0xEDB88320u : c >> 1;
        crc_tab[0][i] = c;
    }
    for (int t = 1; t < 8; t++)
        for (int i = 0; i < 256; i++) crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^ crc_tab[0][crc_tab[t - 1][i] & 255];
}

static inline uint32_t crc_short(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (; n >= 8; p += 8, n -= 8) {
        uint32_t a = get32(p) ^ c, b = get32(p + 4);
        c = crc_tab[7][a & 255] ^ crc_tab[6][(a >> 8) & 255] ^ crc_tab[5][(a >> 16) & 255] ^ crc_tab[4][a >> 24] ^
            crc_tab[3][b & 255] ^ crc_tab[2][(b >> 8) & 255] ^ crc_tab[1][(b >> 16) & 255] ^ crc_tab[0][b >> 24];
    }
    while (n--) c = crc_tab[0][(c ^ *p++) & 255] ^ (c >> 8);
    return ~c;
}

/* zlib's crc32 of p[0, n). zlib takes a uInt length: large buffers go in pieces. */
static uint32_t crc_of(const unsigned char *p, size_t n)
{
    if (n < 512) {
        pthread_once(&crc_once, crc_tab_init);
        return crc_short(p, n);
    }
    uLong c = crc32(0L, Z_NULL, 0);
    while (n) {
        uInt k = n > (1u << 30) ? (1u << 30) : (uInt)n;
        c = crc32(c, p, k);
        p += k;
        n -= k;
    }
    return (uint32_t)c;
}

int em__log_partition_of(const em__log_topic *t, const void *key, size_t len)
{
    return (int)(em__log_hash(key, len) % (uint64_t)t->nparts);
}

int em__log_partitions(const em__log_topic *t) { return t->nparts; }
uint64_t em__log_segment_bytes(const em__log_topic *t) { return t->segbytes; }
const char *em__log_dir(const em__log_topic *t) { return t->dir; }

static int sys_err(char *err, size_t errlen, const char *what, const char *path)
{
    int e = errno;
    em__set_err(err, errlen, "%s: %s: %s", path, what, strerror(e));
    return e == ENOENT ? EM_ENOENT : EM_EIO;
}

static int part_path(const em__log_topic *t, int p, const char *name, char *out, char *err, size_t errlen)
{
    int n = name ? snprintf(out, PATHLEN, "%s/p%05d/%s", t->dir, p, name) : snprintf(out, PATHLEN, "%s/p%05d", t->dir, p);
    if (n < 0 || n >= PATHLEN) {
        em__set_err(err, errlen, "%s: path too long", t->dir);
        return EM_EINVAL;
    }
    return 0;
}

static int seg_path(const em__log_topic *t, int p, uint64_t base, const char *ext, char *out, char *err, size_t errlen)
{
    char name[40];
    snprintf(name, sizeof name, "%020" PRIu64 ".%s", base, ext);
    return part_path(t, p, name, out, err, errlen);
}

/* pread/pwrite that finish the job (or fail); pread returns the bytes read (short only at end of file). */
static ssize_t pread_full(int fd, void *buf, size_t n, uint64_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = pread(fd, (char *)buf + got, n - got, (off_t)(off + got));
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return -1;
        if (k == 0) break;
        got += (size_t)k;
    }
    return (ssize_t)got;
}

static int pwrite_full(int fd, const void *buf, size_t n, uint64_t off)
{
    size_t done = 0;
    while (done < n) {
        ssize_t k = pwrite(fd, (const char *)buf + done, n - done, (off_t)(off + done));
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) return -1;
        done += (size_t)k;
    }
    return 0;
}

static int fsync_dir(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return sys_err(err, errlen, "cannot open directory", path);
    int rc = fsync(fd) < 0 ? sys_err(err, errlen, "fsync", path) : 0;
    close(fd);
    return rc;
}

/* ---- segment lists and locks ------------------------------------------------------------------------------ */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Base offsets of the segments of partition p ("<20 digits>.log"; other names are ignored), ascending. */
static int list_segments(const em__log_topic *t, int p, uint64_t **bases, int *nseg, char *err, size_t errlen)
{
    char path[PATHLEN];
    int rc, n = 0, cap = 0;
    uint64_t *b = NULL;
    *bases = NULL;
    *nseg = 0;
    if ((rc = part_path(t, p, NULL, path, err, errlen)) < 0) return rc;
    DIR *d = opendir(path);
    if (!d) {
        if (errno == ENOENT) {
            em__set_err(err, errlen, "%s: missing partition directory", path);
            return EM_EPARSE;
        }
        return sys_err(err, errlen, "cannot open directory", path);
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *s = de->d_name;
        if (strlen(s) != 24 || strcmp(s + 20, ".log") != 0) continue;
        uint64_t v = 0;
        int ok = 1;
        for (int i = 0; i < 20; i++) {
            if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - 9) / 10) ok = 0;
            else v = v * 10 + (uint64_t)(s[i] - '0');
        }
        if (!ok) continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            uint64_t *nb = realloc(b, (size_t)cap * sizeof *nb);
            if (!nb) {
                free(b);
                closedir(d);
                return EM_ENOMEM;
            }
            b = nb;
        }
        b[n++] = v;
    }
    closedir(d);
    if (n > 1) qsort(b, (size_t)n, sizeof *b, cmp_u64);
    *bases = b;
    *nseg = n;
    return 0;
}

/* Opens and flocks the lock file of partition p; returns the fd or a negative code. */
static int lock_part(const em__log_topic *t, int p, int how, char *err, size_t errlen)
{
    char path[PATHLEN];
    int rc;
    if ((rc = part_path(t, p, "lock", path, err, errlen)) < 0) return rc;
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0 && (errno == EACCES || errno == EROFS)) fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            em__set_err(err, errlen, "%s/p%05d: missing partition directory", t->dir, p);
            return EM_EPARSE;
        }
        return sys_err(err, errlen, "cannot open lock file", path);
    }
    while (flock(fd, how) < 0) {
        if (errno == EINTR) continue;
        rc = sys_err(err, errlen, "flock", path);
        close(fd);
        return rc;
    }
    return fd;
}

static void unlock_part(int fd)
{
    if (fd >= 0) close(fd); /* closing the only descriptor releases the flock */
}

/* ---- records ------------------------------------------------------------------------------------------------
 *
 * A segment file is a plain sequence of records, no file header (the name carries the base offset, the topic
 * file the format version). One record, little-endian, fixed widths:
 *
 *   +--------+------+-----------+-------------------------------------------------------------------------+
 *   | byte   | size | field     | meaning                                                                 |
 *   +--------+------+-----------+-------------------------------------------------------------------------+
 *   | 0      | 4    | length    | u32: bytes that follow this field = 28 + klen + vlen                    |
 *   | 4      | 4    | crc32     | u32: zlib crc32 of bytes [8, 4 + length): everything after the crc      |
 *   | 8      | 8    | offset    | u64: the record's offset in its partition (segment base + index)        |
 *   | 16     | 8    | time      | i64: event time, ms since 1970-01-01T00:00:00Z                          |
 *   | 24     | 4    | klen      | u32: key bytes                                                          |
 *   | 28     | 4    | vlen      | u32: value bytes                                                        |
 *   | 32     | klen | key       | bytes (any, not NUL-terminated)                                         |
 *   | 32+klen| vlen | value     | bytes                                                                   |
 *   +--------+------+-----------+-------------------------------------------------------------------------+
 *
 * A record is good when the file holds all 4 + length bytes, 28 <= length <= EM__LOG_MAX_RECORD - 4, the crc
 * matches, 28 + klen + vlen == length and offset is the one expected (the previous record's + 1, or the segment's
 * base for its first record). A record cut by the end of the file is "torn"; anything else is "corrupt". Both stop
 * a reader: nothing after a bad record is trusted (its length may be garbage, so the next record cannot be found).
 */

typedef struct seg_it {
    int fd;
    uint64_t size;      /* bytes of the file seen at open: the iterator never reads beyond */
    unsigned char *buf;
    size_t cap;
    uint64_t boff;      /* file position of buf[0] */
    size_t blen;        /* valid bytes in buf */
    uint64_t pos;       /* file position of the next record */
    uint64_t next;      /* offset the next record must have */
    char why[160];      /* what is wrong with the record at pos (IT_BAD) */
} seg_it;

/* Makes buf hold up to `need` bytes from it->pos (fewer at end of file); *have gets how many. */
static int it_fill(seg_it *it, size_t need, size_t *have)
{
    uint64_t left = it->size - it->pos;
    if (need > left) need = (size_t)left;
    if (it->pos >= it->boff && it->pos + need <= it->boff + it->blen) {
        *have = need;
        return 0;
    }
    if (need > it->cap || !it->buf) {
        size_t ncap = it->cap ? it->cap : 65536;
        while (ncap < need) ncap *= 2;
        unsigned char *nb = realloc(it->buf, ncap);
        if (!nb) return EM_ENOMEM;
        it->buf = nb;
        it->cap = ncap;
    }
    size_t want = it->cap < left ? it->cap : (size_t)left;
    ssize_t got = pread_full(it->fd, it->buf, want, it->pos);
    if (got < 0) return EM_EIO;
    it->boff = it->pos;
    it->blen = (size_t)got;
    *have = (size_t)got < need ? (size_t)got : need;
    return 0;
}

/* Decodes the record at it->pos: IT_REC (r filled, borrowed from the buffer, pos/next advanced), IT_END (clean
 * end of file), IT_BAD (why set, pos unchanged), EM_EIO, EM_ENOMEM. */
static int it_next(seg_it *it, em__log_rec *r)
{
    size_t have;
    int rc;
    if (it->pos >= it->size) return IT_END;
    if ((rc = it_fill(it, 4, &have)) < 0) return rc;
    if (have < 4) {
        snprintf(it->why, sizeof it->why, "torn record: the file ends %zu bytes into its length field", have);
        return IT_BAD;
    }
    uint32_t len = get32(it->buf + (it->pos - it->boff));
    if (len < EM__LOG_REC_HEADER - 4 || len > EM__LOG_MAX_RECORD - 4) {
        snprintf(it->why, sizeof it->why, "corrupt record: length %" PRIu32 " out of range", len);
        return IT_BAD;
    }
    if ((rc = it_fill(it, 4 + (size_t)len, &have)) < 0) return rc;
    if (have < 4 + (size_t)len) {
        snprintf(it->why, sizeof it->why, "torn record: %zu of its %zu bytes are in the file", have, 4 + (size_t)len);
        return IT_BAD;
    }
    const unsigned char *p = it->buf + (it->pos - it->boff);
    uint32_t stored = get32(p + 4), computed = crc_of(p + 8, len - 4);
    if (stored != computed) {
        snprintf(it->why, sizeof it->why, "corrupt record: bad crc (stored %08" PRIx32 ", computed %08" PRIx32 ")",
                 stored, computed);
        return IT_BAD;
    }
    uint64_t off = get64(p + 8);
    uint32_t klen = get32(p + 24), vlen = get32(p + 28);
    if ((uint64_t)klen + vlen + EM__LOG_REC_HEADER - 4 != len) {
        snprintf(it->why, sizeof it->why,
                 "corrupt record: key and value lengths %" PRIu32 " + %" PRIu32 " do not fit its length %" PRIu32, klen,
                 vlen, len);
        return IT_BAD;
    }
    if (off != it->next) {
        snprintf(it->why, sizeof it->why, "corrupt record: offset %" PRIu64 " where %" PRIu64 " was expected", off,
                 it->next);
        return IT_BAD;
    }
    r->offset = off;
    r->time_ms = (int64_t)get64(p + 16);
    r->klen = klen;
    r->vlen = vlen;
    r->key = (const char *)p + EM__LOG_REC_HEADER;
    r->value = r->key + klen;
    it->pos += 4 + (uint64_t)len;
    it->next++;
    return IT_REC;
}

static void it_release(seg_it *it)
{
    if (it->fd >= 0) close(it->fd);
    free(it->buf);
    it->fd = -1;
    it->buf = NULL;
}

/* Opens segment `base` of partition p for iteration from its start. */
static int it_open(seg_it *it, const em__log_topic *t, int p, uint64_t base, int flags, char *path, char *err,
                   size_t errlen)
{
    int rc;
    memset(it, 0, sizeof *it);
    it->fd = -1;
    if ((rc = seg_path(t, p, base, "log", path, err, errlen)) < 0) return rc;
    if ((it->fd = open(path, flags | O_CLOEXEC)) < 0) return sys_err(err, errlen, "cannot open segment", path);
    struct stat st;
    if (fstat(it->fd, &st) < 0) return sys_err(err, errlen, "fstat", path);
    it->size = (uint64_t)st.st_size;
    it->next = base;
    return 0;
}

/* ---- the sparse index --------------------------------------------------------------------------------------
 *
 * "<base>.idx" beside each segment: a sequence of 8-byte entries, little-endian, ascending:
 *
 *   +------+------+----------+----------------------------------------------------------------+
 *   | byte | size | field    | meaning                                                        |
 *   +------+------+----------+----------------------------------------------------------------+
 *   | 0    | 4    | rel      | u32: offset - base of the record the entry points at           |
 *   | 4    | 4    | position | u32: byte position of that record in the segment               |
 *   +------+------+----------+----------------------------------------------------------------+
 *
 * Rule (appender and repair apply the same one, so an index is a function of its segment): an entry is added at a
 * record's start when it lies EM__LOG_INDEX_INTERVAL bytes or more beyond the previous entry (or beyond byte 0,
 * which has an implicit entry). The index is written after the records it describes, so after a crash it may miss
 * entries (harmless: readers scan a little further) or, after a torn tail, point past the good records; readers
 * therefore check an entry by decoding the record it points at before trusting it. A trailing partial entry is
 * ignored.
 */

typedef struct idx {
    uint32_t *e;    /* 2 * n words: rel, position */
    size_t n;
} idx;

static int idx_load(const em__log_topic *t, int p, uint64_t base, idx *x, char *err, size_t errlen)
{
    char path[PATHLEN];
    int rc;
    x->e = NULL;
    x->n = 0;
    if ((rc = seg_path(t, p, base, "idx", path, err, errlen)) < 0) return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return errno == ENOENT ? 0 : sys_err(err, errlen, "cannot open index", path); /* no index: scan */
    struct stat st;
    if (fstat(fd, &st) < 0) {
        rc = sys_err(err, errlen, "fstat", path);
        close(fd);
        return rc;
    }
    size_t n = (size_t)st.st_size / 8;
    unsigned char *raw = malloc(n * 8 + 1);
    if (!raw || !(x->e = malloc(n * 2 * sizeof *x->e + 1))) {
        free(raw);
        close(fd);
        return EM_ENOMEM;
    }
    ssize_t got = pread_full(fd, raw, n * 8, 0);
    close(fd);
    if (got < 0) {
        free(raw);
        return sys_err(err, errlen, "read", path);
    }
    x->n = (size_t)got / 8;
    for (size_t i = 0; i < 2 * x->n; i++) x->e[i] = get32(raw + 4 * i);
    free(raw);
    return 0;
}

/* Is there a good record with offset base + rel at position pos? (An index entry is trusted only then.) */
static int idx_entry_ok(seg_it *it, uint64_t base, uint32_t rel, uint32_t pos)
{
    em__log_rec r;
    uint64_t save_pos = it->pos, save_next = it->next;
    it->pos = pos;
    it->next = base + rel;
    int rc = pos < it->size ? it_next(it, &r) : IT_END;
    it->pos = save_pos;
    it->next = save_next;
    return rc == IT_REC;
}

/* Positions `it` at the last trusted entry with rel <= target_rel (or at byte 0). *kept (may be NULL) gets the
 * number of entries up to and including it: the trusted prefix an appender keeps. */
static void idx_seek(seg_it *it, const idx *x, uint64_t base, uint64_t target_rel, size_t *kept)
{
    size_t lo = 0, hi = x->n; /* first entry with rel > target_rel, by binary search */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (x->e[2 * mid] <= target_rel) lo = mid + 1;
        else hi = mid;
    }
    for (size_t i = lo; i-- > 0;) {
        if (idx_entry_ok(it, base, x->e[2 * i], x->e[2 * i + 1])) {
            it->pos = x->e[2 * i + 1];
            it->next = base + x->e[2 * i];
            if (kept) *kept = i + 1;
            return;
        }
    }
    it->pos = 0;
    it->next = base;
    if (kept) *kept = 0;
}

/* ---- topic metadata: create, open ---------------------------------------------------------------------------
 *
 * DIR/topic, text, exactly three lines:   ember-log <format>\npartitions <N>\nsegment-bytes <B>\n
 */

static int write_file(const char *path, const void *data, size_t n, char *err, size_t errlen)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return sys_err(err, errlen, "cannot create", path);
    int rc = 0;
    if (n && pwrite_full(fd, data, n, 0) < 0) rc = sys_err(err, errlen, "write", path);
    if (!rc && fsync(fd) < 0) rc = sys_err(err, errlen, "fsync", path);
    close(fd);
    return rc;
}

static int rm_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
    (void)sb;
    (void)ftw;
    return type == FTW_DP ? rmdir(path) : unlink(path);
}

static int dir_is_empty(const char *path)
{
    DIR *d = opendir(path);
    if (!d) return 0;
    struct dirent *de;
    int empty = 1;
    while (empty && (de = readdir(d)))
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) empty = 0;
    closedir(d);
    return empty;
}

int em__log_create(const char *dir, int nparts, uint64_t segment_bytes, char *err, size_t errlen)
{
    char tmp[PATHLEN], path[PATHLEN], parent[PATHLEN];
    int rc = 0;
    if (!segment_bytes) segment_bytes = EM__LOG_DEFAULT_SEGMENT_BYTES;
    if (nparts < 1 || nparts > EM__LOG_MAX_PARTITIONS) {
        em__set_err(err, errlen, "%s: %d partitions: expected 1 to %d", dir, nparts, EM__LOG_MAX_PARTITIONS);
        return EM_EINVAL;
    }
    if (segment_bytes < EM__LOG_MIN_SEGMENT_BYTES || segment_bytes > EM__LOG_MAX_SEGMENT_BYTES) {
        em__set_err(err, errlen, "%s: segment size %" PRIu64 " bytes: expected %u to %u", dir, segment_bytes,
                    EM__LOG_MIN_SEGMENT_BYTES, EM__LOG_MAX_SEGMENT_BYTES);
        return EM_EINVAL;
    }
    size_t dl = strlen(dir);
    while (dl > 1 && dir[dl - 1] == '/') dl--;
    if (dl == 0 || dl + 64 >= PATHLEN) {
        em__set_err(err, errlen, "'%s': bad topic directory name", dir);
        return EM_EINVAL;
    }
    struct stat st;
    if (stat(dir, &st) == 0 && (!S_ISDIR(st.st_mode) || !dir_is_empty(dir))) {
        em__set_err(err, errlen, "%s: already exists%s", dir, S_ISDIR(st.st_mode) ? " and is not empty" : "");
        return EM_EEXISTS;
    }
    snprintf(tmp, sizeof tmp, "%.*s.creating.XXXXXX", (int)dl, dir);
    if (!mkdtemp(tmp)) {
        int e = errno;
        em__set_err(err, errlen, "%.*s: cannot create the topic directory: %s", (int)dl, dir, strerror(e));
        return e == ENOENT ? EM_ENOENT : EM_EIO;
    }
    em__log_topic t = {tmp, nparts, segment_bytes};
    char meta[128];
    int ml = snprintf(meta, sizeof meta, "ember-log %d\npartitions %d\nsegment-bytes %" PRIu64 "\n", EM__LOG_FORMAT,
                      nparts, segment_bytes);
    if (snprintf(path, sizeof path, "%s/topic", tmp) >= (int)sizeof path) {
        rc = EM_EINVAL;
        goto fail;
    }
    if ((rc = write_file(path, meta, (size_t)ml, err, errlen)) < 0) goto fail;
    for (int p = 0; p < nparts; p++) {
        part_path(&t, p, NULL, path, NULL, 0);
        if (mkdir(path, 0755) < 0) {
            rc = sys_err(err, errlen, "mkdir", path);
            goto fail;
        }
        part_path(&t, p, "lock", path, NULL, 0);
        if ((rc = write_file(path, NULL, 0, err, errlen)) < 0) goto fail;
        seg_path(&t, p, 0, "log", path, NULL, 0);
        if ((rc = write_file(path, NULL, 0, err, errlen)) < 0) goto fail;
        seg_path(&t, p, 0, "idx", path, NULL, 0);
        if ((rc = write_file(path, NULL, 0, err, errlen)) < 0) goto fail;
        part_path(&t, p, NULL, path, NULL, 0);
        if ((rc = fsync_dir(path, err, errlen)) < 0) goto fail;
    }
    if ((rc = fsync_dir(tmp, err, errlen)) < 0) goto fail;
    /* rename() replaces an empty directory; a directory filled meanwhile makes it fail with ENOTEMPTY/EEXIST. */
    if (rename(tmp, dir) < 0) {
        int e = errno;
        em__set_err(err, errlen, "%.*s: cannot move the new topic into place: %s", (int)dl, dir, strerror(e));
        rc = (e == ENOTEMPTY || e == EEXIST) ? EM_EEXISTS : EM_EIO;
        goto fail;
    }
    snprintf(parent, sizeof parent, "%.*s", (int)dl, dir);
    char *slash = strrchr(parent, '/');
    if (!slash) snprintf(parent, sizeof parent, ".");
    else if (slash == parent) parent[1] = 0;
    else *slash = 0;
    return fsync_dir(parent, err, errlen);
fail:
    nftw(tmp, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}

int em__log_open(const char *dir, em__log_topic **out, char *err, size_t errlen)
{
    char path[PATHLEN], buf[256];
    *out = NULL;
    if (snprintf(path, sizeof path, "%s/topic", dir) >= (int)sizeof path) {
        em__set_err(err, errlen, "%s: path too long", dir);
        return EM_EINVAL;
    }
    struct stat st;
    if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
        em__set_err(err, errlen, "%s: no such topic directory", dir);
        return EM_ENOENT;
    }
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT) {
            em__set_err(err, errlen, "%s: not a topic (no 'topic' file; make one with `ember log create`)", dir);
            return EM_ENOENT;
        }
        return sys_err(err, errlen, "cannot open", path);
    }
    ssize_t n = pread_full(fd, buf, sizeof buf - 1, 0);
    close(fd);
    if (n < 0) return sys_err(err, errlen, "read", path);
    buf[n] = 0;
    int format = 0, nparts = 0, used = 0;
    unsigned long long segbytes = 0;
    if (sscanf(buf, "ember-log %d\npartitions %d\nsegment-bytes %llu\n%n", &format, &nparts, &segbytes, &used) != 3 ||
        used != (int)n) {
        em__set_err(err, errlen, "%s: malformed topic file (expected 'ember-log 1', 'partitions N', "
                    "'segment-bytes B' lines)", path);
        return EM_EPARSE;
    }
    if (format != EM__LOG_FORMAT) {
        em__set_err(err, errlen, "%s: log format %d, this ember reads format %d", path, format, EM__LOG_FORMAT);
        return EM_EPARSE;
    }
    if (nparts < 1 || nparts > EM__LOG_MAX_PARTITIONS || segbytes < EM__LOG_MIN_SEGMENT_BYTES ||
        segbytes > EM__LOG_MAX_SEGMENT_BYTES) {
        em__set_err(err, errlen, "%s: partitions %d or segment-bytes %llu out of range", path, nparts, segbytes);
        return EM_EPARSE;
    }
    em__log_topic *t = calloc(1, sizeof *t);
    if (!t || !(t->dir = strdup(dir))) {
        free(t);
        return EM_ENOMEM;
    }
    t->nparts = nparts;
    t->segbytes = segbytes;
    *out = t;
    return 0;
}

void em__log_close(em__log_topic *t)
{
    if (!t) return;
    free(t->dir);
    free(t);
}

static int check_part(const em__log_topic *t, int p, char *err, size_t errlen)
{
    if (p >= 0 && p < t->nparts) return 0;
    em__set_err(err, errlen, "%s: no partition %d (the topic has %d)", t->dir, p, t->nparts);
    return EM_EINVAL;
}

/* ---- the tail: where appends go ------------------------------------------------------------------------------ */

typedef struct tail {
    uint64_t *bases;        /* segment list (owned) */
    int nseg;
    uint64_t base;          /* last segment's base (0 when there is none) */
    uint64_t end;           /* offset after the last good record */
    uint64_t endpos;        /* byte position of that end in the last segment */
    uint64_t size;          /* bytes of the last segment */
    idx x;                  /* its index as loaded (owned) */
    size_t kept;            /* trusted index entries (a prefix of x) */
    uint32_t *add;          /* entries missing from the index for records before endpos: rel, pos (owned) */
    size_t nadd;
    uint64_t lastidx;       /* position of the last entry (kept or added), 0 = the implicit one */
    int bad;                /* the last segment has a bad record at endpos (not its clean end) */
    char why[160];
} tail;

static void tail_release(tail *tl)
{
    free(tl->bases);
    free(tl->x.e);
    free(tl->add);
    memset(tl, 0, sizeof *tl);
}

/* Finds the end of partition p by scanning its last segment from its last trusted index entry. The caller holds
 * the partition lock. `flags` opens the segment (O_RDONLY or O_RDWR); with fd_out the segment stays open. */
static int find_tail(const em__log_topic *t, int p, tail *tl, int flags, int *fd_out, char *err, size_t errlen)
{
    char path[PATHLEN];
    seg_it it;
    em__log_rec r;
    int rc;
    size_t cap = 0;
    memset(tl, 0, sizeof *tl);
    if (fd_out) *fd_out = -1;
    if ((rc = list_segments(t, p, &tl->bases, &tl->nseg, err, errlen)) < 0) return rc;
    if (tl->nseg == 0) return 0;
    tl->base = tl->bases[tl->nseg - 1];
    if ((rc = it_open(&it, t, p, tl->base, flags, path, err, errlen)) < 0) goto out;
    tl->size = it.size;
    if ((rc = idx_load(t, p, tl->base, &tl->x, err, errlen)) < 0) goto out;
    idx_seek(&it, &tl->x, tl->base, UINT64_MAX, &tl->kept);
    tl->lastidx = tl->kept ? tl->x.e[2 * tl->kept - 1] : 0;
    while ((rc = it_next(&it, &r)) == IT_REC) {
        uint64_t pos = it.pos - (EM__LOG_REC_HEADER + (uint64_t)r.klen + r.vlen);
        if (pos - tl->lastidx >= EM__LOG_INDEX_INTERVAL) {
            if (tl->nadd == cap) {
                cap = cap ? 2 * cap : 16;
                uint32_t *na = realloc(tl->add, cap * 2 * sizeof *na);
                if (!na) {
                    rc = EM_ENOMEM;
                    goto out;
                }
                tl->add = na;
            }
            tl->add[2 * tl->nadd] = (uint32_t)(r.offset - tl->base);
            tl->add[2 * tl->nadd + 1] = (uint32_t)pos;
            tl->nadd++;
            tl->lastidx = pos;
        }
    }
    if (rc < 0) {
        if (rc == EM_EIO) sys_err(err, errlen, "read", path);
        goto out;
    }
    tl->end = it.next;
    tl->endpos = it.pos;
    if (rc == IT_BAD) {
        tl->bad = 1;
        snprintf(tl->why, sizeof tl->why, "%s", it.why);
    }
    rc = 0;
    if (fd_out) {
        *fd_out = it.fd;
        it.fd = -1;
    }
out:
    it_release(&it);
    return rc;
}

int em__log_end_offsets(em__log_topic *t, uint64_t *ends, char *err, size_t errlen)
{
    for (int p = 0; p < t->nparts; p++) {
        tail tl;
        int lk = lock_part(t, p, LOCK_SH, err, errlen);
        if (lk < 0) return lk;
        int rc = find_tail(t, p, &tl, O_RDONLY, NULL, err, errlen);
        unlock_part(lk);
        ends[p] = tl.end;
        tail_release(&tl);
        if (rc < 0) return rc;
    }
    return 0;
}

/* ---- append -------------------------------------------------------------------------------------------------- */

/* The segment a batch is writing into. */
typedef struct wseg {
    uint64_t base;
    int fd, ifd;
    uint64_t pos;           /* bytes of the segment already written (the next flush goes here) */
    uint64_t idx_len;       /* bytes of its index already written */
} wseg;

/* Writes the records and index entries buffered for the current segment and makes them durable. */
static int flush_seg(const em__log_topic *t, int p, wseg *w, const unsigned char *buf, size_t n,
                     const unsigned char *ib, size_t in, char *err, size_t errlen)
{
    char path[PATHLEN];
    seg_path(t, p, w->base, "log", path, NULL, 0);
    if (n && pwrite_full(w->fd, buf, n, w->pos) < 0) return sys_err(err, errlen, "write", path);
    w->pos += n;
    if (fdatasync(w->fd) < 0) return sys_err(err, errlen, "fdatasync", path);
    seg_path(t, p, w->base, "idx", path, NULL, 0);
    if (in && pwrite_full(w->ifd, ib, in, w->idx_len) < 0) return sys_err(err, errlen, "write", path);
    w->idx_len += in;
    if (in && fdatasync(w->ifd) < 0) return sys_err(err, errlen, "fdatasync", path);
    return 0;
}

static void truncate_path(const char *path, uint64_t len)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0) return;
    if (ftruncate(fd, (off_t)len) == 0) (void)fdatasync(fd);
    close(fd);
}

static int open_idx_fd(const em__log_topic *t, int p, uint64_t base, int fresh, char *err, size_t errlen)
{
    char path[PATHLEN];
    seg_path(t, p, base, "idx", path, NULL, 0);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | (fresh ? O_TRUNC : 0), 0644);
    return fd < 0 ? sys_err(err, errlen, "cannot open index", path) : fd;
}

/* Grows *b (capacity *cap) to hold need bytes. */
static int grow(unsigned char **b, size_t *cap, size_t need)
{
    if (need <= *cap) return 0;
    size_t nc = *cap ? *cap : 4096;
    while (nc < need) nc *= 2;
    unsigned char *nb = realloc(*b, nc);
    if (!nb) return EM_ENOMEM;
    *b = nb;
    *cap = nc;
    return 0;
}

int em__log_append(em__log_topic *t, int p, const em__log_rec *recs, size_t n, uint64_t *first, char *err,
                   size_t errlen)
{
    char path[PATHLEN];
    int rc, lk;
    tail tl;
    wseg w = {0, -1, -1, 0, 0};
    uint64_t first_base = 0, first_start = 0, first_idx = 0; /* to undo a failed batch */
    uint64_t *made = NULL;                                    /* segments this batch created, removed on undo */
    size_t nmade = 0, madecap = 0;
    unsigned char *buf = NULL, *ib = NULL;
    size_t blen = 0, bcap = 0, ilen = 0, icap = 0;
    memset(&tl, 0, sizeof tl);
    if ((rc = check_part(t, p, err, errlen)) < 0) return rc;
    if (n == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if ((uint64_t)recs[i].klen + recs[i].vlen > EM__LOG_MAX_RECORD - EM__LOG_REC_HEADER) {
            em__set_err(err, errlen, "%s: record %zu: key and value take %" PRIu64 " bytes, a record holds at most %u",
                        t->dir, i, (uint64_t)recs[i].klen + recs[i].vlen, EM__LOG_MAX_RECORD - EM__LOG_REC_HEADER);
            return EM_EINVAL;
        }
    if ((lk = lock_part(t, p, LOCK_EX, err, errlen)) < 0) return lk;
    if ((rc = find_tail(t, p, &tl, O_RDWR, &w.fd, err, errlen)) < 0) goto out;
    if (tl.bad) {
        seg_path(t, p, tl.base, "log", path, NULL, 0);
        em__set_err(err, errlen, "%s: offset %" PRIu64 " at byte %" PRIu64 ": %s; nothing appended (repair the "
                    "partition first: ember log verify --repair)", path, tl.end, tl.endpos, tl.why);
        rc = EM_EPARSE;
        goto out;
    }
    if (!(made = malloc(8 * sizeof *made))) {
        rc = EM_ENOMEM;
        goto out;
    }
    madecap = 8;
    int fresh = 0;
    if (tl.nseg == 0) { /* a partition without segments (all removed by hand) starts again at offset 0 */
        seg_path(t, p, 0, "log", path, NULL, 0);
        if ((w.fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) < 0) {
            rc = sys_err(err, errlen, "cannot create segment", path);
            goto out;
        }
        made[nmade++] = 0;
        fresh = 1;
    }
    w.base = first_base = tl.base;
    w.pos = first_start = tl.endpos;
    if ((w.ifd = open_idx_fd(t, p, w.base, fresh, err, errlen)) < 0) {
        rc = w.ifd;
        goto undo;
    }
    /* Keep the trusted prefix of the index and add the entries it missed (a crash between log and index writes). */
    w.idx_len = first_idx = (uint64_t)tl.kept * 8;
    if (!fresh && ftruncate(w.ifd, (off_t)w.idx_len) < 0) {
        rc = sys_err(err, errlen, "ftruncate", path);
        goto undo;
    }
    if (tl.nadd) {
        if ((rc = grow(&ib, &icap, tl.nadd * 8)) < 0) goto undo;
        for (size_t i = 0; i < 2 * tl.nadd; i++) put32(ib + 4 * i, tl.add[i]);
        ilen = tl.nadd * 8;
    }
    uint64_t lastidx = tl.lastidx, off = tl.end;
    uint64_t segpos = w.pos; /* where the next record lands: w.pos + blen */
    if (first) *first = off;
    for (size_t i = 0; i < n; i++) {
        size_t rl = EM__LOG_REC_HEADER + (size_t)recs[i].klen + recs[i].vlen;
        if (segpos > 0 && segpos + rl > t->segbytes) {
            /* Roll: make the full segment durable, then start one named by the next offset. */
            if ((rc = flush_seg(t, p, &w, buf, blen, ib, ilen, err, errlen)) < 0) goto undo;
            blen = ilen = 0;
            close(w.fd);
            close(w.ifd);
            w = (wseg){off, -1, -1, 0, 0};
            if (nmade == madecap) {
                uint64_t *nm = realloc(made, 2 * madecap * sizeof *nm);
                if (!nm) {
                    rc = EM_ENOMEM;
                    goto undo;
                }
                made = nm;
                madecap *= 2;
            }
            seg_path(t, p, off, "log", path, NULL, 0);
            if ((w.fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644)) < 0) {
                rc = sys_err(err, errlen, "cannot create segment", path);
                goto undo;
            }
            made[nmade++] = off;
            if ((w.ifd = open_idx_fd(t, p, off, 1, err, errlen)) < 0) {
                rc = w.ifd;
                goto undo;
            }
            part_path(t, p, NULL, path, NULL, 0);
            if ((rc = fsync_dir(path, err, errlen)) < 0) goto undo;
            segpos = lastidx = 0;
        }
        if (segpos - lastidx >= EM__LOG_INDEX_INTERVAL) {
            if ((rc = grow(&ib, &icap, ilen + 8)) < 0) goto undo;
            put32(ib + ilen, (uint32_t)(off - w.base));
            put32(ib + ilen + 4, (uint32_t)segpos);
            ilen += 8;
            lastidx = segpos;
        }
        if ((rc = grow(&buf, &bcap, blen + rl)) < 0) goto undo;
        unsigned char *q = buf + blen;
        put32(q, (uint32_t)(rl - 4));
        put64(q + 8, off);
        put64(q + 16, (uint64_t)recs[i].time_ms);
        put32(q + 24, recs[i].klen);
        put32(q + 28, recs[i].vlen);
        if (recs[i].klen) memcpy(q + EM__LOG_REC_HEADER, recs[i].key, recs[i].klen);
        if (recs[i].vlen) memcpy(q + EM__LOG_REC_HEADER + recs[i].klen, recs[i].value, recs[i].vlen);
        put32(q + 4, crc_of(q + 8, rl - 8));
        blen += rl;
        segpos += rl;
        off++;
    }
    if ((rc = flush_seg(t, p, &w, buf, blen, ib, ilen, err, errlen)) < 0) goto undo;
    if (nmade == 1 && made[0] == first_base && fresh) {
        part_path(t, p, NULL, path, NULL, 0);
        if ((rc = fsync_dir(path, err, errlen)) < 0) goto undo;
    }
    rc = 0;
    goto out;
undo:
    /* A failed batch leaves no trace: segments it made go (newest first), the first one is cut back. */
    for (size_t i = nmade; i-- > 0;) {
        seg_path(t, p, made[i], "idx", path, NULL, 0);
        unlink(path);
        seg_path(t, p, made[i], "log", path, NULL, 0);
        unlink(path);
    }
    if (!fresh) {
        seg_path(t, p, first_base, "log", path, NULL, 0);
        truncate_path(path, first_start);
        seg_path(t, p, first_base, "idx", path, NULL, 0);
        truncate_path(path, first_idx);
    }
out:
    if (w.fd >= 0) close(w.fd);
    if (w.ifd >= 0) close(w.ifd);
    free(made);
    free(buf);
    free(ib);
    tail_release(&tl);
    unlock_part(lk);
    return rc;
}

/* ---- read ---------------------------------------------------------------------------------------------------- */

static void set_stop(em__log_pos *stop, uint64_t off, uint64_t seg, uint64_t byte)
{
    if (!stop) return;
    stop->offset = off;
    stop->segment = seg;
    stop->byte = byte;
}

int em__log_read(em__log_topic *t, int p, uint64_t from, uint64_t to, em__log_fn fn, void *arg, em__log_pos *stop,
                 char *err, size_t errlen)
{
    char path[PATHLEN];
    uint64_t *bases = NULL;
    int nseg = 0, rc, tail_bad = 0;
    tail tl;
    memset(&tl, 0, sizeof tl);
    set_stop(stop, from, 0, 0);
    if ((rc = check_part(t, p, err, errlen)) < 0) return rc;
    if (to != EM__LOG_END && from > to) {
        em__set_err(err, errlen, "%s/p%05d: empty range: from %" PRIu64 " > to %" PRIu64, t->dir, p, from, to);
        return EM_EINVAL;
    }
    if (to == EM__LOG_END) {
        int lk = lock_part(t, p, LOCK_SH, err, errlen);
        if (lk < 0) return lk;
        rc = find_tail(t, p, &tl, O_RDONLY, NULL, err, errlen);
        unlock_part(lk);
        if (rc < 0) goto out;
        to = tl.end;
        tail_bad = tl.bad;
        bases = tl.bases;
        nseg = tl.nseg;
        tl.bases = NULL;
        if (from > to) {
            em__set_err(err, errlen, "%s/p%05d: offset %" PRIu64 " is beyond the end (%" PRIu64 ")", t->dir, p, from,
                        to);
            set_stop(stop, to, tl.base, tl.endpos);
            rc = EM_EINVAL;
            goto out;
        }
    } else if ((rc = list_segments(t, p, &bases, &nseg, err, errlen)) < 0) {
        goto out;
    }
    if (nseg == 0 || from < bases[0]) {
        if (from == to) {
            rc = 0;
            goto tailcheck;
        }
        em__set_err(err, errlen, "%s/p%05d: offset %" PRIu64 " is %s", t->dir, p, from,
                    nseg ? "before the first segment" : "not held: the partition has no segment");
        rc = EM_EINVAL;
        goto out;
    }
    int i = nseg - 1;
    while (bases[i] > from) i--;
    seg_it it;
    em__log_rec r;
    if ((rc = it_open(&it, t, p, bases[i], O_RDONLY, path, err, errlen)) < 0) {
        it_release(&it);
        goto out;
    }
    idx x;
    if ((rc = idx_load(t, p, bases[i], &x, err, errlen)) < 0) {
        it_release(&it);
        goto out;
    }
    idx_seek(&it, &x, bases[i], from - bases[i], NULL);
    free(x.e);
    while (it.next < to) {
        rc = it_next(&it, &r);
        if (rc == IT_REC) {
            if (r.offset < from) continue;
            if ((rc = fn(arg, &r)) != 0) {
                set_stop(stop, it.next, bases[i], it.pos);
                it_release(&it);
                goto out;
            }
            continue;
        }
        if (rc < 0) {
            if (rc == EM_EIO) sys_err(err, errlen, "read", path);
            break;
        }
        if (rc == IT_BAD) {
            em__set_err(err, errlen, "%s: offset %" PRIu64 " at byte %" PRIu64 ": %s", path, it.next, it.pos, it.why);
            rc = EM_EPARSE;
            break;
        }
        /* clean end of this segment: the next one must start exactly here */
        if (i + 1 == nseg) {
            em__set_err(err, errlen, "%s/p%05d: the log ends at offset %" PRIu64 ", before %" PRIu64, t->dir, p,
                        it.next, to);
            rc = EM_EINVAL;
            break;
        }
        if (bases[i + 1] != it.next) {
            seg_path(t, p, bases[i + 1], "log", path, NULL, 0);
            em__set_err(err, errlen, "%s: segment starts at offset %" PRIu64 " but the previous one ends at %" PRIu64,
                        path, bases[i + 1], it.next);
            set_stop(stop, it.next, bases[i + 1], 0);
            it_release(&it);
            rc = EM_EPARSE;
            goto out;
        }
        it_release(&it);
        i++;
        if ((rc = it_open(&it, t, p, bases[i], O_RDONLY, path, err, errlen)) < 0) {
            it_release(&it);
            goto out;
        }
    }
    if (it.next >= to) rc = 0;
    set_stop(stop, it.next, bases[i], it.pos);
    it_release(&it);
    if (rc != 0) goto out;
tailcheck:
    if (tail_bad) {
        seg_path(t, p, tl.base, "log", path, NULL, 0);
        em__set_err(err, errlen, "%s: offset %" PRIu64 " at byte %" PRIu64 ": %s", path, tl.end, tl.endpos, tl.why);
        set_stop(stop, tl.end, tl.base, tl.endpos);
        rc = EM_EPARSE;
    }
out:
    free(bases);
    tail_release(&tl);
    return rc;
}

/* ---- full scan: stat, verify, repair --------------------------------------------------------------------------- */

/* Scans every segment of partition p (caller holds the lock). Sets *badseg to the index in `bases` of the segment
 * holding the first problem (-1 if none); marks in badidx[i] the segments whose index disagrees with the rule. */
static int scan_part(const em__log_topic *t, int p, em__log_part_stat *st, uint64_t **bases_out, int *nseg_out,
                     int *badseg, unsigned char **badidx_out, char *err, size_t errlen)
{
    char path[PATHLEN];
    uint64_t *bases = NULL;
    unsigned char *badidx = NULL;
    int nseg = 0, rc;
    memset(st, 0, sizeof *st);
    *badseg = -1;
    if ((rc = list_segments(t, p, &bases, &nseg, err, errlen)) < 0) return rc;
    if (!(badidx = calloc((size_t)nseg + 1, 1))) {
        free(bases);
        return EM_ENOMEM;
    }
    st->nsegments = nseg;
    st->start = st->end = nseg ? bases[0] : 0;
    for (int i = 0; i < nseg; i++) {
        struct stat sb;
        seg_path(t, p, bases[i], "log", path, NULL, 0);
        if (stat(path, &sb) == 0) st->bytes += (uint64_t)sb.st_size;
    }
    uint64_t expect = st->start;
    for (int i = 0; i < nseg && !st->bad; i++) {
        seg_it it;
        em__log_rec r;
        idx x = {NULL, 0};
        if (bases[i] != expect) {
            st->bad = 1;
            st->where = (em__log_pos){expect, bases[i], 0};
            snprintf(st->what, sizeof st->what, "segment %020" PRIu64 ".log starts at offset %" PRIu64
                     " but the previous one ends at %" PRIu64, bases[i], bases[i], expect);
            *badseg = i;
            break;
        }
        if ((rc = it_open(&it, t, p, bases[i], O_RDONLY, path, err, errlen)) < 0 ||
            (rc = idx_load(t, p, bases[i], &x, err, errlen)) < 0) {
            it_release(&it);
            goto fail;
        }
        uint64_t lastidx = 0;
        size_t j = 0;
        while ((rc = it_next(&it, &r)) == IT_REC) {
            uint64_t pos = it.pos - (EM__LOG_REC_HEADER + (uint64_t)r.klen + r.vlen);
            if (pos - lastidx >= EM__LOG_INDEX_INTERVAL) {
                if (j < x.n && (x.e[2 * j] != r.offset - bases[i] || x.e[2 * j + 1] != pos)) badidx[i] = 1;
                j++;
                lastidx = pos;
            }
            if (st->end == st->start || r.time_ms < st->min_time) st->min_time = r.time_ms;
            if (st->end == st->start || r.time_ms > st->max_time) st->max_time = r.time_ms;
            st->end = r.offset + 1;
        }
        if (j < x.n) badidx[i] = 1; /* entries beyond the last good record */
        free(x.e);
        if (rc < 0) {
            if (rc == EM_EIO) sys_err(err, errlen, "read", path);
            it_release(&it);
            goto fail;
        }
        if (rc == IT_BAD) {
            st->bad = 1;
            st->where = (em__log_pos){it.next, bases[i], it.pos};
            snprintf(st->what, sizeof st->what, "segment %020" PRIu64 ".log offset %" PRIu64 " byte %" PRIu64 ": %s",
                     bases[i], it.next, it.pos, it.why);
            *badseg = i;
        }
        expect = it.next;
        it_release(&it);
    }
    for (int i = 0; i < nseg; i++) st->bad_index |= badidx[i];
    *bases_out = bases;
    *nseg_out = nseg;
    *badidx_out = badidx;
    return 0;
fail:
    free(bases);
    free(badidx);
    return rc;
}

int em__log_stat(em__log_topic *t, int p, em__log_part_stat *st, char *err, size_t errlen)
{
    uint64_t *bases;
    unsigned char *badidx;
    int nseg, badseg, rc;
    memset(st, 0, sizeof *st);
    if ((rc = check_part(t, p, err, errlen)) < 0) return rc;
    int lk = lock_part(t, p, LOCK_SH, err, errlen);
    if (lk < 0) return lk;
    rc = scan_part(t, p, st, &bases, &nseg, &badseg, &badidx, err, errlen);
    unlock_part(lk);
    if (rc < 0) return rc;
    free(bases);
    free(badidx);
    return 0;
}

/* Rewrites the index of segment `base` from its first `limit` bytes (all good records), atomically. */
static int rebuild_index(const em__log_topic *t, int p, uint64_t base, uint64_t limit, char *err, size_t errlen)
{
    char path[PATHLEN], tmp[PATHLEN + 8];
    seg_it it;
    em__log_rec r;
    unsigned char *ib = NULL;
    size_t ilen = 0, icap = 0;
    int rc, fd = -1;
    if ((rc = it_open(&it, t, p, base, O_RDONLY, path, err, errlen)) < 0) goto out;
    if (it.size > limit) it.size = limit;
    uint64_t lastidx = 0;
    while ((rc = it_next(&it, &r)) == IT_REC) {
        uint64_t pos = it.pos - (EM__LOG_REC_HEADER + (uint64_t)r.klen + r.vlen);
        if (pos - lastidx < EM__LOG_INDEX_INTERVAL) continue;
        if (ilen + 8 > icap) {
            icap = icap ? 2 * icap : 256;
            unsigned char *ni = realloc(ib, icap);
            if (!ni) {
                rc = EM_ENOMEM;
                goto out;
            }
            ib = ni;
        }
        put32(ib + ilen, (uint32_t)(r.offset - base));
        put32(ib + ilen + 4, (uint32_t)pos);
        ilen += 8;
        lastidx = pos;
    }
    if (rc < 0) goto out;
    seg_path(t, p, base, "idx", path, NULL, 0);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if ((rc = write_file(tmp, ib, ilen, err, errlen)) < 0) goto out;
    if (rename(tmp, path) < 0) {
        rc = sys_err(err, errlen, "rename", tmp);
        goto out;
    }
    rc = 0;
out:
    if (fd >= 0) close(fd);
    free(ib);
    it_release(&it);
    return rc;
}

int em__log_repair(em__log_topic *t, int p, em__log_part_stat *st, uint64_t *dropped, char *err, size_t errlen)
{
    char path[PATHLEN];
    uint64_t *bases = NULL;
    unsigned char *badidx = NULL;
    int nseg = 0, badseg, rc;
    uint64_t cut = 0;
    memset(st, 0, sizeof *st);
    if (dropped) *dropped = 0;
    if ((rc = check_part(t, p, err, errlen)) < 0) return rc;
    int lk = lock_part(t, p, LOCK_EX, err, errlen);
    if (lk < 0) return lk;
    if ((rc = scan_part(t, p, st, &bases, &nseg, &badseg, &badidx, err, errlen)) < 0) goto out;
    if (st->bad) {
        /* Later segments go first, so that a crash during the repair leaves a log a second repair can finish. */
        int keep = (st->where.byte == 0 && badseg > 0) ? badseg : badseg + 1;
        for (int i = nseg - 1; i >= keep; i--) {
            struct stat sb;
            seg_path(t, p, bases[i], "log", path, NULL, 0);
            if (stat(path, &sb) == 0) cut += (uint64_t)sb.st_size;
            if (unlink(path) < 0) {
                rc = sys_err(err, errlen, "unlink", path);
                goto out;
            }
            seg_path(t, p, bases[i], "idx", path, NULL, 0);
            if (unlink(path) < 0 && errno != ENOENT) {
                rc = sys_err(err, errlen, "unlink", path);
                goto out;
            }
            badidx[i] = 0;
        }
        if (keep == badseg + 1) {
            struct stat sb;
            seg_path(t, p, bases[badseg], "log", path, NULL, 0);
            if (stat(path, &sb) == 0 && (uint64_t)sb.st_size > st->where.byte)
                cut += (uint64_t)sb.st_size - st->where.byte;
            int fd = open(path, O_WRONLY | O_CLOEXEC);
            if (fd < 0) {
                rc = sys_err(err, errlen, "cannot open segment", path);
                goto out;
            }
            if (ftruncate(fd, (off_t)st->where.byte) < 0 || fsync(fd) < 0) {
                rc = sys_err(err, errlen, "truncate", path);
                close(fd);
                goto out;
            }
            close(fd);
            badidx[badseg] = 1; /* its index may point past the cut */
        }
    }
    for (int i = 0; i < nseg; i++)
        if (badidx[i] && (rc = rebuild_index(t, p, bases[i], UINT64_MAX, err, errlen)) < 0) goto out;
    part_path(t, p, NULL, path, NULL, 0);
    if ((rc = fsync_dir(path, err, errlen)) < 0) goto out;
    if (dropped) *dropped = cut;
    rc = 0;
out:
    free(bases);
    free(badidx);
    unlock_part(lk);
    return rc;
}
