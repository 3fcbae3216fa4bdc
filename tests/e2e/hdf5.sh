#!/bin/sh
# e2e: HDF5 in and out (operators/sources/hdf5.c, operators/sinks/hdf5.c) through tests/mpi/hdf5io and the ETL job:
# Ember writes, h5dump and h5py read; h5py writes (1-D and 2-D numeric, compound with strings), Ember reads, every
# row exactly once for several partition counts; errors name file, dataset and what was expected.
. "$(dirname "$0")/lib.sh"
IO="$ROOT/build/tests/mpi/hdf5io"
# Debian's python3 has h5py (python3-h5py); a python3 earlier in PATH (pyenv, venv) may not.
PY=python3
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import h5py' 2>/dev/null && PY=/usr/bin/python3
if ! $PY -c 'import h5py' 2>/dev/null; then fail "python3 h5py is missing (make deps installs python3-h5py)"; exit 0; fi
D=$TMP/h5
mkdir -p "$D"

# io NP ARGS...: stdout of hdf5io; stderr in $TMP/err, status in $TMP/rc
io() {
  np=$1; shift
  mpirun_t 120 "$np" "$IO" "$@" 2>"$TMP/err"
  echo $? >"$TMP/rc"
}

# ---- Ember writes, h5dump and h5py read ----
for np in 1 3; do
  F=$D/w$np.h5
  out=$(io "$np" write "$F" /grp/rows 1000 7)
  check "write np=$np: exit 0" 0 "$(cat "$TMP/rc")"
  check "write np=$np: says saved" saved "$out"
  got=$($PY - "$F" <<'PY'
import sys, h5py, math
f = h5py.File(sys.argv[1], "r")
d = f["/grp/rows"]
ok = d.shape == (1000,) and list(d.dtype.names) == ["id", "x", "name", "small"]
for i, r in enumerate(d[:]):
    name = ("name, %d" if i % 7 == 0 else "name-%d") % i
    ok = ok and r["id"] == i and r["x"] == i * 0.25 and r["name"].decode() == name and r["small"] == i % 1000
a = d.attrs
ok = ok and a["ember_job"].decode() == "hdf5io" and a["ember_created"].decode().endswith("Z")
ok = ok and d.compression == "gzip" and d.chunks is not None
print("ok" if ok else "bad %r %r" % (d.shape, dict(a)))
PY
)
  check "write np=$np: h5py reads every row, attributes, chunked + deflate" ok "$got"
  n=$(h5dump -d /grp/rows -A 0 "$F" 2>/dev/null | grep -c '"name-')
  check "write np=$np: h5dump reads the rows" 857 "$n"
  check "write np=$np: no temporary files left" "w$np.h5" "$(ls -A "$D" | grep "w$np" | tr '\n' ' ' | sed 's/ $//')"
done
# Rewriting replaces the file atomically (and the first version was complete).
io 2 write "$D/w1.h5" /grp/rows 10 2 >/dev/null
check "rewrite: rows" 10 "$($PY -c "import h5py; print(h5py.File('$D/w1.h5','r')['/grp/rows'].shape[0])")"

# ---- h5py writes, Ember reads ----
$PY - "$D" <<'PY'
import sys, h5py, numpy as np
d = sys.argv[1]
with h5py.File(d + "/in.h5", "w") as f:
    f["i32"] = np.arange(-50, 53, dtype=np.int32)
    f["f64"] = np.linspace(0, 1, 37)
    f["m2"] = np.arange(60, dtype=np.int64).reshape(20, 3) * -3
    f.create_dataset("grp/f32_2d", data=(np.arange(12, dtype=np.float32).reshape(4, 3) / 4))
    dt = np.dtype([("city", "S12"), ("pop", "<i8"), ("area", "<f4"), ("u", "<u2")])
    rows = np.array([(b"Paris", 2161000, 105.4, 1), (b"Lyon, FR", 513275, 47.87, 2), (b"", -1, 0.5, 65535)] * 9, dtype=dt)
    f["cities"] = rows
    f["empty"] = np.zeros((0,), dtype=np.int64)
    f["r3"] = np.zeros((2, 2, 2))
    f["vstr"] = np.array(["a", "b"], dtype=h5py.string_dtype())
    f.create_dataset("cvl", data=np.array([(1, "x")], dtype=[("a", "<i4"), ("s", h5py.string_dtype())]))
open(d + "/not.h5", "w").write("plain text\n")
PY

# want NAME...: the expected hdf5io lines of the datasets, from h5py
want() {
  $PY - "$D/in.h5" "$@" <<'PY'
import sys, h5py
f = h5py.File(sys.argv[1], "r")
def fmt(v):
    if isinstance(v, bytes): return v.decode()
    if hasattr(v, "dtype") and v.dtype.kind == "f": return "%.17g" % float(v)
    return str(int(v))
for name in sys.argv[2:]:
    d = f[name]
    print("== " + name)
    for i, r in enumerate(d[:]):
        if d.dtype.names: x = [fmt(r[n]) for n in d.dtype.names]
        elif d.ndim == 2: x = [fmt(v) for v in r]
        else: x = [fmt(r)]
        print("%d\t%s" % (i, "|".join(x)))
PY
}
norm() { grep -v '^partitions:'; }
DS="i32 f64 m2 grp/f32_2d cities empty"
# shellcheck disable=SC2086
want $DS | norm >"$TMP/want"
for npp in 1:1 2:3 4:16 3:7; do
  np=${npp%:*} parts=${npp#*:}
  # shellcheck disable=SC2086
  io "$np" read "$D/in.h5" "$parts" $DS | norm >"$TMP/got"
  if cmp -s "$TMP/want" "$TMP/got" && [ "$(cat "$TMP/rc")" = 0 ]; then
    pass "read $DS: every row once, in order, np=$np, $parts partitions"
  else
    fail "read $DS: every row once, in order, np=$np, $parts partitions"; diff "$TMP/want" "$TMP/got" | head -5; head -3 "$TMP/err"
  fi
done
io 2 read "$D/in.h5" 5 cities >"$TMP/got"
check "partition count is the one asked for" "partitions: 5" "$(tail -1 "$TMP/got")"

# Round trip: Ember writes, Ember reads back.
io 2 read "$D/w3.h5" 4 /grp/rows | sed -n 2,4p >"$TMP/got"
printf '0\t0|0|name, 0|0\n1\t1|0.25|name-1|1\n2\t2|0.5|name-2|2\n' >"$TMP/want"
check_files "Ember reads what Ember wrote" "$TMP/want" "$TMP/got"

# ---- errors: file, dataset and what was expected ----
# err_case NAME CODE PATTERN ARGS...: hdf5io exits 1 and its error line has the code and matches PATTERN
err_case() {
  name=$1 code=$2 pat=$3; shift 3
  io 2 "$@" >/dev/null
  if [ "$(cat "$TMP/rc")" = 1 ] && grep "^hdf5io: $code: " "$TMP/err" | grep -q -e "$pat"; then pass "error: $name"; else
    fail "error: $name"; echo "  rc $(cat "$TMP/rc")"; head -3 "$TMP/err"; fi
}
err_case "missing file" EM_ENOENT "$D/nosuch.h5: no such file (reading dataset 'x')" read "$D/nosuch.h5" 2 x
err_case "missing dataset" EM_ENOENT "$D/in.h5: no dataset 'nope' (expected a 1-D or 2-D" read "$D/in.h5" 2 nope
err_case "not an HDF5 file" EM_ETYPE "$D/not.h5: not an HDF5 file" read "$D/not.h5" 2 x
err_case "rank 3" EM_ETYPE "dataset 'r3' has rank 3 (expected a 1-D or 2-D" read "$D/in.h5" 2 r3
err_case "string dataset" EM_ETYPE "dataset 'vstr' holds string values (expected" read "$D/in.h5" 2 vstr
err_case "variable-length string member" EM_ETYPE "member 's' is a variable-length string" read "$D/in.h5" 2 cvl
err_case "bad schema type" EM_EINVAL "unknown type 'int'" badwrite "$D/b.h5" "a:int,b:str4"
err_case "schema too short for a string" EM_ETASK "field 2 (b) is a string, expected a number" badwrite "$D/b.h5" "a:i64,b:f64"
err_case "string too long" EM_ETASK "field 2 (b): a string of 3 bytes does not fit str2" badwrite "$D/b.h5" "a:i64,b:str2"
err_case "record with too few fields" EM_ETASK "the value tuple has no field for member 3 (c)" badwrite "$D/b.h5" "a:i64,b:str4,c:f64"
# A failed save never leaves the file; its hidden parts directory may stay when a task of the failed action was
# still running elsewhere (documented in ember.h).
check "failed saves leave no file" "" "$(ls -A "$D" | grep -e '^b.h5')"

# ---- the ETL job writes HDF5 ----
E=$TMP/etl.h5
mpirun_t 120 2 "$BIN/etl" --left "$ROOT/examples/data/orders.csv" --right "$ROOT/examples/data/customers.csv" \
  --left-key customer_id --right-key customer_id --group-by country --agg count,sum:amount,avg:amount --out "$E" \
  2>"$TMP/err" >/dev/null
check "etl --out .h5: exit 0" 0 $?
got=$($PY - "$E" "$ROOT/examples/data" <<'PY'
import sys, h5py, csv, math
d = h5py.File(sys.argv[1], "r")["etl"]
cust = {r["customer_id"]: r for r in csv.DictReader(open(sys.argv[2] + "/customers.csv", newline=""))}
g = {}
for r in csv.DictReader(open(sys.argv[2] + "/orders.csv", newline="")):
    try: a = float(r["amount"])
    except ValueError: continue
    if not r["customer_id"] or r["customer_id"] not in cust: continue
    c = cust[r["customer_id"]]["country"]
    n, s = g.get(c, (0, 0.0)); g[c] = (n + 1, s + a)
rows = d[:]
ok = list(d.dtype.names) == ["country", "count", "sum_amount", "avg_amount"] and len(rows) == len(g)
for r, c in zip(rows, sorted(g, key=lambda s: s.encode())):
    n, s = g[c]
    ok = ok and r["country"].decode() == c and r["count"] == n and math.isclose(r["sum_amount"], s, rel_tol=1e-12) \
         and math.isclose(r["avg_amount"], s / n, rel_tol=1e-12)
print("ok" if ok else "bad")
PY
)
check "etl --out .h5: h5py reads the groups, = python csv" ok "$got"
