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

# Enqueues N `sluice.echo` tasks on queue $2 of prefix $3 (sluice enqueue).
enqueue_echo() {  # n queue prefix
  "$bin" enqueue sluice.echo --args '{}' --count "$1" --queue "$2" --prefix "$3" --url "$url" >/dev/null \
    || { echo "$(basename "$0" .sh): could not enqueue $1 tasks at $url" >&2; return 1; }
}

# A listener's queue, $prefix.listener, bound to the succeeded events of the
# tasks of queue $2 (as a monitor binds one; with kind "pack", to their
# outcome packs, as a coordinator does): every outcome is published and
# routed. Capped, unread. Through the management API at MANAGEMENT_URL.
bind_listener() {  # prefix queue kind
  local api="${MANAGEMENT_URL:-http://127.0.0.1:27272}/api" listen="$1.listener" key="$2.succeeded"
  [ "$3" != pack ] || key="~pack.succeeded.$2.~"
  curl -sf -u guest:guest -X PUT -H 'content-type: application/json' "$api/queues/%2f/$listen" \
    -d '{"durable": false, "auto_delete": false, "arguments": {"x-max-length": 1000}}' >/dev/null \
    && curl -sf -u guest:guest -X POST -H 'content-type: application/json' "$api/bindings/%2f/e/$1.events/q/$listen" \
    -d "{\"routing_key\": \"$key\"}" >/dev/null \
    || { echo "$(basename "$0" .sh): could not bind a listener through $api" >&2; return 1; }
}

# Waits until the worker $1 (on $port) has run $2 tasks, for at most 600 s
# (a worker under valgrind is some 50 times slower); stops it on timeout.
await_succeeded() {  # pid n
  local deadline=$((SECONDS + 600))
  until [ "$(succeeded)" -ge "$2" ]; do
    kill -0 "$1" 2>/dev/null || { echo "$(basename "$0" .sh): the worker exited" >&2; return 1; }
    [ "$SECONDS" -lt "$deadline" ] || { echo "$(basename "$0" .sh): $2 tasks not done after 600 s" >&2; kill -TERM "$1"; return 1; }
    sleep 0.2
  done
}

# The valgrind that runs Swift 6.3 binaries (Benchmarks/build-valgrind.sh,
# built on first use).
valgrind=.sluice/valgrind/bin/valgrind
need_valgrind() { [ -x "$valgrind" ] || Benchmarks/build-valgrind.sh >&2; }
