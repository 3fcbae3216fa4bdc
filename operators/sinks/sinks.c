/* sinks.c — the table of output formats, looked up by name on the executor. */
#include "operators/sinks/sink.h"

#include <string.h>

extern const em__sink_ops em__sink_hdf5; /* sinks/hdf5.c */

static const em__sink_ops *const sinks[] = {&em__sink_text, &em__sink_text_i64, &em__sink_hdf5};

const em__sink_ops *em__sink_find(const char *name)
{
    for (size_t i = 0; i < sizeof sinks / sizeof sinks[0]; i++)
        if (strcmp(sinks[i]->name, name) == 0) return sinks[i];
    return NULL;
}
