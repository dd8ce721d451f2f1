#!/usr/bin/env bash
# Resident memory of a worker built from the library alone
# (Benchmarks/LibraryWorker: SluiceWorker and SluiceRabbitMQ, no CLI), as a
# Swift service runs its handlers: idle on an empty queue, then while
# draining N `sluice.echo` tasks at concurrency 300 (a sample every 100,000
# tasks), after draining, and 6 s later. The worker reports its own
# VmRSS/RssAnon from /proc.
#
#   swift build -c release --product sluice --product sluice-library-worker --static-swift-stdlib
#   Benchmarks/library-worker-memory.sh [N...]     (default: 100000 1000000)
#
# Settings: SLUICE_BIN (enqueues; default .build/release/sluice),
# WORKER_BIN (default .build/release/sluice-library-worker), SLUICE_URL
# (default: the test node), MANAGEMENT_URL (to remove the run's queues).
set -euo pipefail
default_port=0
. "$(dirname "$0")/worker-common.sh"
worker=${WORKER_BIN:-.build/release/sluice-library-worker}
[ -x "$worker" ] || { echo "library-worker-memory: build first: swift build -c release --product sluice-library-worker --static-swift-stdlib" >&2; exit 1; }
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(100000 1000000)

prefix="lwidle$RANDOM$RANDOM"
SLUICE_URL="$url" SLUICE_PREFIX="$prefix" QUEUE=idle "$worker"
remove_prefix "$prefix"
for n in "${sizes[@]}"; do
  prefix="lw$RANDOM$RANDOM"
  "$bin" enqueue sluice.echo --args '{}' --count "$n" --queue drain --prefix "$prefix" --url "$url" >/dev/null 2>&1
  SLUICE_URL="$url" SLUICE_PREFIX="$prefix" QUEUE=drain CONCURRENCY=300 EXIT_AFTER="$n" "$worker"
  remove_prefix "$prefix"
done
