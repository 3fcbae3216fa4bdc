#!/bin/sh
# e2e: the streaming job (jobs/windowcount.c over scheduler/stream.c) as a user runs it: events generated in python3
# with out-of-order arrival inside and beyond the lateness, turned into a log with `ember log create/append`, and
# windowcount's CSV compared byte for byte with an independent python3 (standard library) model of the same
# semantics: tumbling and sliding windows, every aggregate, np = 1..4, batches cut by appends between --until-end
# runs (so the model knows each batch), late and bad events counted. Then exactly once: runs killed with SIGKILL
# on every rank at many points and restarted from the checkpoint, an executor and the leader killed by fault
# injection, and follow mode stopped by SIGTERM, all ending with the uninterrupted run's output. Bad arguments
# exit 2, a missing log exits 1.
. "$(dirname "$0")/lib.sh"
WC="$BIN/windowcount"
EMBER="$BIN/ember"
export LC_ALL=C

cat >"$TMP/wc.py" <<'PY'
import csv, io, math, random, re, sys

def gen(seed, nstages, per_stage, nkeys, span, late_ms, far_ms, bad_frac, prefix):
    """Stage files PREFIX.N.csv of `time,key,value` lines. Within a stage times go forward over `span` ms with
    jitter; some events come up to late_ms behind (inside the lateness), some far_ms behind (beyond it)."""
    rng = random.Random(seed)
    keys = ["k%d" % i for i in range(nkeys)] + ["a,b", 'q"uote', "sp ace", "", "ünï"]
    t = 1_700_000_000_000
    for st in range(nstages):
        with open("%s.%d.csv" % (prefix, st), "w", newline="") as f:
            w = csv.writer(f, lineterminator="\n")
            for i in range(per_stage):
                t += rng.randint(0, 2 * span // per_stage)
                r = rng.random()
                et = t - rng.randint(0, late_ms) if r < 0.3 else t - rng.randint(late_ms, far_ms) if r < 0.38 else t
                r = rng.random()
                if r < bad_frac:
                    v = rng.choice(["abc", "", "1e999", "--1", "1.2.3", " 4", "0x10"])
                elif r < 0.25:
                    v = "%.2f" % (rng.randint(-4000, 4000) / 4)   # quarters: every sum stays exact
                elif r < 0.3:
                    v = rng.choice(["+7", "-0", "1e2", ".5", "5.", "-2.5E1", "9223372036854775807"])
                else:
                    v = str(rng.randint(-1000, 1000))
                w.writerow([et, rng.choice(keys), v])

INT = re.compile(r"[+-]?[0-9]+\Z")
DEC = re.compile(r"[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?\Z")

def number(v):
    b = v.encode()
    if not 0 < len(b) <= 127: return None
    if INT.match(v):
        i = int(v)
        if -2**63 <= i < 2**63: return i
    if DEC.match(v):
        f = float(v)
        if math.isfinite(f): return f
    return None

def fmt_key(k):
    return '"' + k.replace('"', '""') + '"' if any(c in k for c in ',"\r\n') else k

def value(agg, vals):
    if agg == "count": return str(len(vals))
    ints = sum(v for v in vals if not isinstance(v, float))
    floats = sum(v for v in vals if isinstance(v, float))
    nfloat = sum(1 for v in vals if isinstance(v, float))
    if agg == "sum": return str(ints) if nfloat == 0 else "%.17g" % (float(ints) + floats)
    if agg == "avg": return "%.17g" % ((float(ints) + floats) / len(vals))
    if agg == "min": m = min(vals, key=lambda v: (v, isinstance(v, float)))
    else: m = max(vals, key=lambda v: (v, not isinstance(v, float)))
    return "%.17g" % m if isinstance(m, float) else str(m)

def ref(W, S, L, agg, flush, stages, out, counts):
    """The model: each stage is one batch. An event adds to each of its windows still open (end > watermark at the
    start of its batch); with none open it is late. After a batch the watermark is max time seen - L and windows with
    end <= watermark are written, by (end, start, key bytes)."""
    state, wm, mx, late, bad, n = {}, None, None, 0, 0, 0
    rows = ["window_start,window_end,key,value\n"]
    def close(limit):
        for (s, k) in sorted((sk for sk in state if limit is None or sk[0] + W <= limit),
                             key=lambda sk: (sk[0], sk[1].encode())):
            rows.append("%d,%d,%s,%s\n" % (s, s + W, fmt_key(k), value(agg, state.pop((s, k)))))
    for path in stages:
        wm0 = wm
        with open(path, newline="") as f:
            for tm, k, v in csv.reader(f):
                t = int(tm); n += 1
                if abs(t) > 2**62: bad += 1; continue
                mx = t if mx is None else max(mx, t)
                last = (t // S) * S
                if wm0 is not None and last + W <= wm0: late += 1; continue
                x = 1
                if agg != "count":
                    x = number(v)
                    if x is None: bad += 1; continue
                s = last
                while s > t - W and (wm0 is None or s + W > wm0):
                    state.setdefault((s, k), []).append(x); s -= S
        if mx is not None: wm = mx - L if wm is None else max(wm, mx - L)
        if wm is not None: close(wm)
    if flush: close(None)
    open(out, "w", encoding="utf-8", newline="").write("".join(rows))
    open(counts, "w").write("%d events, %d late, %d bad\n" % (n, late, bad))

if sys.argv[1] == "gen":
    a = sys.argv[2:]
    gen(int(a[0]), int(a[1]), int(a[2]), int(a[3]), int(a[4]), int(a[5]), int(a[6]), float(a[7]), a[8])
else:
    a = sys.argv[2:]
    ref(int(a[0]), int(a[1]), int(a[2]), a[3], a[4] == "1", a[7:], a[5], a[6])
PY

# run NP ARGS...: windowcount under mpirun; stdout to $TMP/out, stderr to $TMP/err, exit status to $TMP/rc
run() {
  np=$1; shift
  mpirun_t 120 "$np" "$WC" "$@" >"$TMP/out" 2>"$TMP/err"
  echo $? >"$TMP/rc"
}
# runr NP ARGS...: the same under the recovery launch recipe (fault injection)
runr() {
  np=$1; shift
  mpirun_ft 120 "$np" "$WC" "$@" >"$TMP/out" 2>"$TMP/err"
  echo $? >"$TMP/rc"
}
mklog() { # DIR PARTITIONS STAGE_FILES...
  d=$1 p=$2; shift 2
  "$EMBER" log create "$d" --partitions "$p" >/dev/null && for f in "$@"; do "$EMBER" log append "$d" "$f" >/dev/null; done
}
counts_of() { sed -n 's/.* \([0-9]*\) events, \([0-9]*\) late, \([0-9]*\) bad.*/\1 events, \2 late, \3 bad/p' "$TMP/out"; }

D=$TMP/d
mkdir -p "$D"
python3 "$TMP/wc.py" gen 1 2 2000 40 80000 20000 90000 0.02 "$D/s"

# ---- window results against the model, batches = the appends between --until-end runs ----
# staged NAME NP WINDOW SLIDE LATENESS AGG FLUSH: appends stage i (0, 1), runs windowcount --until-end after each, and
# compares the output, and the event/late/bad counts, with the model. Events of stage 1 far behind stage 0's
# watermark are late.
staged() {
  name=$1 np=$2 w=$3 s=$4 l=$5 agg=$6 flush=$7
  L=$TMP/slog C=$TMP/sck O=$TMP/sout.csv
  rm -rf "$L" "$C" "$O"
  "$EMBER" log create "$L" --partitions 3 >/dev/null
  fl=""
  for st in 0 1; do
    "$EMBER" log append "$L" "$D/s.$st.csv" >/dev/null
    [ $st = 1 ] && [ "$flush" = 1 ] && fl=--flush
    run "$np" --log "$L" --window "${w}ms" --slide "${s}ms" --lateness "${l}ms" --agg "$agg" --checkpoint "$C" \
      --out "$O" --until-end $fl
    [ "$(cat "$TMP/rc")" = 0 ] || break
  done
  python3 "$TMP/wc.py" ref "$w" "$s" "$l" "$agg" "$flush" "$TMP/want.csv" "$TMP/want.counts" \
    "$D/s.0.csv" "$D/s.1.csv"
  check "$name: exit 0" 0 "$(cat "$TMP/rc")"
  check_files "$name: rows = python3 model" "$TMP/want.csv" "$O"
  check "$name: event, late and bad counts" "$(cat "$TMP/want.counts")" "$(counts_of)"
}
np=1
for agg in count sum min max avg; do
  staged "tumbling 10s $agg np=$np" $np 10000 10000 20000 $agg 0
  np=$((np % 4 + 1))
  staged "sliding 30s/10s $agg np=$np" $np 30000 10000 20000 $agg 1
  np=$((np % 4 + 1))
done
staged "sliding 25s/10s (not a multiple), lateness 0, np=3" 3 25000 10000 0 sum 1
staged "tumbling 7s, lateness 1m (nothing late)" 2 7000 7000 60000 count 1

# ---- small batches: with no event beyond the lateness the result does not depend on batch boundaries ----
python3 "$TMP/wc.py" gen 2 1 4000 30 40000 5000 5000 0 "$D/n"
mklog "$TMP/nlog" 4 "$D/n.0.csv"
python3 "$TMP/wc.py" ref 10000 5000 6000 avg 1 "$TMP/nwant.csv" "$TMP/nwant.counts" "$D/n.0.csv"
for np in 1 2 3 4; do
  rm -rf "$TMP/nck" "$TMP/nout.csv"
  run $np --log "$TMP/nlog" --window 10s --slide 5s --lateness 6s --agg avg --checkpoint "$TMP/nck" \
    --out "$TMP/nout.csv" --until-end --flush --max-batch-events 300
  check_files "batches of 300 events at np=$np = one-batch model" "$TMP/nwant.csv" "$TMP/nout.csv"
done

# ---- the window state is partitioned by key: each rank holds about 1/n of it, together all of it ----
# One batch of 20000 events over 3000 keys in a log of 12 partitions; the leader's event log has a stream_state event
# per batch with the (window, key) entries each rank's tasks left in the state it holds. The last one (after the
# batch is finished) must sum to the open (window, key) pairs the python3 model counts (the windows the watermark did
# not close), and each rank must hold 1/n of them within 15%.
python3 - "$TMP/pk.csv" <<'PY'
import random, sys
r, t = random.Random(5), 1_700_000_000_000
with open(sys.argv[1], "w") as f:
    for i in range(20000):
        t += r.randint(0, 5)
        f.write("%d,key%d,1\n" % (t - r.randint(0, 2000), r.randrange(3000)))
PY
mklog "$TMP/pklog" 12 "$TMP/pk.csv" # key partitions = log partitions, homes p mod np: 6 + 6, 4 + 4 + 4
for np in 2 3; do
  rm -rf "$TMP/pkck" "$TMP/pkout.csv" "$TMP/pkev.jsonl"
  run $np --ember-event-log="$TMP/pkev.jsonl" --log "$TMP/pklog" --window 10s --slide 5s --lateness 3s \
    --checkpoint "$TMP/pkck" --out "$TMP/pkout.csv" --until-end
  check "partitioned state np=$np: exit 0" 0 "$(cat "$TMP/rc")"
  verdict=$(python3 - "$TMP/pk.csv" "$TMP/pkev.jsonl" $np <<'PY'
import json, sys
W, S, L, n = 10000, 5000, 3000, int(sys.argv[3])
pairs, mx = set(), None
for line in open(sys.argv[1]):
    t, k, _ = line.split(",")
    t = int(t); mx = t if mx is None else max(mx, t)
    s = t // S * S
    while s > t - W:
        pairs.add((s, k)); s -= S
wm = mx - L
want = sum(1 for (s, k) in pairs if s + W > wm)
ev = [json.loads(l) for l in open(sys.argv[2]) if '"stream_state"' in l]
if not ev: print("no stream_state event"); sys.exit()
by = ev[-1]["keys_by_rank"]
bad = [x for x in by if abs(x - want / n) > 0.15 * want / n]
if len(by) != n or sum(by) != want or bad or want < 3000:
    print("want %d entries, 1/%d each; ranks hold %s" % (want, n, by))
else:
    print("ok")
PY
)
  check "partitioned state np=$np: each rank holds 1/$np of the (window, key) entries, all of them together" ok "$verdict"
done

# ---- exactly once: SIGKILL on every rank at many points, restart, repeat ----
python3 "$TMP/wc.py" gen 3 1 60000 200 600000 30000 200000 0.01 "$D/x"
mklog "$TMP/xlog" 4 "$D/x.0.csv"
XA="--log $TMP/xlog --window 20s --slide 10s --lateness 30s --agg sum --until-end --flush --max-batch-events 2000"
rm -rf "$TMP/xck"
run 2 $XA --checkpoint "$TMP/xck" --out "$TMP/xbase.csv"
check "uninterrupted run: exit 0" 0 "$(cat "$TMP/rc")"
python3 "$TMP/wc.py" ref 20000 10000 30000 sum 1 "$TMP/xone.csv" "$TMP/xone.counts" "$D/x.0.csv"
# Batches of 2000 make some events late that one big batch would not: the base run is the reference here.
[ "$(wc -l <"$TMP/xbase.csv")" -gt 1000 ] && pass "uninterrupted run wrote rows" || fail "uninterrupted run wrote rows"
grep -q "partition [0-9]* offset [0-9]*: value is not a number: 'abc'" "$TMP/err" &&
  pass "bad values named with partition and offset" || { fail "bad values named with partition and offset"; head -3 "$TMP/err"; }

# killrun DELAY_MS NP: starts the job, SIGKILLs mpirun's children (the ranks) and mpirun after DELAY_MS.
killrun() {
  mpirun --oversubscribe --allow-run-as-root -np "$2" "$WC" $XA --checkpoint "$TMP/kck" --out "$TMP/kout.csv" \
    >"$TMP/kout" 2>"$TMP/kerr" &
  mp=$!
  python3 -c "import time; time.sleep($1 / 1000)"
  for p in $(pgrep -P $mp); do kill -KILL "$p" 2>/dev/null; done
  kill -KILL $mp 2>/dev/null
  wait $mp 2>/dev/null
}
rm -rf "$TMP/kck" "$TMP/kout.csv"
kills=0
for d in 150 400 700 250 1000 550 1300 850; do
  killrun $d $((kills % 3 + 2))
  kills=$((kills + 1))
done
run 3 $XA --checkpoint "$TMP/kck" --out "$TMP/kout.csv"
check "after $kills SIGKILLs and restarts: exit 0" 0 "$(cat "$TMP/rc")"
check_files "after $kills SIGKILLs and restarts: output = uninterrupted run" "$TMP/xbase.csv" "$TMP/kout.csv"
grep -q "resumed" "$TMP/out" && pass "the last run resumed from a checkpoint" || fail "the last run resumed from a checkpoint"

# Rows appended after the last commit (a crash between the append and the commit) are cut off on restart.
rm -rf "$TMP/tck" && run 2 $XA --checkpoint "$TMP/tck" --out "$TMP/tout.csv" --max-batch-events 500
cp "$TMP/tout.csv" "$TMP/tpre.csv"
printf '1,2,garbage,row\n' >>"$TMP/tout.csv"
run 2 $XA --checkpoint "$TMP/tck" --out "$TMP/tout.csv"
check_files "a row appended after the last commit is cut off on restart" "$TMP/tpre.csv" "$TMP/tout.csv"

# ---- fault injection: an executor, then the leader, killed while running ----
FT="--ember-heartbeat-ms=100 --ember-timeout-ms=600"
rm -rf "$TMP/fck" "$TMP/fout.csv"
runr 4 $FT --ember-fault=kill:rank=2:after-tasks=12 $XA --checkpoint "$TMP/fck" --out "$TMP/fout.csv"
check_files "executor SIGKILLed mid-stream: output = uninterrupted run" "$TMP/xbase.csv" "$TMP/fout.csv"
grep -q "fenced r2" "$TMP/err" && pass "executor death detected" || { fail "executor death detected"; tail -5 "$TMP/err"; }
rm -rf "$TMP/fck" "$TMP/fout.csv"
runr 3 $FT --ember-fault=kill:leader:after-tasks=15 $XA --checkpoint "$TMP/fck" --out "$TMP/fout.csv"
check_files "leader SIGKILLed mid-stream: output = uninterrupted run" "$TMP/xbase.csv" "$TMP/fout.csv"
grep -q "elected leader" "$TMP/err" && pass "a new leader took over" || { fail "a new leader took over"; tail -5 "$TMP/err"; }

# ---- follow mode: polls for appends, stops cleanly on SIGTERM after committing, then resumes ----
python3 "$TMP/wc.py" gen 4 3 800 20 30000 4000 4000 0 "$D/f"
"$EMBER" log create "$TMP/flog" --partitions 2 >/dev/null
rm -rf "$TMP/fck"
mpirun --oversubscribe --allow-run-as-root -np 2 "$WC" --log "$TMP/flog" --window 5s --lateness 5s \
  --checkpoint "$TMP/fck" --out "$TMP/follow.csv" --trigger 100ms --ember-log-level info >"$TMP/fo" 2>"$TMP/fe" &
mp=$!
for st in 0 1 2; do
  sleep 0.5
  "$EMBER" log append "$TMP/flog" "$D/f.$st.csv" >/dev/null
done
# SIGTERM once the batches the leader logged so far hold all 2400 events (at most 15 s: a busy machine is slow, not wrong)
i=0
while [ $i -lt 150 ]; do
  n=$(sed -n 's/^\[r0 lead\] .*stream: batch [0-9]*: \([0-9]*\) events.*/\1/p' "$TMP/fe" | awk '{s += $1} END {print s + 0}')
  [ "$n" -ge 2400 ] && break
  sleep 0.1
  i=$((i + 1))
done
sleep 0.3
for p in $(pgrep -P $mp); do kill -TERM "$p" 2>/dev/null; done
i=0
while kill -0 $mp 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
kill -0 $mp 2>/dev/null && { fail "follow mode: stops on SIGTERM"; kill -KILL $mp; } || pass "follow mode: stops on SIGTERM"
wait $mp
grep -q "windowcount: .* 2400 events, 0 late" "$TMP/fo" && pass "follow mode: every appended event processed" ||
  { fail "follow mode: every appended event processed"; cat "$TMP/fo"; tail -5 "$TMP/fe"; }
python3 "$TMP/wc.py" ref 5000 5000 5000 count 0 "$TMP/fwant.csv" "$TMP/fwant.counts" "$D/f.0.csv" "$D/f.1.csv" "$D/f.2.csv"
check_files "follow mode: rows = model (no event beyond the lateness)" "$TMP/fwant.csv" "$TMP/follow.csv"
run 2 --log "$TMP/flog" --window 5s --lateness 5s --checkpoint "$TMP/fck" --out "$TMP/follow.csv" --until-end --flush
python3 "$TMP/wc.py" ref 5000 5000 5000 count 1 "$TMP/fwant.csv" "$TMP/fwant.counts" "$D/f.0.csv" "$D/f.1.csv" "$D/f.2.csv"
check_files "follow mode, then --until-end --flush: every window once" "$TMP/fwant.csv" "$TMP/follow.csv"

# ---- errors ----
usage_error windowcount "--window is required" --log "$TMP/flog" --checkpoint "$TMP/e" --out "$TMP/e.csv"
usage_error windowcount "not a duration" --log "$TMP/flog" --window 10 --checkpoint "$TMP/e" --out "$TMP/e.csv"
usage_error windowcount "not a duration" --log "$TMP/flog" --window 10s --slide 1x --checkpoint "$TMP/e" --out "$TMP/e.csv"
usage_error windowcount "at most the window" --log "$TMP/flog" --window 10s --slide 20s --checkpoint "$TMP/e" --out "$TMP/e.csv"
usage_error windowcount "not count, sum" --log "$TMP/flog" --window 10s --agg median --checkpoint "$TMP/e" --out "$TMP/e.csv"
usage_error windowcount "unknown flag" --log "$TMP/flog" --window 10s --bogus --checkpoint "$TMP/e" --out "$TMP/e.csv"
usage_error windowcount "needs --until-end" --log "$TMP/flog" --window 10s --flush --checkpoint "$TMP/e" --out "$TMP/e.csv"
usage_error windowcount "not a count" --log "$TMP/flog" --window 10s --max-batch-events x --checkpoint "$TMP/e" --out "$TMP/e.csv"
run 2 --log "$TMP/nope" --window 10s --checkpoint "$TMP/e" --out "$TMP/e.csv" --until-end
check "missing log directory: exit 1" 1 "$(cat "$TMP/rc")"
grep -q "^windowcount: .*$TMP/nope" "$TMP/err" && pass "missing log directory: named" || { fail "missing log directory: named"; head -3 "$TMP/err"; }
run 2 --log "$TMP/flog" --window 6s --lateness 5s --checkpoint "$TMP/fck" --out "$TMP/follow.csv" --until-end
check "a checkpoint of another query: exit 1" 1 "$(cat "$TMP/rc")"
grep -q "different query" "$TMP/err" && pass "a checkpoint of another query: named" || fail "a checkpoint of another query: named"
