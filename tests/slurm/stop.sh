#!/usr/bin/env bash
# Stops the daemons tests/slurm/start.sh started, by the PIDs it recorded, and waits for them.
set -uo pipefail
D=${SLURM_TEST_DIR:-/tmp/slurm-test}
[ -s "$D/pids" ] || exit 0
mapfile -t pids < <(tac "$D/pids")
kill "${pids[@]}" 2>/dev/null
for pid in "${pids[@]}"; do
  for _ in $(seq 1 50); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.2
  done
done
: >"$D/pids"
