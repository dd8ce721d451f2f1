#!/usr/bin/env bash
# Writes deploy/sluice-worker.order: the functions a `sluice-worker` process
# runs (as callgrind lists them, grouped by source file), for lld's
# --symbol-ordering-file (scripts/build-release uses it).
#
#   Benchmarks/worker-order.sh [N]   (default: 5000)
#
# Why: the kernel maps a binary's code 64 KiB at a time around each page
# it faults in, so an idle worker whose few hundred functions lie scattered
# over 14 MB of code had 9 MiB of it resident. Laid out together, the code
# a worker runs fills a few MiB (docs/performance.md, "The worker's code laid
# out together").
#
# The run covers what a worker does in service: start-up, N `sluice.echo`
# tasks drained with nobody listening, N more with a listener bound to their
# outcome packs, an idle second with its metrics read, and the shutdown on
# SIGTERM. A name the next build no longer has is skipped by the linker, and
# code missing from the list is laid out after it, so a stale list costs
# memory, never correctness; run this again after large changes to the worker.
#
# Needs a release sluice and sluice-worker (scripts/build-release) and the
# valgrind of Benchmarks/build-valgrind.sh (built on first use). Settings as
# Benchmarks/worker-common.sh says (SLUICE_BIN, WORKER_BIN, SLUICE_URL,
# METRICS_PORT, MANAGEMENT_URL).
set -euo pipefail
shopt -s inherit_errexit
default_port=27297
. "$(dirname "$0")/worker-common.sh"
n=${1:-5000}
need_valgrind
worker=${worker_command[0]}
[ "${#worker_command[@]}" -eq 1 ] || { echo "worker-order: needs sluice-worker built beside $bin (scripts/build-release)" >&2; exit 1; }
out=deploy/sluice-worker.order
mkdir -p .sluice
pid=
trap '[ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null || true' EXIT

# run LISTENER PROFILE: drains n tasks under callgrind; LISTENER is "" or
# "pack" (a queue bound to the tasks' outcome packs, as a coordinator binds).
run() {
  local listener=$1 profile=$2 prefix="order$RANDOM$RANDOM"
  enqueue_echo "$n" order "$prefix"
  [ -z "$listener" ] || bind_listener "$prefix" order "$listener"
  "$valgrind" --tool=callgrind --demangle=no --dump-instr=no --callgrind-out-file="$profile" \
    "$worker" --queue order --prefix "$prefix" --concurrency 300 --url "$url" --metrics "127.0.0.1:$port" --log-level error \
    2>/dev/null &
  pid=$!
  await_succeeded "$pid" "$n"
  sleep 1  # idle, and one more read of the metrics below
  succeeded >/dev/null || true
  kill -TERM "$pid"
  wait "$pid" || true
  pid=
  remove_prefix "$prefix"
}

run "" .sluice/order.plain.callgrind
run pack .sluice/order.pack.callgrind
# Callgrind names an object and a function once, by number, then by the number
# alone (ob=, fn=, and cob=/cfn= for callees). Keep the functions of the
# worker's own binary, in the profiles' order (the plain run's first), each
# once; "'2"-style suffixes mark
# recursion depths, and "0x..." names have no symbol to order by.
python3 - "$(readlink -f "$worker")" .sluice/order.plain.callgrind .sluice/order.pack.callgrind > "$out.tmp" <<'PY'
import re, sys
binary, profiles = sys.argv[1], sys.argv[2:]
line_re = re.compile(r"(c?ob|c?fn)=\((\d+)\)(?: (.*))?$")
seen, order = set(), []
for path in profiles:
    objects, functions, current = {}, {}, None
    for line in open(path, errors="replace"):
        m = line_re.match(line.rstrip("\n"))
        if not m:
            continue
        kind, number, name = m.groups()
        table = objects if kind.endswith("ob") else functions
        if name:
            table[number] = name
        if kind == "ob":
            current = objects.get(number)
        elif kind == "fn" and current == binary:
            symbol = re.sub(r"'\d+$", "", functions[number])
            if symbol not in seen and not symbol.startswith("0x"):
                seen.add(symbol)
                order.append(symbol)
print("\n".join(order))
PY
# Far fewer names means the profile did not match the binary (another path,
# a stripped build): keep the list there is.
count=$(wc -l < "$out.tmp")
[ "$count" -ge 1000 ] || { rm -f "$out.tmp"; echo "worker-order: only $count functions of $(readlink -f "$worker") in the profiles; $out left as it was" >&2; exit 1; }
mv "$out.tmp" "$out"
echo "worker-order: $(wc -l < "$out") functions in $out"
