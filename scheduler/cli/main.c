/*
 * main.c — the `ember` command: dispatches the verb in argv[1] through one table (shared DESIGN.md section 9).
 *
 * To add a verb: write `int em__cli_<verb>(int argc, char **argv)` in its own file (argv[0] is the verb), declare
 * it in cli.h and add a row to `verbs` below. Exit statuses: 0 success, 2 usage errors, otherwise the verb's own.
 */
#include "scheduler/cli/cli.h"

#include <stdio.h>
#include <string.h>

#define EMBER_CLI_VERSION "0.1.0"

struct verb {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
};

static const struct verb verbs[] = {
    {"run", em__cli_run, "run a job under mpirun with recovery; exit with the job's status"},
    {"submit", em__cli_submit, "queue a job for the scheduler; prints 'Submitted job <id>'"},
    {"queue", em__cli_queue, "list pending, running and recently ended jobs (like squeue)"},
    {"status", em__cli_status, "show one job in full: command, times, exit status, logs"},
    {"cancel", em__cli_cancel, "cancel pending or running jobs"},
    {"logs", em__cli_logs, "print a job's stdout and stderr; -f follows it"},
    {"scheduler", em__cli_scheduler, "start, stop or ask about the scheduler daemon"},
    {"history", em__cli_history, "summarize a run's event log (stages, skew, failures); --html draws a timeline"},
    {"log", em__cli_log, "create, append to, inspect and verify a streaming input log"},
};

static void usage(FILE *out)
{
    fputs("usage: ember <command> [ARGS...]\n"
          "       ember help | --help | --version\n"
          "\n"
          "commands:\n",
          out);
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        fprintf(out, "  %-10s %s\n", verbs[i].name, verbs[i].summary);
    fputs("  help       print this help\n"
          "\n"
          "'ember <command> --help' describes one command.\n",
          out);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        /* `ember help run` is `ember run --help`. */
        if (argc > 2)
            for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
                if (strcmp(argv[2], verbs[i].name) == 0) {
                    char *av[] = {argv[2], "--help", NULL};
                    return verbs[i].fn(2, av);
                }
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("ember %s\n", EMBER_CLI_VERSION);
        return 0;
    }
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (strcmp(cmd, verbs[i].name) == 0)
            return verbs[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "ember: unknown command '%s'\n", cmd);
    usage(stderr);
    return 2;
}
