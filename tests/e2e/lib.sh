# Shared helpers for tests/mpi/*.sh and tests/e2e/*.sh (sourced, POSIX sh).
# A script reports each check as one line "PASS: name" or "FAIL: name" (counted by tests/run.sh).
# Comparisons are always against an independent computation (coreutils, awk, python3), never Ember itself.

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN="$ROOT/build/bin"
TMP=$(mktemp -d /tmp/ember-e2e.XXXXXX)
trap 'rm -rf "$TMP"' EXIT INT TERM
# Root and oversubscription, as `ember run` does for users: CI runs as root on 2 cores.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# Shared-memory transports, as `ember run` picks on one host: every plain mpirun here skips 0.2-0.8 s of probing.
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader
export EMBER_HOME="$TMP/ember-home"
# Under sanitizers Open MPI's own leaks flood LeakSanitizer's report.
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=0}"

pass() { echo "PASS: $1"; }
fail() { echo "FAIL: $1"; }

# check NAME EXPECTED ACTUAL
check() {
  if [ "$2" = "$3" ]; then pass "$1"; else fail "$1"; echo "  expected: $(printf '%s' "$2" | head -c 400)"; echo "  actual:   $(printf '%s' "$3" | head -c 400)"; fi
}

# check_files NAME EXPECTED_FILE ACTUAL_FILE
check_files() {
  if cmp -s "$2" "$3"; then pass "$1"; else fail "$1"; diff "$2" "$3" | head -20; fi
}

# mpirun_t SECONDS NP PROGRAM ARGS...: plain mpirun (no recovery recipe) with a hard timeout.
mpirun_t() {
  t=$1; np=$2; shift 2
  timeout -k 5 "$t" mpirun --oversubscribe --allow-run-as-root -np "$np" "$@"
}

# mpirun_ft SECONDS NP PROGRAM ARGS...: mpirun with the recovery recipe `ember run` uses (a rank's death is not
# the job's end), with a hard timeout.
mpirun_ft() {
  t=$1; np=$2; shift 2
  timeout -k 5 "$t" mpirun --enable-recovery --mca async_mpi_finalize 1 --mca orte_allowed_exit_without_sync 1 \
    --oversubscribe --allow-run-as-root -np "$np" "$@"
}

# usage_error PROG PATTERN ARGS...: runs the script's own `run 2 ARGS...` (which leaves the exit status in
# $TMP/rc and stderr in $TMP/err) and checks a usage error: status 2, nothing on stdout, exactly one
# "PROG: " line on stderr (printed once at np=2), and that line matches PATTERN.
usage_error() {
  prog=$1; pat=$2; shift 2
  out=$(run 2 "$@")
  rc=$(cat "$TMP/rc")
  lines=$(grep -c "^$prog: " "$TMP/err")
  named=$(grep "^$prog: " "$TMP/err" | grep -ce "$pat")
  if [ "$rc" = 2 ] && [ -z "$out" ] && [ "$lines" = 1 ] && [ "$named" = 1 ]; then
    pass "bad arguments: $*"
  else
    fail "bad arguments: $*"
    echo "  exit $rc, stdout '$out', stderr:"; head -5 "$TMP/err"
  fi
}

# Jobs of the queue (`ember status` through $EMBER): state ID prints the state code (PD, R, CD, ...);
# field ID NAME prints a field; wait_state ID "STATES" SECONDS polls until the job is in one of STATES (0 if so).
state() { "$EMBER" status "$1" 2>/dev/null | sed -n 's/^State: *\([A-Z]*\) .*/\1/p'; }
field() { "$EMBER" status "$1" 2>/dev/null | sed -n "s/^$2: *//p"; }
wait_state() {
  n=0
  while [ "$n" -lt $(($3 * 10)) ]; do
    s=$(state "$1")
    case " $2 " in *" $s "*) return 0 ;; esac
    sleep 0.1; n=$((n + 1))
  done
  echo "  job $1 still '$(state "$1")' after $3 s (wanted $2)"
  return 1
}
