#!/bin/sh
# Runs every suite and prints one closing line "N passed, N failed" over all of them.
#   unit/   Criterion binaries (build/tests/unit/test_*): counts from Criterion's synthesis line
#   mpi/    shell scripts tests/mpi/*.sh that run multi-rank programs under mpirun
#   e2e/    shell scripts tests/e2e/*.sh that drive the jobs and the `ember` CLI as a user would
# Scripts report with lines "PASS: name" / "FAIL: name" (see tests/e2e/lib.sh). Pass a suite name or a
# script path to run only that: `sh tests/run.sh unit`, `sh tests/run.sh tests/e2e/primecount.sh`.
set -u
cd "$(dirname "$0")/.."
only="${1:-}"
out=$(mktemp -d /tmp/ember-test.XXXXXX)
passed=0; failed=0

run_unit() {
  for t in build/tests/unit/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    log="$out/$name.log"
    timeout -k 5 300 "$t" --jobs 2 >"$log" 2>&1
    rc=$?
    syn=$(grep 'Synthesis:' "$log" | tail -1)
    p=$(echo "$syn" | sed -n 's/.*Passing: \([0-9]*\).*/\1/p')
    f=$(echo "$syn" | sed -n 's/.*Failing: \([0-9]*\).*/\1/p')
    c=$(echo "$syn" | sed -n 's/.*Crashing: \([0-9]*\).*/\1/p')
    p=${p:-0}; f=$(( ${f:-0} + ${c:-0} ))
    if [ -z "$syn" ] || { [ "$rc" != 0 ] && [ "$f" = 0 ]; }; then f=$((f + 1)); fi
    if grep -q 'ERROR: LeakSanitizer' "$log"; then f=$((f + 1)); echo "FAIL: $name leaks (LeakSanitizer)"; fi
    if [ "$f" != 0 ]; then echo "--- $name"; grep -E '\[----\]|\[FAIL\]|LeakSanitizer|Synthesis' "$log" | head -40; fi
    echo "unit $name: $p passed, $f failed"
    passed=$((passed + p)); failed=$((failed + f))
  done
}

run_script() {
  s=$1
  name=$(echo "$s" | sed 's|^tests/||')
  log="$out/$(echo "$name" | tr / _).log"
  timeout -k 10 900 sh "$s" >"$log" 2>&1
  rc=$?
  p=$(grep -c '^PASS: ' "$log"); f=$(grep -c '^FAIL: ' "$log")
  if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; echo "FAIL: $name exited $rc"; fi
  if [ "$f" != 0 ] || [ "$p" = 0 ]; then echo "--- $name"; grep -v '^PASS: ' "$log" | tail -60; fi
  echo "$name: $p passed, $f failed"
  passed=$((passed + p)); failed=$((failed + f))
}

case "$only" in
  ""|unit) run_unit ;;
esac
for s in tests/mpi/*.sh tests/e2e/*.sh; do
  [ -f "$s" ] || continue
  case "$s" in */lib.sh) continue ;; esac
  case "$only" in ""|mpi|e2e|"$s") ;; *) continue ;; esac
  case "$only" in mpi) case "$s" in tests/mpi/*) ;; *) continue ;; esac ;; e2e) case "$s" in tests/e2e/*) ;; *) continue ;; esac ;; esac
  [ "$only" = unit ] && continue
  run_script "$s"
done
rm -rf "$out"
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
