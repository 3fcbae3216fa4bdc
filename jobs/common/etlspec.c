/* etlspec.c — parsing and checking the ETL job's --where, --agg, --group-by and --sort-by arguments and the
 * field values they compare (see etlspec.h for the grammar). Pure and LOCAL. */
#include "jobs/common/etlspec.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int set_err(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err && errlen) vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

static void trim(const char **s, size_t *n)
{
    while (*n && isspace((unsigned char)**s)) (*s)++, (*n)--;
    while (*n && isspace((unsigned char)(*s)[*n - 1])) (*n)--;
}

int etl_parse_int(const char *s, size_t n, int64_t *out)
{
    /* By hand rather than strtoll: no copy, no locale, and this runs once per field of every row. */
    size_t i = 0;
    int neg = 0;
    uint64_t v = 0;
    if (n == 0) return 0;
    if (s[0] == '+' || s[0] == '-') neg = s[0] == '-', i = 1;
    if (i == n || n >= 32) return 0; /* at most 31 bytes (leading zeros included), as always */
    for (; i < n; i++) {
        unsigned d = (unsigned)(unsigned char)s[i] - '0';
        if (d > 9) return 0;
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, d, &v)) return 0;
    }
    if (v > (uint64_t)INT64_MAX + (uint64_t)neg) return 0;
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 1;
}

/* Exact powers of ten: every one up to 1e22 is a double. */
static const double pow10_exact[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                     1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

int etl_parse_num(const char *s, size_t n, double *out)
{
    char tmp[128], *end;
    if (n == 0 || n >= sizeof tmp || isspace((unsigned char)s[0]) || memchr(s, 0, n)) return 0;
    /* Fast path for plain decimals ([+-]?DIGITS[.DIGITS], at most 15 significant digits): m and 10^k are exact
     * doubles, so m / 10^k is one correctly rounded division, the very double strtod() returns (Clinger). */
    size_t i = s[0] == '+' || s[0] == '-', nd = 0, frac = 0, dot = 0;
    uint64_t m = 0;
    for (size_t k = i; k < n; k++) {
        unsigned d = (unsigned)(unsigned char)s[k] - '0';
        if (d <= 9) {
            m = m * 10 + d;
            nd++;
            frac += dot;
        } else if (s[k] == '.' && !dot && k > i) {
            dot = 1;
        } else {
            nd = 99; /* anything else (exponent, inf, hex, ...): strtod decides */
            break;
        }
    }
    if (nd > 0 && nd <= 15 && s[n - 1] != '.') {
        double v = (double)m / pow10_exact[frac];
        *out = s[0] == '-' ? -v : v;
        return 1;
    }
    memcpy(tmp, s, n);
    tmp[n] = 0;
    errno = 0;
    double v = strtod(tmp, &end);
    if (end == tmp || *end || !isfinite(v)) return 0;
    *out = v;
    return 1;
}

void etl_colref_parse(const char *text, size_t len, etl_colref *out)
{
    out->side = ETL_ANY;
    if (len > 5 && strncmp(text, "left.", 5) == 0) out->side = ETL_LEFT, text += 5, len -= 5;
    else if (len > 6 && strncmp(text, "right.", 6) == 0) out->side = ETL_RIGHT, text += 6, len -= 6;
    out->name = text;
    out->len = len;
}

static int find(const etl_colref *ref, const char *const *names, int n)
{
    for (int i = 0; i < n; i++)
        if (strlen(names[i]) == ref->len && memcmp(names[i], ref->name, ref->len) == 0) return i;
    return -1;
}

int etl_colref_resolve(const etl_colref *ref, const char *const *lnames, int ln, const char *const *rnames, int rn,
                       const char *lfile, const char *rfile, int *side, int *idx, char *err, size_t errlen)
{
    int l = ref->side == ETL_RIGHT ? -1 : find(ref, lnames, ln);
    int r = ref->side == ETL_LEFT ? -1 : find(ref, rnames, rn);
    int nm = (int)ref->len;
    if (l >= 0 && r >= 0)
        return set_err(err, errlen, "column '%.*s' is in both %s and %s: write left.%.*s or right.%.*s", nm,
                       ref->name, lfile, rfile, nm, ref->name, nm, ref->name);
    if (l < 0 && r < 0) {
        if (ref->side == ETL_LEFT) return set_err(err, errlen, "no column '%.*s' in %s (left)", nm, ref->name, lfile);
        if (ref->side == ETL_RIGHT) return set_err(err, errlen, "no column '%.*s' in %s (right)", nm, ref->name, rfile);
        return set_err(err, errlen, "no column '%.*s' in %s or %s", nm, ref->name, lfile, rfile);
    }
    *side = l >= 0 ? ETL_LEFT : ETL_RIGHT;
    *idx = l >= 0 ? l : r;
    return 0;
}

int etl_where_parse(const char *text, etl_where *w, char *err, size_t errlen)
{
    static const struct { const char *s; etl_op op; } ops[] = {
        {"==", ETL_EQ}, {"!=", ETL_NE}, {"<>", ETL_NE}, {"<=", ETL_LE}, {">=", ETL_GE},
        {"=", ETL_EQ},  {"<", ETL_LT},  {">", ETL_GT},
    };
    memset(w, 0, sizeof *w);
    const char *p = strpbrk(text, "=!<>");
    if (!p) return set_err(err, errlen, "--where '%s': expected 'COLUMN OP VALUE' with OP one of = != < <= > >=", text);
    size_t ol = 0;
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (strncmp(p, ops[i].s, strlen(ops[i].s)) == 0) {
            w->op = ops[i].op;
            ol = strlen(ops[i].s);
            break;
        }
    if (!ol) return set_err(err, errlen, "--where '%s': unknown operator at '%s' (expected = != < <= > >=)", text, p);
    const char *c = text, *v = p + ol;
    size_t cl = (size_t)(p - text), vl = strlen(v);
    trim(&c, &cl);
    trim(&v, &vl);
    if (!cl) return set_err(err, errlen, "--where '%s': no column before the operator", text);
    if (!vl) return set_err(err, errlen, "--where '%s': no value after the operator", text);
    etl_colref_parse(c, cl, &w->col);
    int quoted = vl >= 2 && (v[0] == '\'' || v[0] == '"') && v[vl - 1] == v[0];
    if (quoted) v++, vl -= 2;
    w->str = malloc(vl + 1);
    if (!w->str) return set_err(err, errlen, "out of memory");
    memcpy(w->str, v, vl);
    w->str[vl] = 0;
    w->slen = vl;
    w->numeric = !quoted && etl_parse_num(v, vl, &w->num);
    return 0;
}

void etl_where_release(etl_where *w)
{
    free(w->str);
    w->str = NULL;
}

static int verdict(etl_op op, int c)
{
    switch (op) {
    case ETL_EQ: return c == 0;
    case ETL_NE: return c != 0;
    case ETL_LT: return c < 0;
    case ETL_LE: return c <= 0;
    case ETL_GT: return c > 0;
    case ETL_GE: return c >= 0;
    }
    return 0;
}

int etl_where_match(const etl_where *w, const char *s, size_t n)
{
    if (w->numeric) {
        double d;
        if (n == 0) return 0;
        if (!etl_parse_num(s, n, &d)) return -1;
        return verdict(w->op, (d > w->num) - (d < w->num));
    }
    int c = memcmp(s, w->str, n < w->slen ? n : w->slen);
    if (c == 0) c = (n > w->slen) - (n < w->slen);
    return verdict(w->op, c);
}

const char *etl_agg_name(etl_aggkind k)
{
    static const char *const names[] = {"count", "sum", "avg", "min", "max", "count_distinct"};
    return names[k];
}

int etl_agg_parse(const char *text, etl_agg *aggs, int max, int *n, char *err, size_t errlen)
{
    *n = 0;
    for (const char *s = text;;) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        const char *item = s;
        trim(&item, &len);
        if (!len) return set_err(err, errlen, "--agg '%s': empty item (expected count,sum:COL,avg:COL,...)", text);
        if (*n == max) return set_err(err, errlen, "--agg '%s': more than %d aggregates", text, max);
        etl_agg *a = &aggs[*n];
        memset(a, 0, sizeof *a);
        const char *colon = memchr(item, ':', len);
        size_t kl = colon ? (size_t)(colon - item) : len;
        int found = 0;
        for (int k = ETL_COUNT; k <= ETL_COUNT_DISTINCT; k++)
            if (strlen(etl_agg_name(k)) == kl && strncmp(item, etl_agg_name(k), kl) == 0) a->kind = k, found = 1;
        if (!found)
            return set_err(err, errlen, "--agg: unknown aggregate '%.*s' (expected count, sum, avg, min, max or "
                           "count_distinct)", (int)kl, item);
        if (a->kind == ETL_COUNT) {
            if (colon) return set_err(err, errlen, "--agg: 'count' takes no column (it counts rows): '%.*s'", (int)len, item);
            snprintf(a->out, sizeof a->out, "count");
        } else {
            const char *c = colon ? colon + 1 : NULL;
            size_t cl = colon ? len - kl - 1 : 0;
            if (c) trim(&c, &cl);
            if (!cl) return set_err(err, errlen, "--agg: '%.*s' needs a column: %s:COLUMN", (int)len, item, etl_agg_name(a->kind));
            etl_colref_parse(c, cl, &a->col);
            if (cl > 120) return set_err(err, errlen, "--agg: column name '%.*s...' too long", 40, c);
            snprintf(a->out, sizeof a->out, "%s_%.*s", etl_agg_name(a->kind), (int)cl, c);
        }
        for (int i = 0; i < *n; i++)
            if (strcmp(aggs[i].out, a->out) == 0) return set_err(err, errlen, "--agg: '%s' is listed twice", a->out);
        (*n)++;
        if (!e) return 0;
        s = e + 1;
    }
}

int etl_cols_parse(const char *text, etl_colref *refs, int max, int *n, char *err, size_t errlen)
{
    *n = 0;
    for (const char *s = text;;) {
        const char *e = strchr(s, ',');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        const char *item = s;
        trim(&item, &len);
        if (!len) return set_err(err, errlen, "--group-by '%s': empty column name", text);
        if (*n == max) return set_err(err, errlen, "--group-by '%s': more than %d columns", text, max);
        etl_colref_parse(item, len, &refs[*n]);
        for (int i = 0; i < *n; i++)
            if (refs[i].side == refs[*n].side && refs[i].len == refs[*n].len &&
                memcmp(refs[i].name, refs[*n].name, len) == 0)
                return set_err(err, errlen, "--group-by: '%.*s' is listed twice", (int)len, item);
        (*n)++;
        if (!e) return 0;
        s = e + 1;
    }
}

int etl_sort_parse(const char *text, const char **col, size_t *len, int *desc, char *err, size_t errlen)
{
    size_t n = strlen(text);
    *desc = 0;
    if (n >= 5 && strcmp(text + n - 5, ":desc") == 0) *desc = 1, n -= 5;
    else if (n >= 4 && strcmp(text + n - 4, ":asc") == 0) n -= 4;
    const char *c = text;
    trim(&c, &n);
    if (!n) return set_err(err, errlen, "--sort-by '%s': expected COLUMN[:asc|:desc]", text);
    *col = c;
    *len = n;
    return 0;
}
