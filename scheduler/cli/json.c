/* json.c — the strict JSON reader of the `ember` command (see json.h): a recursive descent over one line that
 * reports the byte column of the first error. Shared DESIGN.md section 9 (event logs read by `ember history`). */
#include "scheduler/cli/json.h"

#include "runtime/events.h"
#include "runtime/log.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct jparser {
    const char *s, *p, *end;
    const char *err;     /* what was expected, on failure */
} jparser;

void em__jv_release(em__jv *v)
{
    free(v->str);
    for (int i = 0; i < v->n; i++) {
        em__jv_release(&v->kids[i]);
        if (v->keys) free(v->keys[i]);
    }
    free(v->kids);
    free(v->keys);
    memset(v, 0, sizeof *v);
}

static void jskip_ws(jparser *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r')) j->p++;
}

static int jfail(jparser *j, const char *what)
{
    j->err = what;
    return -1;
}

static int hex4(const char *p, unsigned *out)
{
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | cp >> 6); o[1] = (char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12); o[1] = (char)(0x80 | ((cp >> 6) & 63)); o[2] = (char)(0x80 | (cp & 63));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18); o[1] = (char)(0x80 | ((cp >> 12) & 63));
    o[2] = (char)(0x80 | ((cp >> 6) & 63)); o[3] = (char)(0x80 | (cp & 63));
    return 4;
}

/* At the opening quote. The decoded string is never longer than its source. */
static int jstring(jparser *j, char **out)
{
    const char *p = ++j->p;
    char *o = em__realloc(NULL, (size_t)(j->end - p) + 1), *w = o;
    for (;;) {
        if (p >= j->end) { free(o); j->p = p; return jfail(j, "a closing '\"'"); }
        unsigned char c = (unsigned char)*p;
        if (c == '"') break;
        if (c < 0x20) { free(o); j->p = p; return jfail(j, "no raw control character in a string (escape it)"); }
        if (c == '\\') {
            if (p + 1 >= j->end) { free(o); j->p = p; return jfail(j, "an escape after '\\'"); }
            char e = p[1];
            const char *simple = strchr("\"\\/bfnrt", e);
            if (e && simple) {
                static const char to[] = "\"\\/\b\f\n\r\t";
                *w++ = to[simple - "\"\\/bfnrt"];
                p += 2;
                continue;
            }
            unsigned cp, lo;
            if (e != 'u' || j->end - p < 6 || hex4(p + 2, &cp) < 0) {
                free(o); j->p = p; return jfail(j, "a valid escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)");
            }
            p += 6;
            if (cp >= 0xDC00 && cp <= 0xDFFF) { free(o); j->p = p - 6; return jfail(j, "no lone low surrogate"); }
            if (cp >= 0xD800 && cp <= 0xDBFF) {
                if (j->end - p < 6 || p[0] != '\\' || p[1] != 'u' || hex4(p + 2, &lo) < 0 || lo < 0xDC00 || lo > 0xDFFF) {
                    free(o); j->p = p - 6; return jfail(j, "a low surrogate after a high one");
                }
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p += 6;
            }
            w += put_utf8(w, cp);
            continue;
        }
        size_t l = em__utf8_len((const unsigned char *)p, (size_t)(j->end - p));
        if (!l) { free(o); j->p = p; return jfail(j, "valid UTF-8"); }
        memcpy(w, p, l);
        w += l;
        p += l;
    }
    *w = 0;
    j->p = p + 1;
    *out = o;
    return 0;
}

static int jnumber(jparser *j, double *out)
{
    const char *p = j->p, *b = p;
    if (p < j->end && *p == '-') p++;
    if (p >= j->end || *p < '0' || *p > '9') {
        j->p = p;
        return jfail(j, "a digit");
    }
    if (*p == '0') p++;
    else while (p < j->end && *p >= '0' && *p <= '9') p++;
    if (p < j->end && *p >= '0' && *p <= '9') { j->p = p; return jfail(j, "no leading zero"); }
    if (p < j->end && *p == '.') {
        p++;
        if (p >= j->end || *p < '0' || *p > '9') { j->p = p; return jfail(j, "a digit after '.'"); }
        while (p < j->end && *p >= '0' && *p <= '9') p++;
    }
    if (p < j->end && (*p == 'e' || *p == 'E')) {
        p++;
        if (p < j->end && (*p == '+' || *p == '-')) p++;
        if (p >= j->end || *p < '0' || *p > '9') { j->p = p; return jfail(j, "a digit in the exponent"); }
        while (p < j->end && *p >= '0' && *p <= '9') p++;
    }
    char tmp[64];
    size_t n = (size_t)(p - b);
    if (n >= sizeof tmp) { /* digits beyond double precision: still a valid number */
        char *big = em__realloc(NULL, n + 1);
        memcpy(big, b, n);
        big[n] = 0;
        *out = strtod(big, NULL);
        free(big);
    } else {
        memcpy(tmp, b, n);
        tmp[n] = 0;
        *out = strtod(tmp, NULL);
    }
    j->p = p;
    return 0;
}

static int jvalue(jparser *j, em__jv *v, int depth)
{
    memset(v, 0, sizeof *v);
    jskip_ws(j);
    if (j->p >= j->end) return jfail(j, "a value");
    if (depth > EM__JSON_MAX_DEPTH) return jfail(j, "less nesting");
    char c = *j->p;
    if (c == '"') {
        v->type = EM__JV_STR;
        return jstring(j, &v->str);
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        v->type = EM__JV_NUM;
        return jnumber(j, &v->num);
    }
    static const struct { const char *word; int type; double num; } lit[] = {
        {"true", EM__JV_BOOL, 1}, {"false", EM__JV_BOOL, 0}, {"null", EM__JV_NULL, 0}};
    for (size_t i = 0; i < 3; i++) {
        size_t l = strlen(lit[i].word);
        if ((size_t)(j->end - j->p) >= l && memcmp(j->p, lit[i].word, l) == 0) {
            v->type = lit[i].type;
            v->num = lit[i].num;
            j->p += l;
            return 0;
        }
    }
    if (c != '[' && c != '{') return jfail(j, "a value (string, number, object, array, true, false, null)");
    int obj = c == '{';
    v->type = obj ? EM__JV_OBJ : EM__JV_ARR;
    char close = obj ? '}' : ']';
    j->p++;
    jskip_ws(j);
    if (j->p < j->end && *j->p == close) {
        j->p++;
        return 0;
    }
    for (int cap = 0;;) {
        if (v->n == cap) {
            cap = cap ? 2 * cap : 8;
            v->kids = em__realloc(v->kids, (size_t)cap * sizeof *v->kids);
            if (obj) v->keys = em__realloc(v->keys, (size_t)cap * sizeof *v->keys);
        }
        if (obj) {
            jskip_ws(j);
            if (j->p >= j->end || *j->p != '"') return jfail(j, "a member name in double quotes");
            if (jstring(j, &v->keys[v->n]) < 0) return -1;
            jskip_ws(j);
            if (j->p >= j->end || *j->p != ':') {
                free(v->keys[v->n]);
                return jfail(j, "':' after the member name");
            }
            j->p++;
        }
        if (jvalue(j, &v->kids[v->n], depth + 1) < 0) {
            if (obj) free(v->keys[v->n]);
            em__jv_release(&v->kids[v->n]);
            return -1;
        }
        v->n++;
        jskip_ws(j);
        if (j->p < j->end && *j->p == ',') {
            j->p++;
            jskip_ws(j);
            if (j->p < j->end && *j->p == close) return jfail(j, "a value after ',' (no trailing comma)");
            continue;
        }
        if (j->p < j->end && *j->p == close) {
            j->p++;
            return 0;
        }
        return jfail(j, obj ? "',' or '}'" : "',' or ']'");
    }
}

/* Parses one line holding exactly one JSON object. On error returns -1 with *col (1-based byte column) and *what. */
int em__json_parse_line(const char *s, size_t len, em__jv *v, size_t *col, const char **what)
{
    jparser j = {s, s, s + len, NULL};
    jskip_ws(&j);
    int rc = -1;
    if (j.p >= j.end || *j.p != '{') {
        memset(v, 0, sizeof *v);
        j.err = "a JSON object '{'";
    } else if ((rc = jvalue(&j, v, 0)) == 0) {
        jskip_ws(&j);
        if (j.p < j.end) {
            rc = -1;
            j.err = "the end of the line after the object";
        }
    }
    if (rc < 0) {
        em__jv_release(v);
        *col = (size_t)(j.p - s) + 1;
        *what = j.err;
    }
    return rc;
}

/* Member lookup, the last one winning as in Python's json module. */
const em__jv *em__jv_get(const em__jv *o, const char *key)
{
    for (int i = o->n - 1; i >= 0; i--)
        if (strcmp(o->keys[i], key) == 0) return &o->kids[i];
    return NULL;
}

double em__jv_num(const em__jv *o, const char *key, double dflt)
{
    const em__jv *v = em__jv_get(o, key);
    return v && v->type == EM__JV_NUM ? v->num : dflt;
}

long long em__jv_int(const em__jv *o, const char *key, long long dflt)
{
    const em__jv *v = em__jv_get(o, key);
    return v && v->type == EM__JV_NUM && fabs(v->num) < 9e18 ? (long long)v->num : dflt;
}

/* A string member; a number is printed as one (for "status": 0 and friends). NULL if absent. */
char *em__jv_strdup(const em__jv *o, const char *key)
{
    const em__jv *v = em__jv_get(o, key);
    if (!v) return NULL;
    if (v->type == EM__JV_STR) return em__strdup(v->str);
    if (v->type == EM__JV_NUM) {
        char b[64];
        snprintf(b, sizeof b, "%.15g", v->num);
        return em__strdup(b);
    }
    if (v->type == EM__JV_ARR) { /* argv: the strings joined by spaces */
        size_t n = 1;
        for (int i = 0; i < v->n; i++) n += (v->kids[i].type == EM__JV_STR ? strlen(v->kids[i].str) : 4) + 1;
        char *s = em__realloc(NULL, n), *w = s;
        for (int i = 0; i < v->n; i++)
            w += sprintf(w, "%s%s", i ? " " : "", v->kids[i].type == EM__JV_STR ? v->kids[i].str : "?");
        *w = 0;
        return s;
    }
    return NULL;
}

