#!/bin/sh
# e2e: the word-count job (jobs/wordcount.c) as a user runs it, against coreutils on generated corpora with odd
# whitespace (tabs, CRLF, \v, \f, runs of spaces, leading/trailing blanks, empty lines, no final newline),
# UTF-8 and punctuation, at np = 1..4; --top K with its tie order, --out part files, several files, a
# directory and a glob as inputs, `ember run`; bad arguments must exit 2 with a one-line error.
. "$(dirname "$0")/lib.sh"
WC="$BIN/wordcount"
TAB=$(printf '\t')
export LC_ALL=C # bytes, not characters, for tr, grep, sort and uniq alike

# gen SEED WORDS FILE: a corpus of about WORDS words from a Zipf-like vocabulary (so counts tie), separated by
# every kind of ASCII whitespace, in python3 (standard library only).
gen() {
  python3 - "$@" <<'PY'
import random, sys
seed, n, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = random.Random(seed)
base = ["the", "The", "THE", "a", "an", "of", "and", "to", "in", "it", "is", "was", "word", "words",
        "wordcount", "don't", "(see", "page)", "end.", "--", "-", "...", "x", "naïve", "café", "Ünïcödé",
        "日本語", "emoji\U0001F600", "a,b", "1", "12", "123", "3.14", "e-mail", "#tag", "@", "\"quoted\"",
        "back\\slash", "\x7f", "semi;colon", "tab-ish"]
vocab = base + ["w%d%s" % (i, rng.choice(["", "!", "?", ".", "é"])) for i in range(400)]
weights = [1.0 / (i + 1) for i in range(len(vocab))]
seps = [" "] * 20 + ["\t", "\n", "\r\n", "\v", "\f", "  ", "   ", " \t ", "\n\n", "\n \n", "\r\n\r\n", "\t\t",
                     " \n", "\n\t", "\f\n", "\v\v"]
out = [rng.choice(["", " ", "\t", "\n", "  \t"])]  # leading whitespace
for w in rng.choices(vocab, weights, k=n):
    out.append(w)
    out.append(rng.choice(seps))
out.append(rng.choice(["", " ", "\n", "\r\n", "\t\n", "\n\n\n"]))  # trailing: sometimes no final newline
open(path, "wb").write("".join(out).encode("utf-8"))
PY
}

# ref FILE...: "count<TAB>word" for every distinct word of the files, by word (coreutils). Each file is followed
# by a newline so that a file without a final newline does not glue its last word to the next file's first.
ref() {
  for f in "$@"; do cat "$f"; echo; done | tr -s ' \t\n\r\v\f' '\n' | grep -v '^$' | sort | uniq -c |
    sed "s/^ *\([0-9]*\) /\1$TAB/"
}

# expect REF_FILE K: the job's expected stdout for --top K (K = 0: no list) from ref's output.
expect() {
  if [ "$2" -gt 0 ]; then sort -t "$TAB" -k1,1nr -k2,2 "$1" | head -n "$2"; fi
  echo "distinct words: $(wc -l <"$1" | tr -d ' ')"
  echo "total words: $(awk -F "$TAB" '{ s += $1 } END { print s + 0 }' "$1")"
}

# run NP ARGS...: stdout of the job; stderr to $TMP/err, exit status to $TMP/rc
run() {
  np=$1; shift
  mpirun_t 180 "$np" "$WC" "$@" 2>"$TMP/err"
  echo $? >"$TMP/rc"
}

# wc_check NAME NP K FILES... : the job with --top K on FILES against coreutils, and its exit status.
wc_check() {
  name=$1 np=$2 k=$3; shift 3
  ref "$@" >"$TMP/ref"
  expect "$TMP/ref" "$k" >"$TMP/want"
  run "$np" --top "$k" "$@" >"$TMP/got"
  check_files "$name" "$TMP/want" "$TMP/got"
  check "$name: exit 0" 0 "$(cat "$TMP/rc")"
}

D=$TMP/data
mkdir -p "$D/dir/sub"
gen 1 60000 "$D/big.txt"
gen 2 3000 "$D/small.txt"
gen 3 500 "$D/dir/a.txt"
gen 4 500 "$D/dir/b.txt"
gen 5 50 "$D/dir/.hidden"
gen 6 50 "$D/dir/_skipped"
printf 'no final newline' >"$D/nonl.txt"
printf 'x\r\ny\r\n\r\n  \t\n\v\f\r\nx' >"$D/crlf.txt"
: >"$D/empty.txt"
printf ' \t\n\n\r\n\v\f  \n' >"$D/blank.txt"
# a line far longer than a page, and one word of 100 000 bytes
python3 -c "import sys; sys.stdout.write(' '.join('l%d' % (i % 997) for i in range(60000)) + '\n' + 'W' * 100000 + '\n')" \
  >"$D/long.txt"
# lines of every length from 0 to 259 bytes, words and whitespace at random, so that words start and end on
# every side of the 16- and 64-byte blocks split_words classifies at once
python3 -c "
import random, sys
rng = random.Random(7)
out = []
for n in range(260):
    for rep in range(4):
        out.append(''.join(rng.choice('ab' if rep == 3 else 'aab \t\v\f\r') for _ in range(n)))
sys.stdout.write('\n'.join(out))" >"$D/edges.txt"

for np in 1 2 3 4; do
  wc_check "big corpus --top 25 at np=$np" "$np" 25 "$D/big.txt"
done
wc_check "small corpus, every word listed (--top 100000)" 2 100000 "$D/small.txt"
wc_check "several files, no final newline, CRLF at np=3" 3 40 "$D/small.txt" "$D/nonl.txt" "$D/crlf.txt" "$D/dir/a.txt"
wc_check "empty and blank files" 2 5 "$D/empty.txt" "$D/blank.txt"
wc_check "long line and a 100 kB word at np=2" 2 10 "$D/long.txt"
wc_check "lines of 0..259 bytes: words at every block edge" 2 100 "$D/edges.txt"

# A directory reads every regular file inside, skipping names that start with '.' or '_'; a glob matches too.
ref "$D/dir/a.txt" "$D/dir/b.txt" >"$TMP/ref"
expect "$TMP/ref" 30 >"$TMP/want"
run 2 --top 30 "$D/dir" >"$TMP/got"
check_files "directory input skips .hidden and _skipped" "$TMP/want" "$TMP/got"
run 2 --top 30 "$D/dir/*.txt" >"$TMP/got"
check_files "glob input" "$TMP/want" "$TMP/got"

# Without --top: only the totals. Many small splits and partitions give the same answer.
ref "$D/big.txt" >"$TMP/ref"
expect "$TMP/ref" 0 >"$TMP/want"
run 2 "$D/big.txt" >"$TMP/got"
check_files "no --top: totals only" "$TMP/want" "$TMP/got"
run 3 --ember-partitions 37 "$D/big.txt" >"$TMP/got"
check_files "--ember-partitions 37 at np=3" "$TMP/want" "$TMP/got"
expect "$TMP/ref" 10 >"$TMP/want"
run 2 --top=10 "$D/big.txt" >"$TMP/got"
check_files "--top=10" "$TMP/want" "$TMP/got"

# --out DIR: word<TAB>count part files whose union is the whole count, _SUCCESS last, nothing else left behind.
for np in 1 3; do
  O=$TMP/out$np
  expect "$TMP/ref" 0 >"$TMP/want"
  run "$np" --out "$O" "$D/big.txt" >"$TMP/got"
  check_files "--out at np=$np: stdout" "$TMP/want" "$TMP/got"
  check "--out at np=$np: exit 0" 0 "$(cat "$TMP/rc")"
  [ -f "$O/_SUCCESS" ] && pass "--out at np=$np: _SUCCESS" || fail "--out at np=$np: _SUCCESS"
  awk -F "$TAB" -v OFS="$TAB" '{ print $2, $1 }' "$TMP/ref" | sort >"$TMP/want.parts"
  cat "$O"/part-* 2>/dev/null | sort >"$TMP/got.parts"
  check_files "--out at np=$np: part files = coreutils" "$TMP/want.parts" "$TMP/got.parts"
  check "--out at np=$np: only part-* and _SUCCESS" "" "$(ls -A "$O" | grep -v -e '^part-[0-9]*$' -e '^_SUCCESS$')"
done
run 2 --out "$TMP/out1" "$D/small.txt" >"$TMP/got"
check "--out into a finished directory: exit 1" 1 "$(cat "$TMP/rc")"
check "--out into a finished directory: one error line" 1 "$(grep -c '^wordcount: ' "$TMP/err")"
check "--out into a finished directory: stdout empty" "" "$(cat "$TMP/got")"
# --top keeps K words per partition (takeOrdered), so only a K that brings many words back meets the limit
run 2 --ember-max-result 1K --top 5 "$D/big.txt" >"$TMP/got"
check "--top 5 under --ember-max-result 1K: exit 0 (only 5 words per partition come back)" 0 "$(cat "$TMP/rc")"
run 2 --ember-max-result 1K --top 100000 "$D/big.txt" >"$TMP/got"
check "--top beyond --ember-max-result: exit 1" 1 "$(cat "$TMP/rc")"
check "--top beyond --ember-max-result: error names the limit" 1 "$(grep -c '^wordcount: .*max-result' "$TMP/err")"

# `ember run`, as the issue's acceptance line does it.
ref "$D/big.txt" >"$TMP/ref"
expect "$TMP/ref" 10 >"$TMP/want"
timeout -k 5 180 "$BIN/ember" run -np 2 "$WC" --top 10 "$D/big.txt" >"$TMP/got" 2>"$TMP/err"
check "ember run -np 2: exit 0" 0 $?
check_files "ember run -np 2 wordcount --top 10" "$TMP/want" "$TMP/got"

# No arguments at all: the sample text shipped in examples/data (make demo).
ref "$ROOT/examples/data/sample.txt" >"$TMP/ref"
expect "$TMP/ref" 0 >"$TMP/want"
run 2 >"$TMP/got"
check_files "no arguments: counts examples/data/sample.txt" "$TMP/want" "$TMP/got"

out=$(run 2 --help)
check "--help exits 0" 0 "$(cat "$TMP/rc")"
case "$out" in
  usage:*) pass "--help prints usage on stdout" ;;
  *) fail "--help prints usage on stdout"; echo "  got: $out" ;;
esac

# bad PATTERN ARGS...: exit status 2, nothing on stdout, one error line matching PATTERN (np=2: printed once)
bad() { usage_error wordcount "$@"; }
bad "no input" --top 5
bad "--top" --top abc "$D/small.txt"
bad "--top" --top -1 "$D/small.txt"
bad "--top" --top 1.5 "$D/small.txt"
bad "--top" "$D/small.txt" --top
bad "--out" "$D/small.txt" --out
bad "--foo" --foo "$D/small.txt"
bad "-x" -x "$D/small.txt"
bad "nosuch.txt" "$D/nosuch.txt"
bad "nosuch.txt" "$D/small.txt" "$D/nosuch.txt" "$D/big.txt"
bad "nosuch\*" "$D/nosuch*"
