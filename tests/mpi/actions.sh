#!/bin/sh
# Multi-rank action tests (tests/mpi/actions.c) at np = 1..4 under plain mpirun with a hard timeout.
. "$(dirname "$0")/../e2e/lib.sh"
for np in 1 2 3 4; do
  out=$(mpirun_t 120 $np "$ROOT/build/tests/mpi/actions" --ember-max-task-failures 2 2>"$TMP/err")
  rc=$?
  if [ $rc = 0 ] && [ "$out" = "ok actions np=$np" ]; then pass "actions np=$np"; else fail "actions np=$np (rc=$rc)"; tail -5 "$TMP/err"; fi
done
