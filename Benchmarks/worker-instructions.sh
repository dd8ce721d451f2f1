#!/usr/bin/env bash
# CPU instructions a `sluice worker` process spends per no-op task, counted
# by valgrind's callgrind (repeatable where timings are not).
#
#   Benchmarks/worker-instructions.sh [SMALL LARGE]   (default: 2000 10000)
#
# For each size N, N `sluice.echo` tasks are enqueued on a queue of their
# own, then a worker (--concurrency 300) runs under callgrind, drains them
# (its Prometheus counter is polled) and stops with SIGTERM. The difference
# of the two runs' totals, divided by the difference in tasks, is the count
# per task without start-up and shutdown. The functions that cost most per
# task are printed too, by the same difference of their own (exclusive)
# counts: the larger run's top functions alone are mostly start-up (the
# runtime's protocol-conformance scan costs 117 M instructions in either
# run). The whole profiles stay in .sluice/callgrind.N.out for
# callgrind_annotate.
#
# LISTENER=1 binds a queue to the tasks' succeeded events first (through the
# management API at MANAGEMENT_URL, default http://127.0.0.1:27272), so every
# outcome event is published and routed, as with a monitor or coordinator.
# LISTENER=pack binds it to their pack key instead (`~pack.succeeded.cost.~`):
# the outcomes go in packs (docs/wire-format.md).
#
# Needs the patched valgrind of Benchmarks/build-valgrind.sh (built on first
# use). Settings: SLUICE_BIN (default .build/release/sluice), SLUICE_URL
# (default: the test node), METRICS_PORT (27298).
set -euo pipefail
shopt -s inherit_errexit  # a failure inside $(run ...) stops the script too
default_port=27298
. "$(dirname "$0")/worker-common.sh"
small=${1:-2000}
large=${2:-10000}
need_valgrind

# run N: prints the instructions the worker process executed in all.
run() {
  local n=$1 prefix="instr$RANDOM$RANDOM" pid out=.sluice/callgrind.$1.out
  enqueue_echo "$n" cost "$prefix"
  [ -z "${LISTENER:-}" ] || bind_listener "$prefix" cost "$LISTENER"
  "$valgrind" --tool=callgrind --callgrind-out-file="$out" \
    "${worker_command[@]}" --queue cost --prefix "$prefix" --concurrency 300 --url "$url" --metrics "127.0.0.1:$port" --log-level error \
    2>/dev/null &
  pid=$!
  await_succeeded "$pid" "$n"
  kill -TERM "$pid"
  wait "$pid" || true
  remove_prefix "$prefix"
  awk '/^summary:/ {print $2}' "$out"
}

mkdir -p .sluice
i1=$(run "$small")
i2=$(run "$large")
[[ "$i1" =~ ^[0-9]+$ && "$i2" =~ ^[0-9]+$ ]] || { echo "worker-instructions: no instruction total in callgrind's output" >&2; exit 1; }
echo "worker (sluice.echo, concurrency 300, $([ -n "${LISTENER:-}" ] && echo "a listener bound to the succeeded events" || echo "no listener")), $url"
echo "$small tasks: $i1 instructions; $large tasks: $i2 instructions"
echo "instructions per task (difference of the two): $(( (i2 - i1) / (large - small) ))"
echo "most expensive functions per task (exclusive, difference of the two runs):"
for n in "$small" "$large"; do
  .sluice/valgrind/bin/callgrind_annotate --auto=no --threshold=100 ".sluice/callgrind.$n.out" 2>/dev/null > ".sluice/callgrind.$n.txt"
done
python3 - ".sluice/callgrind.$small.txt" ".sluice/callgrind.$large.txt" "$(( large - small ))" <<'PY'
import re, sys
def costs(path):
    out = {}
    for line in open(path):
        m = re.match(r"\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(\S.*)$", line)
        if m and not m.group(2).startswith("PROGRAM"):
            out[m.group(2)] = out.get(m.group(2), 0) + int(m.group(1).replace(",", ""))
    return out
small, large, tasks = costs(sys.argv[1]), costs(sys.argv[2]), int(sys.argv[3])
rows = sorted(((large.get(k, 0) - small.get(k, 0)) / tasks, k) for k in set(small) | set(large))
for per_task, name in reversed(rows[-12:]):
    print(f"{per_task:8.0f}  {name[:130]}")
PY
