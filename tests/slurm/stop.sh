#!/usr/bin/env bash
# Stops the daemons tests/slurm/start.sh started, by the PIDs it recorded.
set -uo pipefail
D=${SLURM_TEST_DIR:-/tmp/slurm-test}
[ -s "$D/pids" ] || exit 0
# shellcheck disable=SC2046
kill $(tac "$D/pids") 2>/dev/null
: >"$D/pids"
