#!/bin/sh
# Recovery paths, each triggered by Ember's own fault injection under the recovery launch recipe (DESIGN
# section 6): the result must equal the fault-free run and the closed form, exit status 0, and stderr must show
# the detection. Short heartbeats keep the matrix fast.
. "$(dirname "$0")/../e2e/lib.sh"
P="$ROOT/build/tests/mpi/recovery"
FT="--ember-heartbeat-ms=100 --ember-timeout-ms=600"
run() { # NAME EXPECT_IN_STDERR ARGS...
  name=$1; pat=$2; shift 2
  mpirun_ft 60 4 "$P" $FT "$@" >"$TMP/out" 2>"$TMP/err"
  rc=$?
  if [ $rc = 0 ] && cmp -s "$TMP/out" "$TMP/base" && grep -q "$pat" "$TMP/err"; then pass "$name"
  else fail "$name (rc=$rc)"; cat "$TMP/out"; tail -8 "$TMP/err"; fi
}
timeout -k 5 60 mpirun --oversubscribe --allow-run-as-root -np 4 "$P" >"$TMP/base" 2>/dev/null
check "fault-free run" "sum 21333253333400000 count 400000 ok" "$(cat "$TMP/base")"
run "executor SIGKILL mid-stage" "fenced r2" --ember-fault=kill:rank=2:after-tasks=3
run "executor exit(1) mid-stage" "fenced r3" --ember-fault=exit:rank=3:code=1:after-tasks=2
run "executor SIGSTOP, never resumed" "fenced r1" --ember-fault=stop:rank=1:after-tasks=2
run "executor SIGSTOP, resumed later" "fenced r1" --ember-fault=stop:rank=1:after-tasks=2:resume-after-ms=1500
run "executor dies while returning a result" "fenced r2" --ember-fault=kill:rank=2:during=result:after-tasks=1
run "leader SIGKILL mid-stage" "elected leader" --ember-fault=kill:leader:after-tasks=3
run "leader SIGSTOP, resumed later" "elected leader" --ember-fault=stop:leader:after-tasks=2:resume-after-ms=1500
run "leader, then the new leader" "r2 leads\|r2 lead" --ember-fault=kill:leader:after-tasks=3 --ember-fault=kill:rank=1:after-tasks=6
run "two executors one after the other" "fenced r3" --ember-fault=kill:rank=2:after-tasks=2 --ember-fault=kill:rank=3:after-tasks=5
run "leader in the second action" "elected leader" --ember-fault=kill:leader:action=2
# The new leader collects what the survivors finished before the old leader died (results of result tasks, map
# outputs) instead of running it again.
run "leader SIGKILL: finished results reused" "took over: .* and [1-9][0-9]* finished result task" --ember-fault=kill:leader:after-tasks=3
