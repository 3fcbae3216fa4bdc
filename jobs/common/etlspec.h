/*
 * etlspec.h — the little languages of the ETL job's command line (jobs/etl.c), parsed and checked here so that
 * they can be unit-tested without MPI (tests/unit/test_etlspec.c). Everything is LOCAL and pure.
 *
 *   column reference   COL | left.COL | right.COL      (the prefix picks the side; needed only when both files
 *                                                       have a column of that name)
 *   --where            'COL OP VALUE'   OP: = (or ==) != < <= > >=. VALUE is a number when it parses as one
 *                      (then the comparison is numeric and a field that is not a number makes the row bad), else
 *                      a string compared bytewise; '...' or "..." around VALUE force a string.
 *   --group-by         COL[,COL...]
 *   --agg              count | sum:COL | avg:COL | min:COL | max:COL | count_distinct:COL, comma-separated
 *   --sort-by          OUTPUT_COLUMN[:asc|:desc]  (a group column, or an aggregate as named in the output header
 *                      such as sum_amount, or as written in --agg such as sum:amount)
 *
 * Values: a field is an integer when it is [+-]?[0-9]+ within int64, a number when strtod() takes all of it
 * (finite; no surrounding blanks). Keys and group columns hold an int64 when the field is an integer, else the
 * string itself, so "7" and "007" are one key while "7.0" and "x7" are strings.
 */
#ifndef EM_JOBS_COMMON_ETLSPEC_H
#define EM_JOBS_COMMON_ETLSPEC_H

#include <stddef.h>
#include <stdint.h>

enum { ETL_ANY = -1, ETL_LEFT = 0, ETL_RIGHT = 1 };

/* A column reference as written: side ETL_ANY / ETL_LEFT / ETL_RIGHT and the bare name (points into the text). */
typedef struct etl_colref {
    int side;
    const char *name;
    size_t len;
} etl_colref;
void etl_colref_parse(const char *text, size_t len, etl_colref *out);

/* Resolves a reference against the two headers: *side and *idx of the column. Returns 0, or -1 with a message in
 * err ("no column 'x' in LEFT or RIGHT", "'id' is in both files: write left.id or right.id"). */
int etl_colref_resolve(const etl_colref *ref, const char *const *lnames, int ln, const char *const *rnames, int rn,
                       const char *lfile, const char *rfile, int *side, int *idx, char *err, size_t errlen);

typedef enum etl_op { ETL_EQ, ETL_NE, ETL_LT, ETL_LE, ETL_GT, ETL_GE } etl_op;

typedef struct etl_where {
    etl_colref col;
    etl_op op;
    int numeric; /* 1: compare as numbers (VALUE parsed into num) */
    double num;
    char *str;   /* VALUE as a string (owned, unquoted) */
    size_t slen;
    int side, idx; /* filled by resolution */
} etl_where;

/* Parses 'COL OP VALUE'. The reference points into `text`, which must outlive *w. Returns 0 or -1 with err. */
int etl_where_parse(const char *text, etl_where *w, char *err, size_t errlen);
void etl_where_release(etl_where *w);
/* Whether field s[0, n) satisfies w: 1 yes, 0 no, -1 the comparison is numeric and the field is not a number
 * (an empty field is never a match and never bad: it is a missing value). */
int etl_where_match(const etl_where *w, const char *s, size_t n);

typedef enum etl_aggkind { ETL_COUNT, ETL_SUM, ETL_AVG, ETL_MIN, ETL_MAX, ETL_COUNT_DISTINCT } etl_aggkind;

typedef struct etl_agg {
    etl_aggkind kind;
    etl_colref col; /* unused for count */
    char out[160];  /* the output column's name: count, sum_COL, avg_COL, ..., count_distinct_COL */
    int side, idx;  /* filled by resolution */
} etl_agg;

/* Parses the --agg list into aggs[0..*n) (at most max). The references point into `text`. 0 or -1 with err. */
int etl_agg_parse(const char *text, etl_agg *aggs, int max, int *n, char *err, size_t errlen);
const char *etl_agg_name(etl_aggkind k);

/* Splits a comma-separated list of column references (--group-by) into refs[0..*n). 0 or -1 with err. */
int etl_cols_parse(const char *text, etl_colref *refs, int max, int *n, char *err, size_t errlen);

/* --sort-by: the output column name (points into text) and the direction. 0 or -1 with err. */
int etl_sort_parse(const char *text, const char **col, size_t *len, int *desc, char *err, size_t errlen);

/* Field parsing (see the top of this file). Return 1 and the value, or 0. */
int etl_parse_int(const char *s, size_t n, int64_t *out);
int etl_parse_num(const char *s, size_t n, double *out);

#endif
