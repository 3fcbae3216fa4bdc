#!/bin/sh
# Every operator against naive implementations (tests/mpi/operators.c) on random data from several seeds at
# np = 1..4, then what must not depend on np: the exact sample of each (seed, fraction), and in the cache check
# the map invocations summed over all ranks (a cached dataset is computed once, an uncached one per action).
# Seeds 0..3 (the data shapes: empty, tiny over many partitions, hot key, random) run at every np, more at np=1:
# that keeps the script under a minute on 2 cores.
. "$(dirname "$0")/../e2e/lib.sh"
P="$ROOT/build/tests/mpi/operators"
COMMON=3 # seeds 0..COMMON run at every np
for np in 1 2 3 4; do
  to=$COMMON; [ $np = 1 ] && to=11
  mkdir -p "$TMP/fe$np"
  mpirun_t 150 $np "$P" -d "$TMP/fe$np" 0 $to >"$TMP/out$np" 2>"$TMP/err$np"; rc=$?
  grep -E '^(PASS|FAIL): ' "$TMP/out$np"
  if [ $rc = 0 ] && grep -q '^CALLS want' "$TMP/out$np"; then pass "operators np=$np: ran to the end, exit 0"
  else fail "operators np=$np: exit $rc"; grep -v '^r[0-9]*: FAIL' "$TMP/err$np" | tail -8; fi
  grep '^r[0-9]*: FAIL' "$TMP/err$np" | head -3 # what other ranks saw, when it differs
  # cache: every rank printed its count; the sums are what the leader expects
  check "cache: CALLS lines from $np ranks" "$np" "$(grep -c '^CALLS rank=' "$TMP/out$np")"
  want=$(sed -n 's/^CALLS want //p' "$TMP/out$np")
  got=$(awk '/^CALLS rank=/ { sub("cached=", "", $3); sub("plain=", "", $4); c += $3; p += $4 }
             END { printf "cached=%d plain=%d", c, p }' "$TMP/out$np")
  check "cache np=$np: map calls summed over ranks (cached once, uncached twice)" "$want" "$got"
  awk '$1 == "SAMPLE" { s = $2; sub("seed=", "", s); if (s + 0 <= '$COMMON') print }' "$TMP/out$np" >"$TMP/sample$np"
done
[ -s "$TMP/sample1" ] && pass "sample: fingerprints printed at np=1" || fail "sample: no fingerprints at np=1"
for np in 2 3 4; do check_files "sample: the same records at np=$np as at np=1 (seeds 0..$COMMON)" "$TMP/sample1" "$TMP/sample$np"; done
# Past the memory budget (1 MiB per task at --ember-memory 4M): shuffles, sorts and groups spill, the results
# stay those of the naive implementations, and no spill file is left behind.
mkdir -p "$TMP/spill"
out=$(mpirun_t 150 2 "$P" -d "$TMP/fe2" 1 1 spill big --ember-memory 4M --ember-tmpdir "$TMP/spill" 2>"$TMP/err"); rc=$?
echo "$out" | grep -E '^(PASS|FAIL): '
[ $rc = 0 ] && pass "operators spill np=2: exit 0" || { fail "operators spill np=2: exit $rc"; tail -5 "$TMP/err"; }
check "spill: no files left in --ember-tmpdir" "" "$(find "$TMP/spill" -mindepth 1 | head -5)"
