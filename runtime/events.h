/* events.h — the JSON-lines event log of a run (DESIGN section 9; the format is documented in README.md,
 * "Event log and history").
 *
 * One line per event, one object per line, written by the current leader in whole lines (each write(2) on an
 * O_APPEND descriptor holds complete lines), so lines never interleave and a new leader appends to the same file.
 * task_start/task_end lines are batched (up to 64 KiB or 0.1 s, or until any other event) to keep the cost per task
 * low; a leader that dies loses at most that batch:
 *
 *   {"ts":1717171717123.456,"event":"task_end","rank":0,"action":1,"stage":0,...}
 *
 *   field   type     meaning
 *   ts      number   wall-clock time, milliseconds since the Unix epoch, 3 decimals (microseconds)
 *   event   string   the event type
 *   rank    number   the rank that wrote the line (the leader); an event whose own fields carry "rank" (task
 *                    events: the rank that ran the task) keeps only that one, so no line has a duplicate key
 *   ...     any      the event's own fields
 *
 * All functions are LOCAL and thread-safe.
 */
#ifndef EM_RUNTIME_EVENTS_H
#define EM_RUNTIME_EVENTS_H

#include <stddef.h>

/* Opens the event log of this run for appending: cfg path if non-empty, else $EMBER_HOME/events/<app-id>.jsonl
 * (EMBER_HOME default ~/.ember; app-id = "app-YYYYMMDDHHMMSS-<pid of rank 0>" built by the caller and passed in);
 * dirs created 0700, the file 0600. Only the leader writes: on a rank that does not lead (as told by
 * em__events_set_leader) the file is opened when the rank first writes as a leader, and a new leader appends to
 * the same file. Calling it again with the same path is a no-op. Returns 0, EM_EINVAL (bad app id, path too long)
 * or EM_EIO (cannot create a directory or the file); the message is logged and in em_last_error(). */
int em__events_open(const char *path, const char *app_id, int rank);

/* Writes one line {"ts":<ms since epoch, with 3 decimals>,"event":"<type>","rank":<rank>, ...fields}\n where
 * fields is printf-formatted JSON members WITHOUT surrounding braces, e.g.
 * em__event("task_end", "\"stage\":%d,\"part\":%d,\"records_out\":%lld", s, p, (long long)n);
 * fmt may be NULL/"" for no fields. Thread-safe; whole lines per write(2) with O_APPEND (task events batched, see
 * above); no-op when not open or when this rank does not lead. */
void em__event(const char *type, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Escapes a string for use inside a JSON string literal (quotes, backslash, control bytes, invalid UTF-8 as \u00XX);
 * returns a pointer to a thread-local buffer valid until the next call on this thread. (The buffers rotate among
 * 8, so up to 8 calls may appear in the arguments of one em__event.) NULL gives "". */
const char *em__json_str(const char *s);

/* Length of the valid UTF-8 sequence at s (RFC 3629: no overlong forms, no surrogates, at most U+10FFFF; n bytes
 * available), or 0 if the bytes there are not one. Shared with the event log reader of `ember history`. */
size_t em__utf8_len(const unsigned char *s, size_t n);

/* Path of the open log ("" if none). */
const char *em__events_path(void);

/* At finalize: closes the log and compresses it with zlib (appends a gzip member to PATH.gz, then removes PATH)
 * when it is larger than EM__EVENTS_GZIP_BYTES. Later em__event calls are no-ops. */
void em__events_close(void);
#define EM__EVENTS_GZIP_BYTES (8 << 20) /* bytes */

/* Leadership as seen by this rank (membership.c calls it whenever the leader changes). Until it is first called
 * (unit tests, tools) the log writes as if this rank led. */
void em__events_set_leader(int is_leader);

/* The lowest-level writer, for tests: formats one line into buf (NUL-terminated, '\n' included); returns its length
 * or -1 if it does not fit. ts_ms < 0 means now. */
int em__event_format(char *buf, size_t cap, double ts_ms, int rank, const char *type, const char *fields);

#endif
