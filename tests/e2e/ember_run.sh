#!/bin/sh
# `ember run` as a user drives it (shared DESIGN.md sections 6 and 9): the launch recipe, the job's real exit
# status through the status file, arguments passed without a shell, stdout byte for byte, Open MPI's noise
# removed from stderr, argument errors, signal forwarding. Jobs are imitated by fixtures/fake_job.sh.
. "$(dirname "$0")/lib.sh"
# This script checks the transports ember run chooses by itself.
unset OMPI_MCA_pml OMPI_MCA_btl
EMBER="${EMBER:-$BIN/ember}"
FIX="$ROOT/tests/e2e/fixtures"
JOB="$FIX/fake_job.sh"
cd "$TMP" || exit 1

# run T ARGS...: `ember run ARGS...` with a hard timeout; stdout to $TMP/out, stderr to $TMP/err, status in $rc.
run() {
  t=$1; shift
  timeout -k 5 "$t" "$EMBER" run "$@" >"$TMP/out" 2>"$TMP/err"
  rc=$?
}
# Open MPI noise that must never reach the user (see scheduler/cli/mpinoise.c).
noise() {
  grep -E 'PMIX ERROR|ORTE_ERROR_LOG|exited on signal|terminated normally, but|noticed that process rank|mpirun has exited due to|OpenFabrics|^-{74}$' "$1"
}

# --- the verb table and help
timeout 10 "$EMBER" >/dev/null 2>"$TMP/err"; check "ember without args exits 2" 2 $?
grep -q '^  run ' "$TMP/err" && pass "ember without args lists verbs on stderr" || fail "ember without args lists verbs on stderr"
timeout 10 "$EMBER" help >"$TMP/out" 2>/dev/null; check "ember help exits 0" 0 $?
grep -q '^  run ' "$TMP/out" && pass "ember help lists run on stdout" || fail "ember help lists run on stdout"
timeout 10 "$EMBER" --help >"$TMP/out2" 2>/dev/null; check_files "ember --help = ember help" "$TMP/out" "$TMP/out2"
timeout 10 "$EMBER" xyz >/dev/null 2>"$TMP/err"; check "unknown verb exits 2" 2 $?
check "unknown verb message" "ember: unknown command 'xyz'" "$(head -1 "$TMP/err")"
timeout 10 "$EMBER" run --help >"$TMP/out" 2>/dev/null; check "ember run --help exits 0" 0 $?
check "ember run --help usage line" "usage: ember run [-np N] [--hostfile F] PROGRAM [ARGS...]" "$(head -1 "$TMP/out")"
timeout 10 "$EMBER" --version >"$TMP/out"; check "ember --version" 0 $?
grep -q '^ember [0-9]' "$TMP/out" && pass "ember --version prints a version" || fail "ember --version prints a version"

# --- the job's status file decides the exit status
run 60 -np 2 "$JOB" exit 3
check "job reporting exit 3 -> exit 3" 3 "$rc"
run 60 -np 2 "$JOB" exit 0
check "job reporting exit 0 -> exit 0" 0 "$rc"
run 60 -np 2 "$JOB" running
check "job reporting only 'running' -> exit 1" 1 "$rc"
check "job reporting only 'running' -> message" "ember run: job ended without reporting a status" "$(cat "$TMP/err")"
run 60 -np 3 "$JOB" env
check "EMBER_STATUS_FILE reaches every rank" 3 "$(grep -c '^rank [0-2] status=/.*/status$' "$TMP/out")"
sf=$(sed -n 's/^rank 0 status=//p' "$TMP/out")
[ -n "$sf" ] && [ ! -e "$sf" ] && [ ! -e "$(dirname "$sf")" ] && pass "status directory removed at the end" \
  || fail "status directory removed at the end"

# --- plain programs (no status file): mpirun's own status
run 60 -np 2 hostname
check "ember run -np 2 hostname -> 0" 0 "$rc"
check "ember run -np 2 hostname prints two lines" "$(hostname; hostname)" "$(cat "$TMP/out")"
run 60 -np 2 true
check "ember run true -> 0" 0 "$rc"
# Not Ember jobs, so launched without the recovery recipe: the first failing rank's status is the job's.
run 60 -np 2 false
check "ember run false -> 1" 1 "$rc"
run 60 -np 2 sh -c 'exit 3'
check "ember run sh -c 'exit 3' -> 3" 3 "$rc"
run 60 -np 2 sh -c 'kill -KILL $$'
check "ember run of a program killed by SIGKILL -> 137" 137 "$rc"
printf '#!/bin/sh\n# %s\nexec "$@"\n' "ember-job: launch with recovery (v1)" > "$TMP/wrap.sh"; chmod +x "$TMP/wrap.sh"
FAKE_MPIRUN_ARGS="$TMP/margs-plain" FAKE_MPIRUN_MODE="exit 0" EMBER_MPIRUN="$FIX/fake_mpirun.sh" run 20 -np 2 true
FAKE_MPIRUN_ARGS="$TMP/margs-wrap" FAKE_MPIRUN_MODE="exit 0" EMBER_MPIRUN="$FIX/fake_mpirun.sh" run 20 -np 2 "$TMP/wrap.sh" true
FAKE_MPIRUN_ARGS="$TMP/margs-job" FAKE_MPIRUN_MODE="exit 0" EMBER_MPIRUN="$FIX/fake_mpirun.sh" run 20 -np 2 "$BIN/wordcount"
FAKE_MPIRUN_ARGS="$TMP/margs-env" FAKE_MPIRUN_MODE="exit 0" EMBER_MPIRUN="$FIX/fake_mpirun.sh" run 20 -np 2 env A=1 "$BIN/wordcount"
check "recovery recipe: not for true; for a script carrying the marker; for an Ember binary; for env running one" \
  "0 1 1 1" "$(for f in plain wrap job env; do grep -c -x -- --enable-recovery "$TMP/margs-$f"; done | tr '\n' ' ' | sed 's/ $//')"
# mpirun's own non-zero status and death by signal, through a stand-in for mpirun.
export FAKE_MPIRUN_ARGS="$TMP/mpirun-args"
FAKE_MPIRUN_MODE="exit 5" EMBER_MPIRUN="$FIX/fake_mpirun.sh" run 20 -np 2 true
check "mpirun exit 5 is kept" 5 "$rc"
FAKE_MPIRUN_MODE="signal KILL" EMBER_MPIRUN="$FIX/fake_mpirun.sh" run 20 -np 2 true
check "mpirun killed by SIGKILL -> 137" 137 "$rc"
EMBER_MPIRUN=/nonexistent/mpirun run 20 -np 2 true
check "missing mpirun -> 127" 127 "$rc"

# --- the exact command line (recorded by the stand-in)
root_flag=""; [ "$(id -u)" = 0 ] && root_flag="--allow-run-as-root
"
FAKE_MPIRUN_MODE="exit 0" EMBER_MPIRUN="$FIX/fake_mpirun.sh" run 20 -np 4 prog_not_checked_here 2>/dev/null
FAKE_MPIRUN_MODE="exit 0" EMBER_MPIRUN="$FIX/fake_mpirun.sh" run 20 -np 4 "$JOB" a --ember-log-level=debug -np 9
exp="--enable-recovery
--mca
async_mpi_finalize
1
--mca
orte_allowed_exit_without_sync
1
${root_flag}--oversubscribe
--mca
pml
ob1
--mca
btl
self,vader
-x
EMBER_STATUS_FILE
-np
4
$JOB
a
--ember-log-level=debug
-np
9"
check "mpirun command line is the recipe; args after PROGRAM untouched" "$exp" "$(sed '$d' "$FAKE_MPIRUN_ARGS")"
check "on one host hwloc skips PCI discovery" "HWLOC_COMPONENTS=-pci,-linuxio" "$(cat "$FAKE_MPIRUN_ARGS.env")"
FAKE_MPIRUN_MODE="exit 0" EMBER_MPIRUN="$FIX/fake_mpirun.sh" HWLOC_COMPONENTS=-gl run 20 -np 2 "$JOB"
check "the user's HWLOC_COMPONENTS is left alone" "HWLOC_COMPONENTS=-gl" "$(cat "$FAKE_MPIRUN_ARGS.env")"
# Shared-memory transports only when every rank is on this host and the user chose none.
FAKE_MPIRUN_MODE="exit 0" EMBER_MPIRUN="$FIX/fake_mpirun.sh" OMPI_MCA_btl=self,tcp run 20 -np 2 "$JOB"
check "a transport chosen by the user (OMPI_MCA_btl) is left alone" 0 "$(grep -c '^pml$' "$FAKE_MPIRUN_ARGS")"
FAKE_MPIRUN_MODE="exit 0" EMBER_MPIRUN="$FIX/fake_mpirun.sh" SLURM_JOB_ID=7 run 20 -np 2 "$JOB"
check "inside a Slurm allocation (maybe several nodes) Open MPI chooses" 0 "$(grep -c '^pml$' "$FAKE_MPIRUN_ARGS")"
grep -q '^status=/.*/status$' "$FAKE_MPIRUN_ARGS" && pass "mpirun gets EMBER_STATUS_FILE in its env" \
  || fail "mpirun gets EMBER_STATUS_FILE in its env"
printf 'localhost slots=4\n' > "$TMP/hosts"
FAKE_MPIRUN_MODE="exit 0" EMBER_MPIRUN="$FIX/fake_mpirun.sh" run 20 --hostfile "$TMP/hosts" -n 2 "$JOB"
grep -qx -- "--hostfile" "$FAKE_MPIRUN_ARGS" && grep -qx "$TMP/hosts" "$FAKE_MPIRUN_ARGS" \
  && pass "--hostfile passed to mpirun" || fail "--hostfile passed to mpirun"
check "with a hostfile Open MPI chooses the transports" 0 "$(grep -c '^pml$' "$FAKE_MPIRUN_ARGS")"
check "with a hostfile hwloc finds PCI devices (network locality)" "HWLOC_COMPONENTS=unset" "$(cat "$FAKE_MPIRUN_ARGS.env")"
SLURM_NTASKS=7 FAKE_MPIRUN_MODE="exit 0" EMBER_MPIRUN="$FIX/fake_mpirun.sh" run 20 "$JOB"
check "default -np from SLURM_NTASKS" 7 "$(grep -A1 -x -- -np "$FAKE_MPIRUN_ARGS" | tail -1)"
(unset SLURM_NTASKS; FAKE_MPIRUN_MODE="exit 0" EMBER_MPIRUN="$FIX/fake_mpirun.sh" timeout 20 "$EMBER" run "$JOB")
check "default -np is the number of cores" "$(getconf _NPROCESSORS_ONLN)" "$(grep -A1 -x -- -np "$FAKE_MPIRUN_ARGS" | tail -1)"
FAKE_MPIRUN_MODE="exit 0" EMBER_MPIRUN="$FIX/fake_mpirun.sh" run 20 --np 3 "$JOB"
check "--np synonym" 3 "$(grep -A1 -x -- -np "$FAKE_MPIRUN_ARGS" | tail -1)"
unset FAKE_MPIRUN_ARGS

# --- no shell anywhere: arguments arrive literally
run 60 -np 2 "$JOB" args 'two words' "it's \"quoted\"" '$(touch pwned)' 'a; touch pwned2' '*' '' '`id`'
printf '<%s>\n' 'two words' "it's \"quoted\"" '$(touch pwned)' 'a; touch pwned2' '*' '' '`id`' > "$TMP/args.exp"
check_files "arguments passed through literally" "$TMP/args.exp" "$TMP/out"
[ ! -e pwned ] && [ ! -e pwned2 ] && pass "no shell expanded the arguments" || fail "no shell expanded the arguments"

# --- stdout byte for byte (1 MB, binary-safe: no trailing newline, NULs, CRs)
python3 -c 'import sys, random; r = random.Random(7); sys.stdout.buffer.write(bytes(r.getrandbits(8) for _ in range(1 << 20)))' > "$TMP/big"
run 120 -np 2 "$JOB" cat "$TMP/big"
check "1 MB stdout exit 0" 0 "$rc"
check_files "1 MB stdout passes through byte for byte" "$TMP/big" "$TMP/out"

# --- argument errors: exit 2 and one line naming the problem
for bad in 0 -1 x 2x '' 1.5; do
  run 10 -np "$bad" true
  check "-np '$bad' exits 2" 2 "$rc"
  check "-np '$bad' message" "ember run: -np: expected a positive integer, got '$bad'" "$(cat "$TMP/err")"
done
run 10 -n abc true
check "-n abc message" "ember run: -n: expected a positive integer, got 'abc'" "$(cat "$TMP/err")"
run 10 -np
check "-np without value exits 2" 2 "$rc"
run 10 -np 2 no_such_program_xyz
check "missing program exits 2" 2 "$rc"
check "missing program message" "ember run: no_such_program_xyz: not found" "$(cat "$TMP/err")"
run 10 -np 2 ./no/such/path
check "missing program path message" "ember run: ./no/such/path: not found" "$(cat "$TMP/err")"
run 10 --frobnicate true
check "unknown option exits 2" 2 "$rc"
run 10 -np 2
check "no PROGRAM exits 2" 2 "$rc"
printf '# cluster\nnode1 slots=2\n\nnode2 slots=two\n' > "$TMP/badhosts"
run 10 --hostfile "$TMP/badhosts" true
check "malformed hostfile exits 2" 2 "$rc"
grep -q "^ember run: $TMP/badhosts:4: " "$TMP/err" && pass "malformed hostfile message names file:line" \
  || { fail "malformed hostfile message names file:line"; cat "$TMP/err"; }
printf 'node1 slots=2 max_slots=4  # ok\nnode2\n' > "$TMP/goodhosts"
EMBER_MPIRUN="$FIX/fake_mpirun.sh" FAKE_MPIRUN_ARGS="$TMP/a" run 10 --hostfile "$TMP/goodhosts" true
check "well-formed hostfile accepted" 0 "$rc"
run 10 --hostfile "$TMP/nohosts" true
check "missing hostfile exits 2" 2 "$rc"
check "missing hostfile message" "ember run: --hostfile $TMP/nohosts: No such file or directory" "$(cat "$TMP/err")"

# --- a rank dies, the job recovers and reports success: exit 0 and no Open MPI noise
run 60 -np 4 "$JOB" kill1 0
check "rank 1 SIGKILLed, job reports exit 0 -> 0" 0 "$rc"
check "survivors' stdout" "3" "$(grep -c '^rank [023] done$' "$TMP/out")"
if noise "$TMP/err" >/dev/null; then fail "no Open MPI noise on stderr"; noise "$TMP/err" | head; else pass "no Open MPI noise on stderr"; fi
check "the job's own stderr lines are kept" 3 "$(grep -c '^\[r[023] exec\] WARN rank 1 lost, recovering$' "$TMP/err")"
run 60 -np 3 "$JOB" kill1 4
check "rank 1 SIGKILLed, job reports exit 4 -> 4" 4 "$rc"

# --- as a user would run it: none of lib.sh's Open MPI variables, 4 ranks on this machine
timeout -k 5 60 env -u OMPI_ALLOW_RUN_AS_ROOT -u OMPI_ALLOW_RUN_AS_ROOT_CONFIRM -u OMPI_MCA_rmaps_base_oversubscribe \
  "$EMBER" run -np 4 "$JOB" exit 6 >"$TMP/out" 2>"$TMP/err"
check "-np 4 without OMPI_* variables -> job's exit 6" 6 $?
if [ -s "$TMP/err" ]; then fail "-np 4 without OMPI_* variables: quiet stderr"; head "$TMP/err"; else pass "-np 4 without OMPI_* variables: quiet stderr"; fi
timeout -k 5 60 env -u OMPI_ALLOW_RUN_AS_ROOT -u OMPI_ALLOW_RUN_AS_ROOT_CONFIRM -u OMPI_MCA_rmaps_base_oversubscribe \
  "$EMBER" run -np 4 hostname >"$TMP/out" 2>"$TMP/err"
check "-np 4 hostname without OMPI_* variables" "0 4" "$? $(wc -l < "$TMP/out")"

# --- SIGTERM to ember run stops the job
"$EMBER" run -np 2 "$JOB" sleep 30 >"$TMP/out" 2>"$TMP/err" &
epid=$!
sleep 3
kill -TERM "$epid"
t0=$(date +%s)
wait "$epid"; rc=$?
t1=$(date +%s)
check "SIGTERM -> 128+15" 143 "$rc"
[ $((t1 - t0)) -lt 15 ] && pass "SIGTERM stops the job promptly" || fail "SIGTERM stops the job promptly"
sleep 1
if pgrep -f "$JOB sleep 30" >/dev/null; then fail "no rank left running after SIGTERM"; pkill -f "$JOB sleep 30"; else pass "no rank left running after SIGTERM"; fi

# --- how a real job ends: with status 0 under ember run on one host each rank leaves without MPI_Finalize (mpirun
# was told ranks may, and shared memory holds every message already sent); under plain mpirun it finalizes. (A
# failing job finalizes too; that path is not checked here.)
printf 'a b\nc\n' > "$TMP/small.txt"
run 60 -np 2 "$BIN/wordcount" --ember-log-level=debug "$TMP/small.txt"
check "a job ending 0 under ember run exits 0" 0 "$rc"
grep -qx 'total words: 3' "$TMP/out" && pass "... with its whole output" || fail "... with its whole output"
check "... and each rank leaves without MPI_Finalize" 2 "$(grep -c 'leaving without MPI_Finalize' "$TMP/err")"
OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader timeout -k 5 60 mpirun --oversubscribe --allow-run-as-root -np 2 \
  "$BIN/wordcount" --ember-log-level=debug "$TMP/small.txt" >"$TMP/out" 2>"$TMP/err"
check "a job under plain mpirun exits 0" 0 "$?"
check "... and finalizes MPI" 0 "$(grep -c 'leaving without MPI_Finalize' "$TMP/err")"
