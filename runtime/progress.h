/* progress.h — Spark-style console progress on stderr (DESIGN section 9):
 *
 *   [Stage 2 reduceByKey: ====>                       (37 + 4) / 64]
 *
 * one bar per running stage (at most 3 side by side), redrawn in place with '\r' about 5 times a second, shown only
 * for stages that have run longer than EM__PROGRESS_DELAY_MS, cleared when they are done. While a bar is shown,
 * log lines (runtime/log.c) clear it, print, and redraw it in the same write(2).
 *
 * Mode (--ember-progress): "off"; "on" draws even when stderr is not a terminal; "auto" draws when stderr is a
 * terminal. Under mpirun a rank's stderr is always a pipe, so "auto" also accepts: a parent (mpirun on this host)
 * or grandparent (`ember run`, which relays mpirun's stderr) whose stderr is a terminal, or EMBER_PROGRESS_TTY=1 in
 * the environment (for other launchers that relay our stderr to a terminal).
 *
 * Only the driver (the leader's main thread) calls these; they are LOCAL and thread-safe.
 */
#ifndef EM_RUNTIME_PROGRESS_H
#define EM_RUNTIME_PROGRESS_H

#include <stddef.h>

#define EM__PROGRESS_DELAY_MS 500  /* ms a stage runs before its bar appears */
#define EM__PROGRESS_PERIOD_MS 200 /* ms between redraws */

/* Decides from mode ("auto", "on", "off"; NULL = "auto") whether to draw. May be called again (a new leader). */
void em__progress_init(const char *mode);
/* A stage's counts: done tasks, running tasks, total tasks. name may be NULL. */
void em__progress_update(int stage, const char *name, int done, int running, int total);
/* The stage finished (or failed): its bar goes away at once. */
void em__progress_done(int stage);

/* 1 if bars are being drawn (after em__progress_init). */
int em__progress_enabled(void);

/* Formats one stage's bar to exactly `width` columns when it fits (the bar part shrinks; below 1 column of bar the
 * text is kept whole and wider). Returns the length written (NUL-terminated) or -1 if cap is too small. Pure. */
int em__progress_format(char *out, size_t cap, int width, int stage, const char *name, int done, int running,
                        int total);

#endif
