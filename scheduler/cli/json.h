/* json.h — a small, strict JSON reader for the JSON-lines files the `ember` command reads (event logs).
 * RFC 8259: no trailing commas, no leading zeros, no NaN, no raw control characters in strings, valid escapes
 * (surrogates in pairs) and valid UTF-8; nesting up to EM__JSON_MAX_DEPTH. A member name that repeats keeps the
 * last value, as Python's json module does. Internal to scheduler/cli. */
#ifndef EMBER_CLI_JSON_H
#define EMBER_CLI_JSON_H

#include <stddef.h>

#define EM__JSON_MAX_DEPTH 64 /* nesting of values */

enum { EM__JV_NULL, EM__JV_BOOL, EM__JV_NUM, EM__JV_STR, EM__JV_ARR, EM__JV_OBJ };

/* A parsed value; every string and array is owned (em__jv_release frees them). */
typedef struct em__jv {
    int type;
    double num;          /* EM__JV_NUM; EM__JV_BOOL: 0 or 1 */
    char *str;           /* EM__JV_STR: decoded UTF-8, NUL-terminated (an escaped \u0000 ends it early) */
    struct em__jv *kids;   /* EM__JV_ARR, EM__JV_OBJ: n values */
    char **keys;         /* EM__JV_OBJ: n keys */
    int n;
} em__jv;

/* Parses one line holding exactly one JSON object into v. Returns 0, or -1 with *col (1-based byte column) and
 * *what (what was expected there); on error v holds nothing to release. */
int em__json_parse_line(const char *s, size_t len, em__jv *v, size_t *col, const char **what);
void em__jv_release(em__jv *v);
/* A member of an object (the last of that name), or NULL. */
const em__jv *em__jv_get(const em__jv *o, const char *key);
/* A number member, or dflt when absent or not a number; em__jv_int truncates toward zero. */
double em__jv_num(const em__jv *o, const char *key, double dflt);
long long em__jv_int(const em__jv *o, const char *key, long long dflt);
/* A member as a new string: a string as is, a number as printed by %.15g, an array of strings joined by spaces;
 * NULL if absent or of another type. Free with free(). */
char *em__jv_strdup(const em__jv *o, const char *key);

#endif
