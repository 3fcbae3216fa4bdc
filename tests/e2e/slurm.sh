#!/bin/sh
# `ember submit --backend slurm` against a real Slurm (shared DESIGN.md section 9): the script starts its own
# single-node cluster on this host (munged, slurmctld and slurmd from Debian's munge and slurm-wlm, as root, with
# every file, socket and port of its own under $TMP, so it touches no system Slurm), drives the ember CLI as a user
# would, and checks what it shows against Slurm's own record (`scontrol show job`) and an independent computation
# (python3). Where Slurm cannot be started (not installed, not root, daemons not up within 20 s) it prints
# "SKIP: slurm: <reason>" and checks nothing. The daemons, and every job they ran, are gone when the script exits.
. "$(dirname "$0")/lib.sh"
EMBER="${EMBER:-$BIN/ember}"
JOB="$ROOT/tests/e2e/fixtures/fake_job.sh"
S="$TMP/slurm"
# Every process of ours but slurmstepd carries this mark (the daemons, and the jobs: sbatch exports the
# submitter's environment), so that cleanup can find whatever outlived them, and nothing else.
MARK="EMBER_SLURM_TEST=$S"
export EMBER_SLURM_TEST="$S"
cd "$TMP" || exit 1

skip() { echo "SKIP: slurm: $1"; exit 0; }

# ---- can Slurm run here? ------------------------------------------------------------------------------------------
PATH="$PATH:/usr/sbin:/sbin"
for p in munged mungekey slurmctld slurmd sbatch squeue sinfo scontrol scancel; do
  command -v "$p" >/dev/null 2>&1 || skip "$p not installed (Debian slurm-wlm and munge: run scripts/deps.sh as root)"
done
[ "$(id -u)" = 0 ] || skip "slurmd must run as root to start jobs (running as uid $(id -u))"

cleanup() {
  if [ -d "$S" ]; then
    # Jobs first (slurmd's steps outlive it otherwise), then the daemons, then whatever still carries our mark.
    if [ -f "$S/slurm.conf" ] && [ -f "$S/slurmctld.pid" ]; then
      timeout 10 scancel -u "$(id -un)" >/dev/null 2>&1
      for i in 1 2 3 4 5 6 7 8 9 10; do
        [ -z "$(timeout 5 squeue -h -o %i 2>/dev/null)" ] && break
        sleep 0.5
      done
    fi
    for d in slurmd slurmctld munged; do
      p=$(cat "$S/$d.pid" 2>/dev/null) && [ -n "$p" ] && kill "$p" 2>/dev/null
    done
    for i in 1 2 3 4 5 6 7 8 9 10; do
      alive=""
      for d in slurmd slurmctld munged; do
        p=$(cat "$S/$d.pid" 2>/dev/null) && [ -n "$p" ] && kill -0 "$p" 2>/dev/null && alive=1
      done
      [ -z "$alive" ] && break
      sleep 0.3
    done
    # slurmstepd clears its environment: it is ours when it holds a file of ours open (slurmd.log).
    python3 - "$MARK" "$S/" <<'EOF' 2>/dev/null
import os, signal, sys, time
mark, own = sys.argv[1].encode(), sys.argv[2]
me = {os.getpid(), os.getppid()}
def holds(p):
    for fd in os.listdir('/proc/%s/fd' % p):
        try:
            if os.readlink('/proc/%s/fd/%s' % (p, fd)).startswith(own): return True
        except OSError:
            pass
    return False
def ours():
    for p in os.listdir('/proc'):
        if not p.isdigit() or int(p) in me: continue
        try:
            env = open('/proc/%s/environ' % p, 'rb').read().split(b'\0')
            st = open('/proc/%s/stat' % p).read().rsplit(')', 1)[1].split()
            if st[0] != 'Z' and (mark in env or (open('/proc/%s/comm' % p).read().strip() == 'slurmstepd' and holds(p))):
                yield int(p)
        except OSError:
            continue
for _ in range(30):  # until they are gone, 3 s at most
    left = list(ours())
    if not left: break
    for p in left:
        try: os.kill(p, signal.SIGKILL)
        except OSError: pass
    time.sleep(0.1)
EOF
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

# ---- a cluster of one node -------------------------------------------------------------------------------------
mkdir -p "$S/key" "$S/sock" "$S/state" "$S/spool" && chmod 700 "$S/key" || skip "cannot make $S"
mungekey -c -k "$S/key/munge.key" >/dev/null 2>&1 || skip "mungekey cannot create a key"
# --force: munged refuses a socket in a directory only root can enter (our $TMP) unless forced.
munged -F --force --key-file="$S/key/munge.key" --socket="$S/sock/munge" --pid-file="$S/munged.pid.own" \
  --log-file="$S/munged.log" --seed-file="$S/munged.seed" >"$S/munged.out" 2>&1 &
echo $! > "$S/munged.pid"
# Two free TCP ports, so that nothing collides with a system Slurm or another run of this script.
ports=$(python3 -c 'import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("", 0))
print(*[s.getsockname()[1] for s in ss])') || skip "no free TCP ports"
set -- $ports
H=$(hostname -s)
NCPU=$(nproc)
cat > "$S/slurm.conf" <<EOF
ClusterName=embertest
SlurmctldHost=$H(127.0.0.1)
SlurmUser=root
SlurmctldPort=$1
SlurmdPort=$2
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$S/sock/munge
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/slurmctld.pid.own
SlurmdPidFile=$S/slurmd.pid.own
SlurmctldLogFile=$S/slurmctld.log
SlurmdLogFile=$S/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
MailProg=/bin/true
# The node as this file describes it, whatever slurmd finds (sockets vs cores on a VM).
SlurmdParameters=config_overrides
NodeName=$H NodeAddr=127.0.0.1 CPUs=$NCPU State=UNKNOWN
PartitionName=ember Nodes=$H Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$S/slurm.conf"
t0=$(date +%s)
for i in $(seq 50); do [ -S "$S/sock/munge" ] && break; sleep 0.1; done
[ -S "$S/sock/munge" ] || { tail -3 "$S/munged.out" "$S/munged.log" 2>/dev/null; skip "munged did not start"; }
slurmctld -D -f "$SLURM_CONF" >"$S/slurmctld.out" 2>&1 &
echo $! > "$S/slurmctld.pid"
slurmd -D -f "$SLURM_CONF" >"$S/slurmd.out" 2>&1 &
echo $! > "$S/slurmd.pid"
node=""
while [ $(($(date +%s) - t0)) -lt 20 ]; do
  node=$(timeout 5 sinfo -h -n "$H" -o %t 2>/dev/null)
  [ "$node" = idle ] && break
  sleep 0.25
done
if [ "$node" != idle ]; then
  tail -5 "$S/slurmctld.out" "$S/slurmd.out" 2>/dev/null
  skip "node $H not idle within 20 s (sinfo: '${node:-no answer}')"
fi
echo "slurm: node $H ($NCPU CPUs) idle after $(($(date +%s) - t0)) s"

# ---- helpers, as in queue.sh --------------------------------------------------------------------------------------
# em ARGS...: the ember command with a hard timeout; stdout in $TMP/out, stderr in $TMP/err, status in $rc.
em() {
  timeout -k 5 90 "$EMBER" "$@" >"$TMP/out" 2>"$TMP/err"
  rc=$?
}
# submit ARGS...: ember submit; the new id in $id ("" if none, and then what it said).
submit() {
  em submit "$@"
  id=$(sed -n 's/^Submitted job \([0-9][0-9]*\)$/\1/p' "$TMP/out")
  [ -n "$id" ] || { echo "  ember submit $* (exit $rc) said:"; head -5 "$TMP/out" "$TMP/err"; }
}
# queue_st ID: the job's ST column in `ember queue`.
queue_st() { "$EMBER" queue 2>/dev/null | awk -v i="$1" '$1 == i { print $4 }'; }
# slurm_id ID: the Slurm job id `ember status` names.
slurm_id() { field "$1" Backend | sed -n 's/^slurm (Slurm job \([0-9]*\))$/\1/p'; }
# slurm_says ID: "JobState ExitCode" from Slurm's own record of the job.
slurm_says() {
  sid=$(slurm_id "$1"); [ -n "$sid" ] || return
  timeout 10 scontrol -o show job "$sid" 2>/dev/null | tr ' ' '\n' | sed -n 's/^JobState=//p; s/^ExitCode=//p' \
    | tr '\n' ' ' | sed 's/ $//'
}
# marked_sleeps: processes `sleep 47` of ours (the long job below) still alive.
marked_sleeps() {
  python3 - "$MARK" <<'EOF'
import os, sys
n = 0
for p in os.listdir('/proc'):
    if not p.isdigit(): continue
    try:
        cmd = open('/proc/%s/cmdline' % p, 'rb').read().split(b'\0')
        env = open('/proc/%s/environ' % p, 'rb').read().split(b'\0')
        st = open('/proc/%s/stat' % p).read().rsplit(')', 1)[1].split()[0]
    except OSError:
        continue
    if cmd[:2] == [b'sleep', b'47'] and sys.argv[1].encode() in env and st != 'Z': n += 1
print(n)
EOF
}

# ---- a job that completes -------------------------------------------------------------------------------------
submit --backend slurm --wait -np 1 echo slurm-ok
check "submit --wait: a real sbatch job completes with status 0" "0 CD" "$rc $(state "$id")"
check "logs --stdout shows its output" "slurm-ok" "$("$EMBER" logs --stdout "$id" 2>&1)"
check "Slurm's record of it: COMPLETED 0:0" "COMPLETED 0:0" "$(slurm_says "$id")"
check "status: CD, reason None, exit status 0" "CD (COMPLETED)|None|0" "$(field "$id" State)|$(field "$id" Reason)|$(field "$id" ExitStatus)"
check "queue lists it CD" "CD" "$("$EMBER" queue --all 2>/dev/null | awk -v i="$id" '$1 == i { print $4 }')"

# ---- an MPI job on 2 ranks inside the allocation -----------------------------------------------------------------
submit --backend slurm --wait -np 2 "$BIN/primecount" --limit 200000
P=$id
want=$(python3 -c 'n = 200000; s = bytearray([1]) * n; s[0:2] = b"\0\0"
for i in range(2, int(n ** 0.5) + 1):
    if s[i]: s[i * i::i] = bytearray(len(range(i * i, n, i)))
print(sum(s))')
check "primecount -np 2 through Slurm: status 0, CD" "0 CD" "$rc $(state "$P")"
check "primecount -np 2 through Slurm counts the primes below 200000" "primes in [0, 200000): $want" \
  "$("$EMBER" logs --stdout "$P" 2>&1)"
check "Slurm gave it 2 tasks" "NumTasks=2" "$(timeout 10 scontrol -o show job "$(slurm_id "$P")" | tr ' ' '\n' | grep '^NumTasks=')"
check "its event log says 2 ranks" "2" "$(python3 -c 'import json, sys
print(*[e["ranks"] for e in map(json.loads, open(sys.argv[1])) if e["event"] == "job_start"])' \
  "$(field "$P" EventLog)" 2>&1)"

# ---- a job that fails ---------------------------------------------------------------------------------------------
submit --backend slurm --wait "$JOB" exit 3
F=$id
check "submit --wait on a failing job exits with its status" "3" "$rc"
check "submit --wait says how it ended" "ember submit: job $F ended FAILED (NonZeroExitCode), exit status 3" "$(cat "$TMP/err")"
check "Slurm's record of it: FAILED 3:0" "FAILED 3:0" "$(slurm_says "$F")"
check "status: F, NonZeroExitCode, exit status 3" "F (FAILED)|NonZeroExitCode|3" \
  "$(field "$F" State)|$(field "$F" Reason)|$(field "$F" ExitStatus)"
check "queue lists it F" "F" "$("$EMBER" queue --all 2>/dev/null | awk -v i="$F" '$1 == i { print $4 }')"
submit --backend slurm --name orphan --after "$F" true
wait_state "$id" CA 20
check "a job --after a failed one is cancelled: CA, DependencyNeverSatisfied" "CA|DependencyNeverSatisfied" \
  "$(state "$id")|$(field "$id" Reason)"

# ---- running, pending behind it, cancelled --------------------------------------------------------------------------
submit --backend slurm --name long sleep 47
L=$id
wait_state "$L" R 20
check "queue shows the running Slurm job R" "R" "$(queue_st "$L")"
check "Slurm says RUNNING" "RUNNING" "$(timeout 10 squeue -h -j "$(slurm_id "$L")" -o %T)"
submit --backend slurm --name behind --after "$L" true
B=$id
check "a job --after a running one is PD (Dependency)" "PD Dependency" \
  "$("$EMBER" queue 2>/dev/null | awk -v i="$B" '$1 == i { print $4, $7 }')"
em cancel "$B"
check "cancel of a pending Slurm job: status 0, then CA" "0 CA" "$rc $(queue_st "$B")"
em cancel "$L"
check "cancel of a running Slurm job: status 0, and queue shows CA at once" "0 CA" "$rc $(queue_st "$L")"
check "status: CA (CANCELLED), Cancelled" "CA (CANCELLED)|Cancelled" "$(field "$L" State)|$(field "$L" Reason)"
check "Slurm's record of it: CANCELLED" "CANCELLED" "$(slurm_says "$L" | cut -d' ' -f1)"
n=0; while [ "$(marked_sleeps)" != 0 ] && [ "$n" -lt 20 ]; do sleep 0.25; n=$((n + 1)); done
check "the cancelled job's processes are gone" 0 "$(marked_sleeps)"

# ---- --after a job that completes -----------------------------------------------------------------------------------
submit --backend slurm --name first "$JOB" sleep 1
A=$id
submit --backend slurm --wait --name second --after "$A" "$JOB" exit 0
check "a job --after one that completes runs after it and completes" "0 CD CD" "$rc $(state "$A") $(state "$id")"
