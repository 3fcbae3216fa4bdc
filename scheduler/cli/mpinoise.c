/*
 * mpinoise.c — the stderr filter of `ember run`: removes the lines Open MPI 4.1.4 prints when a rank dies under
 * --enable-recovery (which Ember treats as routine, DESIGN.md section 6) and keeps everything else, in order.
 *
 * What is dropped was found by running small MPI programs under the recipe in which ranks raise SIGKILL or
 * SIGSEGV, exit non-zero, skip MPI_Finalize or call MPI_Abort (and the same without --enable-recovery):
 *
 *   single lines (H = host, P = pid):
 *     [H:P] PMIX ERROR: BAD-PARAM in file .../pmix_event_notification.c at line N      once per dead rank
 *     [H:P] [[J,S],V] ORTE_ERROR_LOG: ... in file .../orte/util/show_help.c at line N  when help messages collide
 *     [H:P] N more process(es) has sent help message help-X.txt / topic               for a dropped box's topic
 *     [H:P] Set MCA parameter "orte_base_help_aggregate" to 0 to see all help / error messages   (after the above)
 *
 *   boxed messages (between two rules of 74 '-'), dropped when one of their lines contains:
 *     "exited on signal"                     mpirun/prterun noticed that process rank R ... exited on signal 9
 *     "noticed that process rank"            the same family
 *     "terminated normally, but"             Primary job  terminated normally, but 1 process returned ...
 *     "mpirun has exited due to process rank"
 *     "exited with non-zero status"          mpirun detected that one or more processes exited with non-zero ...
 *     "OpenFabrics"                          the "WARNING: There was an error initializing an OpenFabrics device"
 *                                            family (also "no OpenFabrics connection schemes", openib warnings)
 *
 * Everything else passes, including the job's own lines ("[r2 exec] WARN ..."), crash backtraces of a rank that
 * segfaulted ("[H:P] *** Process received signal ***": a real bug, worth seeing) and the MPI_ABORT box.
 */
#include "scheduler/cli/cli.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RULE_LEN 74        /* Open MPI's help boxes are framed by lines of exactly 74 dashes */
#define MAX_BOX_LINES 200  /* a "box" longer than this is not Open MPI's: release it */

struct em__noise {
    int fd;
    char *line;            /* bytes of the current, incomplete line */
    size_t len, cap;
    char *box;             /* held lines of an open box, the opening rule included */
    size_t blen, bcap;
    int in_box;
    int box_lines;
    int mid_line;          /* the start of the current line was already released: pass the rest through */
    int dropped_aggregate; /* the previous line was a dropped "N more processes have sent help message" */
};

static const char *const box_noise[] = {
    "exited on signal",
    "noticed that process rank",
    "terminated normally, but",
    "mpirun has exited due to process rank",
    "exited with non-zero status",
    "OpenFabrics",
};

/* Help files whose aggregated repeats ("N more processes have sent help message F / topic") are noise. */
static const char *const help_noise[] = {
    "help-mpi-btl-openib",
    "help-mpi-btl-openib-cpc-base",
    "help-mpi-common-verbs",
    "help-orterun.txt / orterun:proc-",
    "help-errmgr-base.txt",
};

static void write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return; /* stderr is gone: nothing sensible left to do with the text */
        }
        p += w;
        n -= (size_t)w;
    }
}

/* Appends to a held buffer. Out of memory: release what is held and the new bytes unfiltered (never lose text). */
static void append(int fd, char **buf, size_t *len, size_t *cap, const char *p, size_t n)
{
    if (*len + n > *cap) {
        size_t c = *cap ? *cap : 256;
        while (c < *len + n)
            c *= 2;
        char *nb = realloc(*buf, c);
        if (!nb) {
            write_all(fd, *buf, *len);
            write_all(fd, p, n);
            *len = 0;
            return;
        }
        *buf = nb;
        *cap = c;
    }
    memcpy(*buf + *len, p, n);
    *len += n;
}

/* Length of the line without its trailing "\n" or "\r\n". */
static size_t body_len(const char *p, size_t n)
{
    while (n > 0 && (p[n - 1] == '\n' || p[n - 1] == '\r'))
        n--;
    return n;
}

static int is_rule(const char *p, size_t n)
{
    n = body_len(p, n);
    if (n != RULE_LEN)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (p[i] != '-')
            return 0;
    return 1;
}

/* Does the (not NUL-terminated) text contain needle? */
static int contains(const char *p, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    for (size_t i = 0; i + k <= n; i++)
        if (memcmp(p + i, needle, k) == 0)
            return 1;
    return 0;
}

/* Length of an "[host:pid] " prefix as Open MPI's daemons print it, or 0. */
static size_t orte_prefix(const char *p, size_t n)
{
    size_t i = 1;
    if (n < 4 || p[0] != '[')
        return 0;
    while (i < n && p[i] != ']' && p[i] != ' ')
        i++;
    if (i >= n || p[i] != ']')
        return 0;
    size_t colon = i;
    while (colon > 1 && p[colon - 1] >= '0' && p[colon - 1] <= '9')
        colon--;
    if (colon == i || p[colon - 1] != ':' || colon - 1 < 2)
        return 0;
    if (i + 1 >= n || p[i + 1] != ' ')
        return 0;
    return i + 2;
}

static int is_noise_line(em__noise *nf, const char *p, size_t n)
{
    size_t k = orte_prefix(p, n);
    int was_aggregate = nf->dropped_aggregate;
    nf->dropped_aggregate = 0;
    if (k == 0)
        return 0;
    p += k;
    n = body_len(p, n - k);
    if (contains(p, n, "PMIX ERROR: BAD-PARAM") && contains(p, n, "pmix_event_notification.c"))
        return 1;
    if (contains(p, n, "ORTE_ERROR_LOG:") && contains(p, n, "orte/util/show_help.c"))
        return 1;
    if (contains(p, n, "more process") && contains(p, n, "sent help message")) {
        for (size_t i = 0; i < sizeof help_noise / sizeof help_noise[0]; i++)
            if (contains(p, n, help_noise[i])) {
                nf->dropped_aggregate = 1;
                return 1;
            }
        return 0;
    }
    if (was_aggregate && contains(p, n, "Set MCA parameter \"orte_base_help_aggregate\""))
        return 1;
    return 0;
}

static int is_noise_box(const char *p, size_t n)
{
    for (size_t i = 0; i < sizeof box_noise / sizeof box_noise[0]; i++)
        if (contains(p, n, box_noise[i]))
            return 1;
    return 0;
}

static void release_box(em__noise *nf)
{
    write_all(nf->fd, nf->box, nf->blen);
    nf->blen = 0;
    nf->in_box = 0;
    nf->box_lines = 0;
}

/* One complete line (with its '\n'). */
static void on_line(em__noise *nf, const char *p, size_t n)
{
    if (nf->mid_line) {
        nf->mid_line = 0;
        write_all(nf->fd, p, n);
        return;
    }
    if (nf->in_box) {
        append(nf->fd, &nf->box, &nf->blen, &nf->bcap, p, n);
        nf->box_lines++;
        if (is_rule(p, n)) {
            if (is_noise_box(nf->box, nf->blen)) {
                nf->blen = 0;
                nf->in_box = 0;
                nf->box_lines = 0;
            } else {
                release_box(nf);
            }
        } else if (nf->box_lines > MAX_BOX_LINES) {
            release_box(nf);
        }
        return;
    }
    if (is_rule(p, n)) {
        nf->in_box = 1;
        nf->box_lines = 1;
        append(nf->fd, &nf->box, &nf->blen, &nf->bcap, p, n);
        return;
    }
    if (!is_noise_line(nf, p, n))
        write_all(nf->fd, p, n);
}

em__noise *em__noise_new(int fd)
{
    em__noise *nf = calloc(1, sizeof *nf);
    if (nf)
        nf->fd = fd;
    return nf;
}

void em__noise_feed(em__noise *nf, const char *data, size_t len)
{
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t n = nl ? (size_t)(nl - data) + 1 : len;
        if (!nl) {
            append(nf->fd, &nf->line, &nf->len, &nf->cap, data, n);
            return;
        }
        if (nf->len > 0) {
            append(nf->fd, &nf->line, &nf->len, &nf->cap, data, n);
            on_line(nf, nf->line, nf->len);
            nf->len = 0;
        } else {
            on_line(nf, data, n);
        }
        data += n;
        len -= n;
    }
}

void em__noise_idle(em__noise *nf)
{
    /* Open MPI writes a box with one write(), so a box still open after a quiet spell is somebody else's text. */
    if (nf->in_box)
        release_box(nf);
    if (nf->len > 0) {
        write_all(nf->fd, nf->line, nf->len);
        nf->len = 0;
        nf->mid_line = 1;
    }
}

void em__noise_free(em__noise *nf)
{
    if (!nf)
        return;
    em__noise_idle(nf);
    free(nf->line);
    free(nf->box);
    free(nf);
}
