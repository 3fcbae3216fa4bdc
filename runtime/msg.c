/* msg.c — messages of the runtime protocol: allocation and names (runtime/comm.h). No MPI here, so the runtime's
 * unit tests link it with their fake transport (tests/unit/fakecomm.c) instead of comm.c. */
#include "runtime/comm.h"
#include "runtime/log.h"

#include <stdlib.h>
#include <string.h>

static const char *msg_names[] = {
#define EM__MSG_NAME(name) #name,
    EM__MSG_TYPES(EM__MSG_NAME)
#undef EM__MSG_NAME
};

const char *em__msg_name(int type) { return type >= 0 && type < EM__MSG_NTYPES ? msg_names[type] : "UNKNOWN"; }

em__msg *em__msg_new(int type, size_t len)
{
    em__msg *m = em__malloc(sizeof *m + sizeof(em__msghdr) + len);
    memset(m, 0, sizeof *m + sizeof(em__msghdr));
    m->hdr = (em__msghdr *)m->data;
    m->payload = m->data + sizeof(em__msghdr);
    m->len = len;
    m->hdr->version = EM__PROTO_VERSION;
    m->hdr->type = (uint8_t)type;
    return m;
}

void em__msg_free(em__msg *m) { free(m); }
