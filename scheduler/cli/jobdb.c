/*
 * jobdb.c — the job queue's state in SQLite under $EMBER_HOME, and how a running job's end is turned into its
 * final state (shared DESIGN.md section 9; the layout of $EMBER_HOME and the job's processes are in jobdb.h).
 *
 * Tables (queue.db, WAL mode, busy timeout; every writer that allocates or launches uses BEGIN IMMEDIATE or a
 * single conditional UPDATE, so two processes can never both move one job out of a state):
 *
 *   jobs   id INTEGER PRIMARY KEY AUTOINCREMENT (never reused), name, user, state (PD R CD F CA TO), reason,
 *          priority, np, hostfile, time_limit (s, 0 none), cwd, argv (NUL-terminated strings), env (the submitter's
 *          environment, same encoding), backend (local|slurm), slurm_id, submit_ms/start_ms/end_ms (epoch ms),
 *          exit_code (NULL until known), pid/pstart (shepherd, its /proc start time), pgid/pgstart (the job's
 *          session leader), cancel_req
 *   deps   (job, dep): job runs only after dep completed (CD); Slurm's afterok
 *   meta   key/value settings of the running daemon: slots, hostfile, grace
 *
 * The result file a shepherd leaves in jobs/<id>/result when the job ends (written to a temporary name and
 * renamed, so it is whole or absent):
 *
 *   +-------------+----------------------------------------------+--------------------------------------+
 *   | kind        | meaning                                      | final state (reason)                 |
 *   +-------------+----------------------------------------------+--------------------------------------+
 *   | exit N      | ember run exited N (128+S if killed by S)    | CD if N = 0, else F (NonZeroExitCode)|
 *   | term N      | the shepherd was told to stop the job        | CA (Cancelled) if cancel requested   |
 *   | timeout N   | --time expired; SIGTERM, SIGKILL after grace | TO (TimeLimit)                       |
 *   | launchfail N| the shepherd could not start the job         | F (LaunchFailed)                     |
 *   | notstarted 0| the daemon died before saying "go"           | PD again: the job never ran          |
 *   | (absent)    | the shepherd died without a word             | F (JobLost)                          |
 *   +-------------+----------------------------------------------+--------------------------------------+
 *   A requested cancel turns any kind but timeout and notstarted into CA.
 */
#include "scheduler/cli/jobdb.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BUSY_TIMEOUT_MS 30000 /* how long a writer waits for another one (many concurrent submits) */

/* ---- $EMBER_HOME ------------------------------------------------------------------------------------------- */

const char *em__home(const char *who)
{
    static char home[PATH_MAX];
    if (home[0])
        return home;
    const char *h = getenv("EMBER_HOME");
    if (h && *h) {
        /* Made absolute: the daemon works in / and must find the same place. */
        char cwd[PATH_MAX];
        int n = h[0] == '/' ? snprintf(home, sizeof home, "%s", h)
                : getcwd(cwd, sizeof cwd) ? snprintf(home, sizeof home, "%s/%s", cwd, h)
                                          : (int)sizeof home;
        if (n >= (int)sizeof home) {
            fprintf(stderr, "%s: EMBER_HOME is too long\n", who);
            home[0] = '\0';
            return NULL;
        }
    } else {
        const char *u = getenv("HOME");
        if (!u || !*u) {
            struct passwd *pw = getpwuid(getuid());
            u = pw ? pw->pw_dir : NULL;
        }
        if (!u || !*u) {
            fprintf(stderr, "%s: cannot find a home directory: set EMBER_HOME\n", who);
            return NULL;
        }
        if (snprintf(home, sizeof home, "%s/.ember", u) >= (int)sizeof home) {
            fprintf(stderr, "%s: home directory path is too long: set EMBER_HOME\n", who);
            home[0] = '\0';
            return NULL;
        }
    }
    /* Trailing slashes would double up in every path we build. */
    for (size_t n = strlen(home); n > 1 && home[n - 1] == '/'; n--)
        home[n - 1] = '\0';
    return home;
}

static int mkdir_0700(const char *who, const char *path)
{
    struct stat st;
    if (mkdir(path, 0700) == 0)
        return 0;
    if (errno == EEXIST && stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return 0;
    fprintf(stderr, "%s: cannot create directory %s: %s\n", who, path, errno == EEXIST ? "not a directory" : strerror(errno));
    return -1;
}

int em__home_make(const char *who)
{
    const char *home = em__home(who);
    if (!home)
        return -1;
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s", home);
    /* Missing parents too, like mkdir -p, each 0700: EMBER_HOME=/tmp/x/y must just work. */
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0700) < 0 && errno != EEXIST) {
            fprintf(stderr, "%s: cannot create directory %s: %s\n", who, p, strerror(errno));
            return -1;
        }
        *s = '/';
    }
    return mkdir_0700(who, p);
}

int em__home_path(char *buf, size_t len, const char *file)
{
    const char *home = em__home("ember");
    if (!home)
        return -1;
    return snprintf(buf, len, "%s/%s", home, file) < (int)len ? 0 : -1;
}

int em__job_path(char *buf, size_t len, long long id, const char *file)
{
    const char *home = em__home("ember");
    int n;
    if (!home || id <= 0)
        return -1;
    if (file)
        n = snprintf(buf, len, "%s/jobs/%lld/%s", home, id, file);
    else
        n = snprintf(buf, len, "%s/jobs/%lld", home, id);
    return n < (int)len ? 0 : -1;
}

int em__job_dir_make(const char *who, long long id)
{
    char p[PATH_MAX];
    if (em__home_path(p, sizeof p, "jobs") < 0 || mkdir_0700(who, p) < 0)
        return -1;
    if (em__job_path(p, sizeof p, id, NULL) < 0)
        return -1;
    return mkdir_0700(who, p);
}

/* ---- the database --------------------------------------------------------------------------------------- */

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS jobs("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, user TEXT NOT NULL,"
    " state TEXT NOT NULL, reason TEXT NOT NULL, priority INTEGER NOT NULL, np INTEGER NOT NULL, hostfile TEXT,"
    " time_limit INTEGER NOT NULL, cwd TEXT NOT NULL, argv BLOB NOT NULL, env BLOB NOT NULL,"
    " backend TEXT NOT NULL, slurm_id TEXT, submit_ms INTEGER NOT NULL, start_ms INTEGER NOT NULL DEFAULT 0,"
    " end_ms INTEGER NOT NULL DEFAULT 0, exit_code INTEGER, pid INTEGER NOT NULL DEFAULT 0,"
    " pstart INTEGER NOT NULL DEFAULT 0, pgid INTEGER NOT NULL DEFAULT 0, pgstart INTEGER NOT NULL DEFAULT 0,"
    " cancel_req INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS jobs_state ON jobs(state);"
    "CREATE TABLE IF NOT EXISTS deps(job INTEGER NOT NULL, dep INTEGER NOT NULL, PRIMARY KEY(job, dep));"
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT);";

static int db_err(em__jobdb *jdb, const char *what)
{
    fprintf(stderr, "%s: job database: %s: %s\n", jdb->who, what, sqlite3_errmsg(jdb->db));
    return -1;
}

int em__jobdb_exec(em__jobdb *jdb, const char *sql)
{
    char *msg = NULL;
    if (sqlite3_exec(jdb->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        fprintf(stderr, "%s: job database: %s\n", jdb->who, msg ? msg : sqlite3_errmsg(jdb->db));
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

int em__jobdb_open(em__jobdb *jdb, const char *who)
{
    char path[PATH_MAX];
    jdb->db = NULL;
    jdb->who = who;
    if (em__home_make(who) < 0)
        return -1;
    if (em__home_path(path, sizeof path, "queue.db") < 0) {
        fprintf(stderr, "%s: EMBER_HOME is too long\n", who);
        return -1;
    }
    /* Created here with 0600 so that SQLite, which gives -wal and -shm the database's mode, never makes a file
     * anyone else can read (it would use 0644). */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        fprintf(stderr, "%s: cannot open %s: %s\n", who, path, strerror(errno));
        return -1;
    }
    close(fd);
    if (sqlite3_open_v2(path, &jdb->db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK) {
        fprintf(stderr, "%s: cannot open %s: %s\n", who, path, jdb->db ? sqlite3_errmsg(jdb->db) : "out of memory");
        em__jobdb_close(jdb);
        return -1;
    }
    sqlite3_busy_timeout(jdb->db, BUSY_TIMEOUT_MS);
    /* Once the schema exists, opening is read-only: `ember queue` and `ember status` never wait for a writer or
     * an fsync. journal_mode is persistent in the file, so only the first open switches to WAL. */
    sqlite3_stmt *st = NULL;
    int have = 0;
    if (sqlite3_prepare_v2(jdb->db, "SELECT count(*) FROM sqlite_master WHERE name IN ('jobs', 'deps', 'meta')", -1,
                           &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        have = sqlite3_column_int(st, 0) == 3;
    sqlite3_finalize(st);
    if (em__jobdb_exec(jdb, "PRAGMA synchronous=FULL;") < 0) {
        em__jobdb_close(jdb);
        return -1;
    }
    if (have)
        return 0;
    if (em__jobdb_exec(jdb, "PRAGMA journal_mode=WAL;") < 0 || em__jobdb_exec(jdb, "BEGIN IMMEDIATE") < 0) {
        em__jobdb_close(jdb);
        return -1;
    }
    if (em__jobdb_exec(jdb, schema) < 0 || em__jobdb_exec(jdb, "COMMIT") < 0) {
        sqlite3_exec(jdb->db, "ROLLBACK", NULL, NULL, NULL);
        em__jobdb_close(jdb);
        return -1;
    }
    return 0;
}

void em__jobdb_close(em__jobdb *jdb)
{
    if (jdb->db)
        sqlite3_close(jdb->db);
    jdb->db = NULL;
}

static int bind_va(sqlite3_stmt *st, const char *fmt, va_list ap)
{
    for (int i = 0; fmt && fmt[i]; i++) {
        int rc;
        if (fmt[i] == 'i') {
            rc = sqlite3_bind_int64(st, i + 1, va_arg(ap, long long));
        } else {
            const char *s = va_arg(ap, const char *);
            rc = s ? sqlite3_bind_text(st, i + 1, s, -1, SQLITE_TRANSIENT) : sqlite3_bind_null(st, i + 1);
        }
        if (rc != SQLITE_OK)
            return -1;
    }
    return 0;
}

int em__jobdb_update(em__jobdb *jdb, const char *sql, const char *fmt, ...)
{
    sqlite3_stmt *st = NULL;
    va_list ap;
    if (sqlite3_prepare_v2(jdb->db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_err(jdb, "prepare");
    va_start(ap, fmt);
    int brc = bind_va(st, fmt, ap);
    va_end(ap);
    if (brc < 0 || sqlite3_step(st) != SQLITE_DONE) {
        db_err(jdb, "update");
        sqlite3_finalize(st);
        return -1;
    }
    sqlite3_finalize(st);
    return sqlite3_changes(jdb->db);
}

char *em__meta_get(em__jobdb *jdb, const char *key)
{
    sqlite3_stmt *st = NULL;
    char *v = NULL;
    if (sqlite3_prepare_v2(jdb->db, "SELECT value FROM meta WHERE key = ?", -1, &st, NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        v = strdup((const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return v;
}

int em__meta_set(em__jobdb *jdb, const char *key, const char *value)
{
    return em__jobdb_update(jdb, "INSERT OR REPLACE INTO meta(key, value) VALUES(?, ?)", "ss", key, value) < 0 ? -1
                                                                                                              : 0;
}

static char *blob_join(char *const *v, int n, size_t *len)
{
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += strlen(v[i]) + 1;
    char *b = malloc(total ? total : 1), *p = b;
    if (!b)
        return NULL;
    for (int i = 0; i < n; i++) {
        size_t l = strlen(v[i]) + 1;
        memcpy(p, v[i], l);
        p += l;
    }
    *len = total;
    return b;
}

/* NUL-terminated strings in a blob -> NULL-terminated argv (one allocation per string). */
static char **blob_split(const char *b, size_t len, int *n)
{
    int count = 0;
    for (size_t i = 0; i < len; i++)
        count += b[i] == '\0';
    char **v = calloc((size_t)count + 1, sizeof *v);
    if (!v)
        return NULL;
    size_t off = 0;
    for (int i = 0; i < count; i++) {
        v[i] = strdup(b + off);
        if (!v[i]) {
            for (int k = 0; k < i; k++)
                free(v[k]);
            free(v);
            return NULL;
        }
        off += strlen(b + off) + 1;
    }
    *n = count;
    return v;
}

int em__job_insert(em__jobdb *jdb, em__job *j, long long *bad_dep)
{
    extern char **environ;
    sqlite3_stmt *st = NULL;
    size_t alen = 0, elen = 0;
    int nenv = 0, rc = -1;
    while (environ[nenv])
        nenv++;
    char *argv_b = blob_join(j->argv, j->argc, &alen);
    char *env_b = blob_join(environ, nenv, &elen);
    if (!argv_b || !env_b) {
        fprintf(stderr, "%s: out of memory\n", jdb->who);
        goto out;
    }
    /* BEGIN IMMEDIATE takes the write lock now: the dependency check and the id allocation see one state. */
    if (em__jobdb_exec(jdb, "BEGIN IMMEDIATE") < 0)
        goto out;
    for (int i = 0; i < j->ndeps; i++) {
        if (sqlite3_prepare_v2(jdb->db, "SELECT 1 FROM jobs WHERE id = ?", -1, &st, NULL) != SQLITE_OK) {
            db_err(jdb, "prepare");
            goto rollback;
        }
        sqlite3_bind_int64(st, 1, j->deps[i]);
        int found = sqlite3_step(st) == SQLITE_ROW;
        sqlite3_finalize(st);
        st = NULL;
        if (!found) {
            *bad_dep = j->deps[i];
            rc = -2;
            goto rollback;
        }
    }
    if (sqlite3_prepare_v2(jdb->db,
                           "INSERT INTO jobs(name, user, state, reason, priority, np, hostfile, time_limit, cwd, argv,"
                           " env, backend, submit_ms) VALUES(?, ?, 'PD', 'None', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           -1, &st, NULL) != SQLITE_OK) {
        db_err(jdb, "prepare");
        goto rollback;
    }
    j->submit_ms = em__now_ms();
    sqlite3_bind_text(st, 1, j->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, j->user, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, j->priority);
    sqlite3_bind_int64(st, 4, j->np);
    if (j->hostfile)
        sqlite3_bind_text(st, 5, j->hostfile, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, j->time_limit);
    sqlite3_bind_text(st, 7, j->cwd, -1, SQLITE_STATIC);
    sqlite3_bind_blob(st, 8, argv_b, (int)alen, SQLITE_STATIC);
    sqlite3_bind_blob(st, 9, env_b, (int)elen, SQLITE_STATIC);
    sqlite3_bind_text(st, 10, j->backend, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 11, j->submit_ms);
    if (sqlite3_step(st) != SQLITE_DONE) {
        db_err(jdb, "insert");
        goto rollback;
    }
    sqlite3_finalize(st);
    st = NULL;
    j->id = sqlite3_last_insert_rowid(jdb->db);
    for (int i = 0; i < j->ndeps; i++)
        if (em__jobdb_update(jdb, "INSERT OR IGNORE INTO deps(job, dep) VALUES(?, ?)", "ii", j->id, j->deps[i]) < 0)
            goto rollback;
    if (em__jobdb_exec(jdb, "COMMIT") < 0)
        goto rollback;
    memcpy(j->state, "PD", 3);
    rc = 0;
    goto out;
rollback:
    sqlite3_finalize(st);
    sqlite3_exec(jdb->db, "ROLLBACK", NULL, NULL, NULL);
out:
    free(argv_b);
    free(env_b);
    return rc;
}

#define JOB_COLS                                                                                                 \
    "id, name, user, state, reason, priority, np, hostfile, time_limit, cwd, argv, backend, slurm_id, submit_ms,"  \
    " start_ms, end_ms, exit_code, pid, pstart, pgid, pgstart, cancel_req"

static char *col_str(sqlite3_stmt *st, int c)
{
    const unsigned char *t = sqlite3_column_text(st, c);
    return t ? strdup((const char *)t) : NULL;
}

static int load_deps(em__jobdb *jdb, em__job *j)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(jdb->db, "SELECT dep FROM deps WHERE job = ? ORDER BY dep", -1, &st, NULL) != SQLITE_OK)
        return db_err(jdb, "prepare");
    sqlite3_bind_int64(st, 1, j->id);
    while (sqlite3_step(st) == SQLITE_ROW) {
        long long *nd = realloc(j->deps, ((size_t)j->ndeps + 1) * sizeof *nd);
        if (!nd) {
            sqlite3_finalize(st);
            return -1;
        }
        j->deps = nd;
        j->deps[j->ndeps++] = sqlite3_column_int64(st, 0);
    }
    sqlite3_finalize(st);
    return 0;
}

static int job_from_row(em__jobdb *jdb, sqlite3_stmt *st, em__job *j, int want_env)
{
    memset(j, 0, sizeof *j);
    j->id = sqlite3_column_int64(st, 0);
    j->name = col_str(st, 1);
    j->user = col_str(st, 2);
    snprintf(j->state, sizeof j->state, "%s", (const char *)sqlite3_column_text(st, 3));
    j->reason = col_str(st, 4);
    j->priority = sqlite3_column_int64(st, 5);
    j->np = (long)sqlite3_column_int64(st, 6);
    j->hostfile = col_str(st, 7);
    j->time_limit = sqlite3_column_int64(st, 8);
    j->cwd = col_str(st, 9);
    j->argv = blob_split(sqlite3_column_blob(st, 10), (size_t)sqlite3_column_bytes(st, 10), &j->argc);
    j->backend = col_str(st, 11);
    j->slurm_id = col_str(st, 12);
    j->submit_ms = sqlite3_column_int64(st, 13);
    j->start_ms = sqlite3_column_int64(st, 14);
    j->end_ms = sqlite3_column_int64(st, 15);
    j->has_exit = sqlite3_column_type(st, 16) != SQLITE_NULL;
    j->exit_code = (int)sqlite3_column_int64(st, 16);
    j->pid = sqlite3_column_int64(st, 17);
    j->pstart = sqlite3_column_int64(st, 18);
    j->pgid = sqlite3_column_int64(st, 19);
    j->pgstart = sqlite3_column_int64(st, 20);
    j->cancel_req = (int)sqlite3_column_int64(st, 21);
    if (want_env) {
        int n = sqlite3_column_bytes(st, 22);
        j->env = malloc((size_t)n + 1);
        if (j->env) {
            if (n)
                memcpy(j->env, sqlite3_column_blob(st, 22), (size_t)n);
            j->env_len = (size_t)n;
        }
    }
    if (!j->name || !j->user || !j->reason || !j->cwd || !j->argv || !j->backend || (want_env && !j->env)) {
        fprintf(stderr, "%s: out of memory\n", jdb->who);
        return -1;
    }
    return load_deps(jdb, j);
}

int em__job_get(em__jobdb *jdb, long long id, em__job *j, int want_env)
{
    sqlite3_stmt *st = NULL;
    const char *sql = want_env ? "SELECT " JOB_COLS ", env FROM jobs WHERE id = ?" : "SELECT " JOB_COLS " FROM jobs WHERE id = ?";
    memset(j, 0, sizeof *j);
    if (sqlite3_prepare_v2(jdb->db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_err(jdb, "prepare");
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        sqlite3_finalize(st);
        return 0;
    }
    if (rc != SQLITE_ROW) {
        db_err(jdb, "select");
        sqlite3_finalize(st);
        return -1;
    }
    rc = job_from_row(jdb, st, j, want_env);
    sqlite3_finalize(st);
    if (rc < 0) {
        em__job_release(j);
        return -1;
    }
    return 1;
}

int em__job_list(em__jobdb *jdb, const char *where, const char *order_by, em__job **out, int *n)
{
    char sql[1024];
    sqlite3_stmt *st = NULL;
    em__job *v = NULL;
    int count = 0, rc = -1;
    snprintf(sql, sizeof sql, "SELECT " JOB_COLS " FROM jobs%s%s%s%s", where ? " WHERE " : "", where ? where : "",
             order_by ? " ORDER BY " : "", order_by ? order_by : "");
    if (sqlite3_prepare_v2(jdb->db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_err(jdb, "prepare");
    for (;;) {
        int s = sqlite3_step(st);
        if (s == SQLITE_DONE)
            break;
        if (s != SQLITE_ROW) {
            db_err(jdb, "select");
            goto out;
        }
        em__job *nv = realloc(v, ((size_t)count + 1) * sizeof *nv);
        if (!nv)
            goto out;
        v = nv;
        if (job_from_row(jdb, st, &v[count], 0) < 0) {
            em__job_release(&v[count]);
            goto out;
        }
        count++;
    }
    rc = 0;
out:
    sqlite3_finalize(st);
    if (rc < 0) {
        em__job_list_free(v, count);
        v = NULL;
        count = 0;
    }
    *out = v;
    *n = count;
    return rc;
}

void em__job_release(em__job *j)
{
    if (!j)
        return;
    free(j->name);
    free(j->user);
    free(j->reason);
    free(j->hostfile);
    free(j->cwd);
    for (int i = 0; j->argv && i < j->argc; i++)
        free(j->argv[i]);
    free(j->argv);
    free(j->env);
    free(j->backend);
    free(j->slurm_id);
    free(j->deps);
    memset(j, 0, sizeof *j);
}

void em__job_list_free(em__job *jobs, int n)
{
    for (int i = 0; i < n; i++)
        em__job_release(&jobs[i]);
    free(jobs);
}

int em__state_final(const char *s)
{
    return strcmp(s, "CD") == 0 || strcmp(s, "F") == 0 || strcmp(s, "CA") == 0 || strcmp(s, "TO") == 0;
}

const char *em__state_long(const char *s)
{
    static const char *const map[][2] = {{"PD", "PENDING"},   {"R", "RUNNING"},    {"CD", "COMPLETED"},
                                         {"F", "FAILED"},     {"CA", "CANCELLED"}, {"TO", "TIMEOUT"}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(s, map[i][0]) == 0)
            return map[i][1];
    return "UNKNOWN";
}

/* ---- the end of a running job ----------------------------------------------------------------------------- */

int em__job_reconcile(em__jobdb *jdb, const em__job *j, char *msg, size_t msglen)
{
    char path[PATH_MAX], buf[256], kind[32] = "";
    int code = 0;
    long long end_ms = 0;
    if (msg && msglen)
        msg[0] = '\0';
    if (strcmp(j->state, "R") != 0 || strcmp(j->backend, "local") != 0 || j->pid == 0)
        return 0;
    if (em__proc_is((pid_t)j->pid, j->pstart))
        return 0;
    if (em__job_path(path, sizeof path, j->id, "result") < 0)
        return -1;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, buf, sizeof buf - 1);
        close(fd);
        buf[n > 0 ? n : 0] = '\0';
        if (sscanf(buf, "%31s %d %lld", kind, &code, &end_ms) != 3)
            kind[0] = '\0';
    }
    /* The shepherd is gone; whatever is left of the job must not hold slots we are about to give away. */
    if (j->pgid > 1)
        em__session_kill((pid_t)j->pgid, j->pgstart, SIGKILL);
    if (strcmp(kind, "notstarted") == 0) {
        /* The daemon died between launching the shepherd and telling it to go: the job never ran. */
        unlink(path);
        int rc = em__jobdb_update(jdb,
                                  "UPDATE jobs SET state = 'PD', reason = 'None', start_ms = 0, pid = 0, pstart = 0,"
                                  " pgid = 0, pgstart = 0 WHERE id = ? AND state = 'R' AND pid = ?",
                                  "ii", j->id, j->pid);
        if (msg)
            snprintf(msg, msglen, "job %lld was never started; pending again", j->id);
        return rc < 0 ? -1 : rc > 0;
    }
    const char *state, *reason;
    int has_code = kind[0] != '\0';
    if (!kind[0]) {
        state = "F", reason = "JobLost";
        end_ms = em__now_ms();
    } else if (strcmp(kind, "timeout") == 0) {
        state = "TO", reason = "TimeLimit";
    } else if (j->cancel_req) {
        state = "CA", reason = "Cancelled";
    } else if (strcmp(kind, "launchfail") == 0) {
        state = "F", reason = "LaunchFailed";
    } else if (strcmp(kind, "exit") == 0 && code == 0) {
        state = "CD", reason = "None";
    } else {
        state = "F", reason = "NonZeroExitCode";
    }
    int rc;
    if (has_code)
        rc = em__jobdb_update(jdb,
                              "UPDATE jobs SET state = ?, reason = ?, exit_code = ?, end_ms = ? WHERE id = ? AND"
                              " state = 'R' AND pid = ?",
                              "ssiiii", state, reason, (long long)code, end_ms, j->id, j->pid);
    else
        rc = em__jobdb_update(jdb, "UPDATE jobs SET state = ?, reason = ?, end_ms = ? WHERE id = ? AND state = 'R' AND pid = ?",
                              "ssiii", state, reason, end_ms, j->id, j->pid);
    if (msg) {
        if (has_code)
            snprintf(msg, msglen, "job %lld ended: %s (%s), exit status %d", j->id, state, reason, code);
        else
            snprintf(msg, msglen, "job %lld lost: its shepherd (pid %lld) died without a result; marked F", j->id, j->pid);
    }
    return rc < 0 ? -1 : rc > 0;
}
