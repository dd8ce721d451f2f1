#!/usr/bin/env bash
# Resident memory of a `sluice worker` process as a user runs it: idle on an
# empty queue (metrics endpoint up), then while draining N `sluice.echo`
# tasks at concurrency 300 (a sample every 100,000 tasks, read from /proc
# when its Prometheus counter passes the mark), after draining, and 6 s
# later (after the idle trim).
#
#   scripts/build-release      (sluice, and sluice-worker linked as shipped)
#   Benchmarks/worker-memory.sh [N...]     (default: 100000 1000000)
#
# `sluice worker` runs sluice-worker when it is built beside it (set
# SLUICE_WORKER_IN_PROCESS=1 to measure the worker inside `sluice`).
# Settings as Benchmarks/worker-common.sh says (SLUICE_BIN, WORKER_BIN,
# SLUICE_URL, METRICS_PORT, MANAGEMENT_URL).
set -euo pipefail
default_port=27298
. "$(dirname "$0")/worker-common.sh"
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100000 1000000)

sample() {  # phase tasks pid
  awk -v phase="$1" -v tasks="$2" '/^VmRSS/ {rss = $2} /^RssAnon/ {anon = $2}
    END {printf "{\"phase\":\"%s\",\"tasks\":%d,\"rss_kib\":%d,\"anonymous_kib\":%d}\n", phase, tasks, rss, anon}' "/proc/$3/status"
}

start_worker() {  # queue prefix
  "${worker_command[@]}" --queue "$1" --prefix "$2" --concurrency 300 --url "$url" --metrics "127.0.0.1:$port" --log-level error &
  pid=$!
  until curl -sf "http://127.0.0.1:$port/metrics" >/dev/null; do
    kill -0 "$pid" 2>/dev/null || { echo "worker-memory: the worker exited" >&2; exit 1; }
    sleep 0.05
  done
}

prefix="wmidle$RANDOM$RANDOM"
start_worker idle "$prefix"
sleep 1
echo "$(readlink "/proc/$pid/exe")" >&2
sample idle 0 "$pid"
kill -TERM "$pid"; wait "$pid" || true
remove_prefix "$prefix"

for n in "${sizes[@]}"; do
  prefix="wm$RANDOM$RANDOM"
  "$bin" enqueue sluice.echo --args '{}' --count "$n" --queue drain --prefix "$prefix" --url "$url" >/dev/null 2>&1
  start_worker drain "$prefix"
  next=100000
  while true; do
    done_count=$(succeeded)
    while [ "$done_count" -ge "$next" ] && [ "$next" -le "$n" ]; do
      sample running "$next" "$pid"
      next=$((next + 100000))
    done
    [ "$done_count" -ge "$n" ] && break
    kill -0 "$pid" 2>/dev/null || { echo "worker-memory: the worker exited" >&2; exit 1; }
    sleep 0.1
  done
  sample drained "$n" "$pid"
  sleep 6
  sample settled "$n" "$pid"
  kill -TERM "$pid"; wait "$pid" || true
  remove_prefix "$prefix"
done
