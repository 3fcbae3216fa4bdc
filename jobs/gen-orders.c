/*
 * gen-orders.c — a deterministic generator of ETL inputs: DIR/customers.csv and DIR/orders.csv with a header row,
 * RFC 4180 quoting (names holding commas, quotes and a few non-ASCII letters), for the ETL job (jobs/etl.c), its
 * tests and `make bench`. No MPI: it runs as a plain program and the same seed always gives the same bytes.
 *
 *     gen-orders --customers N --orders M --out DIR [--seed S] [--bad-rows K] [--orphans PCT]
 *
 *   customers.csv  customer_id,name,country,segment        customer_id = 1..N
 *   orders.csv     order_id,customer_id,amount,quantity,product
 *                  customer_id uniform in 1..N, except --orphans percent (default 2) pointing past N (no customer:
 *                  the rows an inner join drops and a left join keeps); amount with two decimals; quantity 1..20
 *   --bad-rows K   K order rows (spread evenly) whose amount is not a number or whose customer_id is empty
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "jobs/common/numarg.h"

static const char usage[] =
    "usage: gen-orders --customers N --orders M --out DIR [--seed S] [--bad-rows K] [--orphans PCT]\n"
    "Writes DIR/customers.csv and DIR/orders.csv (deterministic for a given seed).\n";

static uint64_t rng;
static uint64_t next(void) /* splitmix64 */
{
    uint64_t z = (rng += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}
static uint64_t below(uint64_t n) { return next() % n; }

static const char *const first[] = {"Anna", "Bo", "Chloé", "Dmitri", "Eve", "Farid", "Grace", "Hiro", "Ines",
                                    "Jon", "Kofi", "Lena", "Mateo", "Nia", "Oskar", "Priya", "Quinn", "Rosa"};
static const char *const last[] = {"Smith", "O'Neil", "Müller", "Nguyen", "Garcia", "Kowalski", "Okafor", "Rossi",
                                   "Tanaka", "Dubois", "Silva", "Cohen", "Andersen", "Ivanova"};
/* Some countries need quoting (a comma, a quote); the sizes are uneven so the groups are too. */
static const char *const country[] = {"France", "Germany", "Japan", "Brazil", "Kenya", "Canada", "India", "Chile",
                                      "Korea, Republic of", "Côte d'Ivoire", "United States", "Norway",
                                      "Bonaire, Sint Eustatius and Saba", "The \"Other\" Islands", "Peru", "Egypt"};
static const char *const segment[] = {"retail", "smb", "enterprise", "public"};
static const char *const product[] = {"widget", "gadget", "gizmo", "doohickey", "sprocket", "thingamajig",
                                      "whatsit, large", "\"deluxe\" kit"};
#define N(a) (sizeof a / sizeof a[0])

/* Writes s as a CSV field, quoted when it holds a comma, quote or newline. */
static void field(FILE *f, const char *s)
{
    if (!strpbrk(s, ",\"\n\r")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

int main(int argc, char **argv)
{
    uint64_t nc = 0, no = 0, seed = 1, bad = 0, orphans = 2;
    const char *out = NULL;
    int have_c = 0, have_o = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t *dst = NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            fputs(usage, stdout);
            return 0;
        }
        if (strcmp(a, "--customers") == 0) dst = &nc, have_c = 1;
        else if (strcmp(a, "--orders") == 0) dst = &no, have_o = 1;
        else if (strcmp(a, "--seed") == 0) dst = &seed;
        else if (strcmp(a, "--bad-rows") == 0) dst = &bad;
        else if (strcmp(a, "--orphans") == 0) dst = &orphans;
        else if (strcmp(a, "--out") != 0) {
            fprintf(stderr, "gen-orders: unknown argument '%s'\n%s", a, usage);
            return 2;
        }
        if (!v) {
            fprintf(stderr, "gen-orders: %s: missing value\n", a);
            return 2;
        }
        if (dst && em_parse_u64(v, dst) < 0) {
            fprintf(stderr, "gen-orders: %s: '%s' is not a count (expected an integer >= 0, e.g. 1e6)\n", a, v);
            return 2;
        }
        if (!dst) out = v;
        i++;
    }
    if (!have_c || !have_o || !out || nc == 0 || orphans > 100) {
        fprintf(stderr, "gen-orders: need --customers N >= 1, --orders M and --out DIR (--orphans <= 100)\n%s", usage);
        return 2;
    }
    if (mkdir(out, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "gen-orders: cannot create %s: %s\n", out, strerror(errno));
        return 1;
    }
    char path[4096];
    static char buf1[1 << 20], buf2[1 << 20];
    rng = seed;

    snprintf(path, sizeof path, "%s/customers.csv", out);
    FILE *f = fopen(path, "w");
    if (!f) goto io;
    setvbuf(f, buf1, _IOFBF, sizeof buf1);
    fputs("customer_id,name,country,segment\n", f);
    for (uint64_t c = 1; c <= nc; c++) {
        char name[128];
        uint64_t r = below(10);
        /* "Last, First" (quoted) for 3 in 10, a nickname with quotes for 1 in 10, else "First Last". */
        if (r < 3) snprintf(name, sizeof name, "%s, %s", last[below(N(last))], first[below(N(first))]);
        else if (r < 4) snprintf(name, sizeof name, "%s \"%s\" %s", first[below(N(first))], "Ace", last[below(N(last))]);
        else snprintf(name, sizeof name, "%s %s", first[below(N(first))], last[below(N(last))]);
        /* Skewed countries: the first ones are the most common. */
        uint64_t k = below(N(country)), j = below(N(country));
        fprintf(f, "%" PRIu64 ",", c);
        field(f, name);
        fputc(',', f);
        field(f, country[k < j ? k : j]);
        fprintf(f, ",%s\n", segment[below(N(segment))]);
    }
    if (fclose(f) != 0) goto io;

    snprintf(path, sizeof path, "%s/orders.csv", out);
    if (!(f = fopen(path, "w"))) goto io;
    setvbuf(f, buf2, _IOFBF, sizeof buf2);
    fputs("order_id,customer_id,amount,quantity,product\n", f);
    uint64_t every = bad ? (no / bad ? no / bad : 1) : 0, nbad = 0;
    for (uint64_t o = 1; o <= no; o++) {
        uint64_t cid = below(100) < orphans ? nc + 1 + below(nc) : 1 + below(nc);
        uint64_t cents = 100 + below(99900);
        uint64_t q = 1 + below(20);
        const char *p = product[below(N(product))];
        if (every && o % every == every / 2 && nbad < bad) {
            nbad++;
            if (nbad % 2) fprintf(f, "%" PRIu64 ",%" PRIu64 ",n/a,%" PRIu64 ",", o, cid, q);
            else fprintf(f, "%" PRIu64 ",,%" PRIu64 ".%02" PRIu64 ",%" PRIu64 ",", o, cents / 100, cents % 100, q);
        } else {
            fprintf(f, "%" PRIu64 ",%" PRIu64 ",%" PRIu64 ".%02" PRIu64 ",%" PRIu64 ",", o, cid, cents / 100,
                    cents % 100, q);
        }
        field(f, p);
        fputc('\n', f);
    }
    if (fclose(f) != 0) goto io;
    return 0;
io:
    fprintf(stderr, "gen-orders: cannot write %s: %s\n", path, strerror(errno));
    return 1;
}
