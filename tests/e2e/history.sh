#!/bin/sh
# e2e: event logs and `ember history` as a user meets them. A hand-written log (two runs in one file, with failed
# attempts, a fenced rank, an election, recomputes and an attempt that never ended) and real wordcount runs
# (fault-free, an executor killed, the leader killed) are checked with python3's json module: every line valid,
# and the numbers `ember history` prints (tasks, attempts, failures, records, median/max/skew, durations, fencing,
# elections) recomputed from the log independently. Malformed lines are named FILE:LINE and skipped; gzip logs,
# ids and paths resolve; --html is one self-contained page that parses, with one bar per task_end; headless
# Chromium screenshots it where installed. Console progress bars: drawn with --ember-progress=on, never with off.
. "$(dirname "$0")/lib.sh"
E="$BIN/ember"
WC="$BIN/wordcount"
FT="--ember-heartbeat-ms=100 --ember-timeout-ms=600"

cat >"$TMP/check.py" <<'PY'
import gzip, json, re, statistics, sys
from html.parser import HTMLParser
import xml.etree.ElementTree as ET

def read_lines(path):
    op = gzip.open if path.endswith(".gz") else open
    with op(path, "rb") as f:
        return f.read().decode("utf-8").split("\n")

def no_dups(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("duplicate keys %r" % keys)
    return dict(pairs)

def load(path, strict=True):
    """Every non-empty line must be one JSON object with ts and event (strict); returns them in order."""
    evs = []
    for i, l in enumerate(read_lines(path), 1):
        if not l:
            continue
        try:
            o = json.loads(l, object_pairs_hook=no_dups)
            assert isinstance(o, dict) and isinstance(o.get("event"), str)
            assert isinstance(o.get("ts"), (int, float)) and not isinstance(o.get("ts"), bool)
        except Exception as e:
            if strict:
                sys.exit("%s:%d: invalid event line (%s): %r" % (path, i, e, l[:200]))
            continue
        evs.append(o)
    return evs

def runs(evs):
    out = []
    for o in evs:
        if not out or (o["event"] == "job_start" and out[-1]):
            out.append([])
        out[-1].append(o)
    return out

def ok(st):
    return st is None or st in ("ok", 0, "0", "success")

def stages(run):
    """Per (action, stage): the numbers history prints, computed from the events."""
    st, att = {}, {}
    for o in run:
        e = o["event"]
        if e in ("stage_submitted", "stage_completed", "task_start", "task_end", "task_failed"):
            s = st.setdefault((o.get("action", -1), o.get("stage", -1)), {"dur": None})
            if e == "stage_completed" and "seconds" in o:
                s["dur"] = o["seconds"]
        if e in ("task_start", "task_end", "task_failed"):
            a = att.setdefault((o.get("action", -1), o.get("stage", -1), o.get("part", -1), o.get("attempt", 0)),
                               {"state": "running"})
            if e == "task_end":
                a["state"] = "ok" if ok(o.get("status")) else "failed"
                a["o"] = o
            elif e == "task_failed":
                a["state"] = "failed"
    res = {}
    for key, s in st.items():
        mine = {k: a for k, a in att.items() if k[:2] == key}
        good = [a for a in mine.values() if a["state"] == "ok"]
        secs = sorted(a["o"]["seconds"] for a in good if "seconds" in a["o"])
        r = {"tasks": len({k[2] for k, a in mine.items() if a["state"] == "ok"}),
             "attempts": len(mine),
             "failed": sum(a["state"] == "failed" for a in mine.values()),
             "lost": sum(a["state"] == "running" for a in mine.values()),
             "records_in": sum(int(a["o"].get("records_in", 0)) for a in good),
             "records_out": sum(int(a["o"].get("records_out", 0)) for a in good),
             "median": "%.3fs" % statistics.median(secs) if secs else "-",
             "max": "%.3fs" % max(secs) if secs else "-",
             "skew": "%.2fx" % (max(secs) / statistics.median(secs)) if secs and statistics.median(secs) > 0 else "-",
             "duration": "%.3fs" % s["dur"] if s["dur"] is not None else None}
        res[key] = r
    return res

ROW = re.compile(r"^  (\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\d+)\s+(\d+)\s+"
                 r"(\d+ B|\d+\.\d [KMGT]iB)\s+(\d+ B|\d+\.\d [KMGT]iB)\s+(\d+ B|\d+\.\d [KMGT]iB)\s+(\d+)ms  (.*)$")

def parse_history(path):
    sections = []
    for l in open(path, encoding="utf-8"):
        l = l.rstrip("\n")
        if l.startswith("job "):
            sections.append({"rows": {}, "marks": []})
        m = ROW.match(l)
        if m and sections:
            g = m.groups()
            sections[-1]["rows"][(int(g[0]), int(g[1]))] = {
                "tasks": int(g[2]), "attempts": int(g[3]), "failed": int(g[4]), "lost": int(g[5]),
                "duration": g[6], "median": g[7], "max": g[8], "skew": g[9], "records_in": int(g[10]),
                "records_out": int(g[11]), "name": g[16]}
        m = re.match(r"^\s+[+-]\d+\.\d{3}s  (\S+)\s", l)
        if m and sections:
            sections[-1]["marks"].append(m.group(1))
    return sections

def compare(log, hist):
    rs, secs = runs(load(log)), parse_history(hist)
    errs = []
    if len(rs) != len(secs):
        errs.append("runs: log %d, history %d" % (len(rs), len(secs)))
    for i, (run, sec) in enumerate(zip(rs, secs)):
        want = stages(run)
        if set(want) != set(sec["rows"]):
            errs.append("run %d stages: log %s, history %s" % (i, sorted(want), sorted(sec["rows"])))
        for key in want:
            got = sec["rows"].get(key, {})
            for f, v in want[key].items():
                if v is not None and got.get(f) != v:
                    errs.append("run %d stage %s %s: log %r, history %r" % (i, key, f, v, got.get(f)))
        # the list: one task_failed per failed attempt, one line per fencing, election, recompute, retry
        nfail = sum(s["failed"] for s in want.values())
        for ev, n in [("task_failed", nfail)] + [(e, sum(o["event"] == e for o in run)) for e in
                                                  ("rank_fenced", "election_start", "leader_elected", "recompute",
                                                   "retry")]:
            if sec["marks"].count(ev) != n:
                errs.append("run %d: %s listed %d times, log has %d" % (i, ev, sec["marks"].count(ev), n))
    if errs:
        sys.exit("\n".join(errs))

class Tags(HTMLParser):
    VOID = {"meta", "br", "img", "hr", "input", "link"}
    def __init__(self):
        super().__init__()
        self.stack, self.bars, self.bad = [], [], []
    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag in ("script", "link", "iframe", "img", "object", "embed"):
            self.bad.append(tag)
        for k, v in attrs:
            if k in ("src", "href") or (v and ("http:" in v or "https:" in v) and k != "xmlns"):
                self.bad.append("%s %s=%s" % (tag, k, v))
        if tag == "rect" and "task" in a.get("class", "").split():
            self.bars.append(a)
        if tag not in self.VOID:
            self.stack.append(tag)
    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag not in self.VOID:
            self.stack.pop()
    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.bad.append("unbalanced </%s> (open: %s)" % (tag, self.stack[-3:]))
        else:
            self.stack.pop()

def html(log, page):
    evs = load(log)
    text = open(page, encoding="utf-8").read()
    ET.fromstring(text.split("\n", 1)[1])  # well-formed as XML after the doctype line
    t = Tags()
    t.feed(text)
    t.close()
    if t.stack or t.bad:
        sys.exit("html: %s %s" % (t.stack, t.bad))
    nend = sum(o["event"] == "task_end" for o in evs)
    ends = sum(len({(o.get("action"), o.get("stage"), o.get("part"), o.get("attempt")) for o in r
                    if o["event"] == "task_end"}) for r in runs(evs))
    bars = sum(b.get("data-ev") == "task_end" for b in t.bars)
    failed = sum("failed" in b.get("class", "").split() for b in t.bars)
    want_failed = sum(s["failed"] for r in runs(evs) for s in stages(r).values())
    if not (bars == ends == nend) or failed != want_failed:
        sys.exit("html: %d task_end bars, %d task_end lines (%d attempts); %d failed bars, %d failed attempts"
                 % (bars, nend, ends, failed, want_failed))
    for e in ("rank_fenced", "leader_elected"):
        if sum(o["event"] == e for o in evs) != text.count('class="mark %s"' % e):
            sys.exit("html: %s markers" % e)

def need(log, *events):
    got = {o["event"] for o in load(log)}
    miss = [e for e in events if e not in got]
    if miss:
        sys.exit("missing events %s (have %s)" % (miss, sorted(got)))

def count(log, event):
    print(sum(o["event"] == event for o in load(log)))

def real(log, hist, extra):
    """A real run: the job's own events, history equal to python3, and what the scenario must show."""
    need(log, "job_start", "job_end", "stage_submitted", "stage_completed", "task_start", "task_end")
    compare(log, hist)
    evs = load(log)
    if not ok(evs[-1].get("status")) or evs[-1]["event"] != "job_end":
        sys.exit("the log does not end with a successful job_end: %r" % evs[-1])
    text = open(hist, encoding="utf-8").read()
    if extra == "fenced":
        v = [o["victim"] for o in evs if o["event"] == "rank_fenced"]
        if 2 not in v or "r2 fenced" not in text:
            sys.exit("no fencing of r2 (%r)" % v)
    if extra == "elected":
        need(log, "election_start", "leader_elected")
        i = next(i for i, o in enumerate(evs) if o["event"] == "leader_elected")
        if evs[i]["leader"] != 1 or "r1 leads" not in text:
            sys.exit("r1 not elected: %r" % evs[i])
        # the new leader appended the rest of the job to the same file; the old one wrote nothing after
        late = [o for o in evs[i:] if not o["event"].startswith("task_") and o.get("rank") != 1]
        if evs[-1]["rank"] != 1 or late:
            sys.exit("lines after the election not from r1: %r" % (late or evs[-1]))
    print(len(evs))

cmd = sys.argv[1]
if cmd == "validate":
    print(len(load(sys.argv[2])))
elif cmd == "compare":
    compare(sys.argv[2], sys.argv[3])
elif cmd == "html":
    html(sys.argv[2], sys.argv[3])
elif cmd == "need":
    need(sys.argv[2], *sys.argv[3:])
elif cmd == "count":
    count(sys.argv[2], sys.argv[3])
elif cmd == "real":
    real(sys.argv[2], sys.argv[3], sys.argv[4] if len(sys.argv) > 4 else "")
PY

# gen FILE: two runs in one file; the first with a failed attempt retried, a fetch failure, an executor fenced
# with an attempt that never ended, a recompute, an election and one record field missing; the second clean.
gen() {
  python3 - "$1" <<'PY'
import json, random, sys
rng = random.Random(7)
t = [1717000000000.0]
out = []
def ev(typ, wr=0, **kw):
    d = {"ts": round(t[0], 3), "event": typ}
    if "rank" not in kw:
        d["rank"] = wr
    d.update(kw)
    out.append(json.dumps(d, separators=(",", ":"), ensure_ascii=False))
    t[0] += rng.uniform(0.5, 20)
def task(a, s, p, r, att=0, status="ok", rin=True):
    ev("task_start", action=a, stage=s, part=p, rank=r, attempt=att)
    f = dict(action=a, stage=s, part=p, rank=r, attempt=att, status=status, seconds=round(rng.uniform(0.001, 0.2), 6),
             records_out=rng.randint(0, 10**6), bytes_out=rng.randint(0, 10**8), spill_bytes=rng.choice([0, 0, 4096]),
             fetch_wait_ms=round(rng.uniform(0, 3), 3))
    if rin:
        f.update(records_in=rng.randint(0, 10**6), bytes_in=rng.randint(0, 10**7))
    ev("task_end", **f)
for run in range(2):
    app = "app-2024052900000%d-4242" % run
    ev("job_start", app_id=app, ranks=3, program="wordcount", argv=["--top", "5", "in \"x\".txt", "naïve\t\u0001"])
    ev("action_start", action=1, op=3)
    ev("stage_submitted", action=1, stage=0, name="text map", tasks=6)
    for p in range(6):
        if run == 0 and p == 2:
            ev("task_start", action=1, stage=0, part=p, rank=2, attempt=0)
            ev("task_failed", action=1, stage=0, part=p, rank=2, attempt=0, error="user callback: <boom> & \"q\"")
            ev("retry", action=1, stage=0, part=p, attempt=1)
            task(1, 0, p, 0, att=1)
        else:
            task(1, 0, p, p % 3, rin=p != 4)
    ev("stage_completed", action=1, stage=0, name="text map", seconds=0.4321)
    ev("stage_submitted", action=1, stage=1, name="reduceByKey", tasks=4)
    for p in range(4):
        if run == 0 and p == 1:
            ev("task_start", action=1, stage=1, part=p, rank=2, attempt=0)   # never ends: r2 is lost
            ev("rank_fenced", victim=2, epoch=2, reason="silent for more than 600 ms", silent_ms=612)
            task(1, 1, p, 1, att=1, status="fetch_failed")
            ev("recompute", action=1, shuffle=0, map_part=5, lost_rank=2, reason="fetch_failed")
            task(1, 0, 5, 1, att=1)
            task(1, 1, p, 0, att=2)
        else:
            task(1, 1, p, p % 2)
    ev("stage_completed", action=1, stage=1, name="reduceByKey", seconds=1.25)
    if run == 0:
        ev("election_start", wr=1, candidate=1, previous_leader=0, epoch=2, silent_ms=700)
        ev("rank_fenced", wr=1, victim=0, epoch=3, reason="leader lost, replaced by election", silent_ms=700)
        ev("leader_elected", wr=1, leader=1, epoch=3, previous_leader=0, elapsed_ms=301)
    ev("action_end", action=1, status=0, seconds=1.9)
    ev("job_end", wr=1 if run == 0 else 0, status=0, seconds=2.0)
open(sys.argv[1], "w", encoding="utf-8").write("\n".join(out) + "\n")
PY
}

# ---- a hand-written log -------------------------------------------------------------------------------------
gen "$TMP/h.jsonl"
n=$(python3 "$TMP/check.py" validate "$TMP/h.jsonl")
"$E" history "$TMP/h.jsonl" >"$TMP/h.out" 2>"$TMP/h.err"; rc=$?
if [ $rc = 0 ] && [ ! -s "$TMP/h.err" ] && msg=$(python3 "$TMP/check.py" compare "$TMP/h.jsonl" "$TMP/h.out" 2>&1); then
  pass "history of a hand-written log ($n events, 2 runs) matches python3"
else fail "history of a hand-written log (rc=$rc)"; echo "$msg"; cat "$TMP/h.err"; head -30 "$TMP/h.out"; fi
if grep -q "^job app-20240529000000-4242: wordcount --top 5 in \"x\".txt naïve" "$TMP/h.out" &&
   grep -q 'status ok' "$TMP/h.out" && grep -q 'r2 fenced (silent for more than 600 ms)' "$TMP/h.out" &&
   grep -q 'r1 leads from epoch 3 (previous leader r0)' "$TMP/h.out" &&
   grep -q 'failed: user callback: <boom> & "q"' "$TMP/h.out"; then pass "history names the job, fencing, election and errors"
else fail "history names the job, fencing, election and errors"; cat "$TMP/h.out"; fi

# malformed lines: named FILE:LINE on stderr, skipped, the summary unchanged
python3 - "$TMP/h.jsonl" "$TMP/bad.jsonl" <<'PY'
import sys
lines = open(sys.argv[1], encoding="utf-8").read().split("\n")
bad = ['{"ts":1,"event":"x",}', "not json", '{"ts":1,"event":"x","v":01}', '{"event":"no_ts"}',
       '{"ts":1,"event":"x","s":"\\q"}', '{"ts":1,"event":"x"']
for i, b in enumerate(bad):
    lines.insert(3 + 7 * i, b)
open(sys.argv[2], "w", encoding="utf-8").write("\n".join(lines))
PY
"$E" history "$TMP/bad.jsonl" >"$TMP/bad.out" 2>"$TMP/bad.err"; rc=$?
want=$(grep -n -v -e '^$' "$TMP/bad.jsonl" | python3 -c '
import json, sys
for l in sys.stdin:
    n, s = l.rstrip("\n").split(":", 1)
    try:
        o = json.loads(s); assert isinstance(o.get("ts"), (int, float)) and isinstance(o.get("event"), str)
    except Exception: print(n)')
got=$(sed -n "s|^ember history: $TMP/bad.jsonl:\([0-9]*\): .*skipped$|\1|p" "$TMP/bad.err")
if [ $rc = 0 ] && [ "$want" = "$got" ] && [ "$(echo "$got" | wc -l)" = 6 ] &&
   [ "$(tail -n +2 "$TMP/h.out")" = "$(tail -n +2 "$TMP/bad.out")" ]; then
  pass "malformed lines reported as FILE:LINE ($(echo $got)) and skipped"
else fail "malformed lines (rc=$rc)"; echo "want: $want"; echo "got: $got"; cat "$TMP/bad.err"; fi

# gzip, ids and paths
python3 -c 'import gzip,shutil,sys; shutil.copyfileobj(open(sys.argv[1],"rb"), gzip.open(sys.argv[2],"wb"))' \
  "$TMP/h.jsonl" "$TMP/h.jsonl.gz"
"$E" history "$TMP/h.jsonl.gz" >"$TMP/gz.out" 2>&1
check "a gzip log reads like the plain one" "$(tail -n +2 "$TMP/h.out")" "$(tail -n +2 "$TMP/gz.out")"
mkdir -p "$EMBER_HOME/events" "$EMBER_HOME/jobs/42"
cp "$TMP/h.jsonl" "$EMBER_HOME/events/app-20240529000000-4242.jsonl"
cp "$TMP/h.jsonl.gz" "$EMBER_HOME/jobs/42/events.jsonl.gz"
"$E" history app-20240529000000-4242 >"$TMP/id1.out" 2>&1; r1=$?
"$E" history 42 >"$TMP/id2.out" 2>&1; r2=$?
"$E" history >"$TMP/id3.out" 2>&1; r3=$?
if [ "$r1$r2$r3" = 000 ] && [ "$(tail -n +2 "$TMP/id1.out")" = "$(tail -n +2 "$TMP/h.out")" ] &&
   [ "$(tail -n +2 "$TMP/id2.out")" = "$(tail -n +2 "$TMP/h.out")" ] &&
   head -1 "$TMP/id3.out" | grep -q "events/app-20240529000000-4242.jsonl"; then
  pass "history by app id, by job id (gzip) and of the newest log"
else fail "history by id ($r1 $r2 $r3)"; head -3 "$TMP/id1.out" "$TMP/id2.out" "$TMP/id3.out"; fi
"$E" history ../no/such/file >/dev/null 2>"$TMP/e1"; r1=$?
"$E" history 4711 >/dev/null 2>"$TMP/e2"; r2=$?
"$E" history "$TMP/h.jsonl" --bogus >/dev/null 2>"$TMP/e3"; r3=$?
"$E" history "$TMP/h.jsonl" --html >/dev/null 2>"$TMP/e4"; r4=$?
: >"$TMP/empty.jsonl"
"$E" history "$TMP/empty.jsonl" >/dev/null 2>"$TMP/e5"; r5=$?
if [ "$r1$r2$r3$r4$r5" = 11221 ] && grep -q "no such file" "$TMP/e1" &&
   grep -q "no event log for '4711' (neither $EMBER_HOME/jobs/4711/events.jsonl\[.gz\] nor $EMBER_HOME/events/4711.jsonl\[.gz\])" "$TMP/e2" &&
   grep -q "unknown option '--bogus'" "$TMP/e3" && grep -q -- "--html needs a file name" "$TMP/e4" &&
   grep -q "holds no events" "$TMP/e5"; then pass "history: bad ids, options and empty logs are errors"
else fail "history errors ($r1 $r2 $r3 $r4 $r5)"; cat "$TMP"/e[1-5]; fi

# ---- the HTML page ------------------------------------------------------------------------------------------
"$E" history "$TMP/h.jsonl" --html "$TMP/h.html" >/dev/null 2>"$TMP/html.err"; rc=$?
if [ $rc = 0 ] && msg=$(python3 "$TMP/check.py" html "$TMP/h.jsonl" "$TMP/h.html" 2>&1); then
  pass "--html: well-formed, self-contained, one bar per task_end, failed bars and markers"
else fail "--html (rc=$rc)"; echo "$msg"; cat "$TMP/html.err"; fi
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -n "$CHROMIUM" ]; then
  timeout -k 5 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1200,900 \
    --screenshot="$TMP/h.png" "file://$TMP/h.html" >"$TMP/chromium.log" 2>&1
  if python3 -c 'import sys; d=open(sys.argv[1],"rb").read(); sys.exit(not (d[:8]==b"\x89PNG\r\n\x1a\n" and len(d)>5000))' "$TMP/h.png" 2>/dev/null
  then pass "headless chromium renders the page ($(wc -c <"$TMP/h.png") bytes of PNG)"
  else fail "headless chromium screenshot"; tail -5 "$TMP/chromium.log"; fi
else
  echo "SKIP: chromium not installed"
fi

# ---- real runs ----------------------------------------------------------------------------------------------
# realrun NAME CHECK LOG NP ARGS...: wordcount under the recovery recipe with the event log at LOG, then: every
# line valid JSON, the job's own events present, history's numbers equal python3's, and CHECK (fenced: r2 was
# fenced; elected: r1 took over and appended the rest of the job to the same file).
realrun() {
  name=$1; what=$2; log=$3; np=$4; shift 4
  mpirun_ft 60 "$np" "$WC" --top 3 "$ROOT/examples/data/sample.txt" \
    --ember-event-log="$log" "$@" >"$TMP/run.out" 2>"$TMP/run.err"
  rc=$?
  "$E" history "$log" >"$TMP/run.hist" 2>"$TMP/run.herr"; hrc=$?
  if [ $rc = 0 ] && [ $hrc = 0 ] && [ ! -s "$TMP/run.herr" ] &&
     msg=$(python3 "$TMP/check.py" real "$log" "$TMP/run.hist" "$what" 2>&1); then
    pass "$name: $msg valid events, history matches python3${what:+ ($what)}"
  else fail "$name (rc=$rc, history rc=$hrc)"; echo "$msg"; tail -5 "$TMP/run.err"; cat "$TMP/run.herr"; head -30 "$TMP/run.hist"; fi
}
realrun "wordcount np 2" "" "$TMP/r1.jsonl" 2
"$E" history "$TMP/r1.jsonl" --html "$TMP/r1.html" >/dev/null 2>&1
msg=$(python3 "$TMP/check.py" html "$TMP/r1.jsonl" "$TMP/r1.html" 2>&1) && pass "wordcount np 2: --html has one bar per task_end" ||
  { fail "wordcount np 2: --html"; echo "$msg"; }
realrun "wordcount np 3, an executor killed" fenced "$TMP/r2.jsonl" 3 $FT --ember-fault=kill:rank=2:after-tasks=2
realrun "wordcount np 3, the leader killed" elected "$TMP/r3.jsonl" 3 $FT --ember-fault=kill:leader:after-tasks=3

# default path: $EMBER_HOME/events/app-YYYYMMDDHHMMSS-PID.jsonl, directories 0700
rm -rf "$EMBER_HOME/events"
timeout -k 5 60 mpirun --oversubscribe --allow-run-as-root -np 2 "$WC" "$ROOT/examples/data/sample.txt" >/dev/null 2>&1
logs=$(ls "$EMBER_HOME/events" 2>/dev/null)
mode=$(stat -c %a "$EMBER_HOME/events" 2>/dev/null)
if echo "$logs" | grep -qx 'app-[0-9]\{14\}-[0-9]*\.jsonl' && [ "$mode" = 700 ] &&
   python3 "$TMP/check.py" need "$EMBER_HOME/events/$logs" job_start job_end >/dev/null; then
  pass "default event log $logs under \$EMBER_HOME/events (0700)"
else fail "default event log: '$logs' mode $mode"; fi

# ---- console progress -----------------------------------------------------------------------------------------
# A rank stopped for 1.2 s keeps its stage running past the 0.5 s delay, so a bar must appear with =on (stderr is
# a pipe here) and never with =off.
prog() {
  mpirun_ft 60 2 "$WC" "$ROOT/examples/data/sample.txt" --ember-timeout-ms=5000 \
    --ember-fault=stop:rank=1:after-tasks=1:resume-after-ms=1200 --ember-progress="$1" >"$TMP/p.out" 2>"$TMP/p.err"
}
prog on; rc=$?
if [ $rc = 0 ] && python3 - "$TMP/p.err" <<'PY'
import re, sys
d = open(sys.argv[1], "rb").read().decode("utf-8", "replace")
bars = list(re.finditer(r"\r\[Stage \d+ [^:\]]*: [=> ]*\(\d+ \+ \d+\) / \d+\]", d))
assert bars, "no bar"
assert re.search(r"\r +\r", d[bars[-1].end():]), "last bar not cleared"
PY
then pass "--ember-progress=on draws stage bars and clears them"
else fail "--ember-progress=on (rc=$rc)"; od -c "$TMP/p.err" | tail -20; fi
prog off
if ! grep -q '\[Stage ' "$TMP/p.err"; then pass "--ember-progress=off draws nothing"; else fail "--ember-progress=off"; fi
