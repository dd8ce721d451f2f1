#!/usr/bin/env bash
# What a `sluice worker` process spends per task, measured from outside as a
# user runs it: CPU time (user + system, from /proc) and resident memory,
# idle and after draining.
#
#   Benchmarks/worker-cost.sh [SMALL LARGE]   (default: 20000 100000)
#
# For each size N, N `sluice.echo` tasks are enqueued first on a queue of
# their own, then a worker (--concurrency 300) starts, drains them (its
# Prometheus counter is polled) and stops with SIGTERM. The difference
# between the two sizes, divided by the difference in tasks, is the cost per
# task without start-up. Benchmarks/worker-instructions.sh counts
# instructions instead (more repeatable; perf has no hardware counters in
# this VM, so it uses callgrind).
#
# Settings: SLUICE_BIN (default .build/release/sluice), SLUICE_URL (default:
# the test node, amqp://guest:guest@127.0.0.1:27270/%2f), METRICS_PORT (27299).
set -euo pipefail
default_port=27299
. "$(dirname "$0")/worker-common.sh"
small=${1:-20000}
large=${2:-100000}

# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
rss_kb() { awk '/^VmRSS/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }
# The private part of it: heap, stacks, other anonymous memory (the rest is
# file pages: the code of the binary and of Swift's libraries, shared and
# reclaimable).
anon_kb() { awk '/^RssAnon/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# A worker on an empty queue, once its metrics endpoint answers: its RSS in KiB.
idle_rss() {
  local pid rss prefix="idle$RANDOM$RANDOM"
  "${worker_command[@]}" --queue idle --prefix "$prefix" --concurrency 300 --url "$url" --metrics "127.0.0.1:$port" --log-level error &
  pid=$!
  until curl -sf "http://127.0.0.1:$port/metrics" >/dev/null; do
    kill -0 "$pid" 2>/dev/null || { echo "worker-cost: the worker exited" >&2; exit 1; }
    sleep 0.05
  done
  rss="$(rss_kb "$pid") $(anon_kb "$pid")"
  kill -TERM "$pid"
  wait "$pid" || true
  remove_prefix "$prefix"
  echo "$rss"
}

# run N: prints "cpu_ms drained_rss_kb drained_anon_kb settled_rss_kb settled_anon_kb drain_ms"
run() {
  local n=$1 prefix="cost$RANDOM$RANDOM" pid drained start end cpu
  "$bin" enqueue sluice.echo --args '{}' --count "$n" --queue cost --prefix "$prefix" --url "$url" >/dev/null 2>&1
  "${worker_command[@]}" --queue cost --prefix "$prefix" --concurrency 300 --url "$url" --metrics "127.0.0.1:$port" --log-level error &
  pid=$!
  until [ "$(succeeded)" -gt 0 ]; do
    kill -0 "$pid" 2>/dev/null || { echo "worker-cost: the worker exited" >&2; exit 1; }
    sleep 0.05
  done
  start=$(date +%s%N)
  until [ "$(succeeded)" -ge "$n" ]; do
    kill -0 "$pid" 2>/dev/null || { echo "worker-cost: the worker exited" >&2; exit 1; }
    sleep 0.05
  done
  end=$(date +%s%N)
  drained="$(rss_kb "$pid") $(anon_kb "$pid")"
  cpu=$(( $(cpu_ticks "$pid") * 1000 / $(getconf CLK_TCK) ))
  # Idle a while, as a worker between bursts is (it gives freed memory back after 5 s idle).
  sleep 6
  settled="$(rss_kb "$pid") $(anon_kb "$pid")"
  kill -TERM "$pid"
  wait "$pid" || true
  remove_prefix "$prefix"
  echo "$cpu $drained $settled $(( (end - start) / 1000000 ))"
}

read -r idle idle_anon < <(idle_rss)
read -r c1 rss1 anon1 srss1 sanon1 ms1 < <(run "$small")
read -r c2 rss2 anon2 srss2 sanon2 ms2 < <(run "$large")
echo "worker (sluice.echo, concurrency 300), $url"
echo "idle (empty queue): RSS $(( idle / 1024 )) MiB, of it anonymous $(( idle_anon / 1024 )) MiB"
echo "$small tasks: CPU $c1 ms, RSS after draining $(( rss1 / 1024 )) MiB (anonymous $(( anon1 / 1024 )) MiB), 6 s later $(( srss1 / 1024 )) MiB ($(( sanon1 / 1024 )) MiB), drained at $(( small * 1000 / (ms1 > 0 ? ms1 : 1) )) tasks/s"
echo "$large tasks: CPU $c2 ms, RSS after draining $(( rss2 / 1024 )) MiB (anonymous $(( anon2 / 1024 )) MiB), 6 s later $(( srss2 / 1024 )) MiB ($(( sanon2 / 1024 )) MiB), drained at $(( large * 1000 / (ms2 > 0 ? ms2 : 1) )) tasks/s"
echo "CPU per task (difference of the two): $(( (c2 - c1) * 1000 / (large - small) )) µs"
