/*
 * etl.c — the ETL job: join two CSV files on a key, filter, group and aggregate (the classic Spark ETL), written
 * against the public API only. Follows DESIGN.md §2-5 and §8.
 *
 *     ember run -np 3 build/bin/etl --left orders.csv --right customers.csv --left-key customer_id \
 *         --right-key customer_id --where 'amount > 10' --group-by country --agg count,sum:amount,avg:amount \
 *         --out by_country.csv
 *
 * Dataflow, shuffle join (one action; when the right file is bigger than --broadcast-max):
 *     em_csv(left)  -> em_map parse -+
 *                                    +-> em_cogroup join -> em_reduce_by_key -> em_map -> em_reduce_by_key -> collect
 *     em_csv(right) -> em_map parse -+
 *
 * Broadcast join (two actions; the default for a right file of at most 64 MiB, see etlbcast.h):
 *     em_csv(right) -> em_map_partitions rblock (parse, packed in blocks) -> collect: the index on every rank
 *     em_csv(left)  -> em_map_partitions bjoin (parse, look up, pre-aggregate per group) -> em_reduce_by_key -> ...
 *                      (the same reduces as above)
 *
 *   parse     applies the --where clauses of its side, types the fields it needs, and emits (join key, payload);
 *             a row whose key is empty or whose compared / aggregated field is not a number goes under one BAD
 *             key with its file, line and reason instead (counted, never joined).
 *   join      per key: the right side's rows are held in memory, each left row is paired with each of them (or,
 *             for --join left, with nothing); each pair becomes (group, partial aggregates) plus, for every
 *             count_distinct, a (group, value) pair; the BAD key becomes one summary record.
 *   reduce 1  merges partial aggregates per group, and dedups the (group, value) pairs (map-side combine does most);
 *   map       turns each distinct (group, value) into a count of 1 for its group;
 *   reduce 2  adds those counts to the group's aggregates.
 * Records are tuples (em_tup) so that groups sort by their typed values: the leader sorts the collected groups
 * and writes the CSV, or every rank hands the same rows to em_save_hdf5.
 *
 * Typing (jobs/common/etlspec.h): keys and group columns are int64 when the field is an integer, else strings;
 * aggregated fields are numbers; empty fields are missing values (NULL): sum/avg/min/max skip them, count counts
 * rows, count_distinct ignores them. A sum of integers stays an exact integer (until it would overflow int64).
 *
 * This file is the command line and the job's driving code; the pieces live in jobs/common/, one per concept:
 *   etlplan    the plan built from the arguments and the two headers
 *   etlrow     parse: a CSV row -> typed fields, (join key, payload) tuples
 *   etlbad     the bad-row summary and its report
 *   etljoin    join: the cogroup callback (shuffle join)
 *   etlbcast   the broadcast join
 *   etlagg     aggregate states; etlreduce: reduce 1, the map, reduce 2
 *   etlout     the output rows, their sort, the CSV and HDF5 writers
 */
#include <ember.h>

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "jobs/common/etlbad.h"
#include "jobs/common/etlbcast.h"
#include "jobs/common/etljoin.h"
#include "jobs/common/etlout.h"
#include "jobs/common/etlplan.h"
#include "jobs/common/etlreduce.h"
#include "jobs/common/etlrow.h"
#include "jobs/common/etlspec.h"
#include "jobs/common/joberr.h"
#include "jobs/common/numarg.h"

#define PROG "etl"

static const char usage[] =
    "usage: " PROG " --left FILE --right FILE --left-key COL --right-key COL [--join inner|left]\n"
    "           [--where 'COL OP VALUE' ...] --group-by COL[,COL...]\n"
    "           --agg count,sum:COL,avg:COL,min:COL,max:COL,count_distinct:COL\n"
    "           [--out OUT.csv | OUT.h5] [--sort-by COL[:desc]] [--strict] [--broadcast-max SIZE]\n"
    "Joins two CSV files (header row required) on LEFT-KEY = RIGHT-KEY, keeps the rows that pass every --where\n"
    "(OP: = != < <= > >=; applied before the join), groups by the columns (left./right. prefix when a name is in\n"
    "both files) and prints one row per group with the aggregates, sorted by the group columns (or --sort-by:\n"
    "a group column or an output column such as sum_amount). Without --out the CSV goes to stdout.\n"
    "Rows whose key is empty or whose compared/aggregated field is not a number are skipped and reported;\n"
    "--strict makes them (and malformed CSV rows) fatal. With no argument at all, runs on examples/data.\n"
    "A right file of at most --broadcast-max bytes (default 64M; K, M, G suffixes; 0: never) is copied to every\n"
    "rank and the left side is joined where it is read, without a shuffle; a bigger one is shuffled with the left.\n";

/* ---- command line ------------------------------------------------------------------------------------------- */

typedef struct args {
    const char *left, *right, *lkey, *rkey, *join, *group, *agg, *out, *sort, *bmax;
    const char *where[ETL_MAXW];
    int nwhere, strict;
    uint64_t bmax_bytes; /* --broadcast-max in bytes */
} args;

#define DEFAULT_DIR "examples/data"
#define DEFAULT_BROADCAST_MAX ((uint64_t)64 << 20)

/* "64M" -> 67108864 (K, M, G: powers of 1024). 0 or -1. */
static int parse_size(const char *s, uint64_t *out)
{
    char num[64];
    size_t n = strlen(s);
    int shift = 0;
    if (n == 0 || n >= sizeof num) return -1;
    switch (s[n - 1]) {
    case 'k': case 'K': shift = 10; break;
    case 'm': case 'M': shift = 20; break;
    case 'g': case 'G': shift = 30; break;
    default: break;
    }
    memcpy(num, s, n - (shift ? 1 : 0));
    num[n - (shift ? 1 : 0)] = 0;
    uint64_t v;
    if (em_parse_u64(num, &v) < 0 || v > (UINT64_MAX >> shift)) return -1;
    *out = v << shift;
    return 0;
}

/* examples/data next to the binary's build/ directory (as wordcount finds its sample). */
static const char *sample_path(const char *name)
{
    static char paths[2][PATH_MAX];
    static int k;
    char *path = paths[k++ & 1];
    ssize_t n = readlink("/proc/self/exe", path, PATH_MAX - 1);
    if (n <= 0) n = 0;
    path[n] = '\0';
    char *slash = strrchr(path, '/');
    size_t dir = slash ? (size_t)(slash - path) + 1 : 0;
    snprintf(path + dir, PATH_MAX - dir, "../../" DEFAULT_DIR "/%s", name);
    return path;
}

static int parse_args(int argc, char **argv, const em_ctx *ctx, args *a)
{
    static const struct { const char *flag; size_t off; } flags[] = {
        {"--left", offsetof(args, left)},      {"--right", offsetof(args, right)},
        {"--left-key", offsetof(args, lkey)},  {"--right-key", offsetof(args, rkey)},
        {"--join", offsetof(args, join)},      {"--group-by", offsetof(args, group)},
        {"--agg", offsetof(args, agg)},        {"--out", offsetof(args, out)},
        {"--sort-by", offsetof(args, sort)},   {"--broadcast-max", offsetof(args, bmax)},
    };
    memset(a, 0, sizeof *a);
    if (argc <= 1) { /* make demo: the shipped sample */
        a->left = sample_path("orders.csv");
        a->right = sample_path("customers.csv");
        a->lkey = a->rkey = "customer_id";
        a->group = "country";
        a->agg = "count,sum:amount,avg:amount,min:amount,max:amount,count_distinct:left.customer_id";
        a->join = "inner";
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        char *arg = argv[i], *eq = strchr(arg, '=');
        size_t flen = eq && strncmp(arg, "--", 2) == 0 ? (size_t)(eq - arg) : strlen(arg);
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            if (em_is_leader(ctx)) fputs(usage, stdout);
            return 1;
        }
        if (strcmp(arg, "--strict") == 0) {
            a->strict = 1;
            continue;
        }
        const char **dst = NULL;
        int is_where = flen == 7 && strncmp(arg, "--where", 7) == 0;
        for (size_t k = 0; k < sizeof flags / sizeof flags[0]; k++)
            if (strlen(flags[k].flag) == flen && strncmp(arg, flags[k].flag, flen) == 0)
                dst = (const char **)((char *)a + flags[k].off);
        if (!dst && !is_where) {
            em_job_error(ctx, PROG, "unknown argument '%s' (see --help)", arg);
            return -1;
        }
        const char *val = eq && flen < strlen(arg) ? eq + 1 : ++i < argc ? argv[i] : NULL;
        if (!val || !*val) {
            em_job_error(ctx, PROG, "%.*s: missing value", (int)flen, arg);
            return -1;
        }
        if (is_where) {
            if (a->nwhere == ETL_MAXW) {
                em_job_error(ctx, PROG, "--where: more than %d clauses", ETL_MAXW);
                return -1;
            }
            a->where[a->nwhere++] = val;
        } else {
            *dst = val;
        }
    }
    const char *missing = !a->left ? "--left FILE" : !a->right ? "--right FILE" : !a->lkey ? "--left-key COL"
                        : !a->rkey ? "--right-key COL" : !a->group ? "--group-by COL[,COL...]" : !a->agg ? "--agg LIST" : NULL;
    if (missing) {
        em_job_error(ctx, PROG, "missing %s (see --help)", missing);
        return -1;
    }
    if (!a->join) a->join = "inner";
    a->bmax_bytes = DEFAULT_BROADCAST_MAX;
    if (a->bmax && parse_size(a->bmax, &a->bmax_bytes) < 0) {
        em_job_error(ctx, PROG, "--broadcast-max: '%s' is not a size (bytes, or with a K, M or G suffix)", a->bmax);
        return -1;
    }
    if (strcmp(a->join, "inner") != 0 && strcmp(a->join, "left") != 0) {
        em_job_error(ctx, PROG, "--join: '%s' is not a join type (expected inner or left)", a->join);
        return -1;
    }
    if (a->out) {
        const char *dot = strrchr(a->out, '.');
        if (!dot || (strcmp(dot, ".csv") != 0 && strcmp(dot, ".h5") != 0 && strcmp(dot, ".hdf5") != 0)) {
            em_job_error(ctx, PROG, "--out: '%s' should end in .csv, .h5 or .hdf5", a->out);
            return -1;
        }
    }
    return 0;
}

static const char *file_problem(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0) return errno == ENOENT || errno == ENOTDIR ? "no such file" : strerror(errno);
    if (!S_ISREG(st.st_mode)) return "not a regular file";
    return NULL;
}

int main(int argc, char **argv)
{
    em_ctx *ctx;
    args a;
    static etl_plan pl;
    em_records res = {0};
    int rc;
    if (em_init(&argc, &argv, &ctx) < 0) return 1;
    if ((rc = parse_args(argc, argv, ctx, &a)) != 0) return em_finalize(ctx, rc < 0 ? 2 : 0);
    const char *files[2] = {a.left, a.right};
    for (int s = 0; s < 2; s++) {
        const char *why = file_problem(files[s]);
        if (why) {
            em_job_error(ctx, PROG, "%s %s: %s", s ? "--right" : "--left", files[s], why);
            return em_finalize(ctx, 2);
        }
    }
    pl.join = strcmp(a.join, "left") == 0 ? EM_JOIN_LEFT : EM_JOIN_INNER;
    em_csv_opts o = {.strict = a.strict, .line_keys = 1};
    for (int s = 0; s < 2; s++) {
        pl.s[s].which = s;
        pl.s[s].file = files[s];
        pl.s[s].plan = &pl;
        pl.s[s].csv = em_csv(ctx, &files[s], 1, &o, 0);
    }
    if (etl_plan_build(ctx, &pl, a.lkey, a.rkey, a.where, a.nwhere, a.group, a.agg) < 0) return em_finalize(ctx, 2);
    int sort_col = -1, sort_desc = 0;
    if (a.sort && (sort_col = etl_plan_sort_column(ctx, &pl, a.sort, &sort_desc)) < 0) return em_finalize(ctx, 2);

    /* Broadcast the right side when its file is small enough (every rank sees the same size: the same plan). */
    static etl_bcast bc;
    struct stat rst;
    int broadcast = a.bmax_bytes > 0 && stat(a.right, &rst) == 0 && (uint64_t)rst.st_size <= a.bmax_bytes;
    em_ds *joined;
    if (broadcast) {
        em_records rres = {0};
        em_ds *rb = em_map_partitions(pl.s[1].csv, etl_rblock_open, etl_rblock_each, etl_rblock_close, &pl.s[1]);
        if ((rc = em_collect(rb, &rres)) < 0) goto fail;
        if ((rc = etl_bcast_build(&pl, &bc, &rres)) == -1) {
            fprintf(stderr, "%s: rank %d: out of memory indexing %s\n", PROG, em_rank(ctx), a.right);
            _exit(1); /* STYLE rule 5: this rank fails, the others see a dead executor */
        }
        if (rc < 0) {
            if (em_is_leader(ctx)) fprintf(stderr, "%s: the collected right side is damaged\n", PROG);
            etl_bcast_release(&bc);
            return em_finalize(ctx, 1);
        }
        joined = em_map_partitions(pl.s[0].csv, etl_bjoin_open, etl_bjoin_each, etl_bjoin_close, &pl);
    } else {
        /* Lazy: nothing runs until em_collect. */
        em_ds *l = em_map(pl.s[0].csv, etl_parse_row, &pl.s[0]);
        em_ds *r = em_map(pl.s[1].csv, etl_parse_row, &pl.s[1]);
        joined = em_cogroup(l, r, etl_join_rows, &pl, 0);
    }
    em_ds *partial = em_reduce_by_key(joined, etl_combine, &pl, 0);
    em_ds *counted = em_map(partial, etl_distinct_to_counts, &pl);
    em_ds *groups = em_reduce_by_key(counted, etl_combine, &pl, 0);
    if ((rc = em_collect(groups, &res)) < 0) goto fail;

    /* Every rank has the result: split it into the bad-row summary and the output rows. */
    etl_badsum bad;
    etl_outrow *rows = calloc(res.n ? res.n : 1, sizeof *rows);
    size_t nrows = etl_out_rows(&pl, &res, rows, &bad);
    if (pl.bc) { /* the right side's bad rows never went through the reduces */
        for (int i = 0; i < bc.bad.nfiles; i++) etl_badsum_count(&bad, bc.bad.fside[i], bc.bad.ffile[i], bc.bad.fcount[i]);
        for (int i = 0; i < bc.bad.nlist; i++) etl_badsum_list(&bad, &bc.bad.list[i]);
    }
    int64_t nbad = etl_badsum_report(ctx, &pl, &bad, a.strict);
    if (nbad && a.strict) {
        if (em_is_leader(ctx))
            fprintf(stderr, "%s: --strict: %" PRId64 " bad row%s, no output written\n", PROG, nbad, nbad == 1 ? "" : "s");
        free(rows);
        em_records_free(&res);
        return em_finalize(ctx, 1);
    }
    etl_out_sort(rows, nrows, sort_col, sort_desc);

    const char *dot = a.out ? strrchr(a.out, '.') : NULL;
    if (dot && strcmp(dot, ".csv") != 0) {
        if ((rc = etl_out_hdf5(ctx, a.out, &pl, rows, nrows)) < 0) {
            free(rows);
            goto fail;
        }
    } else if (em_is_leader(ctx)) {
        /* CSV: written under a temporary name and renamed, so a failed run never leaves half a file. */
        char tmp[PATH_MAX];
        FILE *f = stdout;
        if (a.out) {
            snprintf(tmp, sizeof tmp, "%s.tmp.%d", a.out, (int)getpid());
            if (!(f = fopen(tmp, "w"))) {
                fprintf(stderr, "%s: cannot create %s: %s\n", PROG, tmp, strerror(errno));
                free(rows);
                em_records_free(&res);
                return em_finalize(ctx, 1);
            }
        }
        etl_out_csv(f, &pl, rows, nrows);
        if (a.out) {
            int bad_write = ferror(f) | (fflush(f) != 0) | (fsync(fileno(f)) != 0);
            bad_write |= fclose(f) != 0;
            if (bad_write || rename(tmp, a.out) < 0) {
                fprintf(stderr, "%s: cannot write %s: %s\n", PROG, a.out, strerror(errno));
                unlink(tmp);
                free(rows);
                em_records_free(&res);
                return em_finalize(ctx, 1);
            }
        }
    }
    if (em_is_leader(ctx) && a.out) fprintf(stderr, "%s: wrote %zu group%s to %s\n", PROG, nrows, nrows == 1 ? "" : "s", a.out);
    free(rows);
    em_records_free(&res);
    etl_bcast_release(&bc);
    for (int i = 0; i < pl.nwhere; i++) etl_where_release(&pl.where[i]);
    return em_finalize(ctx, 0);
fail:
    if (em_is_leader(ctx)) fprintf(stderr, PROG ": %s: %s\n", em_strerror(rc), em_last_error());
    em_records_free(&res);
    return em_finalize(ctx, 1);
}
