#!/bin/sh
# Shuffle tests (tests/mpi/shuffle.c) at np = 1..4, and the same under lost shuffle data: an executor killed while
# reduce tasks fetch, so map outputs must be recomputed from lineage.
. "$(dirname "$0")/../e2e/lib.sh"
P="$ROOT/build/tests/mpi/shuffle"
for np in 1 2 3 4; do
  out=$(mpirun_t 120 $np "$P" --small-limit --wide --ember-max-result 300000 2>"$TMP/err"); rc=$?
  if [ $rc = 0 ] && [ "$out" = "ok shuffle np=$np" ]; then pass "shuffle np=$np"; else fail "shuffle np=$np (rc=$rc)"; tail -5 "$TMP/err"; fi
done
# compressed on the wire (--ember-compress zlib), whole buckets and chunked ones
out=$(mpirun_t 120 3 "$P" --wide --ember-compress zlib 2>"$TMP/err"); rc=$?
if [ $rc = 0 ] && [ "$out" = "ok shuffle np=3" ]; then pass "shuffle np=3 --ember-compress zlib"; else fail "shuffle np=3 --ember-compress zlib (rc=$rc)"; tail -5 "$TMP/err"; fi
# a memory budget far below the map outputs: blocks (and the slabs their buckets started in) go to disk
out=$(mpirun_t 120 2 "$P" --wide --ember-memory 1M 2>"$TMP/err"); rc=$?
if [ $rc = 0 ] && [ "$out" = "ok shuffle np=2" ]; then pass "shuffle np=2 --ember-memory 1M"; else fail "shuffle np=2 --ember-memory 1M (rc=$rc)"; tail -5 "$TMP/err"; fi
# A rank killed right after it started sending a fetch answer of megabytes (during=serve): the peer pulling it
# through vader's single copy (CMA) from the dead process fails, gives the message up and goes on. Only the victim
# may be fenced: with a blocking receive the peer's progress thread stayed inside MPI until its own sentinel fenced
# it as well (seen in CI, stop 11).
# (Whether a peer is pulling at that moment varies: about 3 runs in 5 catch one, hence two victims.)
for v in 2 3; do
  out=$(mpirun_ft 120 4 "$P" --wide --ember-heartbeat-ms=100 --ember-timeout-ms=600 \
    --ember-fault=kill:rank=$v:during=serve 2>"$TMP/err"); rc=$?
  if [ $rc = 0 ] && [ "$out" = "ok shuffle np=4" ] && [ "$(grep -c 'WARN fenced r[0-9]' "$TMP/err")" = 1 ] &&
    grep -q "WARN fenced r$v " "$TMP/err"; then pass "r$v killed while peers pull its fetch answer: only it is fenced"
  else fail "r$v killed while peers pull its fetch answer: only it is fenced (rc=$rc)"; echo "$out"; tail -8 "$TMP/err"; fi
done
for fault in kill:rank=2:during=fetch exit:rank=3:code=1:during=fetch kill:rank=1:stage=1:after-tasks=1 kill:leader:during=fetch; do
  out=$(mpirun_ft 120 4 "$P" --ember-heartbeat-ms=100 --ember-timeout-ms=600 --ember-fault=$fault 2>"$TMP/err"); rc=$?
  if [ $rc = 0 ] && [ "$out" = "ok shuffle np=4" ] && grep -q "fenced\|elected" "$TMP/err"; then pass "shuffle survives $fault"
  else fail "shuffle survives $fault (rc=$rc)"; echo "$out"; tail -8 "$TMP/err"; fi
done
# The new leader asks the survivors what they hold: map outputs written before the leader died are reused, not
# recomputed (the inventory line counts them, and no "recomputing" line names a survivor's output).
if grep -q "new leader r[0-9]* took over: [0-9]* rank(s) hold [1-9][0-9]* map output" "$TMP/err"; then
  pass "leader death: the new leader reuses the survivors' map outputs (inventory)"
else fail "leader death: no inventory of the survivors' map outputs"; grep "took over" "$TMP/err"; fi
