#!/bin/sh
# e2e: the ETL job (jobs/etl.c) against an independent computation in python3's standard library (csv module) on
# data from gen-orders (quoted names and countries, orphan orders, bad rows): inner and left joins, every
# aggregate, --where filters on both sides, string and numeric keys and groups, --sort-by, bad-row reports,
# --strict, usage errors; np = 1..4. Also em_csv itself (tests/mpi/csvread) against the csv module.
. "$(dirname "$0")/lib.sh"
ETL="$BIN/etl"
D=$TMP/data
"$BIN/gen-orders" --customers 300 --orders 4000 --bad-rows 5 --seed 11 --out "$D" || fail "gen-orders"
L=$D/orders.csv R=$D/customers.csv

# run NP ARGS...: stdout of the job; stderr in $TMP/err, status in $TMP/rc
run() {
  np=$1; shift
  mpirun_t 120 "$np" "$ETL" "$@" 2>"$TMP/err"
  echo $? >"$TMP/rc"
}

# ref ARGS...: the expected CSV from python (same arguments as the job, parsed by a tiny re-implementation).
ref() {
  python3 - "$@" <<'PY'
import sys, csv, math, re
a = sys.argv[1:]
opt = {"--join": "inner", "--where": [], "--sort-by": None}
i = 0
while i < len(a):
    if a[i] == "--where": opt["--where"].append(a[i + 1])
    else: opt[a[i]] = a[i + 1]
    i += 2
INT = re.compile(r"[+-]?[0-9]+\Z")
def isint(s): return bool(INT.match(s)) and -2**63 <= int(s) < 2**63
def num(s):
    try:
        v = float(s)
    except ValueError:
        return None
    if s != s.strip() or math.isinf(v) or math.isnan(v) or s.lower() in ("inf", "nan", "infinity", "-inf", "+inf"): return None
    return v
def typed(s): return None if s == "" else (int(s) if isint(s) else s)
def load(path): 
    r = csv.reader(open(path, newline="", encoding="utf-8", errors="surrogateescape"))
    return next(r), list(r)
lh, lrows = load(opt["--left"]); rh, rrows = load(opt["--right"])
def resolve(ref):
    if ref.startswith("left."): return (0, lh.index(ref[5:]))
    if ref.startswith("right."): return (1, rh.index(ref[6:]))
    return (0, lh.index(ref)) if ref in lh else (1, rh.index(ref))
wheres = []
for w in opt["--where"]:
    m = re.match(r"\s*(.*?)\s*(==|!=|<>|<=|>=|=|<|>)\s*(.*?)\s*\Z", w)
    col, op, val = m.groups()
    quoted = len(val) >= 2 and val[0] in "'\"" and val[-1] == val[0]
    if quoted: val = val[1:-1]
    wheres.append((resolve(col), op, None if quoted else num(val), val, col))
groups = [resolve(g) for g in opt["--group-by"].split(",")]
aggs = []
for s in opt["--agg"].split(","):
    k, _, c = s.partition(":")
    aggs.append((k, resolve(c) if c else None, k if not c else k + "_" + c))
def cmp(op, c): return {"=": c == 0, "==": c == 0, "!=": c != 0, "<>": c != 0, "<": c < 0, "<=": c <= 0, ">": c > 0, ">=": c >= 0}[op]
bad = {0: [], 1: []}
def prep(side, rows, key):
    out = {}
    for n, r in enumerate(rows):
        line = n + 2  # header is line 1; the generator writes no newlines inside fields
        ok = True
        for (ws, wi), op, nv, sv, col in wheres:
            if ws != side: continue
            f = r[wi]
            if nv is not None:
                if f == "": ok = False; break
                v = num(f)
                if v is None: bad[side].append((line, "%s: '%s' is not a number (--where)" % (col.split(".")[-1], f))); ok = False; break
                if not cmp(op, (v > nv) - (v < nv)): ok = False; break
            else:
                fb, sb = f.encode("utf-8", "surrogateescape"), sv.encode()
                if not cmp(op, (fb > sb) - (fb < sb)): ok = False; break
        if not ok: continue
        k = r[key]
        if k == "": bad[side].append((line, "%s: empty key" % (lh if side == 0 else rh)[key])); continue
        for kind, ref, _ in aggs:
            if ref and ref[0] == side and kind != "count_distinct" and r[ref[1]] != "" and num(r[ref[1]]) is None:
                bad[side].append((line, "%s: '%s' is not a number" % ((lh if side == 0 else rh)[ref[1]], r[ref[1]]))); ok = False; break
        if ok: out.setdefault(typed(k), []).append(r)
    return out
L = prep(0, lrows, lh.index(opt["--left-key"])); R = prep(1, rrows, rh.index(opt["--right-key"]))
res = {}
for k, ls in L.items():
    rs = R.get(k, [])
    if not rs and opt["--join"] == "inner": continue
    for l in ls:
        for r in (rs or [None]):
            row = (l, r)
            g = tuple(None if row[s] is None else typed(row[s][i]) for s, i in groups)
            st = res.setdefault(g, [[] for _ in aggs])
            for j, (kind, ref, _) in enumerate(aggs):
                if kind == "count": st[j].append(1); continue
                v = None if row[ref[0]] is None else row[ref[0]][ref[1]]
                if v in (None, ""): continue
                st[j].append(typed(v) if kind == "count_distinct" else (int(v) if isint(v) else num(v)))
def final(kind, vals):
    if kind == "count": return len(vals)
    if kind == "count_distinct": return len(set(vals))
    if not vals: return None
    allint = all(isinstance(v, int) for v in vals)
    if kind == "sum": return sum(vals) if allint else math.fsum(vals)
    if kind == "avg": return (sum(vals) if allint else math.fsum(vals)) / len(vals)
    m = min(vals) if kind == "min" else max(vals)
    return m if allint else float(m)
def skey(v):
    if v is None: return (0,)
    if isinstance(v, (int, float)): return (1, v)
    return (2, v.encode("utf-8", "surrogateescape"))
rows = [(g, [final(k, v) for (k, _, _), v in zip(aggs, st)]) for g, st in res.items()]
rows.sort(key=lambda r: tuple(skey(x) for x in r[0]))
names = [g for g in opt["--group-by"].split(",")] + [n for _, _, n in aggs]
if opt["--sort-by"]:
    c, d = opt["--sort-by"], ""
    if c.endswith(":desc") or c.endswith(":asc"): c, _, d = c.rpartition(":")
    c = c.replace(":", "_", 1)
    idx = names.index(c)
    rows.sort(key=lambda r: skey((list(r[0]) + r[1])[idx]), reverse=(d == "desc"))
w = csv.writer(sys.stdout, lineterminator="\n")
w.writerow(names)
for g, v in rows:
    w.writerow(["" if x is None else (repr(x) if isinstance(x, float) else x) for x in list(g) + v])
files = [opt["--left"], opt["--right"]]
with open(sys.argv[0] if False else "/dev/null", "w"): pass
sys.stderr.write("".join("%d %s %s\n" % (len(bad[s]), files[s], "; ".join("line %d: %s" % b for b in sorted(bad[s])[:10])) for s in (0, 1) if bad[s]))
PY
}

# same NAME FILE_A FILE_B: the two CSVs agree cell by cell, numbers within 1e-12 relative (sums in another order)
same() {
  r=$(python3 - "$2" "$3" <<'PY'
import sys, csv, math
a = list(csv.reader(open(sys.argv[1], newline=""))); b = list(csv.reader(open(sys.argv[2], newline="")))
def eq(x, y):
    if x == y: return True
    try: return math.isclose(float(x), float(y), rel_tol=1e-12, abs_tol=1e-9)
    except ValueError: return False
bad = [(i, x, y) for i, (x, y) in enumerate(zip(a, b)) if len(x) != len(y) or not all(eq(p, q) for p, q in zip(x, y))]
print("ok" if len(a) == len(b) and not bad else "rows %d vs %d; first difference %r" % (len(a), len(b), bad[:1]))
PY
)
  check "$1" ok "$r"
}

# etl_check NAME NP ARGS...: the job's stdout = python, exit 0, and the bad-row report = python's
etl_check() {
  name=$1 np=$2; shift 2
  ref "$@" >"$TMP/want" 2>"$TMP/want.bad"
  run "$np" "$@" >"$TMP/got"
  same "$name" "$TMP/want" "$TMP/got"
  check "$name: exit 0" 0 "$(cat "$TMP/rc")"
  # bad rows: "etl: skipped N bad rows in FILE: line L: msg; ..." (python: "N FILE line L: msg; ...")
  sed -n 's/^etl: skipped \([0-9]*\) bad rows\{0,1\} in \([^:]*\): \(.*\)$/\1 \2 \3/p' "$TMP/err" | sed 's/; \.\.\.$//' >"$TMP/got.bad"
  check_files "$name: bad rows reported" "$TMP/want.bad" "$TMP/got.bad"
}

BASE="--left $L --right $R --left-key customer_id --right-key customer_id"
AGGS="count,sum:amount,avg:amount,min:amount,max:amount,count_distinct:product"
# Each run costs ~3 s of MPI start-up and shutdown on 2 cores: np 2 and 3 are covered by the checks below.
for np in 1 4; do
  etl_check "inner join by country, every aggregate, np=$np" "$np" $BASE --group-by country --agg "$AGGS"
done
etl_check "left join keeps orphan orders (NULL country), np=2" 2 $BASE --join left --group-by country --agg "$AGGS"
etl_check "numeric group key (quantity), int sums, np=3" 3 $BASE --group-by quantity --agg count,sum:quantity,min:quantity,max:left.customer_id
etl_check "two group columns from both sides, left join, np=2" 2 $BASE --join left --group-by segment,product --agg count,avg:amount,count_distinct:right.customer_id
etl_check "filters on both sides before the join, np=2" 2 $BASE --where 'amount >= 250' --where 'country != France' --where "segment < 'smb'" --group-by country --agg count,sum:amount
etl_check "--sort-by sum:amount:desc, np=2" 2 $BASE --group-by country --agg count,sum:amount --sort-by sum:amount:desc
etl_check "string key: join on country names (quoted, with commas), np=3" 3 --left "$R" --right "$R" --left-key country --right-key country --group-by left.segment --agg count
# The same answers through the shuffle join (--broadcast-max 0: the right side is not broadcast to every rank)
etl_check "shuffle join: inner, every aggregate, np=2" 2 $BASE --broadcast-max 0 --group-by country --agg "$AGGS"
etl_check "shuffle join: left join, groups from both sides, np=3" 3 $BASE --broadcast-max 0 --join left --group-by segment,product --agg count,avg:amount,count_distinct:right.customer_id
etl_check "shuffle join: filters on both sides, string key, np=2" 2 --left "$R" --right "$R" --left-key country --right-key country --broadcast-max 0 --where "left.segment != 'smb'" --where "right.segment != 'enterprise'" --group-by left.segment --agg count

# hand-made data: quoted fields with newlines and quotes, 007 = 7 as a key, empty aggregated values, float + int mix
printf 'k,v,note\n007,1.5,"a, ""b"""\n7,2,x\n8,,"multi\nline"\n9,abc,y\n,3,z\n10,1e2,w\n' >"$TMP/l.csv"
printf 'id,name\n7,"Seven, the"\n8,Eight\n10,Ten\n' >"$TMP/r.csv"
run 2 --left "$TMP/l.csv" --right "$TMP/r.csv" --left-key k --right-key id --join left --group-by name --agg count,sum:v,avg:v,min:v,max:v >"$TMP/got"
printf 'name,count,sum_v,avg_v,min_v,max_v\nEight,1,,,,\n"Seven, the",2,3.5,1.75,1.5,2\nTen,1,100,100,100,100\n' >"$TMP/want"
check_files "quoted fields, 007 = 7, empty values, int/float mix" "$TMP/want" "$TMP/got"
check "bad rows named with file and line" "etl: skipped 2 bad rows in $TMP/l.csv: line 6: v: 'abc' is not a number; line 7: k: empty key" "$(grep '^etl: skipped' "$TMP/err")"

# --strict: the bad rows are fatal, no output written
run 2 $BASE --group-by country --agg count,sum:amount --strict --out "$TMP/strict.csv" >/dev/null
check "--strict with bad rows: exit 1" 1 "$(cat "$TMP/rc")"
check "--strict names the bad rows" 1 "$(grep -c "^etl: --strict: found 5 bad rows in $L: line 401: amount: 'n/a' is not a number; line 1201: customer_id: empty key;" "$TMP/err")"
check "--strict: no output file" no "$([ -e "$TMP/strict.csv" ] && echo yes || echo no)"
printf 'a,b\n1,2\n3,4,5\n' >"$TMP/malformed.csv"
run 2 --left "$TMP/malformed.csv" --right "$TMP/r.csv" --left-key a --right-key id --group-by b --agg count --strict >/dev/null
check "--strict with a malformed CSV row: exit 1" 1 "$(cat "$TMP/rc")"
check "--strict malformed row: file:line" 1 "$(grep "^etl: " "$TMP/err" | grep -c "malformed.csv:3: expected 2 fields")"

# --out FILE.csv: the same table, written atomically
ref $BASE --group-by country --agg "$AGGS" >"$TMP/want" 2>/dev/null
run 3 $BASE --group-by country --agg "$AGGS" --out "$TMP/out.csv" >/dev/null
same "--out .csv = python at np=3" "$TMP/want" "$TMP/out.csv"
check "--out leaves no temporary file" "out.csv" "$(ls "$TMP" | grep '^out\.csv')"

# `ember run -np 3`, as the issue's acceptance line does it
ref $BASE --group-by country --agg "$AGGS" >"$TMP/want" 2>/dev/null
timeout -k 5 120 "$BIN/ember" run -np 3 "$ETL" $BASE --group-by country --agg "$AGGS" >"$TMP/got" 2>"$TMP/err"
check "ember run -np 3: exit 0" 0 $?
same "ember run -np 3 etl" "$TMP/want" "$TMP/got"

# em_csv itself: csvread prints what em_csv reads, against the csv module (quotes, newlines in fields, UTF-8)
python3 - "$TMP/q.csv" <<'PY'
import csv, random, sys
rng = random.Random(5)
vals = ["plain", "with, comma", 'say "hi"', "multi\nline", "", "naïve", "tab\there", "  spaces  ", "x" * 300]
with open(sys.argv[1], "w", newline="") as f:
    w = csv.writer(f, lineterminator="\r\n" if rng.random() < 0.5 else "\n")
    w.writerow(["a", "b", "c"])
    for i in range(3000): w.writerow([i, rng.choice(vals), rng.choice(vals)])
PY
python3 - "$TMP/q.csv" >"$TMP/want" <<'PY'
import csv, sys
def esc(s): return "".join("\\x%02x" % b if b < 0x20 or b in (0x5c, 0x7c, 0x7f) else chr(b) for b in s.encode()).encode("latin-1").decode("utf-8")
rows = list(csv.reader(open(sys.argv[1], newline="", encoding="utf-8")))
print("cols: %d %s" % (len(rows[0]), "|".join(rows[0])))
for r in rows[1:]: print("|".join(esc(x) for x in r))
PY
mpirun_t 120 3 "$ROOT/build/tests/mpi/csvread" --ember-partitions 9 "$TMP/q.csv" >"$TMP/got" 2>"$TMP/err"
check_files "em_csv = python csv module, np=3, 9 partitions" "$TMP/want" "$TMP/got"

# usage errors: exit 2, one line naming the problem
bad() { usage_error etl "$@"; }
bad "--left $TMP/nosuch.csv: no such file" --left "$TMP/nosuch.csv" --right "$R" --left-key a --right-key b --group-by x --agg count
bad "--right-key: no column 'nope' in $R (columns: customer_id, name, country, segment)" $BASE --right-key nope --group-by country --agg count
bad "--group-by: no column 'planet'" $BASE --group-by planet --agg count
bad "--agg: column 'customer_id' is in both" $BASE --group-by country --agg count_distinct:customer_id
bad "--where 'amount ~ 3': expected" $BASE --where 'amount ~ 3' --group-by country --agg count
bad "--sort-by: 'total' is not an output column" $BASE --group-by country --agg count --sort-by total
bad "missing --agg LIST" $BASE --group-by country
