#!/bin/sh
# e2e: `ember log` (the streaming input log) as a user runs it. What was appended is checked against python3
# (standard library only), which recomputes each record's partition (FNV-1a 64 of the key mod N), offsets and
# time ranges, and parses the segment files on its own from the documented byte format. Also: 4 appenders at
# once, a torn tail (truncate -s), a corrupt byte (printf | dd conv=notrunc), repair then append, bad input lines,
# header CSVs, a missing directory and bad arguments.
. "$(dirname "$0")/lib.sh"
E="${EMBER_CLI:-$BIN/ember}" # EMBER_CLI: test another build of the command
export LC_ALL=C

# run STATUS_WANTED ARGS...: runs ember, leaves stdout in $TMP/out, stderr in $TMP/err, status in $TMP/rc.
run() {
  timeout 60 "$E" "$@" >"$TMP/out" 2>"$TMP/err"
  echo $? >"$TMP/rc"
}
rc() { cat "$TMP/rc"; }

# expect NAME STATUS PATTERN: the last run exited STATUS and stderr matches PATTERN (grep -E; '' = any).
expect() {
  if [ "$(rc)" = "$2" ] && { [ -z "$3" ] || grep -qE -- "$3" "$TMP/err"; }; then pass "$1"; else
    fail "$1"; echo "  exit $(rc) (wanted $2), stderr:"; head -5 "$TMP/err" | sed 's/^/  /'; fi
}

# Independent model of the log: python3 reads the dump CSV or the input and answers questions.
py() { python3 - "$@"; }

# ---- create, append time,key,value lines, dump, info, verify -------------------------------------------------
T="$TMP/t1"
run log create "$T" --partitions 4 --segment-bytes 4k
expect "create" 0 ''
py "$TMP/in1.csv" <<'PY'
import csv, random, sys
rng = random.Random(7)
with open(sys.argv[1], "w", newline="") as f:
    w = csv.writer(f, lineterminator="\n")
    for i in range(3000):
        key = rng.choice(["user%d" % rng.randrange(50), "", "k,comma", 'q"uote', "ünï"])
        val = rng.choice(["v%d" % i, "", "a,b,c", 'say "hi"', "multi\nline", "x" * rng.randrange(300)])
        w.writerow([1700000000000 + rng.randrange(-5000, 100000), key, val])
PY
run log append "$T" "$TMP/in1.csv"
expect "append 3000 lines" 0 ''
run log dump "$T"
expect "dump" 0 ''
cp "$TMP/out" "$TMP/dump1.csv"
# The expected dump: records in input order, partition = FNV-1a 64(key) % 4, offsets dense per partition.
py "$TMP/in1.csv" 4 >"$TMP/want1.csv" <<'PY'
import csv, sys
def fnv(b):
    h = 14695981039346656037
    for c in b:
        h = ((h ^ c) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return h
n = int(sys.argv[2])
parts = [[] for _ in range(n)]
for t, k, v in csv.reader(open(sys.argv[1], newline="")):
    p = fnv(k.encode()) % n
    parts[p].append([p, len(parts[p]), int(t), k, v])
w = csv.writer(sys.stdout, lineterminator="\n")
for p in parts:
    w.writerows(p)
PY
check_files "dump equals python's partitioning of the input" "$TMP/want1.csv" "$TMP/dump1.csv"
run log info "$T"
expect "info" 0 ''
py "$TMP/dump1.csv" "$TMP/out" <<'PY' >"$TMP/infocheck"
import csv, sys
rows = list(csv.reader(open(sys.argv[1], newline="")))
got = {}
for line in open(sys.argv[2]):
    f = line.split()
    if f and f[0].isdigit():
        got[int(f[0])] = f
bad = []
for p in range(4):
    mine = [r for r in rows if int(r[0]) == p]
    f = got.get(p)
    want = ["%d" % p, "0", "%d" % len(mine), "%d" % len(mine)]
    if not f or f[:4] != want: bad.append("partition %d: %s vs %s" % (p, f, want))
    elif mine and (f[6], f[7]) != (str(min(int(r[2]) for r in mine)), str(max(int(r[2]) for r in mine))):
        bad.append("partition %d time range %s" % (p, f[6:8]))
print("ok" if not bad else bad)
PY
check "info: offsets, counts and event-time ranges" ok "$(cat "$TMP/infocheck")"
nseg=$(ls "$T"/p0000*/ | grep -c '\.log$')
[ "$nseg" -gt 8 ] && pass "segments roll at --segment-bytes ($nseg segments)" || fail "segments roll ($nseg)"
run log verify "$T"
expect "verify a clean topic exits 0" 0 ''
check "verify prints ok per partition" 4 "$(grep -c ': ok: offsets 0 to' "$TMP/out")"

# dump --partition / --from
run log dump "$T" --partition 2 --from 100
expect "dump --partition --from" 0 ''
py "$TMP/want1.csv" "$TMP/out" <<'PY' >"$TMP/fromcheck"
import csv, sys
want = [r for r in csv.reader(open(sys.argv[1], newline="")) if r[0] == "2" and int(r[1]) >= 100]
got = list(csv.reader(open(sys.argv[2], newline="")))
print("ok" if want == got and want else "differ %d %d" % (len(want), len(got)))
PY
check "dump --partition 2 --from 100 equals the model" ok "$(cat "$TMP/fromcheck")"
run log dump "$T" --from 100000
expect "dump --from beyond every end prints nothing" 0 ''
check "dump --from beyond the end is empty" "" "$(cat "$TMP/out")"

# ---- an independent reader of the byte format: python parses every segment and checks crc and offsets ------
py "$T" <<'PY' >"$TMP/fmt"
import glob, os, struct, sys, zlib
total = 0
for pd in sorted(glob.glob(os.path.join(sys.argv[1], "p*"))):
    nxt = 0
    for seg in sorted(glob.glob(os.path.join(pd, "*.log"))):
        base = int(os.path.basename(seg)[:20])
        assert base == nxt, (seg, nxt)
        d = open(seg, "rb").read()
        pos = 0
        while pos < len(d):
            ln, crc = struct.unpack_from("<II", d, pos)
            body = d[pos + 8: pos + 4 + ln]
            assert zlib.crc32(body) == crc
            off, t, kl, vl = struct.unpack_from("<QqII", body, 0)
            assert off == nxt and 28 + kl + vl == ln
            nxt += 1; total += 1; pos += 4 + ln
print(total)
PY
check "python reads the documented record format (crc32, dense offsets, segment names)" 3000 "$(cat "$TMP/fmt")"

# ---- header CSVs: fields by name ----------------------------------------------------------------------------
T2="$TMP/t2"
"$E" log create "$T2" --partitions 2
printf 'ts,user,amount,note\n1000,alice,12.5,first\n2000,bob,3,"x,y"\n\n3000,alice,7,\n' >"$TMP/h.csv"
run log append "$T2" --key-field user --time-field ts "$TMP/h.csv"
expect "append a header CSV by field names" 0 ''
run log dump "$T2"
sort -t, -k3,3n "$TMP/out" | cut -d, -f3- >"$TMP/h.got"
printf '1000,alice,"12.5,first"\n2000,bob,"3,""x,y"""\n3000,alice,"7,"\n' >"$TMP/h.want"
check_files "value defaults to the other fields as a CSV row" "$TMP/h.want" "$TMP/h.got"
"$E" log create "$TMP/t2b" --partitions 2
run log append "$TMP/t2b" --key-field user --time-field=ts --value-field amount "$TMP/h.csv"
expect "--value-field" 0 ''
run log dump "$TMP/t2b"
check "--value-field picks one column" "3 7 12.5" "$(cut -d, -f5 "$TMP/out" | sort -n | tr '\n' ' ' | sed 's/ $//')"
run log append "$T2" --key-field nosuch "$TMP/h.csv"
expect "missing header column is named" 1 "h.csv:1: --key-field: no column 'nosuch' in the header \(columns: ts, user, amount, note\)"
# no --time-field: event time is the time of the append
before=$(date +%s)000
printf 'user,v\nzed,1\n' | timeout 20 "$E" log append "$T2" --key-field user
after=$(( $(date +%s) + 1 ))000
t=$("$E" log dump "$T2" | awk -F, '$4 == "zed" {print $3}')
[ "$t" -ge "$before" ] && [ "$t" -le "$after" ] && pass "no --time-field: event time is now" || fail "append time $t"

# ---- bad input lines: reported with file:line:field, good lines appended, exit 1 -----------------------------
T3="$TMP/t3"
"$E" log create "$T3" --partitions 3
printf '1,a,ok1\nx12,b,bad time\n2,c\n3,d,"unterminated\n' >"$TMP/bad1.csv"
printf '4,e,ok2\n5,f,ok3,extra\n6,g,ok4\n' >"$TMP/bad2.csv"
run log append "$T3" "$TMP/bad1.csv" "$TMP/bad2.csv" "$TMP/nonexistent.csv"
expect "bad lines make append exit 1" 1 ''
grep -q "bad1.csv:2: time: 'x12' is not an integer" "$TMP/err" && pass "bad time named with file:line:field" || { fail "bad time message"; cat "$TMP/err"; }
grep -q "bad1.csv:3: expected 3 fields (time,key,value), got 2" "$TMP/err" && pass "short line named" || fail "short line message"
grep -q "bad1.csv:4: unterminated quoted" "$TMP/err" && pass "unterminated quote named" || fail "unterminated quote message"
grep -q "bad2.csv:2: expected 3 fields" "$TMP/err" && pass "long line named" || fail "long line message"
grep -q "nonexistent.csv: cannot open" "$TMP/err" && pass "missing input file named" || fail "missing input message"
grep -q "appended 3 records; skipped 5 bad" "$TMP/err" && pass "summary counts good and bad" || { fail "summary"; cat "$TMP/err"; }
check "the good lines were appended" "ok1 ok2 ok4" "$("$E" log dump "$T3" | cut -d, -f5 | sort | tr '\n' ' ' | sed 's/ $//')"

run log append "$T3" "$TMP"
expect "a directory as input is a read error" 1 "$TMP: read: Is a directory"
printf 'ts,"user\n1,a\n2,b\n' >"$TMP/badhdr.csv"
run log append "$T3" --key-field user "$TMP/badhdr.csv"
expect "malformed header row" 1 "badhdr.csv:1: .*\(in the header row; .*badhdr.csv skipped\)"
py "$TMP/big.csv" <<'PY'
import sys
with open(sys.argv[1], "w") as f:
    f.write("1,k," + "x" * (16 << 20) + "\n2,k,small\n")
PY
run log append "$T3" "$TMP/big.csv"
expect "a record over 16 MiB is a bad line" 1 "big.csv:1: key and value take 16777217 bytes, a record holds at most"
"$E" log dump "$T3" | grep -q ',small$' && pass "the line after a too-large record is appended" || fail "line after too-large"

# ---- concurrent appenders: 4 processes x 5000 lines, each through a pipe (many small batches) ---------------
T4="$TMP/t4"
"$E" log create "$T4" --partitions 3 --segment-bytes 16k
for w in 1 2 3 4; do
  (awk -v w=$w 'BEGIN { for (i = 0; i < 5000; i++) printf "%d,key%d,w%d-%d\n", i, i % 37, w, i }' |
    timeout 60 "$E" log append "$T4"; echo $? >"$TMP/conc$w") &
done
wait
check "4 concurrent appenders exit 0" "0000" "$(cat "$TMP/conc1" "$TMP/conc2" "$TMP/conc3" "$TMP/conc4" | tr -d '\n')"
"$E" log dump "$T4" >"$TMP/conc.csv"
py "$TMP/conc.csv" <<'PY' >"$TMP/concheck"
import collections, csv, sys
rows = list(csv.reader(open(sys.argv[1], newline="")))
vals = collections.Counter(r[4] for r in rows)
want = {"w%d-%d" % (w, i) for w in range(1, 5) for i in range(5000)}
offs = collections.defaultdict(list)
for r in rows: offs[r[0]].append(int(r[1]))
dense = all(o == list(range(len(o))) for o in offs.values())
ok = set(vals) == want and all(c == 1 for c in vals.values()) and len(rows) == 20000 and dense
print("ok" if ok else "rows %d distinct %d dense %s" % (len(rows), len(vals), dense))
PY
check "every record present exactly once, offsets dense" ok "$(cat "$TMP/concheck")"
run log verify "$T4"
expect "verify after concurrent appends" 0 ''

# ---- torn tail: truncate -s, verify names it, dump stops there, append refuses, repair, append continues -----
last=$(ls "$T"/p00001/*.log | sort | tail -1)
size=$(stat -c %s "$last")
truncate -s $((size - 5)) "$last"
n1=$(py "$TMP/want1.csv" <<'PY'
import csv, sys
print(sum(1 for r in csv.reader(open(sys.argv[1], newline="")) if r[0] == "1"))
PY
)
torn=$((n1 - 1))
run log verify "$T"
expect "verify finds the torn tail" 1 "1 partition with problems"
grep -q "^p00001: BAD: segment $(basename "$last") offset $torn byte [0-9]*: torn record" "$TMP/out" && pass "torn tail named with partition, segment, offset, byte" || { fail "torn tail report"; cat "$TMP/out"; }
run log dump "$T" --partition 1
expect "dump stops at the torn tail" 1 "offset $torn at byte [0-9]+: torn record"
check "dump printed every good record before it" "$torn" "$(py "$TMP/out" <<'PY'
import csv, sys
print(len(list(csv.reader(open(sys.argv[1], newline="")))))
PY
)"
printf '9,user0,after\n9,user1,after\n9,user2,after\n9,user3,after\n9,user4,after\n9,user5,after\n' >"$TMP/after.csv"
run log append "$T" "$TMP/after.csv"
expect "append refuses to write after a torn tail" 1 "nothing appended \(repair the partition first"
run log verify "$T" --repair
expect "verify --repair" 0 ''
grep -q "^p00001: cut at offset $torn: [0-9]* bytes removed; appends continue at offset $torn" "$TMP/out" && pass "repair says where it cut" || { fail "repair report"; cat "$TMP/out"; }
run log verify "$T"
expect "clean after repair" 0 ''
run log append "$T" "$TMP/after.csv"
expect "append after repair" 0 ''
run log dump "$T" --partition 1
check "appends continue at the torn offset" "$torn" "$(awk -F, '$5 == "after" {print $2; exit}' "$TMP/out")"
py "$TMP/out" <<'PY' >"$TMP/dense"
import csv, sys
o = [int(r[1]) for r in csv.reader(open(sys.argv[1], newline=""))]
print("ok" if o == list(range(len(o))) else "gap")
PY
check "offsets stay dense after repair" ok "$(cat "$TMP/dense")"

# ---- a corrupt byte in the middle: python finds record 10 of a middle segment, dd flips a byte of it ---------
seg=$(ls "$T"/p00002/*.log | sort | sed -n 3p)
loc=$(py "$seg" <<'PY'
import struct, sys, os
d = open(sys.argv[1], "rb").read()
pos = 0
for i in range(10):
    pos += 4 + struct.unpack_from("<I", d, pos)[0]
print(int(os.path.basename(sys.argv[1])[:20]) + 10, pos)
PY
)
off=${loc% *}; byte=${loc#* }
printf '\377' | dd of="$seg" bs=1 seek=$((byte + 20)) conv=notrunc 2>/dev/null
run log verify "$T"
expect "verify finds the corrupt byte" 1 ''
grep -q "^p00002: BAD: segment $(basename "$seg") offset $off byte $byte: corrupt record: bad crc" "$TMP/out" && pass "corrupt crc named with partition, offset and byte" || { fail "corrupt report (want offset $off byte $byte)"; cat "$TMP/out"; }
grep -q "^p00001: ok" "$TMP/out" && pass "other partitions still ok" || fail "other partitions"
run log info "$T"
expect "info reports the damage" 1 "p00002: segment .* offset $off"

# ---- a partition directory removed by hand; stdout that cannot be written ---------------------------------
"$E" log dump "$T4" >/dev/full 2>"$TMP/err"; echo $? >"$TMP/rc"
expect "dump to a full disk fails" 1 "writing stdout"
rm -r "$T4/p00001"
for sub in dump info verify; do
  run log $sub "$T4"
  expect "$sub with a partition directory missing" 1 "p00001: missing partition directory"
done
printf '1,a,b\n2,b,c\n3,c,d\n4,d,e\n' | timeout 20 "$E" log append "$T4" >/dev/null 2>"$TMP/err"; echo $? >"$TMP/rc"
expect "append to a missing partition directory" 1 "missing partition directory"

# ---- missing directory, not a topic, bad arguments ------------------------------------------------------------
for sub in info dump verify append; do
  run log $sub "$TMP/nosuch"
  expect "$sub on a missing directory" 1 "no such topic directory"
done
mkdir "$TMP/plain"
run log info "$TMP/plain"
expect "a directory that is not a topic" 1 "not a topic"
run log create "$T" --partitions 2
expect "create over a non-empty directory" 1 "already exists and is not empty"
run log create "$TMP/nope/deeper/t" --partitions 2
expect "create under a missing parent" 1 "cannot create the topic directory"
for bad in 0 x 10001 -3 ""; do
  run log create "$TMP/t9" --partitions "$bad"
  expect "bad --partitions '$bad'" 2 "--partitions: expected an integer from 1 to 10000"
done
run log create "$TMP/t9"
expect "missing --partitions" 2 "--partitions N is required"
run log create "$TMP/t9" --partitions
expect "--partitions without a value" 2 "--partitions needs a value"
run log create "$TMP/t9" --partitions 2 --segment-bytes 10
expect "bad --segment-bytes" 2 "--segment-bytes: expected a size from 64 to 1g"
run log create --partitions 2
expect "create without a directory" 2 "which directory"
run log create "$TMP/t9" "$TMP/t10" --partitions 2
expect "two directories" 2 "one topic directory only"
[ ! -e "$TMP/t9" ] && pass "failed creates leave nothing" || fail "failed creates leave nothing"
run log append "$T2" --bogus
expect "unknown append option" 2 "unknown option '--bogus'"
run log append "$T2" --key-field ""
expect "empty field name" 2 "--key-field: expected a column name"
run log dump "$T2" --from -1
expect "bad --from" 2 "--from: expected an offset"
run log dump "$T2" --partition 5
expect "--partition out of range" 2 "the topic has partitions 0 to 1"
run log info
expect "info without a directory" 2 "which topic"
run log frobnicate
expect "unknown subcommand" 2 "unknown subcommand 'frobnicate'"
run log
expect "log without a subcommand" 2 "usage: ember log"
run log --help
check "log --help exits 0 with usage on stdout" "0 yes" "$(rc) $(grep -q 'ember log create DIR --partitions N' "$TMP/out" && echo yes)"
run help
grep -q '^  log ' "$TMP/out" && pass "ember help lists log" || fail "ember help lists log"
