#!/bin/sh
# Ember's own settings: --ember-help, bad --ember-* flags and EMBER_* variables fail cleanly naming the flag.
. "$(dirname "$0")/lib.sh"
P="$BIN/primecount"
out=$(timeout 20 "$P" --ember-help 2>&1); rc=$?
check "--ember-help exits 0" 0 $rc
case "$out" in *--ember-heartbeat-ms*EMBER_HEARTBEAT_MS*200*) pass "--ember-help prints flag, variable, default" ;; *) fail "--ember-help table"; echo "$out" | head -5 ;; esac
case "$out" in *kill:rank=2*) pass "--ember-help documents fault injection" ;; *) fail "--ember-help fault doc" ;; esac
err() { # NAME EXPECTED-SUBSTRING CMD...
  name=$1; want=$2; shift 2
  e=$(timeout 20 "$@" 2>&1 >/dev/null); rc=$?
  if [ $rc != 0 ] && [ $rc != 124 ] && echo "$e" | grep -qF -- "$want"; then pass "$name"; else fail "$name (rc=$rc)"; echo "  $e"; fi
}
err "unknown flag named" "unknown flag --ember-bogus" "$P" --ember-bogus=1 --limit 10
err "non-numeric value named" "--ember-heartbeat-ms: 'abc'" "$P" --ember-heartbeat-ms=abc --limit 10
err "missing value named" "--ember-timeout-ms needs a value" "$P" --limit 10 --ember-timeout-ms
err "timeout below 2 heartbeats" "--ember-timeout-ms (100) must be at least twice" "$P" --ember-timeout-ms=100 --ember-heartbeat-ms=200
err "bad size named" "--ember-memory: '12Q'" "$P" --ember-memory=12Q
err "bad log level named" "--ember-log-level: 'loud'" "$P" --ember-log-level=loud
err "environment variable named" "EMBER_MAX_TASK_FAILURES: 'x'" env EMBER_MAX_TASK_FAILURES=x "$P" --limit 10
err "bad fault spec named" "--ember-fault=explode:rank=1" "$P" --ember-fault=explode:rank=1 --limit 10
err "fault without a rank" "say which rank" "$P" --ember-fault=kill:after-tasks=1 --limit 10
# flags are removed before the job parses its own arguments, and the job still runs (a one-rank job: no mpirun)
out=$(timeout 60 "$P" --ember-log-level=error --limit 1000 --ember-partitions 3 2>"$TMP/err")
check "--ember-* flags removed from argv" "primes in [0, 1000): 168" "$out"
out=$(EMBER_LOG=info timeout 60 "$P" --limit 100 2>&1 >/dev/null)
case "$out" in *"[r0 lead] INFO"*) pass "EMBER_LOG=info logs rank-tagged lines" ;; *) fail "EMBER_LOG=info"; echo "$out" | head -3 ;; esac
