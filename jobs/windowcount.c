/*
 * windowcount.c — event-time windowed aggregation of a streaming input log, written once per window to a CSV file.
 * Follows shared DESIGN.md §7 through the public streaming API (em_stream_run, the em_stream_* section of ember.h,
 * which documents the semantics: windows, watermark, late events, exactly-once commits).
 *
 *     ember log create events --partitions 4 && ember log append events events.csv
 *     ember run -np 3 build/bin/windowcount --log events --window 1m --slide 10s --lateness 30s \
 *         --checkpoint ck --out counts.csv --until-end
 *
 * Output rows `window_start,window_end,key,value` (times in ms since the epoch), in the order windows close, after
 * a header row written once. Restarting with the same --checkpoint resumes exactly where the last committed batch
 * ended: no row is lost or written twice, whatever killed the previous run.
 */
#include <ember.h>

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jobs/common/duration.h"
#include "jobs/common/joberr.h"
#include "jobs/common/numarg.h"

#define PROG "windowcount"
#define DEFAULT_TRIGGER_MS 200
#define DEFAULT_MAX_BATCH 1000000

static const char usage[] =
    "usage: " PROG " --log DIR --window DUR [--slide DUR] [--lateness DUR] [--agg count|sum|min|max|avg]\n"
    "       --checkpoint DIR --out FILE.csv [--until-end [--flush]] [--trigger DUR] [--max-batch-events N]\n"
    "Aggregates the events of an input log (see `ember log`) per key in event-time windows and appends one row\n"
    "`window_start,window_end,key,value` (ms since the epoch) per window and key to FILE.csv when the watermark\n"
    "(largest event time seen minus --lateness) passes the window's end, in the order windows close.\n"
    "  --window DUR       window length; durations take ms, s, m, h, d (10s, 1m30s, 1.5h)\n"
    "  --slide DUR        start a window every DUR (default: the window, i.e. tumbling windows)\n"
    "  --lateness DUR     how far behind the largest event time an event may arrive (default 0); an event whose\n"
    "                     windows have all been written is late: dropped and counted\n"
    "  --agg A            count events (default), or sum/min/max/avg of the event values read as numbers\n"
    "                     (values that are not numbers are skipped, counted and named on stderr)\n"
    "  --checkpoint DIR   offsets, watermark and window state after every batch; rerun with the same DIR to\n"
    "                     resume exactly once (FILE.csv is cut back to what the checkpoint covers)\n"
    "  --out FILE.csv     the output; without a checkpoint in DIR it is (re)written from scratch\n"
    "  --until-end        process what the log holds at start-up, emit the windows the watermark closed, stop;\n"
    "                     open windows stay in the checkpoint for the next run. Without it: follow the log until\n"
    "                     SIGINT or SIGTERM, which stop after committing the current batch\n"
    "  --flush            with --until-end: the input is complete; emit every open window at the end (the\n"
    "                     watermark becomes +infinity, so events appended later are all late)\n"
    "  --trigger DUR      follow mode: poll the log for new records every DUR (default 200ms)\n"
    "  --max-batch-events N   records per micro-batch at most (default 1000000; 0: no limit)\n"
    "Ember's own flags (--ember-*): --ember-help.\n";

static void on_signal(int sig)
{
    (void)sig;
    em_stream_stop();
}

/* Reads the command line into *o. Returns 0, 1 when --help was printed, or -1 after printing the error. */
static int parse_args(int argc, char **argv, const em_ctx *ctx, em_stream_opts *o)
{
    static const char *const flags[] = {"--log", "--window", "--slide", "--lateness", "--agg", "--checkpoint",
                                        "--out", "--trigger", "--max-batch-events"};
    int have_slide = 0, have_window = 0;
    *o = (em_stream_opts){.agg = EM_STREAM_COUNT, .trigger_ms = DEFAULT_TRIGGER_MS,
                           .max_batch_events = DEFAULT_MAX_BATCH};
    for (int i = 1; i < argc; i++) {
        char *arg = argv[i], *eq = strchr(arg, '='), *val;
        size_t flen = eq ? (size_t)(eq - arg) : strlen(arg); /* --flag=value */
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            if (em_is_leader(ctx)) fputs(usage, stdout);
            return 1;
        }
        if (strcmp(arg, "--until-end") == 0) {
            o->until_end = 1;
            continue;
        }
        if (strcmp(arg, "--flush") == 0) {
            o->flush = 1;
            continue;
        }
        int f = -1;
        for (int k = 0; k < (int)(sizeof flags / sizeof flags[0]); k++)
            if (strlen(flags[k]) == flen && strncmp(arg, flags[k], flen) == 0) f = k;
        if (f < 0) {
            em_job_error(ctx, PROG, "%s '%s' (see --help)", arg[0] == '-' ? "unknown flag" : "unexpected argument",
                         arg);
            return -1;
        }
        val = eq ? eq + 1 : ++i < argc ? argv[i] : NULL;
        if (!val || !*val) {
            em_job_error(ctx, PROG, "%s: missing value", flags[f]);
            return -1;
        }
        int64_t *dur = f == 1 ? &o->window_ms : f == 2 ? &o->slide_ms : f == 3 ? &o->lateness_ms
                     : f == 7 ? &o->trigger_ms : NULL;
        if (dur && em_parse_duration_ms(val, dur) < 0) {
            em_job_error(ctx, PROG, "%s: '%s' is not a duration (expected e.g. 500ms, 10s, 1m30s, 2h, 1d)", flags[f],
                         val);
            return -1;
        }
        switch (f) {
        case 0: o->log_dir = val; break;
        case 1: have_window = 1; break;
        case 2: have_slide = 1; break;
        case 4:
            if ((int)(o->agg = (em_stream_agg)em_stream_agg_parse(val)) < 0) {
                em_job_error(ctx, PROG, "--agg: '%s' is not count, sum, min, max or avg", val);
                return -1;
            }
            break;
        case 5: o->checkpoint_dir = val; break;
        case 6: o->out_path = val; break;
        case 8:
            if (em_parse_u64(val, &o->max_batch_events) < 0) {
                em_job_error(ctx, PROG, "--max-batch-events: '%s' is not a count (expected an integer >= 0)", val);
                return -1;
            }
            break;
        default: break;
        }
    }
    const char *missing = !o->log_dir ? "--log" : !have_window ? "--window" : !o->checkpoint_dir ? "--checkpoint"
                        : !o->out_path ? "--out" : NULL;
    if (missing) {
        em_job_error(ctx, PROG, "%s is required (see --help)", missing);
        return -1;
    }
    if (!have_slide) o->slide_ms = o->window_ms;
    if (o->window_ms <= 0) {
        em_job_error(ctx, PROG, "--window: must be longer than 0");
        return -1;
    }
    if (o->slide_ms <= 0 || o->slide_ms > o->window_ms) {
        em_job_error(ctx, PROG, "--slide: must be longer than 0 and at most the window");
        return -1;
    }
    if (o->window_ms / o->slide_ms > 10000) {
        em_job_error(ctx, PROG, "--slide: an event would fall into more than 10000 windows (window / slide)");
        return -1;
    }
    if (o->flush && !o->until_end) {
        em_job_error(ctx, PROG, "--flush needs --until-end (a followed log never ends)");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    em_ctx *ctx;
    em_stream_opts o;
    em_stream_stats st = {0};
    int rc;
    if (em_init(&argc, &argv, &ctx) < 0) return 1;
    if ((rc = parse_args(argc, argv, ctx, &o)) != 0) return em_finalize(ctx, rc < 0 ? 2 : 0);

    /* SIGINT/SIGTERM only set a flag: the engine stops at the next batch boundary, after committing. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    if ((rc = em_stream_run(ctx, &o, &st)) < 0) {
        if (em_is_leader(ctx)) fprintf(stderr, PROG ": %s: %s\n", em_strerror(rc), em_last_error());
        return em_finalize(ctx, 1);
    }
    if (em_is_leader(ctx)) {
        printf(PROG ": %s%" PRIu64 " batches, %" PRIu64 " events, %" PRIu64 " late, %" PRIu64 " bad, %" PRIu64
               " rows, watermark ", st.resumed ? "resumed; " : "", st.batches, st.events, st.late, st.bad, st.rows);
        if (st.watermark == INT64_MIN) printf("none\n");
        else if (st.watermark == INT64_MAX) printf("end of input\n");
        else printf("%" PRId64 "\n", st.watermark);
    }
    return em_finalize(ctx, 0);
}
