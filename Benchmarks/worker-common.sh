# Shared by the worker benchmarks (worker-cost.sh, worker-instructions.sh,
# worker-memory.sh, worker-order.sh);
# sourced, not run. Expects `default_port` set, and the caller's name in $0.
# Settings: SLUICE_BIN (default .build/release/sluice), SLUICE_URL (default:
# the test node), METRICS_PORT, WORKER_BIN (the worker program to run; by
# default what `sluice worker` runs: sluice-worker beside SLUICE_BIN, or with
# SLUICE_WORKER_IN_PROCESS=1 `$SLUICE_BIN worker`).
cd "$(dirname "$0")/.."
bin=${SLUICE_BIN:-.build/release/sluice}
url=${SLUICE_URL:-amqp://guest:guest@127.0.0.1:27270/%2f}
port=${METRICS_PORT:-$default_port}
[ -x "$bin" ] || { echo "$(basename "$0" .sh): build first: scripts/build-release" >&2; exit 1; }
# What `sluice worker` runs: sluice-worker when it is built beside sluice
# (started directly here, so that valgrind sees it without following an
# exec), else the worker inside sluice.
if [ -n "${WORKER_BIN:-}" ]; then
  worker_command=("$WORKER_BIN")
elif [ -x "$(dirname "$bin")/sluice-worker" ] && [ "${SLUICE_WORKER_IN_PROCESS:-}" != 1 ]; then
  worker_command=("$(dirname "$bin")/sluice-worker")
else
  worker_command=("$bin" worker)
fi

# Tasks the worker on $port reports as succeeded (its Prometheus counter).
succeeded() {
  curl -sf "http://127.0.0.1:$port/metrics" 2>/dev/null \
    | awk '/^sluice_tasks_total\{/ && /outcome="succeeded"/ {s += $NF} END {printf "%d\n", s}'
}

# Deletes the queues and exchanges of prefix $1 (best effort, through the
# management API at MANAGEMENT_URL, default the test node's): each run
# declares a topology of its own, and thousands of leftovers slow a node down.
remove_prefix() {
  local api="${MANAGEMENT_URL:-http://127.0.0.1:27272}/api" kind name
  for kind in queues exchanges; do
    # No management API (or no python3): leave them, never fail the run.
    { curl -sf -u guest:guest "$api/$kind/%2f?columns=name" 2>/dev/null \
        | python3 -c 'import json, sys, urllib.parse
for x in json.load(sys.stdin):
    if x["name"].startswith(sys.argv[1] + "."): print(urllib.parse.quote(x["name"], safe=""))' "$1" 2>/dev/null \
        | while read -r name; do curl -sf -u guest:guest -X DELETE "$api/$kind/%2f/$name" >/dev/null || true; done; } || true
  done
}
