#!/bin/sh
# `make demo`: the shipped jobs on their embedded defaults, launched the way users launch them (`ember run`).
set -u
cd "$(dirname "$0")/.."
E=build/bin/ember
echo "== ember run -np 2 build/bin/primecount   (default: --limit 1e8)"
$E run -np 2 build/bin/primecount || exit 1
echo "== ember run -np 4 build/bin/primecount --limit 1e9"
$E run -np 4 build/bin/primecount --limit 1e9 || exit 1
echo "== ember run -np 2 build/bin/wordcount   (default: examples/data/sample.txt)"
$E run -np 2 build/bin/wordcount || exit 1
echo "== ember run -np 3 build/bin/etl   (default: examples/data orders joined with customers, by country)"
$E run -np 3 build/bin/etl || exit 1
