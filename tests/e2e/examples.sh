#!/bin/sh
# e2e: every program in examples/ runs under `ember run -np 2` (as its header comment tells users to) and
# prints what an independent python3 computation says it should.
. "$(dirname "$0")/lib.sh"
EX="$ROOT/build/examples"

# example NAME: runs build/examples/NAME, compares its stdout with $TMP/want and checks the exit status.
example() {
  timeout -k 5 120 "$BIN/ember" run -np 2 "$EX/$1" >"$TMP/got" 2>"$TMP/err"
  rc=$?
  check "$1: exit 0" 0 "$rc"
  check_files "$1: output" "$TMP/want" "$TMP/got"
  [ "$rc" = 0 ] || head -5 "$TMP/err"
}

python3 -c '
m = [n for n in range(1000) if n % 3 == 0]
print("multiples of 3 below 1000: %d" % len(m))
print("sum of their squares: %d" % sum(n * n for n in m))' >"$TMP/want"
example map_filter

python3 -c '
from math import comb
for k in range(17): print("%d bits set: %d" % (k, comb(16, k)))' >"$TMP/want"
example reduce_by_key

python3 -c '
for r in range(7):
    ns = [n for n in range(1, 100001) if n % 7 == r]
    print("n %% 7 == %d: %d numbers, mean %.3f" % (r, len(ns), sum(ns) / len(ns)))' >"$TMP/want"
example custom_combine

printf 'Mercury 0\nVenus 0\nEarth 1\nMars 2\nJupiter 95\nSaturn 146\nUranus 28\nNeptune 16\n' |
  awk '$2 > 0 { printf "%s\t%s\n", $1, $2 }' | LC_ALL=C sort >"$TMP/want"
example parallelize

# Examples stay short (issue 3: under ~60 lines; some slack for the opening comment).
for f in "$ROOT"/examples/*.c; do
  n=$(wc -l <"$f")
  [ "$n" -le 75 ] && pass "$(basename "$f"): $n lines" || fail "$(basename "$f"): $n lines (keep examples short)"
done
