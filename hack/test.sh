#!/usr/bin/env bash
# The whole pytest suite as two concurrent sessions, each with its own local control plane: the real-node tier
# (tests/realnode, on the real kubelet node) and everything else (unit, kwok cluster, e2e, chaos) on a kwok-only one.
# Most of both is waiting on pods, processes and timeouts, so together they take about as long as the longer one.
# Extra arguments go to both sessions. Exit code 5 (nothing collected) counts as success.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
state="${RUNYARD_CLUSTER_DIR:-$PWD/.cluster}"
rest_log="$(mktemp -t runyard-tests-XXXXXX.log)"
echo "[test] unit, kwok cluster, e2e and chaos tiers in the background (cluster ${state}-kwok, log $rest_log)"
RUNYARD_CLUSTER_DIR="${state}-kwok" REAL_NODES=0 "$BIN/pytest" -q -p no:cacheprovider --ignore=tests/realnode "$@" \
  > "$rest_log" 2>&1 &
rest=$!
trap 'kill "$rest" 2>/dev/null' INT TERM
echo "[test] real-node tier (tests/realnode)"
"$BIN/pytest" -q tests/realnode "$@"
real_rc=$?
wait "$rest"
rest_rc=$?
echo "[test] unit, kwok cluster, e2e and chaos tiers:"
cat "$rest_log"
rm -f "$rest_log"
ok() { [ "$1" -eq 0 ] || [ "$1" -eq 5 ]; }
echo "[test] real-node tier exit $real_rc, the rest exit $rest_rc"
ok "$real_rc" && ok "$rest_rc"
