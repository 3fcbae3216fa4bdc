/* test_events.c — the event log writer (runtime/events.c), the progress bar format (runtime/progress.c) and the
 * strict reader of `ember history` (scheduler/cli/history.c and json.c, included here so that their static parts
 * can be tested).
 * Expected strings were computed with Python 3's json module (json.dumps(s, ensure_ascii=False) of the string
 * that the bytes decode to when every byte that is not valid UTF-8 stands for U+00XX). */
#include <criterion/criterion.h>

#include "ember.h"
#include "runtime/events.h"
#include "runtime/log.h"
#include "runtime/progress.h"
#include "scheduler/cli/history.c"
#include "scheduler/cli/json.c"

#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static char tmpdir[256];

static void mk_tmp(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/ember-events-test.XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
}

static void rm_tmp(void)
{
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    cr_assert_eq(system(cmd), 0);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 4096 > cap) buf = realloc(buf, cap = 2 * cap + 8192);
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        if (!r) break;
        n += r;
    }
    fclose(f);
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++) n += *s == '\n';
    return n;
}

/* ---- escaping ---------------------------------------------------------------------------------------------- */

Test(json_str, matches_python_json_dumps)
{
    static const struct { const char *in, *out; } cases[] = {
        {"plain", "plain"},
        {"quote\"back\\slash/", "quote\\\"back\\\\slash/"},
        {"\b\f\n\r\t", "\\b\\f\\n\\r\\t"},
        {"\x01\x1f\x7f", "\\u0001\\u001f\x7f"},
        {"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80"}, /* é€😀 pass through */
        {"", ""},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_expect_str_eq(em__json_str(cases[i].in), cases[i].out, "case %zu", i);
    cr_expect_str_eq(em__json_str(NULL), "");
}

Test(json_str, invalid_utf8_bytes_become_u00xx)
{
    static const struct { const char *in, *out; } cases[] = {
        {"a\xff" "b", "a\\u00ffb"},
        {"\xc3", "\\u00c3"},                              /* truncated sequence */
        {"\xc0\xaf", "\\u00c0\\u00af"},                   /* overlong '/' */
        {"\xed\xa0\x80", "\\u00ed\\u00a0\\u0080"},        /* UTF-8 encoded surrogate U+D800 */
        {"\xf4\x90\x80\x80", "\\u00f4\\u0090\\u0080\\u0080"}, /* above U+10FFFF */
        {"\xe2\x82", "\\u00e2\\u0082"},
        {"\xc3\xa9\xff", "\xc3\xa9\\u00ff"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        cr_expect_str_eq(em__json_str(cases[i].in), cases[i].out, "case %zu", i);
}

Test(json_str, round_trips_through_the_history_reader)
{
    /* What Python's json.loads gives for our escaping: invalid bytes read back as U+00XX (here UTF-8 encoded). */
    static const struct { const char *in, *decoded; } cases[] = {
        {"a\xff" "b", "a\xc3\xbf" "b"},
        {"\xed\xa0\x80", "\xc3\xad\xc2\xa0\xc2\x80"},
        {"tab\there \"q\" \\ \x01", "tab\there \"q\" \\ \x01"},
        {"\xf0\x9f\x98\x80", "\xf0\x9f\x98\x80"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char line[256];
        snprintf(line, sizeof line, "{\"s\":\"%s\"}", em__json_str(cases[i].in));
        em__jv o;
        size_t col;
        const char *what;
        cr_assert_eq(em__json_parse_line(line, strlen(line), &o, &col, &what), 0, "case %zu: %s", i, line);
        cr_expect_str_eq(em__jv_get(&o, "s")->str, cases[i].decoded, "case %zu", i);
        em__jv_release(&o);
    }
}

Test(json_str, eight_results_stay_valid_together)
{
    const char *p[8];
    char want[8][16];
    for (int i = 0; i < 8; i++) {
        char in[16];
        snprintf(in, sizeof in, "s\"%d", i);
        snprintf(want[i], sizeof want[i], "s\\\"%d", i);
        p[i] = em__json_str(in);
    }
    for (int i = 0; i < 8; i++) cr_expect_str_eq(p[i], want[i]);
}

Test(json_str, long_strings_grow_the_buffer)
{
    size_t n = 100000;
    char *s = malloc(n + 1);
    memset(s, '"', n);
    s[n] = 0;
    const char *e = em__json_str(s);
    cr_assert_eq(strlen(e), 2 * n);
    cr_expect_eq(e[0], '\\');
    cr_expect_eq(e[2 * n - 1], '"');
    free(s);
}

/* ---- line format ------------------------------------------------------------------------------------------- */

Test(event_format, exact_line)
{
    char b[512];
    int n = em__event_format(b, sizeof b, 1717000000123.456, 3, "task_end", "\"stage\":1,\"part\":2,\"records_out\":42");
    cr_assert_str_eq(b, "{\"ts\":1717000000123.456,\"event\":\"task_end\",\"rank\":3,\"stage\":1,\"part\":2,"
                        "\"records_out\":42}\n");
    cr_expect_eq(n, (int)strlen(b));
}

Test(event_format, no_fields)
{
    char b[256];
    em__event_format(b, sizeof b, 5.5, 0, "job_end", NULL);
    cr_expect_str_eq(b, "{\"ts\":5.500,\"event\":\"job_end\",\"rank\":0}\n");
    em__event_format(b, sizeof b, 5.5, 0, "job_end", "");
    cr_expect_str_eq(b, "{\"ts\":5.500,\"event\":\"job_end\",\"rank\":0}\n");
}

Test(event_format, a_rank_field_replaces_the_writers_rank)
{
    char b[256];
    em__event_format(b, sizeof b, 1, 0, "task_start", "\"action\":1,\"rank\":2,\"attempt\":0");
    cr_expect_str_eq(b, "{\"ts\":1.000,\"event\":\"task_start\",\"action\":1,\"rank\":2,\"attempt\":0}\n");
    /* "rank" inside a string or a nested object is not a member of the event */
    em__event_format(b, sizeof b, 1, 4, "x", "\"error\":\"\\\"rank\\\":1\",\"o\":{\"rank\":1},\"a\":[\"rank\"]");
    cr_expect_str_eq(b, "{\"ts\":1.000,\"event\":\"x\",\"rank\":4,\"error\":\"\\\"rank\\\":1\",\"o\":{\"rank\":1},"
                        "\"a\":[\"rank\"]}\n");
}

Test(event_format, too_small_buffer)
{
    char b[16];
    cr_expect_eq(em__event_format(b, sizeof b, 1, 0, "job_start", "\"x\":1"), -1);
}

/* ---- the file ---------------------------------------------------------------------------------------------- */

Test(events_file, default_path_under_ember_home, .init = mk_tmp, .fini = rm_tmp)
{
    char home[400], want[600];
    snprintf(home, sizeof home, "%s/home/deeper", tmpdir);
    setenv("EMBER_HOME", home, 1);
    cr_assert_eq(em__events_open("", "app-20240101000000-123", 0), 0);
    snprintf(want, sizeof want, "%s/events/app-20240101000000-123.jsonl", home);
    cr_expect_str_eq(em__events_path(), want);
    em__event("job_start", "\"app_id\":\"%s\",\"ranks\":%d", "app-20240101000000-123", 2);
    em__event("job_end", "\"status\":%d", 0);
    em__events_close();
    struct stat st;
    cr_assert_eq(stat(want, &st), 0);
    cr_expect_eq(st.st_mode & 0777, 0600);
    char d[500];
    snprintf(d, sizeof d, "%s/events", home);
    cr_assert_eq(stat(d, &st), 0);
    cr_expect_eq(st.st_mode & 0777, 0700);
    cr_assert_eq(stat(home, &st), 0);
    cr_expect_eq(st.st_mode & 0777, 0700);
    char *s = slurp(want, NULL);
    cr_expect_eq(count_lines(s), 2);
    cr_expect(strstr(s, "\"event\":\"job_start\",\"rank\":0,\"app_id\":\"app-20240101000000-123\",\"ranks\":2}\n"));
    free(s);
    cr_expect_str_eq(em__events_path(), "");
    em__event("late", NULL); /* after close: no-op */
}

Test(events_file, bad_app_id_is_refused)
{
    setenv("EMBER_HOME", "/tmp", 1);
    cr_expect_eq(em__events_open(NULL, "../../etc/x", 0), EM_EINVAL);
    cr_expect_eq(em__events_open(NULL, "", 0), EM_EINVAL);
    cr_expect_eq(em__events_open(NULL, NULL, 0), EM_EINVAL);
    cr_expect_str_eq(em__events_path(), "");
    em__event("x", NULL); /* not open: no-op */
}

Test(events_file, unwritable_path_is_an_io_error, .init = mk_tmp, .fini = rm_tmp)
{
    char p[400];
    snprintf(p, sizeof p, "%s/file", tmpdir);
    int fd = open(p, O_WRONLY | O_CREAT, 0600);
    close(fd);
    snprintf(p, sizeof p, "%s/file/sub/ev.jsonl", tmpdir); /* a regular file where a directory should be */
    cr_expect_eq(em__events_open(p, "app-x", 0), EM_EIO);
}

Test(events_file, appends_and_only_the_leader_writes, .init = mk_tmp, .fini = rm_tmp)
{
    char p[400];
    snprintf(p, sizeof p, "%s/ev.jsonl", tmpdir);
    FILE *f = fopen(p, "w");
    fputs("{\"ts\":1,\"event\":\"old\",\"rank\":0}\n", f);
    fclose(f);
    em__events_set_leader(0);
    cr_assert_eq(em__events_open(p, "app-1", 1), 0);
    em__event("not_written", NULL); /* this rank does not lead */
    em__events_set_leader(1);        /* elected: opens the same file and appends */
    em__event("leader_elected", "\"leader\":%d", 1);
    em__events_close();
    char *s = slurp(p, NULL);
    const char *old = "{\"ts\":1,\"event\":\"old\",\"rank\":0}\n";
    cr_expect_eq(strncmp(s, old, strlen(old)), 0, "the old line stays first");
    cr_expect_eq(count_lines(s), 2);
    cr_expect_null(strstr(s, "not_written"));
    cr_expect(strstr(s, "\"event\":\"leader_elected\",\"rank\":1,\"leader\":1}\n"));
    free(s);
}

struct writer_arg {
    int id;
};

static void *writer(void *arg)
{
    struct writer_arg *w = arg;
    char pad[300];
    memset(pad, 'a' + w->id, sizeof pad - 1);
    pad[sizeof pad - 1] = 0;
    for (int i = 0; i < 500; i++) em__event("task_end", "\"thread\":%d,\"i\":%d,\"pad\":\"%s\"", w->id, i, pad);
    return NULL;
}

Test(events_file, threads_never_interleave_lines, .init = mk_tmp, .fini = rm_tmp)
{
    char p[400];
    snprintf(p, sizeof p, "%s/ev.jsonl", tmpdir);
    cr_assert_eq(em__events_open(p, "app-1", 0), 0);
    pthread_t t[4];
    struct writer_arg a[4];
    for (int i = 0; i < 4; i++) {
        a[i].id = i;
        pthread_create(&t[i], NULL, writer, &a[i]);
    }
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    em__events_close();
    char *s = slurp(p, NULL);
    cr_assert_eq(count_lines(s), 2000);
    int seen[4][500] = {{0}};
    char *save = NULL;
    for (char *l = strtok_r(s, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        em__jv o;
        size_t col;
        const char *what;
        cr_assert_eq(em__json_parse_line(l, strlen(l), &o, &col, &what), 0, "bad line: %.80s", l);
        int th = (int)em__jv_int(&o, "thread", -1), i = (int)em__jv_int(&o, "i", -1);
        cr_assert(th >= 0 && th < 4 && i >= 0 && i < 500);
        cr_expect_eq(strlen(em__jv_get(&o, "pad")->str), 299);
        cr_expect_eq(em__jv_get(&o, "pad")->str[0], 'a' + th);
        seen[th][i]++;
        em__jv_release(&o);
    }
    for (int th = 0; th < 4; th++)
        for (int i = 0; i < 500; i++) cr_expect_eq(seen[th][i], 1);
    free(s);
}

/* Writes `bytes` worth of events (lines of ~1 KiB) and closes the log. Returns the number of lines. */
static int fill(const char *path, size_t bytes)
{
    cr_assert_eq(em__events_open(path, "app-1", 0), 0);
    char pad[1000];
    memset(pad, 'x', sizeof pad - 1);
    pad[sizeof pad - 1] = 0;
    int n = 0;
    for (size_t w = 0; w < bytes; w += 1000 + 60, n++) em__event("task_end", "\"i\":%d,\"pad\":\"%s\"", n, pad);
    em__events_close();
    return n;
}

Test(events_file, small_log_stays_plain, .init = mk_tmp, .fini = rm_tmp)
{
    char p[400], gz[420];
    snprintf(p, sizeof p, "%s/ev.jsonl", tmpdir);
    snprintf(gz, sizeof gz, "%s.gz", p);
    fill(p, EM__EVENTS_GZIP_BYTES - 100000);
    struct stat st;
    cr_assert_eq(stat(p, &st), 0);
    cr_expect_leq(st.st_size, EM__EVENTS_GZIP_BYTES);
    cr_expect_neq(stat(gz, &st), 0);
}

Test(events_file, large_log_is_gzipped, .init = mk_tmp, .fini = rm_tmp)
{
    char p[400], gz[420];
    snprintf(p, sizeof p, "%s/ev.jsonl", tmpdir);
    snprintf(gz, sizeof gz, "%s.gz", p);
    int n = fill(p, EM__EVENTS_GZIP_BYTES + 100000);
    struct stat st;
    cr_expect_neq(stat(p, &st), 0, "the plain log should be gone");
    cr_assert_eq(stat(gz, &st), 0);
    cr_expect_lt(st.st_size, EM__EVENTS_GZIP_BYTES / 10);
    cr_expect_eq(st.st_mode & 0777, 0600);
    /* the gzip holds every line, and ember history reads it like the plain file */
    history h = {0};
    FILE *err = tmpfile();
    cr_assert_eq(history_load(&h, gz, err), 0);
    cr_expect_eq(h.lines, n);
    cr_expect_eq(h.bad_lines, 0);
    cr_expect_eq(ftell(err), 0);
    fclose(err);
    history_release(&h);
    /* a second large run on the same path adds a second gzip member; both are read */
    int n2 = fill(p, EM__EVENTS_GZIP_BYTES + 5000);
    cr_assert_eq(history_load(&h, gz, stderr), 0);
    cr_expect_eq(h.lines, n + n2);
    history_release(&h);
}

/* ---- progress bar ------------------------------------------------------------------------------------------ */

Test(progress, format_like_spark)
{
    char b[256];
    /* expected strings from Spark's algorithm in Python: head + '=' * (w*done/total) + '>' + spaces + tail */
    int n = em__progress_format(b, sizeof b, 79, 2, "reduceByKey", 37, 4, 64);
    cr_expect_str_eq(b, "[Stage 2 reduceByKey: ========================>                  (37 + 4) / 64]");
    cr_expect_eq(n, 79);
    em__progress_format(b, sizeof b, 30, 0, NULL, 0, 2, 8);
    cr_expect_str_eq(b, "[Stage 0: >       (0 + 2) / 8]");
    em__progress_format(b, sizeof b, 20, 12, "x", 5, 0, 5); /* too narrow: no bar, text kept whole */
    cr_expect_str_eq(b, "[Stage 12 x:  (5 + 0) / 5]");
    em__progress_format(b, sizeof b, 30, 1, NULL, 8, 0, 8);
    cr_expect_str_eq(b, "[Stage 1: ======= (8 + 0) / 8]"); /* full bar: no '>' */
    cr_expect_eq(em__progress_format(b, 10, 79, 2, "reduceByKey", 37, 4, 64), -1);
}

Test(progress, off_draws_nothing_and_logs_pass_through)
{
    em__progress_init("off");
    cr_expect_eq(em__progress_enabled(), 0);
    em__progress_update(1, "map", 1, 1, 4);
    em__progress_done(1);
    em__progress_init("on");
    cr_expect_eq(em__progress_enabled(), 1);
    em__progress_init("off");
}

/* "on" forces bars into a pipe: the bar appears only after the delay, a log line wipes it and is followed by the
 * bar again, and done clears it. */
Test(progress, on_draws_after_the_delay_and_clears)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    int saved = dup(2);
    dup2(fds[1], 2);
    close(fds[1]);
    setenv("COLUMNS", "60", 1);
    em__progress_init("on");
    em__progress_update(3, "map", 0, 2, 10);
    usleep(100 * 1000);
    em__progress_update(3, "map", 1, 2, 10); /* too early: nothing yet */
    usleep((EM__PROGRESS_DELAY_MS + 3 * EM__PROGRESS_PERIOD_MS) * 1000);
    em__log(EM_LOG_ERROR, "a log line");
    em__progress_done(3);
    em__progress_init("off");
    dup2(saved, 2);
    close(saved);
    char buf[8192];
    ssize_t n = read(fds[0], buf, sizeof buf - 1);
    cr_assert_gt(n, 0);
    buf[n] = 0;
    close(fds[0]);
    char *bar = strstr(buf, "\r[Stage 3 map: ");
    cr_assert_not_null(bar, "no bar in %s", buf);
    cr_expect(strstr(bar, "(1 + 2) / 10]"));
    char *log = strstr(buf, "ERROR a log line\n");
    cr_assert_not_null(log);
    cr_expect(log > bar);
    cr_expect_eq(strncmp(log + strlen("ERROR a log line\n"), "[Stage 3 map: ", 14), 0, "bar redrawn after the log line");
    /* the end: spaces over the bar and a carriage return */
    cr_expect_eq(buf[n - 1], '\r');
    cr_expect_eq(buf[n - 2], ' ');
    /* every drawn bar is exactly 59 columns (COLUMNS - 1) */
    for (char *p = strstr(buf, "[Stage"); p; p = strstr(p + 1, "[Stage")) {
        char *e = strchr(p, ']');
        cr_assert_not_null(e);
        cr_expect_eq(e - p + 1, 59);
    }
}

/* ---- the history reader ------------------------------------------------------------------------------------- */

Test(history_json, accepts_valid_lines)
{
    const char *ok[] = {
        "{}",
        " { \"a\" : 1 } ",
        "{\"n\":-0.5e+3,\"z\":0,\"t\":true,\"f\":false,\"x\":null,\"arr\":[1,[2,{}],\"s\"],\"o\":{\"k\":[]}}",
        "{\"u\":\"\\u00e9\\ud83d\\ude00\\/\"}",
        "{\"dup\":1,\"dup\":2}",
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        em__jv o;
        size_t col;
        const char *what = NULL;
        cr_expect_eq(em__json_parse_line(ok[i], strlen(ok[i]), &o, &col, &what), 0, "%s: %s", ok[i], what);
        em__jv_release(&o);
    }
    em__jv o;
    size_t col;
    const char *what;
    em__json_parse_line(ok[3], strlen(ok[3]), &o, &col, &what);
    cr_expect_str_eq(em__jv_get(&o, "u")->str, "\xc3\xa9\xf0\x9f\x98\x80/");
    em__jv_release(&o);
    em__json_parse_line(ok[4], strlen(ok[4]), &o, &col, &what);
    cr_expect_eq(em__jv_num(&o, "dup", 0), 2); /* the last wins, as in Python */
    em__jv_release(&o);
    em__json_parse_line(ok[2], strlen(ok[2]), &o, &col, &what);
    cr_expect_eq(em__jv_num(&o, "n", 0), -500);
    em__jv_release(&o);
}

Test(history_json, rejects_malformed_lines_with_a_column)
{
    static const struct { const char *line; size_t col; } bad[] = {
        {"{\"a\":1,}", 8},           /* trailing comma */
        {"{\"a\":01}", 7},           /* leading zero */
        {"{\"a\":\"x\ty\"}", 8},     /* raw control character */
        {"{\"a\":\"\\x\"}", 7},      /* bad escape */
        {"{\"a\":\"\\ud800\"}", 7},  /* lone surrogate */
        {"{\"a\":\"\xff\"}", 7},     /* invalid UTF-8 */
        {"{\"a\":\"abc", 10},        /* unterminated string */
        {"{\"a\":1} x", 9},          /* content after the object */
        {"[1]", 1},                  /* not an object */
        {"{\"a\":NaN}", 6},
        {"{'a':1}", 2},
        {"{\"a\" 1}", 6},
        {"{\"a\":1", 7},             /* truncated line */
        {"{\"a\":-}", 7},
        {"{\"a\":1.}", 8},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        em__jv o;
        size_t col = 0;
        const char *what = NULL;
        cr_expect_eq(em__json_parse_line(bad[i].line, strlen(bad[i].line), &o, &col, &what), -1, "%s", bad[i].line);
        cr_expect_eq(col, bad[i].col, "%s: column %zu, expected %zu (%s)", bad[i].line, col, bad[i].col, what);
        cr_expect_not_null(what);
    }
    char line[300] = "{\"a\":"; /* nesting deeper than MAX_DEPTH */
    memset(line + 5, '[', 100);
    line[105] = 0;
    em__jv o;
    size_t col;
    const char *what;
    cr_expect_eq(em__json_parse_line(line, strlen(line), &o, &col, &what), -1);
    cr_expect_str_eq(what, "less nesting");
}

Test(history_load, reports_file_and_line_and_keeps_the_rest, .init = mk_tmp, .fini = rm_tmp)
{
    char p[400];
    snprintf(p, sizeof p, "%s/ev.jsonl", tmpdir);
    FILE *f = fopen(p, "w");
    fputs("{\"ts\":1000,\"event\":\"job_start\",\"rank\":0,\"app_id\":\"app-1\",\"ranks\":2,\"program\":\"wc\",\"argv\":[\"a b\"]}\n"
          "{\"ts\":1001,\"event\":\"stage_submitted\",\"rank\":0,\"action\":1,\"stage\":0,\"name\":\"map\",\"tasks\":2}\n"
          "{\"ts\":1002,\"event\":\"task_start\",\"action\":1,\"stage\":0,\"part\":0,\"rank\":1,\"attempt\":0}\n"
          "{\"ts\":1003,\"event\":\"task_end\",\"action\":1,\"stage\":0,\"part\":0,\"rank\":1,\"attempt\":0,\"status\":\"ok\","
          "\"seconds\":0.5,\"records_out\":7}\n"
          "this is not json\n"
          "\n"
          "{\"ts\":1004,\"event\":\"task_end\",\"action\":1,\"stage\":0,\"part\":1,\"rank\":0,\"attempt\":0,\"status\":\"ok\","
          "\"seconds\":1.5,\"records_out\":5,}\n"
          "{\"event\":\"no_ts\"}\n"
          "{\"ts\":1005,\"event\":\"task_failed\",\"action\":1,\"stage\":0,\"part\":1,\"rank\":0,\"attempt\":0,\"error\":\"boom\"}\n"
          "{\"ts\":1006,\"event\":\"task_end\",\"action\":1,\"stage\":0,\"part\":1,\"rank\":0,\"attempt\":0,\"status\":\"failed\","
          "\"seconds\":1.5}\n"
          "{\"ts\":1007,\"event\":\"task_end\",\"action\":1,\"stage\":0,\"part\":1,\"rank\":1,\"attempt\":1,\"status\":\"ok\","
          "\"seconds\":1.5,\"records_out\":5}\n"
          "{\"ts\":1008,\"event\":\"job_end\",\"rank\":0,\"status\":0,\"seconds\":0.008}\n"
          "{\"ts\":1009,\"event\":\"trunc",
          f);
    fclose(f);
    char *msg = NULL;
    size_t msglen = 0;
    FILE *err = open_memstream(&msg, &msglen);
    history h = {0};
    cr_assert_eq(history_load(&h, p, err), 0);
    fclose(err);
    char want[600];
    snprintf(want, sizeof want, "%s:5: column 1: expected a JSON object", p);
    cr_expect(strstr(msg, want), "%s", msg);
    snprintf(want, sizeof want, "%s:7: column ", p);
    cr_expect(strstr(msg, want), "%s", msg);
    snprintf(want, sizeof want, "%s:8: an event needs", p);
    cr_expect(strstr(msg, want), "%s", msg);
    snprintf(want, sizeof want, "%s:13: column ", p);
    cr_expect(strstr(msg, want), "%s", msg);
    cr_expect_eq(h.bad_lines, 4);
    cr_expect_eq(h.lines, 13);
    cr_assert_eq(h.nruns, 1);
    run *r = &h.runs[0];
    cr_expect_str_eq(r->status, "0");
    cr_assert_eq(r->nst, 1);
    stage_sum x;
    stage_summary(r, 0, &x);
    cr_expect_eq(x.tasks, 2);
    cr_expect_eq(x.attempts, 3);
    cr_expect_eq(x.failed, 1);
    cr_expect_eq(x.rec_out, 12);
    cr_expect_eq(x.median, 1.0);
    cr_expect_eq(x.max, 1.5);
    int nfail = 0;
    for (int i = 0; i < r->nmk; i++) nfail += !strcmp(r->mk[i].event, "task_failed");
    cr_expect_eq(nfail, 1, "task_failed and a failed task_end of one attempt count once");
    history_release(&h);
    free(msg);
}
