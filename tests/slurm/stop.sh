#!/usr/bin/env bash
# Stop what tests/slurm/start.sh started in STATE_DIR (by its pid files; nothing else is touched).
set -uo pipefail
state=$(realpath -m "${1:?usage: stop.sh STATE_DIR}")
for name in slurmd slurmctld munged; do
    pidfile="$state/$name.pid"
    [ -f "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
    rm -f "$pidfile"
done
exit 0
