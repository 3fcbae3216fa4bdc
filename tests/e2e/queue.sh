#!/bin/sh
# The job queue as a user drives it (shared DESIGN.md section 9): ember submit/queue/status/cancel/logs and the
# scheduler daemon, with EMBER_HOME in a temporary directory. Facts are checked against the jobs' own records
# (each test job appends "start NAME NS" / "end NAME NS" lines to a file) and against queue.db read with
# python3's sqlite3 module, not only through the CLI. Failing jobs are imitated by fixtures/fake_job.sh (it
# writes the status file `ember run` reads). No daemon or job outlives the script (trap cleanup).
. "$(dirname "$0")/lib.sh"
EMBER="${EMBER:-$BIN/ember}"
FIX="$ROOT/tests/e2e/fixtures"
JOB="$FIX/fake_job.sh"
HOME2="$TMP/home2"
cd "$TMP" || exit 1

cleanup() {
  for h in "$EMBER_HOME" "$HOME2"; do
    [ -f "$h/queue.db" ] || continue
    # Every job's shepherd and session, then the daemon: nothing of ours may keep running.
    python3 - "$h/queue.db" <<'EOF' 2>/dev/null
import os, signal, sqlite3, sys
c = sqlite3.connect(sys.argv[1])
for pid, pgid in c.execute("SELECT pid, pgid FROM jobs WHERE state = 'R'"):
    for p in os.listdir('/proc'):
        if not p.isdigit(): continue
        try:
            st = open('/proc/%s/stat' % p).read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        if int(p) == pid or (pgid and int(st[3]) == pgid):
            try: os.kill(int(p), signal.SIGKILL)
            except OSError: pass
EOF
    EMBER_HOME="$h" timeout 15 "$EMBER" scheduler stop >/dev/null 2>&1
    p=$(cat "$h/scheduler.pid" 2>/dev/null) && [ -n "$p" ] && kill -9 "$p" 2>/dev/null
  done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# em ARGS...: the ember command with a hard timeout; stdout in $TMP/out, stderr in $TMP/err, status in $rc.
em() {
  timeout -k 5 60 "$EMBER" "$@" >"$TMP/out" 2>"$TMP/err"
  rc=$?
}
# submit ARGS...: ember submit; the new id in $id ("" if none).
submit() {
  em submit "$@"
  id=$(sed -n 's/^Submitted job \([0-9][0-9]*\)$/\1/p' "$TMP/out")
}
db() { python3 -c 'import sqlite3, sys
for r in sqlite3.connect(sys.argv[1]).execute(sys.argv[2]): print(*r, sep="|")' "$EMBER_HOME/queue.db" "$1"; }
# session_of ID: the session of a running job's processes (from `ember status`: "Pid: S (shepherd), B (job session)").
session_of() { field "$1" Pid | awk '{ print $3 }'; }
# wait_for SECONDS COMMAND...: polls COMMAND until it succeeds.
wait_for() {
  t=$1; shift; n=0
  while [ "$n" -lt $((t * 10)) ]; do "$@" && return 0; sleep 0.1; n=$((n + 1)); done
  return 1
}
# session_alive SID: some process still in session SID.
# session_alive SID: a live (not zombie) process is still in session SID after 3 s of polling.
session_alive() { ! wait_for 3 session_gone "$1"; }
session_gone() { ps -eo sid=,stat= | awk -v s="$1" '$1 == s && $2 !~ /^Z/ { f = 1 } END { exit f }'; }
# session_has SID COMM: a process named COMM runs in session SID.
session_has() { ps -eo sid=,comm= | awk -v s="$1" -v c="$2" '$1 == s && $2 == c { f = 1 } END { exit !f }'; }
# expect_error NAME RC PATTERN ARGS...: ember ARGS fails with status RC, nothing on stdout, one stderr line
# matching PATTERN.
expect_error() {
  name=$1; want=$2; pat=$3; shift 3
  em "$@"
  if [ "$rc" = "$want" ] && [ ! -s "$TMP/out" ] && grep -q -e "$pat" "$TMP/err"; then pass "$name"
  else fail "$name"; echo "  exit $rc (wanted $want), stdout: $(head -c 200 "$TMP/out")"; head -3 "$TMP/err"; fi
}

# A test job: appends "start NAME NS" and "end NAME NS" to LOG around SECONDS of sleep, once per rank.
cat > "$TMP/job.sh" <<'EOF'
#!/bin/sh
echo "start $2 $(date +%s%N)" >> "$1"
sleep "$3"
echo "end $2 $(date +%s%N)" >> "$1"
EOF
# A job held open by the test: "start NAME", then it waits until FILE exists, then "end NAME".
cat > "$TMP/gate.sh" <<'EOF'
#!/bin/sh
echo "start $2 $(date +%s%N)" >> "$1"
while [ ! -e "$3" ]; do sleep 0.1; done
echo "end $2 $(date +%s%N)" >> "$1"
EOF
chmod +x "$TMP/job.sh" "$TMP/gate.sh"
LOG="$TMP/events.log"; : > "$LOG"

# ---- bad input: a clear message, a non-zero status, and nothing queued or started ------------------------------
expect_error "unknown program" 2 "^ember submit: no_such_prog_xyz: not found$" submit no_such_prog_xyz
for bad in 0 -1 x '' 1.5; do
  expect_error "-np '$bad'" 2 "^ember submit: -np: expected a positive integer, got '$bad'$" submit -np "$bad" true
done
printf '# cluster\nnode1 slots=2\nnode2 slots=two\n' > "$TMP/badhosts"
expect_error "malformed hostfile names file:line" 2 "^ember submit: $TMP/badhosts:3: expected 'host \[slots=N\]'" \
  submit --hostfile "$TMP/badhosts" true
expect_error "missing hostfile" 2 "^ember submit: --hostfile $TMP/nohosts: No such file or directory$" \
  submit --hostfile "$TMP/nohosts" true
expect_error "name with ../" 2 "^ember submit: --name '../evil': not a valid job name: it contains '..'$" \
  submit --name ../evil true
expect_error "name with /" 2 "not a valid job name: it contains a slash" submit --name a/b true
expect_error "name too long" 2 "not a valid job name: it is longer than 64 bytes" \
  submit --name "$(printf 'x%.0s' $(seq 65))" true
expect_error "name with a control byte" 2 "not a valid job name" submit --name "$(printf 'a\tb')" true
expect_error "bad --time" 2 "^ember submit: --time: expected a time limit" submit --time 1:2:3:4 true
expect_error "bad --priority" 2 "^ember submit: --priority: expected an integer" submit --priority high true
expect_error "bad --after" 2 "^ember submit: --after: expected a job id, got '1;2'$" submit --after '1;2' true
expect_error "bad --backend" 2 "^ember submit: --backend: expected 'local' or 'slurm'" submit --backend pbs true
expect_error "--dry-run without slurm" 2 "^ember submit: --dry-run needs --backend slurm$" submit --dry-run true
expect_error "unknown submit option" 2 "^ember submit: unknown option '--frob'" submit --frob true
expect_error "submit without PROGRAM" 2 "^ember submit: missing PROGRAM$" submit -np 2
for verb in status cancel logs; do
  expect_error "$verb ../1" 2 "^ember $verb: '../1': not a job id (expected digits)$" "$verb" ../1
  expect_error "$verb 1x" 2 "^ember $verb: '1x': not a job id" "$verb" 1x
done
expect_error "scheduler --slots 0" 2 "^ember scheduler start: --slots: expected a positive integer, got '0'$" \
  scheduler start --slots 0
expect_error "scheduler with a malformed hostfile" 2 "^ember scheduler: $TMP/badhosts:3: " \
  scheduler start --hostfile "$TMP/badhosts"
expect_error "unknown scheduler subcommand" 2 "^ember scheduler: unknown subcommand 'restart'" scheduler restart
expect_error "unknown queue option" 2 "^ember queue: unknown option '-x'" queue -x
expect_error "unknown scheduler option" 2 "^ember scheduler start: unknown option '--cores'" scheduler start --cores 2
expect_error "scheduler status with an argument" 2 "^ember scheduler status: unexpected argument 'now'" scheduler status now
expect_error "status without an id" 2 "^usage: ember status ID" status
expect_error "cancel without an id" 2 "^usage: ember cancel ID" cancel
expect_error "logs with two ids" 2 "^ember logs: more than one job id ('1', '2')$" logs 1 2
expect_error "logs --stdout --stderr" 2 "^usage: ember logs" logs --stdout --stderr 1
touch "$TMP/afile"
EMBER_HOME="$TMP/afile/x" expect_error "EMBER_HOME under a file" 1 "^ember submit: cannot create directory $TMP/afile/x: " \
  submit true
mkdir -p "$TMP/h3/queue.db"
EMBER_HOME="$TMP/h3" expect_error "queue.db that is a directory" 1 "^ember queue: cannot open $TMP/h3/queue.db: Is a directory$" queue
em scheduler status
check "no daemon started by bad input" "1 scheduler not running" "$rc $(cat "$TMP/out")"
[ ! -e "$EMBER_HOME/queue.db" ] && pass "no job database created by bad input" || fail "no job database created by bad input"

# ---- many concurrent submits with no daemon: one daemon, distinct ids, none lost --------------------------------
MAIN=$EMBER_HOME; EMBER_HOME=$HOME2
N=12
i=1
while [ "$i" -le "$N" ]; do
  timeout 60 "$EMBER" submit --name "c$i" echo "c$i" >"$TMP/sub.$i" 2>&1 &
  i=$((i + 1))
done
wait
cat "$TMP"/sub.* | sed -n 's/^Submitted job \([0-9][0-9]*\)$/\1/p' | sort -n > "$TMP/ids"
check "$N concurrent submits each print 'Submitted job <id>'" "$N" "$(cat "$TMP"/sub.* | grep -c '^Submitted job [0-9][0-9]*$')"
check "$N concurrent submits get distinct ids" "$N" "$(sort -u "$TMP/ids" | wc -l)"
check "$N concurrent submits are all in the database" "$N" "$(db "SELECT count(DISTINCT name) FROM jobs WHERE name LIKE 'c%'")"
last=$(tail -1 "$TMP/ids")
wait_state "$last" "CD" 40
wait_for 10 test "$("$EMBER" queue --noheader | awk '$4 == "CD"' | wc -l)" = "$N"
check "all $N concurrent jobs completed" "$N" "$(db "SELECT count(*) FROM jobs WHERE name LIKE 'c%' AND state = 'CD'")"
ok=1
db "SELECT id, name FROM jobs WHERE name LIKE 'c%'" > "$TMP/names"
while IFS='|' read -r k nm; do
  [ "$("$EMBER" logs "$k")" = "$nm" ] || ok=0
done < "$TMP/names"
[ "$ok" = 1 ] && pass "each concurrent job printed its own name to its own log" || fail "each concurrent job printed its own name to its own log"

check "the racing submits started exactly one daemon" 1 "$(grep -c 'scheduler started' "$HOME2/scheduler.log")"

EMBER_HOME=$MAIN

# ---- the daemon -------------------------------------------------------------------------------------------------
em scheduler start --slots 2 --grace 2
check "scheduler start exit 0" 0 "$rc"
dpid=$(cat "$EMBER_HOME/scheduler.pid")
grep -q "^scheduler started (pid $dpid, 2 slots); log: $EMBER_HOME/scheduler.log$" "$TMP/out" \
  && pass "scheduler start reports pid and slots; the pid file agrees" || { fail "scheduler start reports pid and slots"; cat "$TMP/out"; }
check "the daemon left the caller's session" "1" "$([ "$(ps -o sid= -p "$dpid")" != "$(ps -o sid= -p $$)" ] && echo 1)"
em scheduler start --slots 2
check "a second start finds the running daemon" "scheduler already running (pid $dpid)" "$(cat "$TMP/out")"
em scheduler status
grep -q "^scheduler running (pid $dpid): 0 of 2 slots in use" "$TMP/out" && pass "scheduler status" \
  || { fail "scheduler status"; cat "$TMP/out"; }
check "EMBER_HOME is 0700" 700 "$(stat -c %a "$EMBER_HOME")"
check "queue.db, its WAL and the daemon's files are 0600" "600 600 600 600" \
  "$(stat -c %a "$EMBER_HOME/queue.db" "$EMBER_HOME/queue.db-wal" "$EMBER_HOME/scheduler.log" "$EMBER_HOME/scheduler.pid" | tr '\n' ' ' | sed 's/ $//')"
check "queue.db is in WAL mode" wal "$(db 'PRAGMA journal_mode')"
expect_error "-np beyond the slot budget" 2 "^ember submit: -np 3: more than the scheduler's 2 slots" submit -np 3 true
expect_error "--after an unknown job" 2 "^ember submit: --after 99999: no such job$" submit --after 99999 true
for verb in status cancel logs; do
  expect_error "$verb of an unknown id" 1 "^ember $verb: job 424242: no such job$" "$verb" 424242
done

# ---- priority, then FIFO, within 2 slots ----------------------------------------------------------------------------
submit -np 2 --name A "$TMP/gate.sh" "$LOG" A "$TMP/A.go"; A=$id
wait_state "$A" R 10
submit -np 2 --name B "$TMP/job.sh" "$LOG" B 0.5; B=$id
submit -np 2 --name C --priority 10 "$TMP/job.sh" "$LOG" C 0.5; C=$id
submit -np 1 --name D "$TMP/job.sh" "$LOG" D 0.5; D=$id
wait_for 5 test "$(field "$D" Reason)" = Priority
em queue
awk 'NR > 1 { print $2, $4, $7 }' "$TMP/out" | grep -E '^[ABCD] ' > "$TMP/q"
check "queue: running, then pending in start order with Slurm reasons" "A R None
C PD Resources
B PD Priority
D PD Priority" "$(cat "$TMP/q")"
check "queue header" "ID NAME USER ST TIME NP REASON" "$(head -1 "$TMP/out" | tr -s ' ' | sed 's/^ //')"
touch "$TMP/A.go"
wait_state "$D" CD 20
# Start/end times from the jobs themselves: order and the number of ranks running at any moment.
# t start|end NAME: the first start or the last end of job NAME's ranks.
t() { awk -v e="$1" -v n="$2" '$1 == e && $2 == n { if (v == "" || (e == "start" ? $3 < v : $3 > v)) v = $3 } END { print v }' "$LOG"; }
# C (priority 10) before B, B before D (FIFO), and D (1 rank) not squeezed in beside C or B (no backfill).
[ "$(t end A)" -le "$(t start C)" ] && [ "$(t end C)" -le "$(t start B)" ] && [ "$(t end B)" -le "$(t start D)" ] \
  && pass "jobs started in priority, then FIFO order" \
  || { fail "jobs started in priority, then FIFO order"; sort -k3 "$LOG"; }
peak=$(awk '{ print $3, ($1 == "start") ? 1 : -1 }' "$LOG" | sort -n | awk '{ c += $2; if (c > m) m = c } END { print m }')
check "never more than 2 ranks at once (slot budget)" 2 "$peak"

# ---- dependencies --------------------------------------------------------------------------------------------------
: > "$LOG"
submit --name H "$TMP/gate.sh" "$LOG" H "$TMP/H.go"; H=$id
submit --name I --after "$H" "$TMP/job.sh" "$LOG" I 0.1; I=$id
submit --name E "$JOB" exit 3; E=$id
submit --name F --after "$E" true; F=$id
submit --name G --after "$F" --after "$H" true; G=$id
wait_for 5 test "$(field "$I" Reason)" = Dependency
check "a job waiting for a running one: PD Dependency" "PD Dependency" "$(state "$I") $(field "$I" Reason)"
touch "$TMP/H.go"
wait_state "$I" CD 15
[ "$(t end H)" -le "$(t start I)" ] && pass "--after: starts only after its dependency completed" \
  || { fail "--after: starts only after its dependency completed"; cat "$LOG"; }
wait_state "$G" CA 10
check "failed job: F with its exit status" "F NonZeroExitCode 3" "$(state "$E") $(field "$E" Reason) $(field "$E" ExitStatus)"
check "dependency failed: CA DependencyNeverSatisfied" "CA DependencyNeverSatisfied" "$(state "$F") $(field "$F" Reason)"
check "dependency chain: CA DependencyNeverSatisfied" "CA DependencyNeverSatisfied" "$(state "$G") $(field "$G" Reason)"
check "a job whose dependency failed never ran" "- -" "$(field "$F" Started) $(field "$G" Started)"

# ---- a real Ember job through the queue: its answer and its event log ------------------------------------------
submit --wait -np 2 --name primes "$BIN/primecount" --limit 1e6; PC=$id
check "primecount -np 2 through the queue: CD" "0 CD" "$rc $(state "$PC")"
want=$(python3 -c 'n = 10**6; s = bytearray([1]) * n; s[0] = s[1] = 0
for i in range(2, int(n ** 0.5) + 1):
    if s[i]: s[i * i::i] = bytes(len(range(i * i, n, i)))
print(sum(s))')
check "primecount's answer in its log (python sieve)" "primes in [0, 1000000): $want" "$("$EMBER" logs --stdout "$PC")"
python3 - "$EMBER_HOME/jobs/$PC/events.jsonl" <<'EOF' && pass "the job wrote its event log where status says" || fail "the job wrote its event log where status says"
import json, sys
events = [json.loads(line) for line in open(sys.argv[1])]
assert events and all(isinstance(e, dict) for e in events)
EOF

# ---- cancel ------------------------------------------------------------------------------------------------------
submit -np 2 --name J "$JOB" sleep 30; J=$id
wait_state "$J" R 10
sidJ=$(session_of "$J")
wait_for 5 session_has "$sidJ" sleep
t0=$(date +%s)
em cancel "$J"
check "cancel a running job: exit 0, quiet" "0" "$rc$(cat "$TMP/out")"
check "cancelled running job: CA Cancelled" "CA Cancelled" "$(state "$J") $(field "$J" Reason)"
[ $(($(date +%s) - t0)) -le 8 ] && pass "cancel returns once the job is gone" || fail "cancel returns once the job is gone"
session_alive "$sidJ" && fail "no process of the cancelled job is left" || pass "no process of the cancelled job is left"
# A job that ignores SIGTERM (sleep inherits the ignored signal) gets SIGKILL after the 2 s grace.
cat > "$TMP/stubborn.sh" <<'EOF'
#!/bin/sh
trap '' TERM
echo stubborn
sleep 30
EOF
chmod +x "$TMP/stubborn.sh"
submit -np 1 --name K "$TMP/stubborn.sh"; K=$id
wait_state "$K" R 10
wait_for 5 grep -q stubborn "$EMBER_HOME/jobs/$K/stdout" 2>/dev/null
sidK=$(session_of "$K")
t0=$(date +%s)
em cancel "$K"
el=$(($(date +%s) - t0))
check "cancel a job ignoring SIGTERM: CA" "0 CA" "$rc $(state "$K")"
[ "$el" -ge 1 ] && [ "$el" -le 12 ] && pass "SIGKILL follows after the grace period (${el}s)" || fail "SIGKILL follows after the grace period (${el}s)"
session_alive "$sidK" && fail "nothing of the SIGTERM-ignoring job is left" || pass "nothing of the SIGTERM-ignoring job is left"
# A pending job just leaves the queue.
submit -np 2 --name L "$JOB" sleep 30; L=$id
wait_state "$L" R 10
submit -np 1 --name M "$TMP/job.sh" "$LOG" M 0; M=$id
# A job whose working directory is gone by the time it starts fails with a message in its stderr.
mkdir "$TMP/gone" && cd "$TMP/gone" && submit --name gone true; GONE=$id; cd "$TMP" && rmdir "$TMP/gone"
# A job whose directory cannot be made (a file is in the way) fails to launch, once, and is not retried.
submit --name nodir true; NODIR=$id; : > "$EMBER_HOME/jobs/$NODIR"
wait_for 5 test "$(field "$M" Reason)" = Resources
check "job behind a full budget: PD Resources" "PD Resources" "$(state "$M") $(field "$M" Reason)"
em cancel "$M"
check "cancel a pending job: CA at once" "0 CA Cancelled" "$rc $(state "$M") $(field "$M" Reason)"
em cancel "$L"
wait_state "$GONE" "F CD" 10
check "a job whose directory vanished: F, exit status 126" "F 126" "$(state "$GONE") $(field "$GONE" ExitStatus)"
check "... and its stderr says why" "ember: job $GONE: cannot enter $TMP/gone: No such file or directory" "$("$EMBER" logs --stderr "$GONE" 2>&1)"
wait_state "$NODIR" "F CD" 10
check "a job whose directory cannot be made: F LaunchFailed" "F LaunchFailed" "$(state "$NODIR") $(field "$NODIR" Reason)"
check "... logged once" 1 "$(grep -c "job $NODIR: launch failed (cannot create its job directory)" "$EMBER_HOME/scheduler.log")"
rm -f "$EMBER_HOME/jobs/$NODIR"
sleep 0.5
check "a cancelled pending job never ran" "" "$(grep ' M ' "$LOG")"
[ ! -e "$EMBER_HOME/jobs/$M" ] && pass "a cancelled pending job has no job directory" || fail "a cancelled pending job has no job directory"
expect_error "cancel a finished job" 1 "^ember cancel: job $M already ended (CA)$" cancel "$M"

# ---- time limit ---------------------------------------------------------------------------------------------------
submit --name N --time 0:02 "$JOB" sleep 30; N=$id
wait_state "$N" "TO CD F CA" 15
check "--time 0:02 on a 30 s job: TO TimeLimit" "TO TimeLimit" "$(state "$N") $(field "$N" Reason)"
rt=$(field "$N" RunTime | awk -F: '{ print $1 * 60 + $2 }')
[ "$rt" -ge 2 ] && [ "$rt" -le 10 ] && pass "stopped at its limit (ran ${rt}s)" || fail "stopped at its limit (ran ${rt}s)"
check "status shows the limit" "0:02" "$(field "$N" TimeLimit)"
em queue
check "queue shows TO with its run time" "N TO 0:0" "$(awk -v i="$N" '$1 == i { print $2, $4, substr($5, 1, 3) }' "$TMP/out")"

# ---- logs, arguments, environment ------------------------------------------------------------------------------------
submit --name out sh -c 'echo to-stdout; echo to-stderr >&2; echo "$EMBER_EVENT_LOG"; echo "job=$EMBER_JOB_ID"'; O=$id
wait_state "$O" CD 10
em logs "$O"
check "logs: the job's stdout on stdout" "to-stdout
$EMBER_HOME/jobs/$O/events.jsonl
job=$O" "$(cat "$TMP/out")"
check "logs: the job's stderr on stderr" "to-stderr" "$(cat "$TMP/err")"
em logs --stderr "$O"
check "logs --stderr" "|to-stderr" "$(cat "$TMP/out")|$(cat "$TMP/err")"
check "status names the event log the job was given" "$EMBER_HOME/jobs/$O/events.jsonl" "$(field "$O" EventLog)"
check "status names the log files" "$EMBER_HOME/jobs/$O/stdout $EMBER_HOME/jobs/$O/stderr" "$(field "$O" StdOut) $(field "$O" StdErr)"
check "status: command, exit status" "ember run -np 1 sh -c 'echo to-stdout; echo to-stderr >&2; echo \"\$EMBER_EVENT_LOG\"; echo \"job=\$EMBER_JOB_ID\"' 0" \
  "$(field "$O" Command) $(field "$O" ExitStatus)"
check "job files are 0600" "600 600" "$(stat -c %a "$EMBER_HOME/jobs/$O/stdout" "$EMBER_HOME/jobs/$O/stderr" | tr '\n' ' ' | sed 's/ $//')"
submit --name args "$JOB" args 'two words' "it's \"q\"" '$(touch pwned)' 'a; touch pwned2' '*' '' '`id`'; P=$id
wait_state "$P" CD 10
printf '<%s>\n' 'two words' "it's \"q\"" '$(touch pwned)' 'a; touch pwned2' '*' '' '`id`' > "$TMP/args.exp"
"$EMBER" logs "$P" > "$TMP/args.out"
check_files "arguments reach the job literally" "$TMP/args.exp" "$TMP/args.out"
[ ! -e pwned ] && [ ! -e pwned2 ] && [ ! -e "$ROOT/pwned" ] && pass "no shell expanded the arguments" || fail "no shell expanded the arguments"
# logs -f from before the job starts until it ends.
submit --name follow sh -c 'for i in 1 2 3; do echo line$i; sleep 0.4; done'; Q=$id
timeout 20 "$EMBER" logs -f "$Q" > "$TMP/follow.out" 2>&1
check "logs -f follows until the job ends" "0 line1 line2 line3" "$? $(tr '\n' ' ' < "$TMP/follow.out" | sed 's/ $//')"
check "logs -f returned when the job ended" "CD" "$(state "$Q")"
# logs never reads outside the job's own directory, whatever is planted there.
echo secret > "$TMP/secret"
mv "$EMBER_HOME/jobs/$O/stdout" "$TMP/saved" && ln -s "$TMP/secret" "$EMBER_HOME/jobs/$O/stdout"
em logs "$O"
if [ "$rc" = 1 ] && ! grep -q secret "$TMP/out" && grep -q "^ember logs: job $O: refusing to read" "$TMP/err"; then
  pass "logs refuses a symbolic link in place of a job's log"; else fail "logs refuses a symbolic link in place of a job's log"; cat "$TMP/out" "$TMP/err"; fi
rm -rf "${EMBER_HOME:?}/jobs/$O" && ln -s "$TMP" "$EMBER_HOME/jobs/$O" && cp "$TMP/secret" "$TMP/stdout"
em logs "$O"
[ "$rc" = 1 ] && ! grep -q secret "$TMP/out" && pass "logs refuses a symbolic link in place of a job's directory" \
  || { fail "logs refuses a symbolic link in place of a job's directory"; cat "$TMP/out" "$TMP/err"; }
rm -f "$EMBER_HOME/jobs/$O" "$TMP/stdout"

# ---- the daemon killed (SIGKILL) and restarted ------------------------------------------------------------------
: > "$LOG"
submit --name R1 "$TMP/gate.sh" "$LOG" R1 "$TMP/R1.go"; R1=$id
submit --name R2 "$TMP/job.sh" "$LOG" R2 0.5; R2=$id
submit --name R3 -np 2 "$TMP/job.sh" "$LOG" R3 0.2; R3=$id
wait_state "$R2" R 10
wait_for 5 grep -q 'start R2' "$LOG"
kill -9 "$(cat "$EMBER_HOME/scheduler.pid")"
wait_for 5 grep -q 'end R2' "$LOG"          # R2 ends while no daemon watches it
sleep 0.3
check "with the daemon gone, jobs keep their states" "R R PD" "$(state "$R1") $(state "$R2") $(state "$R3")"
em queue
grep -q "^ember queue: note: the scheduler is not running" "$TMP/err" && pass "queue notes that no scheduler runs" \
  || { fail "queue notes that no scheduler runs"; cat "$TMP/err"; }
timeout 10 "$EMBER" logs -f "$R2" >/dev/null 2>&1
check "logs -f of a job that ended while no daemon runs returns" "0 CD" "$? $(state "$R2")"
em scheduler start --slots 2 --grace 2
check "restart after SIGKILL" 0 "$rc"
grep -q "job $R1 still running: shepherd .* found again" "$EMBER_HOME/scheduler.log" \
  && pass "the restarted daemon finds the running job again" || { fail "the restarted daemon finds the running job again"; tail -5 "$EMBER_HOME/scheduler.log"; }
wait_state "$R2" CD 10
check "a job that ended while no daemon ran: CD, exit status 0" "CD 0" "$(state "$R2") $(field "$R2" ExitStatus)"
check "the job running across the restart is still R" "R" "$(state "$R1")"
touch "$TMP/R1.go"
wait_state "$R1" CD 10
check "the job running across the restart: CD" "CD 0" "$(state "$R1") $(field "$R1" ExitStatus)"
wait_state "$R3" CD 10
check "the job pending across the restart ran" "CD" "$(state "$R3")"
check "every job ran exactly once (R3 has 2 ranks)" "R1 1
R2 1
R3 2" "$(awk '$1 == "start" { n[$2]++ } END { for (k in n) print k, n[k] }' "$LOG" | sort)"
# A shepherd lost with the daemon: the job is marked failed, its processes killed, and it is not run again.
submit --name R4 "$JOB" sleep 30; R4=$id
wait_state "$R4" R 10
kill -9 "$(cat "$EMBER_HOME/scheduler.pid")"
shep=$(field "$R4" Pid | awk '{ print $1 }'); sid4=$(session_of "$R4")
kill -9 "$shep"
em scheduler start --slots 2 --grace 2
wait_state "$R4" "F CD CA" 10
check "a job whose shepherd vanished: F JobLost" "F JobLost" "$(state "$R4") $(field "$R4" Reason)"
sleep 0.3
session_alive "$sid4" && fail "the lost job's processes were killed" || pass "the lost job's processes were killed"
check "the lost job was not started again" "1" "$(grep -c "job $R4 started" "$EMBER_HOME/scheduler.log")"

# The daemon dying at the two delicate moments of a launch (fault injection): the job runs later, exactly once.
for fault in launch-before-pid launch-before-go; do
  em scheduler stop
  EMBER_SCHED_FAULT=$fault timeout 30 "$EMBER" scheduler start --slots 2 --grace 2 >/dev/null
  submit --name "$fault" "$TMP/job.sh" "$LOG" "$fault" 0; FJ=$id
  wait_for 10 test -z "$(em scheduler status; [ "$rc" = 1 ] || echo up)"
  check "$fault: the daemon died, the job is R" "R" "$(state "$FJ")"
  em scheduler start --slots 2 --grace 2
  wait_state "$FJ" "CD F" 10
  check "$fault: after a restart the job completes" "CD" "$(state "$FJ")"
  grep -q "job $FJ.* pending again" "$EMBER_HOME/scheduler.log" && pass "$fault: the restart put the job back in the queue" \
    || { fail "$fault: the restart put the job back in the queue"; tail -5 "$EMBER_HOME/scheduler.log"; }
  check "$fault: ... and ran exactly once" 1 "$(grep -c "^start $fault " "$LOG")"
done

# ---- --wait; a hostfile's slots; stop ------------------------------------------------------------------------------
EMBER_HOME=$HOME2
submit --wait "$JOB" exit 0
check "submit --wait: exit 0 after the job completed" "0 CD" "$rc $(state "$id")"
submit --wait "$JOB" exit 5
check "submit --wait exits with the job's status" "5" "$rc"
check "submit --wait says how the job ended" "ember submit: job $id ended FAILED (NonZeroExitCode), exit status 5" "$(cat "$TMP/err")"
submit --wait --time 0:01 "$JOB" sleep 20
check "submit --wait on a timed-out job" "1 ember submit: job $id ended TIMEOUT (TimeLimit)" "$([ "$rc" != 0 ] && echo 1) $(sed 's/, exit.*//' "$TMP/err")"
em scheduler stop
check "scheduler stop" "0 scheduler stopped (pid" "$rc $(cut -c1-22 "$TMP/out")"
em scheduler stop
check "scheduler stop when none runs" "0 scheduler not running" "$rc $(cat "$TMP/out")"
printf 'localhost slots=3 # three\n127.0.0.1\n' > "$TMP/hosts4"
em scheduler start --hostfile "$TMP/hosts4"
check "--hostfile: the budget is the sum of its slots" "scheduler started (pid N, 4 slots)" "$(sed 's/pid [0-9]*/pid N/; s/;.*//' "$TMP/out")"
# The job's exact launch, through a stand-in for mpirun given in the submitter's environment (jobs get it).
EMBER_MPIRUN="$FIX/fake_mpirun.sh" FAKE_MPIRUN_ARGS="$TMP/margs" FAKE_MPIRUN_MODE="exit 0" \
  timeout 30 "$EMBER" submit --wait -np 4 "$JOB" args -np 9 >/dev/null
hf=$(grep -x -A1 -- --hostfile "$TMP/margs" | tail -1)
rest=$(sed -n '/^EMBER_STATUS_FILE$/,$p' "$TMP/margs" | sed '1d; $d' | tr '\n' ' ' | sed 's/ $//')
check "a job runs as ember run -np N --hostfile F -- PROGRAM ARGS" "$TMP/hosts4 | -np 4 $JOB args -np 9" "$hf | $rest"
em scheduler stop
EMBER_HOME=$MAIN

# ---- the Slurm backend --------------------------------------------------------------------------------------------
em submit --backend slurm --dry-run -np 3 --name sj --time 1:30 --priority -5 "$JOB" args 'a b' "it's" '$(x)'
check "slurm dry run: exit 0" 0 "$rc"
cp "$TMP/out" "$TMP/script"
exe=$(readlink -f "$EMBER")
check "slurm script: directives" "#!/bin/sh
#SBATCH --job-name=sj
#SBATCH --ntasks=3
#SBATCH --output=$EMBER_HOME/jobs/<id>/stdout
#SBATCH --error=$EMBER_HOME/jobs/<id>/stderr
#SBATCH --chdir=$TMP
#SBATCH --time=0-00:01:30
#SBATCH --nice=5
#SBATCH --export=ALL" "$(grep -E '^#!|^#SBATCH' "$TMP/script")"
check "slurm script: runs the job through ember run, every word quoted" \
  "exec '$exe' run -np 3 -- '$JOB' 'args' 'a b' 'it'\\''s' '\$(x)'" "$(grep '^exec ' "$TMP/script")"
check "slurm dry run: nothing queued" "" "$("$EMBER" queue --all --noheader | awk '$2 == "sj"')"
# The script's shell reads the quoted words back exactly (run here without Slurm: -np 3 is explicit).
timeout 30 sh "$TMP/script" > "$TMP/sout" 2>/dev/null
printf '<%s>\n' 'a b' "it's" '$(x)' > "$TMP/sexp"
check_files "slurm script: the job gets its arguments back" "$TMP/sexp" "$TMP/sout"
# A real Slurm runs these jobs in tests/e2e/slurm.sh. Here: a PATH with no sbatch, installed or not (only the
# tools expect_error itself needs).
mkdir -p "$TMP/nosbatch"
for t in timeout grep head; do ln -sf "$(command -v "$t")" "$TMP/nosbatch/$t"; done
PATH="$TMP/nosbatch" expect_error "slurm backend without sbatch" 1 "^ember submit: --backend slurm: sbatch not found in PATH$" \
  submit --backend slurm "$JOB" exit 0
# Our side of the mapping, against stand-ins for sbatch/squeue/sacct/scancel that record what they were asked.
FS="$TMP/fakeslurm"; mkdir -p "$FS"
cat > "$FS/sbatch" <<'EOF'
#!/bin/sh
[ -e "${0%/*}/fail" ] && { echo "sbatch: error: Batch job submission failed: Invalid account" >&2; exit 1; }
echo "$@" >> "${0%/*}/calls"; echo 4242
EOF
cat > "$FS/squeue" <<'EOF'
#!/bin/sh
echo "squeue $*" >> "${0%/*}/calls"; cat "${0%/*}/squeue.out" 2>/dev/null
EOF
cat > "$FS/sacct" <<'EOF'
#!/bin/sh
echo "sacct $*" >> "${0%/*}/calls"; cat "${0%/*}/sacct.out" 2>/dev/null
EOF
cat > "$FS/scancel" <<'EOF'
#!/bin/sh
[ -e "${0%/*}/fail" ] && { echo "scancel: error: Kill job error on job id $1" >&2; exit 1; }
echo "scancel $*" >> "${0%/*}/calls"; echo 'CANCELLED|None|15' > "${0%/*}/squeue.out"
EOF
chmod +x "$FS"/*
echo 'RUNNING|None' > "$FS/squeue.out"
OLDPATH=$PATH; PATH="$FS:$PATH"
submit --backend slurm --name sl -np 2 "$JOB" exit 0; S1=$id
check "slurm backend (stand-in sbatch): Submitted job <id>" "0 1" "$rc $([ -n "$S1" ] && echo 1)"
check "sbatch --parsable gets the job's script" "--parsable $EMBER_HOME/jobs/$S1/job.sbatch" "$(head -1 "$FS/calls")"
check "the batch script is 0600" 600 "$(stat -c %a "$EMBER_HOME/jobs/$S1/job.sbatch")"
check "the Slurm id is stored" "4242" "$(db "SELECT slurm_id FROM jobs WHERE id = $S1")"
em queue
check "queue maps squeue's RUNNING to R" "sl R" "$(awk -v i="$S1" '$1 == i { print $2, $4 }' "$TMP/out")"
: > "$FS/squeue.out"; echo 'FAILED|3:0' > "$FS/sacct.out"
em status "$S1"
check "status maps sacct's FAILED 3:0 to F, exit status 3" "F (FAILED) 3 slurm (Slurm job 4242)" \
  "$(sed -n 's/^State: *//p; s/^ExitStatus: *//p; s/^Backend: *//p' "$TMP/out" | tr '\n' ' ' | sed 's/ $//')"
echo 'PENDING|Priority' > "$FS/squeue.out"
submit --backend slurm --name sl2 --after "$S1" true; S2=$id
check "--after a Slurm job becomes --dependency=afterok" "#SBATCH --dependency=afterok:4242" \
  "$(grep dependency "$EMBER_HOME/jobs/$S2/job.sbatch")"
em cancel "$S2"
check "cancel of a Slurm job runs scancel" "0 scancel 4242" "$rc $(grep '^scancel' "$FS/calls")"
expect_error "--after a local job with --backend slurm" 2 "not a Slurm job" submit --backend slurm --after "$O" true
expect_error "a local job --after a Slurm job" 2 "^ember submit: --after $S1: a Slurm job" submit --after "$S1" true
touch "$FS/fail"
em submit --backend slurm --name bad true
bad=$("$EMBER" queue --noheader | awk '$2 == "bad" { print $1 }')
if [ "$rc" = 1 ] && grep -q "^ember submit: sbatch $EMBER_HOME/jobs/$bad/job.sbatch failed (exit status 1)" "$TMP/err" \
  && grep -q "Invalid account" "$TMP/err"; then pass "sbatch failing: its message and exit 1"; else fail "sbatch failing: its message and exit 1"; cat "$TMP/err"; fi
check "sbatch failing: the job is F SbatchFailed" "F SbatchFailed" "$(state "$bad") $(field "$bad" Reason)"
expect_error "scancel failing" 1 "^ember cancel: job $S2: scancel 4242 failed$" cancel "$S2"
rm -f "$FS/fail"
PATH=$OLDPATH

# ---- the end ----------------------------------------------------------------------------------------------------
em help
grep -q '^  submit ' "$TMP/out" && grep -q '^  scheduler ' "$TMP/out" && pass "ember help lists the queue verbs" \
  || fail "ember help lists the queue verbs"
em scheduler stop
check "scheduler stop: the daemon is gone" "0 1" "$rc $(em scheduler status; echo "$rc")"
