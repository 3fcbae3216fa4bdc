#!/bin/sh
# Installs the Debian packages Ember needs, only those missing. Quiet and idempotent when everything is there.
# As root it runs apt-get itself; otherwise it prints the exact command to run and fails.
set -u
pkgs="openmpi-bin libopenmpi-dev libhdf5-dev hdf5-tools zlib1g-dev libcriterion-dev libsqlite3-dev pkg-config python3 python3-h5py python3-pandas sqlite3 gcc make"
# Only tests need these: tests/e2e/slurm.sh starts its own single-node Slurm and munged (own key, socket, ports)
# to run `ember submit --backend slurm` for real. 7 packages here, about 33 s with apt-get update. Where systemd runs,
# the packages' own services may start (munge does; slurmctld and slurmd fail without /etc/slurm/slurm.conf).
# tests/e2e/history.sh screenshots `ember history --html` in headless chromium (~80 MB download, once).
test_pkgs="slurm-wlm munge chromium"
pkgs="$pkgs $test_pkgs"
missing=""
for p in $pkgs; do
  st=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)
  case "$st" in *"install ok installed"*) ;; *) missing="$missing $p" ;; esac
done
[ -z "$missing" ] && exit 0
cmd="apt-get install -y --no-install-recommends$missing"
if [ "$(id -u)" != 0 ]; then
  echo "ember: missing Debian packages:$missing" >&2
  echo "ember: run: sudo apt-get update && sudo $cmd" >&2
  exit 1
fi
echo "ember: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null 2>&1 || { echo "ember: apt-get update failed" >&2; exit 1; }
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/tmp/ember-deps.log 2>&1 || {
  echo "ember: '$cmd' failed; see /tmp/ember-deps.log" >&2; tail -20 /tmp/ember-deps.log >&2; exit 1; }
