/* hdf5util.h — what the HDF5 source (sources/hdf5.c) and sink (sinks/hdf5.c) share: one lock around every HDF5
 * call, and the compound row schema of em_save_hdf5 (DESIGN section 8). Private to those two files. */
#ifndef EM_OPERATORS_SOURCES_HDF5UTIL_H
#define EM_OPERATORS_SOURCES_HDF5UTIL_H

#include <hdf5.h>
#include <stddef.h>

/* The serial HDF5 library is not guaranteed thread-safe (Debian's is built without --enable-threadsafe), and
 * main(), the executor thread and a merge may call it at once: every HDF5 call of Ember runs under this lock.
 * Never hold it while pushing records downstream (a save sink takes it too). em__h5_lock also turns off
 * HDF5's automatic error printing: errors become Ember messages instead. */
void em__h5_lock(void);
void em__h5_unlock(void);

/* One member of a saved row: its name, type, and place in the packed row (the same layout in memory and file). */
typedef enum em__h5_ctype { EM__H5_I32, EM__H5_I64, EM__H5_F32, EM__H5_F64, EM__H5_STR } em__h5_ctype;
typedef struct em__h5_col {
    char name[256];
    em__h5_ctype type;
    size_t size; /* bytes */
    size_t off;  /* bytes from the row start */
} em__h5_col;
typedef struct em__h5_schema {
    int n;
    em__h5_col *col;
    size_t rowsize; /* bytes */
} em__h5_schema;

/* Parses "name:type,..." (see em_save_hdf5 in ember.h). Returns 0 or EM_EINVAL with a message in err. LOCAL. */
int em__h5_schema_parse(const char *text, em__h5_schema *s, char *err, size_t errlen);
void em__h5_schema_release(em__h5_schema *s);
/* The packed compound type of the schema (little-endian standard types; H5Tclose it). Call under the lock. */
hid_t em__h5_schema_type(const em__h5_schema *s);

#endif
