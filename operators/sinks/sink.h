/* sink.h — output formats of save actions. A save action runs one task per partition; each task opens a
 * temporary part file through a sink, pushes its records, closes it; the leader renames the first successful
 * attempt of each partition to DIR/part-NNNNN and writes DIR/_SUCCESS last (scheduler/action.c).
 *
 * Sinks are found by name on the executor (no function pointer crosses the wire): add a row to the table in
 * sinks/sinks.c to add a format. */
#ifndef EM_OPERATORS_SINKS_SINK_H
#define EM_OPERATORS_SINKS_SINK_H

#include "ember.h"

typedef struct em__sink_ops {
    const char *name;
    /* Creates the part file `path` for partition `part`; args: the string given to em__save (may be ""). Sets
     * *state. Returns 0 or a negative code with em__fail's message. */
    int (*open)(void **state, const char *path, int part, const char *args);
    int (*push)(void *state, const em_rec *r);
    /* ok = 1: flush and fsync, return 0 or an error; ok = 0: the task failed, just release. Frees state. */
    int (*close)(void *state, int ok);
} em__sink_ops;

const em__sink_ops *em__sink_find(const char *name);

/* The save action: writes ds through the named sink into dir (part-NNNNN files, then _SUCCESS). Fails with
 * EM_EEXISTS when dir already holds _SUCCESS. COLLECTIVE. */
int em__save(em_ds *ds, const char *dir, const char *sink, const char *args);

/* Sinks defined elsewhere, listed in sinks.c. */
extern const em__sink_ops em__sink_text, em__sink_text_i64;

#endif
