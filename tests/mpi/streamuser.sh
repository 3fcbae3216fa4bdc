#!/bin/sh
# A streaming query with a user's aggregate (tests/mpi/streamuser.c: count, least, greatest and latest value per
# 10 s window sliding by 5 s), at np = 1..3, over a log appended in three stages with a run after each (the later
# runs resume from the checkpoint, where the accumulators are kept as the user's bytes; the last one flushes), in
# batches of 700 events so accumulators are merged across tasks, batches and restarts. Its CSV, read with python3's
# csv module, is compared with a python3 model; values that are not integers are counted as bad. Then an executor
# and then the leader killed mid-stream, a checkpoint refused to a combine of another name or size, and bad combine
# options.
. "$(dirname "$0")/../e2e/lib.sh"
P="$ROOT/build/tests/mpi/streamuser"
EMBER="$BIN/ember"
export LC_ALL=C

# gen SEED STAGE: time,key,value lines of one stage; times move forward with 0.4 s of jitter, far less than the 10 s
# lateness (batches take a share of each log partition, and partitions drift apart in event time by far less than
# 9.6 s), so no window of an event is closed before it is read; one value in 97 is not an integer.
gen() {
  python3 - "$@" <<'PY'
import random, sys
seed, stage = int(sys.argv[1]), int(sys.argv[2])
rng = random.Random(seed * 100 + stage)
t = 1_700_000_000_000 + stage * 40_000
for i in range(3000):
    t += rng.randint(0, 25)
    key = rng.choice(["k%d" % rng.randint(0, 40), "k%d" % rng.randint(0, 3), "a,b", 'q"x'])
    value = "oops" if rng.randint(0, 96) == 0 else str(rng.randint(-10**12, 10**12))
    print('%d,"%s",%s' % (t - rng.randint(0, 400), key.replace('"', '""'), value))
PY
}

# model FILES...: the expected rows as window_start|window_end|key|value lines, sorted; the number of bad values
# on stderr
model() {
  python3 - "$@" <<'PY'
import csv, sys
acc, bad = {}, 0
for path in sys.argv[1:]:
    for t, key, value in csv.reader(open(path, newline="")):
        t = int(t)
        try:
            v = int(value)
        except ValueError:
            bad += 1
            continue
        for start in (t // 5000 * 5000, t // 5000 * 5000 - 5000):  # the two 10 s windows holding t
            n, lo, hi, lt, lv = acc.get((start, key), (0, v, v, t, v))
            if (t, v) > (lt, lv):
                lt, lv = t, v
            acc[(start, key)] = (n + 1, min(lo, v), max(hi, v), lt, lv)
for (start, key), (n, lo, hi, lt, lv) in acc.items():
    print("%d|%d|%s|%d in [%d..%d], latest %d at %d" % (start, start + 10000, key, n, lo, hi, lv, lt))
print(bad, file=sys.stderr)
PY
}

# rows CSV: the output's rows (after the header) as window_start|window_end|key|value lines
rows() {
  python3 -c '
import csv, sys
r = csv.reader(open(sys.argv[1], newline=""))
next(r)
for row in r:
    print("|".join(row))' "$1"
}

for np in 1 2 3; do
  D="$TMP/log$np" CK="$TMP/ck$np" OUT="$TMP/out$np.csv"
  "$EMBER" log create "$D" --partitions 3 >/dev/null
  ok=1 files=""
  for stage in 0 1 2; do
    gen 11 $stage >"$TMP/stage$stage.csv"
    files="$files $TMP/stage$stage.csv"
    "$EMBER" log append "$D" "$TMP/stage$stage.csv" >/dev/null || ok=0
    flush=noflush; [ $stage = 2 ] && flush=flush
    mpirun_t 120 $np "$P" "$D" "$CK" "$OUT" $flush 700 >"$TMP/so" 2>"$TMP/err" || ok=0
  done
  check "user combine np=$np: three runs exit 0" 1 "$ok"
  [ $ok = 1 ] || tail -5 "$TMP/err"
  check "user combine np=$np: no late events" 1 "$(grep -c ' 0 late' "$TMP/so")"
  # shellcheck disable=SC2086
  model $files 2>"$TMP/wantbad" | sort >"$TMP/want"
  rows "$OUT" | sort >"$TMP/got"
  check_files "user combine np=$np: rows = python3 model (count, min, max, latest per sliding window)" \
    "$TMP/want" "$TMP/got"
  check "user combine np=$np: refused values counted as bad" "$(cat "$TMP/wantbad")" \
    "$(sed -n 's/.* \([0-9]*\) bad,.*/\1/p' "$TMP/so")"
done
check "user combine: a refused value named with partition and offset" 1 \
  "$(grep -c "partition [0-9]* offset [0-9]*: value refused by the combine function: 'oops'" "$TMP/err" | sed 's/^[1-9][0-9]*$/1/')"

# ---- an executor killed mid-stream: the output equals the uninterrupted run's ----
D="$TMP/log3"
runr() { # NP ARGS...
  np=$1; shift
  mpirun_ft 120 "$np" "$P" "$@" >"$TMP/so" 2>"$TMP/err"
  echo $? >"$TMP/rc"
}
runr 3 "$D" "$TMP/bck" "$TMP/base.csv" flush 500
check "user combine, batches of 500, np=3: exit 0" 0 "$(cat "$TMP/rc")"
runr 3 "$D" "$TMP/eck" "$TMP/exec.csv" flush 500 --ember-heartbeat-ms=100 --ember-timeout-ms=600 \
  --ember-fault=kill:rank=2:after-tasks=12
check_files "user combine, executor SIGKILLed mid-stream: output = uninterrupted run" "$TMP/base.csv" "$TMP/exec.csv"
grep -q "fenced r2" "$TMP/err" && pass "user combine: executor death detected" ||
  { fail "user combine: executor death detected"; tail -5 "$TMP/err"; }
runr 3 "$D" "$TMP/lck" "$TMP/lead.csv" flush 500 --ember-heartbeat-ms=100 --ember-timeout-ms=600 \
  --ember-fault=kill:leader:after-tasks=15
check_files "user combine, leader SIGKILLed mid-stream: output = uninterrupted run" "$TMP/base.csv" "$TMP/lead.csv"
grep -q "elected leader" "$TMP/err" && pass "user combine: a new leader took over" ||
  { fail "user combine: a new leader took over"; tail -5 "$TMP/err"; }

# ---- a checkpoint is refused to a combine of another name or accumulator size ----
mpirun_t 60 2 "$P" "$D" "$TMP/bck" "$TMP/base.csv" flush 500 other >"$TMP/so" 2>"$TMP/err"
check "user combine: another name on the checkpoint exits 1" 1 "$?"
check "user combine: another name is named as the reason" 1 \
  "$(grep -c 'written by a different query .*--agg user of another name or acc_size' "$TMP/err")"
mpirun_t 60 2 "$P" "$D" "$TMP/bck" "$TMP/base.csv" flush 500 latest 48 >"$TMP/so" 2>"$TMP/err"
check "user combine: another acc_size on the checkpoint exits 1" 1 "$?"
mpirun_t 60 2 "$P" "$D" "$TMP/ck0" "$TMP/out0.csv" flush 500 latest 0 >"$TMP/so" 2>"$TMP/err"
check "user combine: acc_size 0 exits 1" 1 "$?"
check "user combine: acc_size 0 is explained" 1 "$(grep -c 'acc_size of 1 to 1024 bytes' "$TMP/err")"
mpirun_t 60 2 "$P" "$D" "$TMP/ck0" "$TMP/out0.csv" flush 500 "" >"$TMP/so" 2>"$TMP/err"
check "user combine: an empty name is refused" 1 "$(grep -c 'needs a combine with a name' "$TMP/err")"
