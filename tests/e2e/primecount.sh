#!/bin/sh
# e2e: the primecount job (jobs/primecount.c) as a user runs it, against known values of pi(x) and an
# independent count in python3; bad arguments must exit 2 with a one-line error naming the flag.
. "$(dirname "$0")/lib.sh"
PC="$BIN/primecount"

# pycount A B: primes in [A, B) by a segmented sieve in python3 (standard library only).
pycount() {
  python3 - "$1" "$2" <<'PY'
import sys
a, b = int(sys.argv[1]), int(sys.argv[2])
r = 1
while (r + 1) * (r + 1) <= b - 1: r += 1
small = bytearray([1]) * (r + 1)
base = []
for i in range(2, r + 1):
    if small[i]:
        base.append(i)
        small[i * i::i] = bytearray(len(small[i * i::i]))
lo = max(a, 2)
seg = bytearray([1]) * max(b - lo, 0)
for p in base:
    start = max(p * p, (lo + p - 1) // p * p)
    if start < b:
        seg[start - lo::p] = bytearray(len(seg[start - lo::p]))
print(sum(seg))
PY
}

# run NP ARGS...: stdout of the job; stderr to $TMP/err, exit status to $TMP/rc
run() {
  np=$1; shift
  mpirun_t 120 "$np" "$PC" "$@" 2>"$TMP/err"
  echo $? >"$TMP/rc"
}

for np in 1 2 3 4; do
  check "limit 1e6 at np=$np" "primes in [0, 1000000): 78498" "$(run "$np" --limit 1e6)"
done

A=1000003 B=2000003
check "from $A to $B at np=3 (python count)" "primes in [$A, $B): $(pycount $A $B)" "$(run 3 --from $A --to $B)"

# pi(10^k), k = 0..10
k=0
for pi in 0 4 25 168 1229 9592 78498 664579 5761455 50847534 455052511; do
  n=$(python3 -c "print(10**$k)")
  check "pi(10^$k) at np=2" "primes in [0, $n): $pi" "$(run 2 --limit "1e$k")"
  k=$((k + 1))
done

# odd ranges, partition counts and number notations
for r in "999999937 1000000123" "0 1" "0 2" "2 3" "1 100" "4294967291 4294967311" "123456789 133456791"; do
  set -- $r
  check "from $1 to $2 at np=2" "primes in [$1, $2): $(pycount "$1" "$2")" "$(run 2 --from "$1" --to "$2")"
done
check "partitions 7 at np=3" "primes in [0, 10000000): 664579" "$(run 3 --limit 1e7 --partitions 7)"
check "partitions 1 at np=2" "primes in [0, 10000000): 664579" "$(run 2 --limit 10000000 --partitions 1)"
check "more partitions than numbers" "primes in [10, 20): 4" "$(run 2 --from 10 --to 20 --partitions 64)"
check "2^32 and --flag=value" "primes in [0, 4294967296): 203280221" "$(run 4 --limit=2^32)"
check "2.5e3" "primes in [0, 2500): 367" "$(run 1 --to 2.5e3)"
check "no arguments: default --limit 1e8" "primes in [0, 100000000): 5761455" "$(run 2)"

out=$(run 2 --help)
check "--help exits 0" 0 "$(cat "$TMP/rc")"
case "$out" in
  usage:*) pass "--help prints usage on stdout" ;;
  *) fail "--help prints usage on stdout"; echo "  got: $out" ;;
esac

# bad ARGS... FLAG: exit status 2, nothing on stdout, one error line naming FLAG (at np=2: printed once)
bad() { usage_error primecount "$@"; }
bad "--limit" --limit abc
bad "--limit" --limit -5
bad "--limit" --limit 2.5
bad "--limit" --limit
bad "--from" --from -1 --to 10
bad "--to" --from 1 --to 1e99
bad "--from .*--to" --from 10 --to 5
bad "--foo" --foo 3
bad "--limit" --limit 10 --from 3
bad "--partitions" --limit 100 --partitions 0
bad "--partitions" --limit 100 --partitions x
