#!/bin/sh
# A streaming query with a transform (tests/mpi/streamxf.c: em_filter + an em_map that merges keys of different log
# partitions), at np = 1..3, over a log appended in three stages with a run after each (the later runs resume from
# the checkpoint; the last one flushes). Its CSV is compared with a python3 model of the same transform and
# 10 s tumbling counts. Then the same query in batches of 500 events with an executor and then the leader killed by
# fault injection: the output equals the uninterrupted run's.
. "$(dirname "$0")/../e2e/lib.sh"
P="$ROOT/build/tests/mpi/streamxf"
EMBER="$BIN/ember"
export LC_ALL=C

# gen SEED STAGE: time,key,value lines of one stage; times move forward with less jitter than the 1 s lateness,
# so no event is late and the model needs no batch boundaries.
gen() {
  python3 - "$@" <<'PY'
import random, sys
seed, stage = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(seed * 100 + stage)
t = 1_700_000_000_000 + stage * 40_000
for i in range(3000):
    t += rng.randint(0, 25)
    key = rng.choice(["k%d" % rng.randint(0, 99), "k%d" % rng.randint(0, 9), "x", "y"])
    value = rng.choice(["drop", "keep", "v%d" % i])
    print("%d,%s,%s" % (t - rng.randint(0, 400), key, value))
PY
}

# model FILES...: the expected rows, sorted
model() {
  python3 - "$@" <<'PY'
import collections, sys
counts = collections.Counter()
for path in sys.argv[1:]:
    for line in open(path):
        t, key, value = line.rstrip("\n").split(",")
        if value == "drop":
            continue
        if key.startswith("k"):
            key = "g%d" % (int(key[1:]) % 5)
        start = int(t) // 10000 * 10000
        counts[(start, key)] += 1
for (start, key), n in sorted(counts.items()):
    print("%d,%d,%s,%d" % (start, start + 10000, key, n))
PY
}

for np in 1 2 3; do
  D="$TMP/log$np" CK="$TMP/ck$np" OUT="$TMP/out$np.csv"
  "$EMBER" log create "$D" --partitions 4 >/dev/null
  ok=1 files=""
  for stage in 0 1 2; do
    gen 7 $stage >"$TMP/stage$stage.csv"
    files="$files $TMP/stage$stage.csv"
    "$EMBER" log append "$D" "$TMP/stage$stage.csv" >/dev/null || ok=0
    # the first two runs stop at the watermark, as a follow-mode query between appends would; the last flushes
    flush=noflush; [ $stage = 2 ] && flush=flush
    mpirun_t 120 $np "$P" "$D" "$CK" "$OUT" $flush >"$TMP/so" 2>"$TMP/err" || ok=0
  done
  check "transform np=$np: three runs exit 0" 1 "$ok"
  [ $ok = 1 ] || tail -5 "$TMP/err"
  check "transform np=$np: no late events" 1 "$(grep -c ' 0 late' "$TMP/so")"
  # shellcheck disable=SC2086
  model $files >"$TMP/want"
  tail -n +2 "$OUT" | sort >"$TMP/got"
  check_files "transform np=$np: rows = python3 model (filter, regrouped keys, tumbling counts)" "$TMP/want" "$TMP/got"
  check "transform np=$np: windows in closing order" "" "$(tail -n +2 "$OUT" | awk -F, 'NR > 1 && $2 < prev { print NR } { prev = $2 }' | head -3)"
done

# ---- fault injection with the transform: many small batches, a rank killed while they run ----
D="$TMP/log1"  # all three stages
runr() { # NP ARGS...
  np=$1; shift
  mpirun_ft 120 "$np" "$P" "$@" >"$TMP/so" 2>"$TMP/err"
  echo $? >"$TMP/rc"
}
FT="--ember-heartbeat-ms=100 --ember-timeout-ms=600"
runr 3 "$D" "$TMP/bck" "$TMP/base.csv" flush 500
check "transform, batches of 500, np=3: exit 0" 0 "$(cat "$TMP/rc")"
batches=$(sed -n 's/^streamxf: \([0-9]*\) batches.*/\1/p' "$TMP/so")
check "transform, batches of 500: more than 10 batches" 1 "$([ "${batches:-0}" -gt 10 ] && echo 1)"
runr 3 "$D" "$TMP/eck" "$TMP/exec.csv" flush 500 $FT --ember-fault=kill:rank=2:after-tasks=12
check_files "transform, executor SIGKILLed mid-stream: output = uninterrupted run" "$TMP/base.csv" "$TMP/exec.csv"
grep -q "fenced r2" "$TMP/err" && pass "transform: executor death detected" || { fail "transform: executor death detected"; tail -5 "$TMP/err"; }
runr 3 "$D" "$TMP/lck" "$TMP/lead.csv" flush 500 $FT --ember-fault=kill:leader:after-tasks=15
check_files "transform, leader SIGKILLed mid-stream: output = uninterrupted run" "$TMP/base.csv" "$TMP/lead.csv"
grep -q "elected leader" "$TMP/err" && pass "transform: a new leader took over" || { fail "transform: a new leader took over"; tail -5 "$TMP/err"; }
