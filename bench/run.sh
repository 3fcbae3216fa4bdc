#!/bin/sh
# bench/run.sh — Ember against baselines measured in the same run, printed as ONE markdown table (issues 2, 3).
#
#   sh bench/run.sh                 (what `make bench` runs after building)
#   BENCH_RUNS=5 sh bench/run.sh    runs per measurement; the table shows the median (default 3)
#   BENCH_QUICK=1 sh bench/run.sh   small sizes only (pi(1e9), 20 MB / 40 MB corpora): a smoke run
#   BENCH_DIR=/path                 where generated corpora are cached (default /tmp/ember-bench)
#
# Rules: every program runs under `timeout`; a program that is not built prints `not built yet`, never a number;
# a failed run prints `failed` with its log; Ember's output is checked against the baseline's (`WRONG OUTPUT`).
# Times are wall-clock seconds (median). Peak RSS per rank comes from GNU time wrapped around each rank.
# Progress goes to stderr; the table goes to stdout.
# shellcheck disable=SC2086  # $MPIRUN and $(rank_wrap ...) are split into words on purpose
set -u
cd "$(dirname "$0")/.." || exit 1

RUNS=${BENCH_RUNS:-3}
QUICK=${BENCH_QUICK:-0}
DIR=${BENCH_DIR:-/tmp/ember-bench}
# Where the programs are (overridable so the script itself can be tested with stand-ins).
B=${BENCH_BENCH_DIR:-build/bench}
BIN=${BENCH_BIN_DIR:-build/bin}
EMBER=$BIN/ember
GTIME=/usr/bin/time
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
# Plain-mpirun rows: the same recovery settings `ember run` uses are not needed (nothing fails on purpose); the
# same transports are (shared memory only, as `ember run` picks when every rank is on this host: without them Open
# MPI spends 0.2-0.8 s of each start probing network transports).
MPIRUN="mpirun -np 2 --mca pml ob1 --mca btl self,vader"

if [ "$QUICK" = 1 ]; then
    PI_N=1e9; PI_EXPECT=50847534
    SMALL=20M; BIG=40M; OOC_MEM=16M
    WC_EVENTS=1000000; WC_LABEL=1M
else
    PI_N=1e10; PI_EXPECT=455052511
    SMALL=100M; BIG=1G; OOC_MEM=128M
    WC_EVENTS=20000000; WC_LABEL=20M
fi

mkdir -p "$DIR"
LOGS=$(mktemp -d /tmp/ember-bench-logs.XXXXXX)
ROWS=$LOGS/rows.md
: >"$ROWS"
NOTES=$LOGS/notes.txt
: >"$NOTES"

say() { echo "bench: $*" >&2; }

# ---- helpers ---------------------------------------------------------------------------------------------

# Median of the numbers given as arguments.
median() {
    printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {if (NR==0) exit 1; if (NR%2) print v[(NR+1)/2]; else printf "%.6g\n", (v[NR/2]+v[NR/2+1])/2}'
}

now_ns() { date +%s%N; }

# run_timed LIMIT LOG CMD...: runs CMD under `timeout` with stdout+stderr in LOG; sets T (seconds) and RC.
run_timed() {
    _lim=$1; _log=$2; shift 2
    _t0=$(now_ns)
    timeout -k 10 "$_lim" "$@" >"$_log" 2>&1
    RC=$?
    _t1=$(now_ns)
    T=$(awk -v a="$_t0" -v b="$_t1" 'BEGIN {printf "%.3f", (b-a)/1e9}')
    [ "$RC" = 124 ] && echo "(timed out after ${_lim}s)" >>"$_log"
    return $RC
}

# bench_n NAME LIMIT CMD...: runs CMD $RUNS times; on success sets MED (median seconds) and LAST (log of the last
# run) and returns 0; on the first failure sets FAIL ("exit N, log: PATH") and returns 1.
bench_n() {
    _name=$1; _lim=$2; shift 2
    _ts=""
    _i=1
    while [ "$_i" -le "$RUNS" ]; do
        LAST=$LOGS/$_name.$_i.log
        if [ -n "${RSSF:-}" ]; then : >"$RSSF"; fi
        if ! run_timed "$_lim" "$LAST" "$@"; then
            FAIL="exit $RC, log: $LAST"
            say "$_name: failed ($FAIL)"
            return 1
        fi
        say "$_name run $_i: ${T}s"
        _ts="$_ts $T"
        _i=$((_i + 1))
    done
    MED=$(median $_ts)
    return 0
}

# Peak RSS per rank, from the GNU time lines (%M, KiB) in $RSSF: "a, b MB" (sorted by rank order of exit).
rss_list() {
    if [ -z "${RSSF:-}" ] || [ ! -s "$RSSF" ]; then echo ""; return; fi
    grep -E '^[0-9]+$' "$RSSF" | awk '{printf "%s%.0f", (NR>1?", ":""), $1/1024} END {if (NR) printf " MB"}'
}
rss_max_kb() { grep -E '^[0-9]+$' "$RSSF" | sort -n | tail -1; }

# A wrapper for each rank that records its peak RSS, when GNU time is there.
HAVE_GTIME=0
if "$GTIME" -f %M true >/dev/null 2>&1; then
    HAVE_GTIME=1
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing GNU time (Debian package time) for peak-RSS measurements"
    apt-get install -y -qq time >/dev/null 2>&1 && "$GTIME" -f %M true >/dev/null 2>&1 && HAVE_GTIME=1
fi
[ "$HAVE_GTIME" = 1 ] || echo "- peak RSS not measured: GNU time (/usr/bin/time, Debian package time) is missing" >>"$NOTES"
# rank_wrap FILE: prints the words to put before a rank's program so that its peak RSS is appended to FILE.
rank_wrap() { [ "$HAVE_GTIME" = 1 ] && printf '%s -a -o %s -f %%M' "$GTIME" "$1"; }

fmt_s() { awk -v t="$1" 'BEGIN {printf (t < 10 ? "%.3f s" : "%.1f s"), t}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2fx", a/b; else print "—"}'; }

# row BENCHMARK EMBER BASELINE BASELINE_TIME RATIO TARGET NOTE
row() {
    _note=$(printf '%s' "$7" | sed 's/[; ]*$//')
    printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$1" "$2" "$3" "$4" "$5" "$6" "$_note" >>"$ROWS"
}

have() { [ -x "$1" ]; }

# ---- pi(N): primecount vs primesieve ------------------------------------------------------------------------

bench_primes() {
    name="pi($PI_N), np=2"
    ps_t="—"; ps_med=""; ps_note=""
    if ! command -v primesieve >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing primesieve (Debian package primesieve)"
        apt-get install -y -qq primesieve >/dev/null 2>&1
    fi
    if command -v primesieve >/dev/null 2>&1; then
        RSSF=""
        if bench_n primesieve 300 primesieve -t2 --no-status "$PI_N"; then
            ps_med=$MED; ps_t=$(fmt_s "$MED")
            got=$(sed -n 's/^Primes: *//p' "$LAST")
            [ "$got" = "$PI_EXPECT" ] || ps_note="primesieve printed '$got', expected $PI_EXPECT; "
        else
            ps_t="failed"; ps_note="primesieve $FAIL; "
        fi
    else
        ps_note="primesieve missing (apt-get install primesieve as root); "
    fi
    if ! have "$EMBER" || ! have "$BIN/primecount"; then
        row "$name" "—" "primesieve -t2" "$ps_t" "—" "≤ 1.5x" "${ps_note}not built yet"
        return
    fi
    RSSF=""
    if bench_n primecount 300 "$EMBER" run -np 2 "$BIN/primecount" --limit "$PI_N"; then
        got=$(grep -E '^primes in ' "$LAST" | sed 's/.*: *//')
        note="$ps_note"
        [ "$got" = "$PI_EXPECT" ] || note="${note}WRONG OUTPUT: '$got', expected $PI_EXPECT; "
        r="—"; [ -n "$ps_med" ] && r=$(ratio "$MED" "$ps_med")
        row "$name" "$(fmt_s "$MED")" "primesieve -t2" "$ps_t" "$r" "≤ 1.5x" "${note}ember run + primecount --limit $PI_N"
    else
        row "$name" "failed" "primesieve -t2" "$ps_t" "—" "≤ 1.5x" "${ps_note}$FAIL"
    fi
}

# ---- scheduler overhead ----------------------------------------------------------------------------------

bench_sched() {
    name="scheduler overhead, 10,000 one-record tasks, np=2"
    if ! have "$B/sched_overhead"; then
        row "$name" "—" "Dask distributed (published)" "~1000 us/task" "—" "< 20 us/task" "not built yet"
        return
    fi
    us=""
    i=1
    while [ "$i" -le "$RUNS" ]; do
        LAST=$LOGS/sched_overhead.$i.log
        if ! run_timed 300 "$LAST" $MPIRUN "$B/sched_overhead"; then
            row "$name" "failed" "Dask distributed (published)" "~1000 us/task" "—" "< 20 us/task" "exit $RC, log: $LAST"
            return
        fi
        u=$(sed -n 's/^us per task: *//p' "$LAST")
        [ -n "$u" ] || { row "$name" "failed" "Dask distributed (published)" "~1000 us/task" "—" "< 20 us/task" "no 'us per task' line, log: $LAST"; return; }
        say "sched_overhead run $i: $u us/task"
        us="$us $u"
        i=$((i + 1))
    done
    m=$(median $us)
    row "$name" "$(awk -v u="$m" 'BEGIN {printf "%.1f us/task", u}')" "Dask distributed (published)" "~1000 us/task" \
        "$(ratio "$m" 1000)" "< 20 us/task" "em_count over 10,000 partitions minus 2 partitions, plain mpirun"
}

# ---- start-up ----------------------------------------------------------------------------------------------

bench_startup() {
    hello_med=""; hello_t="—"; hnote=""
    if have "$B/mpi_hello"; then
        RSSF=""
        if bench_n mpi_hello 60 $MPIRUN "$B/mpi_hello"; then hello_med=$MED; hello_t=$(fmt_s "$MED")
        else hello_t="failed"; hnote="mpi_hello $FAIL; "; fi
    else
        hello_t="—"; hnote="mpi_hello not built yet; "
    fi
    for how in mpirun "ember run"; do
        name="start-up: empty job (em_init + em_finalize), np=2, $how"
        if ! have "$B/empty_job" || { [ "$how" = "ember run" ] && ! have "$EMBER"; }; then
            row "$name" "—" "MPI hello (mpirun -np 2)" "$hello_t" "—" "(reported)" "${hnote}not built yet"
            continue
        fi
        RSSF=""
        if [ "$how" = mpirun ]; then set -- $MPIRUN "$B/empty_job"; else set -- "$EMBER" run -np 2 "$B/empty_job"; fi
        if bench_n "empty_job-$(echo "$how" | tr ' ' -)" 60 "$@"; then
            r="—"; extra=""
            if [ -n "$hello_med" ]; then
                r=$(ratio "$MED" "$hello_med")
                extra=$(awk -v a="$MED" -v b="$hello_med" 'BEGIN {printf "%+.0f ms over plain MPI", (a-b)*1000}')
            fi
            row "$name" "$(fmt_s "$MED")" "MPI hello (mpirun -np 2)" "$hello_t" "$r" "(reported)" "${hnote}$extra"
        else
            row "$name" "failed" "MPI hello (mpirun -np 2)" "$hello_t" "—" "(reported)" "${hnote}$FAIL"
        fi
    done
}

# ---- word count --------------------------------------------------------------------------------------------

# corpus SIZE: path of the cached Zipf corpus of SIZE (generated once with seed 42); empty if zipfgen is missing.
corpus() {
    f=$DIR/zipf-$1-seed42.txt
    want=$(awk -v s="$1" 'BEGIN {m=1; u=substr(s, length(s)); if (u=="K") m=1024; if (u=="M") m=1048576; if (u=="G") m=1073741824; printf "%.0f", s*m}')
    if [ ! -f "$f" ] || [ "$(wc -c <"$f")" != "$want" ]; then
        have "$B/zipfgen" || { echo ""; return; }
        say "generating $f"
        if ! timeout 600 "$B/zipfgen" --bytes "$1" --seed 42 >"$f.tmp"; then rm -f "$f.tmp"; echo ""; return; fi
        mv "$f.tmp" "$f"
    fi
    cat "$f" >/dev/null # warm the page cache so every contender reads from memory
    echo "$f"
}

# wc_counts LOG: the "distinct words: N / total words: N" lines of a log, joined.
wc_counts() { grep -E '^(distinct|total) words: ' "$1" | tr '\n' ' '; }

# MPI footprint: peak RSS per rank of a plain MPI hello, for the out-of-core target.
mpi_footprint_kb() {
    [ "$HAVE_GTIME" = 1 ] && have "$B/mpi_hello" || return 1
    RSSF=$LOGS/rss.hello
    : >"$RSSF"
    # shellcheck disable=SC2046
    timeout 60 $MPIRUN $(rank_wrap "$RSSF") "$B/mpi_hello" >/dev/null 2>&1 || return 1
    rss_max_kb
}

bench_wordcount() {
    size=$1
    label="wordcount $size Zipf corpus, np=2"
    f=$(corpus "$size")
    if [ -z "$f" ]; then
        row "$label" "—" "C hash table, 1 thread" "—" "—" "≤ 0.7x" "zipfgen not built yet"
        return
    fi
    # Baseline 1: the single-threaded C hash table.
    base_med=""; base_t="—"; base_counts=""; bnote=""
    if have "$B/wc_baseline"; then
        RSSF=$LOGS/rss.base-$size
        # shellcheck disable=SC2046
        if bench_n "wc_baseline-$size" 900 $(rank_wrap "$RSSF") "$B/wc_baseline" "$f"; then
            base_med=$MED; base_t=$(fmt_s "$MED"); base_counts=$(wc_counts "$LAST")
            [ -n "$(rss_list)" ] && bnote="baseline peak RSS: $(rss_list); "
        else base_t="failed"; bnote="wc_baseline $FAIL; "; fi
    else
        bnote="wc_baseline not built yet; "
    fi
    # Ember next, right after the C baseline: the coreutils run below takes minutes at 1 GB and leaves the page
    # cache and the disk busy, which can slow what runs right after it (the 1 GB row: 5.0 s after it, 3.6-4.4 s
    # alone).
    em_ok=""
    if have "$EMBER" && have "$BIN/wordcount"; then
        RSSF=$LOGS/rss.wc-$size
        # shellcheck disable=SC2046
        if bench_n "ember-wordcount-$size" 900 "$EMBER" run -np 2 $(rank_wrap "$RSSF") "$BIN/wordcount" "$f"; then
            em_ok=1; em_med=$MED; em_last=$LAST; em_rss=$(rss_list)
        else
            em_ok=0; em_fail=$FAIL
        fi
        RSSF=""
    fi
    # Baseline 2: coreutils.
    # Large inputs get half the memory and both cores, as a user would ask for; that run takes minutes, so
    # it is measured once (sort_note says so).
    sortopt=""; sort_note=""; runs_saved=$RUNS
    if [ "$size" = "$BIG" ]; then sortopt="-S 50% --parallel=2"; RUNS=1; sort_note=" (1 run)"; fi
    RSSF=""
    if bench_n "sort-uniq-$size" 1800 sh -c "LC_ALL=C tr -s ' \\t\\n\\r\\v\\f' '\\n' <'$f' | LC_ALL=C sort $sortopt | LC_ALL=C uniq -c | wc -l"; then
        sort_med=$MED; sort_t=$(fmt_s "$MED")
    else
        sort_med=""; sort_t="failed"
        echo "- sort | uniq -c on $size: $FAIL" >>"$NOTES"
    fi
    RUNS=$runs_saved

    if [ -z "$em_ok" ]; then
        row "$label" "—" "C hash table, 1 thread" "$base_t" "—" "≤ 0.7x" "${bnote}not built yet"
        row "$label" "—" "tr \\| sort \\| uniq -c" "$sort_t" "—" "(reported)" "not built yet"
        [ "$size" = "$SMALL" ] && row "$label" "—" "Thrill, 2 workers (published)" "2.4 s" "—" "≤ 0.33x (0.79 s)" "not built yet"
        return
    fi
    if [ "$em_ok" = 1 ]; then
        note=""
        got=$(wc_counts "$em_last")
        if [ -z "$got" ]; then note="WRONG OUTPUT: no distinct/total lines; "
        elif [ -n "$base_counts" ] && [ "$got" != "$base_counts" ]; then note="WRONG OUTPUT: ember '$got' vs baseline '$base_counts'; "; fi
        rss=$em_rss
        [ -n "$rss" ] && note="${note}peak RSS/rank: $rss"
        r="—"; [ -n "$base_med" ] && r=$(ratio "$em_med" "$base_med")
        row "$label" "$(fmt_s "$em_med")" "C hash table, 1 thread" "$base_t" "$r" "≤ 0.7x" "${bnote}$note"
        r="—"; [ -n "$sort_med" ] && r=$(ratio "$em_med" "$sort_med")
        row "$label" "$(fmt_s "$em_med")" "tr \\| sort \\| uniq -c" "$sort_t" "$r" "(reported)" "LC_ALL=C sort $sortopt$sort_note"
        if [ "$size" = "$SMALL" ]; then
            t="published for 100 MB on these machines; MR-MPI np=2: 3.2 s"
            [ "$QUICK" = 1 ] && t="QUICK run: corpus is $SIZE_NOTE, not 100 MB — ratio not meaningful"
            row "$label" "$(fmt_s "$em_med")" "Thrill, 2 workers (published)" "2.4 s" "$(ratio "$em_med" 2.4)" "≤ 0.33x (0.79 s)" "$t"
        fi
    else
        row "$label" "failed" "C hash table, 1 thread" "$base_t" "—" "≤ 0.7x" "${bnote}$em_fail"
    fi
    RSSF=""
}

bench_out_of_core() {
    label="wordcount $BIG out-of-core, --ember-memory $OOC_MEM, np=2"
    f=$(corpus "$BIG")
    mem_mb=$(awk -v s="$OOC_MEM" 'BEGIN {print s+0}')
    if [ -z "$f" ] || ! have "$EMBER" || ! have "$BIN/wordcount"; then
        row "$label" "—" "same job, default memory" "—" "—" "peak RSS/rank < 1.5 x $OOC_MEM + MPI" "not built yet"
        return
    fi
    foot_kb=$(mpi_footprint_kb) || foot_kb=""
    # The in-memory time of the same corpus, measured once more so the row is self-contained.
    RSSF=""
    in_t="—"; in_med=""
    if run_timed 900 "$LOGS/wc-inmem-$BIG.log" "$EMBER" run -np 2 "$BIN/wordcount" "$f"; then in_med=$T; in_t=$(fmt_s "$T"); fi
    RSSF=$LOGS/rss.ooc
    # shellcheck disable=SC2046
    if bench_n "ember-wordcount-ooc" 1800 "$EMBER" run -np 2 $(rank_wrap "$RSSF") "$BIN/wordcount" --ember-memory "$OOC_MEM" "$f"; then
        note=""
        got=$(wc_counts "$LAST")
        want=$(wc_counts "$LOGS/wc-inmem-$BIG.log")
        if [ -z "$got" ] || { [ -n "$want" ] && [ "$got" != "$want" ]; }; then note="WRONG OUTPUT: '$got' vs in-memory '$want'; "; fi
        if [ "$HAVE_GTIME" = 1 ] && [ -s "$RSSF" ]; then
            mx=$(rss_max_kb)
            note="${note}peak RSS/rank: $(rss_list)"
            if [ -n "$foot_kb" ]; then
                lim=$(awk -v m="$mem_mb" -v f="$foot_kb" 'BEGIN {printf "%.0f", 1.5*m*1024 + f}')
                verdict=$(awk -v x="$mx" -v l="$lim" 'BEGIN {print (x < l ? "within" : "OVER")}')
                note="$note; limit $(awk -v l="$lim" 'BEGIN {printf "%.0f", l/1024}') MB (MPI hello footprint $(awk -v f="$foot_kb" 'BEGIN {printf "%.0f", f/1024}') MB): $verdict"
            fi
        fi
        r="—"; [ -n "$in_med" ] && r=$(ratio "$MED" "$in_med")
        row "$label" "$(fmt_s "$MED")" "same job, default memory (1 run)" "$in_t" "$r" "peak RSS/rank < 1.5 x $OOC_MEM + MPI" "$note"
    else
        row "$label" "failed" "same job, default memory (1 run)" "$in_t" "—" "peak RSS/rank < 1.5 x $OOC_MEM + MPI" "$FAIL"
    fi
    RSSF=""
}

# ---- shuffle bandwidth ---------------------------------------------------------------------------------------

# gbps LOG [PATTERN]: the number before "GB/s" on the last line matching PATTERN (default: any GB/s line).
gbps() { grep -E "${2:-GB/s}" "$1" | tail -1 | sed -n 's/.*[^0-9.]\([0-9][0-9.]*\) *GB\/s.*/\1/p'; }

bench_shuffle() {
    name="shuffle, 2 ranks (GB/s, higher is better)"
    bw_med=""; bw_t="—"; bnote=""
    if have "$B/mpi_bw"; then
        v=""; uv=""; i=1; ok=1
        while [ "$i" -le "$RUNS" ]; do
            LAST=$LOGS/mpi_bw.$i.log
            if ! run_timed 120 "$LAST" $MPIRUN "$B/mpi_bw"; then ok=0; bnote="mpi_bw exit $RC, log: $LAST; "; break; fi
            x=$(gbps "$LAST" '^bidirectional'); u=$(gbps "$LAST" '^unidirectional')
            say "mpi_bw run $i: $x GB/s both ways, $u GB/s one way"
            v="$v $x"; uv="$uv $u"; i=$((i + 1))
        done
        if [ "$ok" = 1 ]; then bw_med=$(median $v); bw_t="$bw_med GB/s"; bnote="MPI one way: $(median $uv) GB/s; "; else bw_t="failed"; fi
    else
        bnote="mpi_bw not built yet; "
    fi
    if ! have "$B/shuffle_bw"; then
        row "$name" "—" "MPI Isend/Irecv, 4 MiB, both ways" "$bw_t" "—" "(reported)" "${bnote}not built yet"
        return
    fi
    v=""; i=1
    while [ "$i" -le "$RUNS" ]; do
        LAST=$LOGS/shuffle_bw.$i.log
        if ! run_timed 300 "$LAST" $MPIRUN "$B/shuffle_bw"; then
            row "$name" "failed" "MPI Isend/Irecv, 4 MiB, both ways" "$bw_t" "—" "(reported)" "${bnote}exit $RC, log: $LAST"
            return
        fi
        x=$(gbps "$LAST")
        [ -n "$x" ] || { row "$name" "failed" "MPI Isend/Irecv, 4 MiB, both ways" "$bw_t" "—" "(reported)" "${bnote}no 'N GB/s' line, log: $LAST"; return; }
        v="$v $x"; i=$((i + 1))
    done
    m=$(median $v)
    r="—"; [ -n "$bw_med" ] && r=$(ratio "$m" "$bw_med")
    row "$name" "$m GB/s" "MPI Isend/Irecv, 4 MiB, both ways" "$bw_t" "$r" "(reported)" "${bnote}"
}

# ---- streaming: windowcount events/s -----------------------------------------------------------------------

# wc_log N: path of the cached input log of N events (1M keys, 100,000 events per second of event time, up to
# 500 ms out of order; seed 7), built once with `ember log append`; empty if it cannot be made.
wc_log() {
    d=$DIR/wclog-$1
    if [ ! -f "$d/.complete" ]; then
        have "$EMBER" || { echo ""; return; }
        rm -rf "$d"
        say "generating $d ($1 events)"
        "$EMBER" log create "$d" --partitions 4 >/dev/null 2>&1 || { echo ""; return; }
        if ! python3 - "$1" <<'PY' | timeout 1800 "$EMBER" log append "$d" >/dev/null 2>&1; then rm -rf "$d"; echo ""; return; fi
import random, sys
n, r, t0, out = int(sys.argv[1]), random.Random(7), 1_700_000_000_000, sys.stdout
for a in range(0, n, 100000):
    out.write("".join("%d,k%d,%d\n" % (t0 + i // 100 - r.randint(0, 500), r.randrange(1000000), i % 97)
                      for i in range(a, min(n, a + 100000))))
PY
        : >"$d/.complete"
    fi
    echo "$d"
}

bench_windowcount() {
    n=$WC_EVENTS
    label="windowcount, $WC_LABEL events, 1M keys, 10 s tumbling windows, np=2 (events/s, higher is better)"
    if ! have "$EMBER" || ! have "$BIN/windowcount"; then
        row "$label" "—" "—" "—" "—" "≥ 5M events/s" "not built yet"
        return
    fi
    d=$(wc_log "$n")
    if [ -z "$d" ]; then
        row "$label" "—" "—" "—" "—" "≥ 5M events/s" "could not build the input log (python3 + ember log append)"
        return
    fi
    ck=$LOGS/wc-ck
    RSSF=$LOGS/rss.windowcount
    # Each run starts from an empty checkpoint: the whole log is one query, --until-end --flush.
    # shellcheck disable=SC2046
    if bench_n windowcount 1800 sh -c "rm -rf '$ck' '$LOGS/wc-out.csv'; exec $MPIRUN $(rank_wrap "$RSSF") '$BIN/windowcount' \
            --log '$d' --window 10s --lateness 1s --checkpoint '$ck' --out '$LOGS/wc-out.csv' --until-end --flush"; then
        note=""
        grep -q "windowcount: .* $n events, 0 late, 0 bad" "$LAST" || note="WRONG OUTPUT: $(grep '^windowcount:' "$LAST"); "
        rss=$(rss_list)
        [ -n "$rss" ] && note="${note}peak RSS/rank: $rss; "
        eps=$(awk -v n="$n" -v t="$MED" 'BEGIN {printf "%.2fM events/s", n / t / 1e6}')
        row "$label" "$eps ($(fmt_s "$MED"))" "—" "—" "—" "≥ 5M events/s" "${note}plain mpirun, whole log as one query (start-up, batches of 1M, checkpoints, output included)"
    else
        row "$label" "failed" "—" "—" "—" "≥ 5M events/s" "$FAIL"
    fi
    RSSF=""
}

# ---- streaming: windowcount end-to-end latency in follow mode ---------------------------------------------------

# wc_latency_py FILE: writes the paced writer and watcher. `python3 FILE LOG OUT RATE SECONDS WINDOW_MS LATENESS_MS
# EMBER` appends RATE events/s (event time = the wall clock at the append, 1000 keys) through one
# `ember log append LOG` fed by a pipe (it appends whatever the pipe holds, durably, as it comes) for SECONDS, while
# it watches OUT for the first row of each window. A window [s, s+W) can be written once the watermark passes s+W,
# i.e. once an event with time >= s+W+lateness is in the log: its latency runs from the append of the first such
# event to its first row in OUT (the watermark delay itself is excluded, as in the issue's target).
# Prints "p50 A ms p99 B ms max C ms windows N missing M events E".
wc_latency_py() {
    cat >"$1" <<'PY'
import random, subprocess, sys, time
log, out, rate, secs, W, L, ember = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), \
    int(sys.argv[5]), int(sys.argv[6]), sys.argv[7]
rng = random.Random(1)
app = subprocess.Popen([ember, "log", "append", log], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
close_at, seen, buf, sent, f, first_ms = {}, {}, b"", 0, None, None
def watch(now):
    global f, buf
    if f is None:
        try: f = open(out, "rb")
        except OSError: return
    buf += f.read()
    *lines, buf = buf.split(b"\n")
    for ln in lines:
        s = ln.split(b",", 1)[0]
        if s.isdigit() and int(s) not in seen: seen[int(s)] = now
t0 = time.time()
while time.time() - t0 < secs:
    now = time.time()
    due = int((now - t0) * rate) - sent
    if due > 0:
        ms = int(now * 1000)
        if first_ms is None: first_ms = ms
        app.stdin.write(b"".join(b"%d,k%d,1\n" % (ms, rng.randrange(1000)) for _ in range(due)))
        app.stdin.flush()
        sent += due
        end = (ms - L) // W * W          # the latest window end the watermark can pass once this event is in
        if end not in close_at: close_at[end] = now
    watch(time.time())
    time.sleep(0.005)
app.stdin.close()
app.wait()
stop = time.time() + (W + L) / 1000 + 3
while time.time() < stop:
    watch(time.time())
    time.sleep(0.005)
ends = [e for e in close_at if e - W >= first_ms]  # windows that began before the first event may be empty
lat = sorted((seen[e - W] - close_at[e]) * 1000 for e in ends if e - W in seen)
missing = sum(1 for e in ends if e - W not in seen)
if not lat:
    print("no window seen in %s" % out)
    sys.exit(1)
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))]
print("p50 %.0f ms p99 %.0f ms max %.0f ms windows %d missing %d events %d" % (q(.5), q(.99), lat[-1], len(lat),
                                                                                 missing, sent))
PY
}

# windowcount in follow mode at a fixed input rate: end-to-end latency p50/p99 (issue 6's second benchmark).
bench_windowcount_latency() {
    rate=20000; secs=30; [ "$QUICK" = 1 ] && secs=10
    trig=200; win=250; late=200
    label="windowcount follow mode, $rate events/s for $secs s, ${win} ms windows, --trigger ${trig}ms, np=2: latency append → row, beyond the watermark delay (p50 / p99)"
    target="p99 < $((trig + 100)) ms"
    if ! have "$EMBER" || ! have "$BIN/windowcount"; then
        row "$label" "—" "—" "—" "—" "$target" "not built yet"
        return
    fi
    d=$LOGS/wclat-log; ck=$LOGS/wclat-ck; out=$LOGS/wclat-out.csv; py=$LOGS/wc_latency.py; lg=$LOGS/wclat.log
    rm -rf "$d" "$ck" "$out"
    wc_latency_py "$py"
    if ! "$EMBER" log create "$d" --partitions 4 >/dev/null 2>"$lg"; then
        row "$label" "failed" "—" "—" "—" "$target" "ember log create failed, log: $lg"
        return
    fi
    say "windowcount latency: follow mode for ${secs}s at $rate events/s"
    $MPIRUN "$BIN/windowcount" --log "$d" --window ${win}ms --lateness ${late}ms --trigger ${trig}ms \
        --checkpoint "$ck" --out "$out" >"$lg" 2>&1 &
    mp=$!
    i=0 # the first commit (batch 0) writes the checkpoint: then the query is polling
    while [ ! -f "$ck/checkpoint" ] && [ $i -lt 300 ] && kill -0 $mp 2>/dev/null; do sleep 0.1; i=$((i + 1)); done
    res=$(timeout -k 5 $((secs + 60)) python3 "$py" "$d" "$out" $rate $secs $win $late "$EMBER" 2>>"$lg")
    prc=$?
    for p in $(pgrep -P $mp); do kill -TERM "$p" 2>/dev/null; done
    i=0
    while kill -0 $mp 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    kill -0 $mp 2>/dev/null && kill -KILL $mp 2>/dev/null
    wait $mp 2>/dev/null
    echo "$res" >>"$lg"
    if [ $prc != 0 ] || [ -z "$res" ]; then
        row "$label" "failed" "—" "—" "—" "$target" "exit $prc, log: $lg"
        return
    fi
    p50=$(echo "$res" | sed -n 's/^p50 \([0-9]*\) ms.*/\1/p')
    p99=$(echo "$res" | sed -n 's/.* p99 \([0-9]*\) ms.*/\1/p')
    met=$(awk -v a="$p99" -v b="$((trig + 100))" 'BEGIN {print (a < b) ? "met" : "NOT met"}')
    note="$(echo "$res" | sed 's/^p50 [0-9]* ms p99 [0-9]* ms //'); target $met; lateness ${late}ms (the watermark delay); plain mpirun, one run"
    row "$label" "$p50 / $p99 ms" "—" "—" "—" "$target" "$note"
}

# ---- recovery: wordcount with a rank killed halfway -----------------------------------------------------------

# ev_ms EVENTLOG EVENT: the "ts" (ms since the epoch) of the first EVENT line of an event log.
ev_ms() { grep -m1 "\"event\":\"$2\"" "$1" | sed -n 's/.*"ts":\([0-9.]*\).*/\1/p'; }

bench_recovery() {
    f=$(corpus "$BIG")
    for victim in executor leader; do
        label="wordcount $BIG np=4, $victim killed halfway"
        tgt="detection ≤ timeout + 1 heartbeat; added ≤ lost work + 2 x timeout"
        if [ -z "$f" ] || ! have "$EMBER" || ! have "$BIN/wordcount"; then
            row "$label" "—" "same job, no fault" "—" "—" "$tgt" "not built yet"; continue
        fi
        if [ -z "$REC_BASE" ]; then
            if run_timed 1800 "$LOGS/rec-base.log" "$EMBER" run -np 4 "$BIN/wordcount" --top 10 "$f"; then REC_BASE=$T
            else row "$label" "failed" "same job, no fault" "failed" "—" "$tgt" "exit $RC, log: $LOGS/rec-base.log"; continue; fi
        fi
        half=$(awk -v t="$REC_BASE" 'BEGIN {printf "%d", t * 500}')
        who="rank=2"; [ "$victim" = leader ] && who=leader
        ev=$LOGS/rec-$victim.jsonl
        rm -f "$ev"
        if run_timed 1800 "$LOGS/rec-$victim.log" "$EMBER" run -np 4 "$BIN/wordcount" --top 10 "$f" \
                --ember-event-log="$ev" --ember-fault="kill:$who:after-ms=$half"; then
            note=""
            [ "$(grep -v '^\[' "$LOGS/rec-$victim.log" | sort)" = "$(grep -v '^\[' "$LOGS/rec-base.log" | sort)" ] ||
                note="WRONG OUTPUT (differs from the fault-free run); "
            # the victim logs when it dies ("fires now (at T ms since the epoch)"); the leader logs the fencing
            kill_ms=$(sed -n 's/.*fires now (at \([0-9.]*\) ms since the epoch).*/\1/p' "$LOGS/rec-$victim.log" | head -1)
            fen=$(ev_ms "$ev" rank_fenced)
            [ -z "$fen" ] && fen=$(ev_ms "$ev" leader_elected)
            det="—"
            [ -n "$kill_ms" ] && [ -n "$fen" ] && det=$(awk -v a="$fen" -v b="$kill_ms" 'BEGIN {printf "%.0f ms", a - b}')
            added=$(awk -v a="$T" -v b="$REC_BASE" 'BEGIN {printf "%+.2f s", a - b}')
            row "$label" "$(fmt_s "$T")" "same job, no fault" "$(fmt_s "$REC_BASE")" "$(ratio "$T" "$REC_BASE")" "$tgt" \
                "${note}detection (kill to fencing, from the event log): $det with --ember-timeout-ms 2000, heartbeat 200; added wall time $added"
        else
            row "$label" "failed" "same job, no fault" "$(fmt_s "$REC_BASE")" "—" "$tgt" "exit $RC, log: $LOGS/rec-$victim.log"
        fi
    done
}

# ---- ETL: join + group by + aggregate (issue 4) ------------------------------------------------------------

bench_etl() {
    if [ "$QUICK" = 1 ]; then ETL_O=200000; ETL_C=20000; else ETL_O=10000000; ETL_C=1000000; fi
    label="ETL $ETL_O orders x $ETL_C customers, group by country sum/avg/count, np=2"
    PYB=python3; [ -x /usr/bin/python3 ] && PYB=/usr/bin/python3
    if ! have "$BIN/gen-orders" || ! have "$BIN/etl" || ! have "$EMBER"; then
        row "$label" "—" "pandas (read_csv, merge, groupby)" "—" "—" "≤ 0.5x" "not built yet"
        return
    fi
    d=$DIR/etl-$ETL_O-$ETL_C
    if [ ! -f "$d/orders.csv" ]; then
        say "generating $d"
        timeout 900 "$BIN/gen-orders" --customers "$ETL_C" --orders "$ETL_O" --seed 42 --out "$d.tmp" && mv "$d.tmp" "$d" || { row "$label" "—" "pandas" "—" "—" "≤ 0.5x" "gen-orders failed"; return; }
    fi
    cat "$d/orders.csv" "$d/customers.csv" >/dev/null
    # The total of the count column: the same in every contender's output (a cheap correctness check).
    pd_t="—"; pd_med=""; pd_total=""; pnote=""
    if $PYB -c 'import pandas' 2>/dev/null; then
        RSSF=""
        if bench_n etl-pandas 1800 $PYB -c "
import pandas as pd
o = pd.read_csv('$d/orders.csv'); c = pd.read_csv('$d/customers.csv')
g = o.merge(c, on='customer_id').groupby('country')['amount'].agg(['count', 'sum', 'mean'])
print('total', int(g['count'].sum()))"; then
            pd_med=$MED; pd_t=$(fmt_s "$MED"); pd_total=$(sed -n 's/^total //p' "$LAST")
        else pd_t="failed"; pnote="pandas $FAIL; "; fi
    else
        pnote="pandas missing (python3-pandas); "
    fi
    sq_t="—"; sq_med=""; sq_total=""
    if command -v sqlite3 >/dev/null 2>&1; then
        RSSF=""
        if bench_n etl-sqlite3 1800 sh -c "printf '%s\n' '.import --csv $d/orders.csv orders' '.import --csv $d/customers.csv customers' \
            'SELECT count(*), sum(amount), avg(amount) FROM orders JOIN customers USING (customer_id) GROUP BY country;' | sqlite3 :memory: | awk -F'|' '{n += \$1} END {print \"total\", n}'"; then
            sq_med=$MED; sq_t=$(fmt_s "$MED"); sq_total=$(sed -n 's/^total //p' "$LAST")
        else sq_t="failed"; fi
    fi
    RSSF=$LOGS/rss.etl
    # shellcheck disable=SC2046
    if bench_n etl-ember 1800 "$EMBER" run -np 2 $(rank_wrap "$RSSF") "$BIN/etl" --left "$d/orders.csv" --right "$d/customers.csv" \
        --left-key customer_id --right-key customer_id --group-by country --agg count,sum:amount,avg:amount; then
        em_total=$(awk -F, 'NR > 1 {n += $(NF-2)} END {print n + 0}' "$LAST")
        note=""
        [ -n "$pd_total" ] && [ "$em_total" != "$pd_total" ] && note="WRONG OUTPUT: ember counts $em_total rows, pandas $pd_total; "
        rss=$(rss_list); [ -n "$rss" ] && note="${note}peak RSS/rank: $rss"
        r="—"; [ -n "$pd_med" ] && r=$(ratio "$MED" "$pd_med")
        row "$label" "$(fmt_s "$MED")" "pandas (read_csv, merge, groupby)" "$pd_t" "$r" "≤ 0.5x" "${pnote}$note"
        r="—"; [ -n "$sq_med" ] && r=$(ratio "$MED" "$sq_med")
        sn=""; [ -n "$sq_total" ] && [ "$sq_total" != "$em_total" ] && sn="WRONG OUTPUT: sqlite3 counts $sq_total rows; "
        row "$label" "$(fmt_s "$MED")" "sqlite3 (.import + the same SQL)" "$sq_t" "$r" "(reported)" "${sn}in-memory database"
    else
        row "$label" "failed" "pandas (read_csv, merge, groupby)" "$pd_t" "—" "≤ 0.5x" "${pnote}$FAIL"
    fi
    RSSF=""
}

# ---- main --------------------------------------------------------------------------------------------------

SIZE_NOTE="$SMALL"
say "runs per measurement: $RUNS; quick: $QUICK; corpora in $DIR; logs in $LOGS"
bench_primes
bench_sched
bench_startup
bench_wordcount "$SMALL"
bench_wordcount "$BIG"
bench_out_of_core
bench_shuffle
bench_etl
REC_BASE=""
bench_recovery
bench_windowcount
bench_windowcount_latency

echo
echo "## Ember benchmarks ($(date -u +%Y-%m-%d), $(nproc) cores, median of $RUNS runs$( [ "$QUICK" = 1 ] && echo ', BENCH_QUICK sizes'))"
echo
echo "| benchmark | ember | baseline | baseline time | ratio | target | note |"
echo "|---|---|---|---|---|---|---|"
cat "$ROWS"
echo
echo "ratio = ember / baseline (times: lower is better; GB/s: higher is better). Logs: $LOGS"
[ -s "$NOTES" ] && cat "$NOTES"
exit 0
