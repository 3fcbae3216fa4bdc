#!/bin/sh
# The recovery matrix of issue 5 over three jobs: tests/mpi/pipeline (join + groupByKey + sortByKey + distinct),
# wordcount and primecount, at np=4, with victims (an executor, the leader, two ranks one after the other, the
# newly elected leader), moments (map stage, shuffle fetch, reduce stage, returning a result) and ways (SIGKILL,
# exit, SIGSTOP with and without resume). Each case: exit 0, stdout equal to the fault-free run byte for byte
# (so nothing lost or duplicated), the detection on stderr, inside a hard timeout. The pipeline's fault-free
# output is itself checked against python3. Plus: too few ranks left (--ember-min-ranks) fails cleanly.
. "$(dirname "$0")/../e2e/lib.sh"
PIPE="$ROOT/build/tests/mpi/pipeline"
WC="$BIN/wordcount"
PC="$BIN/primecount"
FT="--ember-heartbeat-ms=100 --ember-timeout-ms=600"
launch() { # SECS PROG ARGS... (the recovery recipe of `ember run`)
  secs=$1; shift
  mpirun_ft "$secs" 4 "$@"
}
case_() { # NAME BASE PATTERN PROG ARGS...
  name=$1; base=$2; pat=$3; shift 3
  start=$(date +%s)
  launch 90 "$@" $FT >"$TMP/out" 2>"$TMP/err"; rc=$?
  secs=$(( $(date +%s) - start ))
  if [ $rc = 0 ] && cmp -s "$TMP/out" "$base" && grep -q "$pat" "$TMP/err"; then pass "$name (${secs}s)"
  else fail "$name (rc=$rc, ${secs}s)"; diff "$base" "$TMP/out" | head -5; grep -v "^\[r[0-9] exec\] INFO" "$TMP/err" | tail -6; fi
}

# fault-free baselines
python3 - >"$TMP/pipe.want" <<'PY'
N, M = 5000, 60000
st, amounts = {}, set()
for i in range(M):
    c = (i * 7919) % (N + 5)
    if c >= N:
        continue
    a = i % 1000
    s = st.setdefault("c%d" % (c % 7), [0, 0, 0])
    s[0] += 1; s[1] += a; s[2] = max(s[2], a)
    amounts.add(a)
for k in sorted(st):
    print(k, *st[k])
print("distinct amounts", len(amounts))
PY
launch 60 "$PIPE" >"$TMP/pipe.base" 2>"$TMP/err"
check_files "pipeline fault-free run equals python3" "$TMP/pipe.want" "$TMP/pipe.base"
"$ROOT/build/bench/zipfgen" --bytes 3M --seed 7 >"$TMP/corpus.txt" 2>/dev/null || head -c 3000000 /dev/urandom | od -An -tx1 >"$TMP/corpus.txt"
launch 60 "$WC" --top 10 "$TMP/corpus.txt" >"$TMP/wc.base" 2>/dev/null
tr -s ' \t\n\r\v\f' '\n' <"$TMP/corpus.txt" | grep -v '^$' | sort | uniq -c | sort -k1,1nr -k2 | head -10 |
  awk '{ print $1 "\t" $2 }' >"$TMP/wc.want"
head -10 "$TMP/wc.base" >"$TMP/wc.top"
check_files "wordcount fault-free top 10 equals coreutils" "$TMP/wc.want" "$TMP/wc.top"
# long enough (many small tasks) that a rank killed after two tasks is detected before the job ends
PCA="--limit 3e8 --ember-partitions=96"
launch 60 "$PC" $PCA >"$TMP/pc.base" 2>/dev/null
check "primecount fault-free run" "primes in [0, 300000000): 16252325" "$(head -1 "$TMP/pc.base")"

D="fenced\|elected"
B="$TMP/pipe.base"
case_ "pipeline: executor SIGKILL in the map stage"            $B "$D" "$PIPE" --ember-fault=kill:rank=2:during=map:after-tasks=2
case_ "pipeline: executor exit(1) during shuffle fetch"         $B "$D" "$PIPE" --ember-fault=exit:rank=3:code=1:during=fetch
case_ "pipeline: executor SIGKILL in the reduce stage"          $B "$D" "$PIPE" --ember-fault=kill:rank=1:during=reduce
case_ "pipeline: executor SIGSTOP while serving shuffle data"   $B "$D" "$PIPE" --ember-fault=stop:rank=2:during=shuffle
case_ "pipeline: executor SIGSTOP in reduce, resumed"           $B "$D" "$PIPE" --ember-fault=stop:rank=3:during=reduce:resume-after-ms=1500
case_ "pipeline: executor dies returning a result"              $B "$D" "$PIPE" --ember-fault=kill:rank=2:during=result
case_ "pipeline: leader SIGKILL in the map stage"               $B "$D" "$PIPE" --ember-fault=kill:leader:during=map:after-tasks=2
case_ "pipeline: leader SIGKILL during shuffle fetch"           $B "$D" "$PIPE" --ember-fault=kill:leader:during=fetch
case_ "pipeline: leader exit(1) in the reduce stage"            $B "$D" "$PIPE" --ember-fault=exit:leader:code=1:during=reduce
case_ "pipeline: leader SIGSTOP in reduce, resumed"             $B "$D" "$PIPE" --ember-fault=stop:leader:during=reduce:resume-after-ms=1500
case_ "pipeline: leader, then the newly elected leader"         $B "$D" "$PIPE" --ember-fault=kill:leader:during=map:after-tasks=2 --ember-fault=kill:rank=1:during=reduce
case_ "pipeline: two executors one after the other"             $B "$D" "$PIPE" --ember-fault=kill:rank=2:during=map:after-tasks=1 --ember-fault=kill:rank=3:during=reduce
case_ "pipeline: leader dies in the second action"              $B "$D" "$PIPE" --ember-fault=kill:leader:action=2:during=reduce
case_ "wordcount: leader SIGKILL during shuffle"                "$TMP/wc.base" "$D" "$WC" --top 10 "$TMP/corpus.txt" --ember-fault=kill:leader:during=shuffle
case_ "wordcount: executor SIGKILL during fetch"                 "$TMP/wc.base" "$D" "$WC" --top 10 "$TMP/corpus.txt" --ember-fault=kill:rank=3:during=fetch
case_ "wordcount: executor SIGSTOP in the map stage, resumed"   "$TMP/wc.base" "$D" "$WC" --top 10 "$TMP/corpus.txt" --ember-fault=stop:rank=1:during=map:resume-after-ms=1500
case_ "primecount: executor SIGKILL mid-stage"                  "$TMP/pc.base" "$D" "$PC" $PCA --ember-fault=kill:rank=2:after-tasks=2
case_ "primecount: leader SIGSTOP, never resumed"               "$TMP/pc.base" "$D" "$PC" $PCA --ember-fault=stop:leader:after-tasks=2

# too few ranks left: a clean failure with a message, never a hang (through `ember run`: with the recovery recipe
# mpirun itself exits 0 whatever happened, the job's status comes from the leader's status file)
start=$(date +%s)
timeout -k 5 60 "$BIN/ember" run -np 4 "$PIPE" $FT --ember-min-ranks=3 --ember-fault=kill:rank=2:during=map:after-tasks=1 \
  --ember-fault=kill:rank=3:during=map:after-tasks=1 >"$TMP/out" 2>"$TMP/err"; rc=$?
secs=$(( $(date +%s) - start ))
[ $rc != 0 ] && [ $rc != 124 ] && [ $rc != 137 ] && pass "too few ranks: non-zero exit ($rc) in ${secs}s" || fail "too few ranks: exit $rc"
[ -s "$TMP/out" ] && fail "too few ranks: printed a result" || pass "too few ranks: no result printed"
grep -q "fewer than --ember-min-ranks 3" "$TMP/err" && pass "too few ranks: the error names --ember-min-ranks" ||
  { fail "too few ranks: no message"; tail -5 "$TMP/err"; }

# Issue 5's acceptance line, as a user types it: through `ember run`, the leader killed during the shuffle.
timeout -k 5 120 "$BIN/ember" run -np 4 "$WC" --top 10 --ember-fault=kill:leader:during=shuffle "$TMP/corpus.txt" \
  >"$TMP/out" 2>"$TMP/err"; rc=$?
check "ember run -np 4 wordcount --top 10 --ember-fault=kill:leader:during=shuffle: exit 0" 0 "$rc"
check_files "ember run -np 4 wordcount, leader killed during the shuffle: same output as without the fault" "$TMP/wc.base" "$TMP/out"
grep -q "elected leader" "$TMP/err" && pass "ember run, leader killed: the election is on stderr" ||
  { fail "ember run, leader killed: no election on stderr"; tail -5 "$TMP/err"; }
