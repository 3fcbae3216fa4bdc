/* config.c — the one table of Ember's settings (flags, environment, defaults) and --ember-help. DESIGN section 9. */
#include "runtime/config.h"

#include "ember.h"
#include "runtime/log.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { T_INT, T_SIZE, T_STR, T_LIST };
typedef struct opt {
    const char *name;
    int type;
    const char *def;
    const char *help;
    size_t off;
} opt;

static const opt opts[] = {
#define EM__OPT(field, name, type, def, help) {name, T_##type, def, help, offsetof(em__config, field)},
    EM__CONFIG_MAP(EM__OPT)
#undef EM__OPT
};
enum { NOPTS = sizeof opts / sizeof opts[0] };

int em__parse_size(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || errno || v < 0) return -1;
    double mul = 1;
    switch (toupper((unsigned char)*end)) {
    case 0: break;
    case 'K': mul = 1024.0; end++; break;
    case 'M': mul = 1024.0 * 1024; end++; break;
    case 'G': mul = 1024.0 * 1024 * 1024; end++; break;
    case 'T': mul = 1024.0 * 1024 * 1024 * 1024; end++; break;
    default: return -1;
    }
    if (*end == 'B' || *end == 'b') end++;
    if (*end) return -1;
    v *= mul;
    if (v > 9.2e18) return -1;
    *out = (int64_t)v;
    return 0;
}

static int set_opt(em__config *cfg, const opt *o, const char *val, const char *from)
{
    char *base = (char *)cfg + o->off;
    switch (o->type) {
    case T_INT: {
        char *end;
        errno = 0;
        long long v = strtoll(val, &end, 10);
        if (end == val || *end || errno || v < 0)
            return em__fail(EM_EINVAL, "%s: '%s' is not a non-negative integer", from, val);
        *(int64_t *)base = v;
        return 0;
    }
    case T_SIZE:
        if (em__parse_size(val, (int64_t *)base) < 0)
            return em__fail(EM_EINVAL, "%s: '%s' is not a size (e.g. 512M, 2G)", from, val);
        return 0;
    case T_STR:
        free(*(char **)base);
        *(char **)base = em__strdup(val);
        return 0;
    case T_LIST:
        if (!*val) return 0;
        if (cfg->nfault >= EM__MAX_FAULTS) return em__fail(EM_EINVAL, "%s: more than %d given", from, EM__MAX_FAULTS);
        cfg->fault[cfg->nfault++] = em__strdup(val);
        return 0;
    }
    return EM_EINVAL;
}

static void env_name(const char *flag, char *out, size_t n)
{
    snprintf(out, n, "EMBER_");
    size_t k = strlen(out);
    for (const char *p = flag; *p && k + 1 < n; p++) out[k++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    out[k] = 0;
}

int em__config_load(em__config *cfg, int *argc, char ***argv, int *help)
{
    int rc;
    memset(cfg, 0, sizeof *cfg);
    *help = 0;
    for (int i = 0; i < NOPTS; i++)
        if ((rc = set_opt(cfg, &opts[i], opts[i].def, "default")) < 0) return rc;
    const char *lv = getenv("EMBER_LOG");
    if (lv && *lv) set_opt(cfg, &opts[0], lv, "EMBER_LOG");
    for (int i = 0; i < NOPTS; i++) {
        char env[64];
        env_name(opts[i].name, env, sizeof env);
        const char *v = getenv(env);
        if (v && *v && (rc = set_opt(cfg, &opts[i], v, env)) < 0) return rc;
    }
    if (!argc || !argv) return 0;
    int out = 1;
    char **av = *argv;
    for (int i = 1; i < *argc; i++) {
        const char *a = av[i];
        if (strcmp(a, "--") == 0) { /* everything after belongs to the job */
            for (; i < *argc; i++) av[out++] = av[i];
            break;
        }
        if (strncmp(a, "--ember-", 8) != 0) { av[out++] = av[i]; continue; }
        const char *name = a + 8;
        if (strcmp(name, "help") == 0) { *help = 1; continue; }
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const opt *o = NULL;
        for (int k = 0; k < NOPTS; k++)
            if (strlen(opts[k].name) == nlen && strncmp(opts[k].name, name, nlen) == 0) o = &opts[k];
        if (!o) return em__fail(EM_EINVAL, "unknown flag %.*s (see --ember-help)", (int)(nlen + 8), a);
        const char *val = eq ? eq + 1 : NULL;
        if (!val) {
            if (i + 1 >= *argc) return em__fail(EM_EINVAL, "--ember-%s needs a value", o->name);
            val = av[++i];
        }
        char from[80];
        snprintf(from, sizeof from, "--ember-%s", o->name);
        if ((rc = set_opt(cfg, o, val, from)) < 0) return rc;
    }
    av[out] = NULL;
    *argc = out;
    if (em__log_parse_level(cfg->log_level) < 0)
        return em__fail(EM_EINVAL, "--ember-log-level: '%s' is not one of error, warn, info, debug", cfg->log_level);
    if (cfg->heartbeat_ms < 1 || cfg->timeout_ms < 2 * cfg->heartbeat_ms)
        return em__fail(EM_EINVAL, "--ember-timeout-ms (%lld) must be at least twice --ember-heartbeat-ms (%lld)",
                        (long long)cfg->timeout_ms, (long long)cfg->heartbeat_ms);
    if (cfg->max_task_failures < 1) return em__fail(EM_EINVAL, "--ember-max-task-failures must be at least 1");
    if (cfg->min_ranks < 1) return em__fail(EM_EINVAL, "--ember-min-ranks must be at least 1");
    if (strcmp(cfg->compress, "auto") && strcmp(cfg->compress, "none") && strcmp(cfg->compress, "zlib"))
        return em__fail(EM_EINVAL, "--ember-compress: '%s' is not one of auto, none, zlib", cfg->compress);
    if (strcmp(cfg->progress, "auto") && strcmp(cfg->progress, "on") && strcmp(cfg->progress, "off"))
        return em__fail(EM_EINVAL, "--ember-progress: '%s' is not one of auto, on, off", cfg->progress);
    return 0;
}

void em__config_release(em__config *cfg)
{
    for (int i = 0; i < NOPTS; i++)
        if (opts[i].type == T_STR) free(*(char **)((char *)cfg + opts[i].off));
    for (int i = 0; i < cfg->nfault; i++) free(cfg->fault[i]);
    memset(cfg, 0, sizeof *cfg);
}

void em__config_print_help(const em__config *cfg, void *file)
{
    FILE *f = file;
    fprintf(f, "Ember settings: --ember-NAME=VALUE (or --ember-NAME VALUE) on the job's command line,\n"
               "or the environment variable EMBER_NAME (upper case, '-' as '_'). Flags win.\n\n");
    fprintf(f, "%-26s %-28s %-8s %s\n", "flag", "environment", "default", "meaning (current value)");
    for (int i = 0; i < NOPTS; i++) {
        char env[64], flag[64], cur[128] = "";
        env_name(opts[i].name, env, sizeof env);
        snprintf(flag, sizeof flag, "--ember-%s", opts[i].name);
        const char *base = (const char *)cfg + opts[i].off;
        if (opts[i].type == T_INT || opts[i].type == T_SIZE) snprintf(cur, sizeof cur, "%lld", (long long)*(const int64_t *)base);
        else if (opts[i].type == T_STR) snprintf(cur, sizeof cur, "%s", *(char *const *)base ? *(char *const *)base : "");
        else snprintf(cur, sizeof cur, "%d given", cfg->nfault);
        fprintf(f, "%-26s %-28s %-8s %s (%s)\n", flag, env, *opts[i].def ? opts[i].def : "-", opts[i].help, cur);
    }
    fprintf(f, "\nFault injection (--ember-fault=SPEC, repeatable; deterministic):\n"
               "  ACTION:WHO[:WHEN...]  ACTION = kill (SIGKILL self) | exit (code=N, default 1) | stop (SIGSTOP,\n"
               "  resume-after-ms=N to be resumed); WHO = rank=N | leader; WHEN = stage=N, after-tasks=N,\n"
               "  during=map|shuffle|fetch|reduce|result, after-ms=N, action=N.\n"
               "  e.g. kill:rank=2:stage=1:after-tasks=3  kill:leader:during=shuffle  exit:rank=3:code=1:during=fetch\n");
}
