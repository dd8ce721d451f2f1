#!/usr/bin/env python3
"""CPU per task on each side during `sluice bench tasks`' end-to-end phases.

    Benchmarks/end-to-end-cpu.py BROKER_PID -- SLUICE_BIN bench tasks --count N [...]

Runs the bench command and reads its progress lines: from each "end to end"
line to the next progress line, the bench process (its worker) and the
broker process (BROKER_PID, e.g. `cat .sluice/brokers/bench/rabbit.pid`)
each used some CPU (user + system, from /proc/PID/stat); divided by the
round's task count it is the CPU per task of each side, which, unlike a rate,
does not move with how much of the machine the other side left free. The
bench's own output is passed through.
"""
import os
import re
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime


def main():
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit(__doc__)
    broker = int(sys.argv[1])
    command = sys.argv[3:]
    count = int(command[command.index("--count") + 1])
    bench = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    start = None
    rows = []
    for line in bench.stdout:
        sys.stdout.write(line)
        if start is not None and (re.match(r"^(round \d|raw round trip|raw latency|enqueue-to-start|median|round +raw)", line)):
            seconds = time.monotonic() - start[2]
            rows.append(((ticks(bench.pid) - start[0]) / TICK, (ticks(broker) - start[1]) / TICK, seconds))
            start = None
        if re.match(r"^round \d+/\d+: end to end, ", line):
            start = (ticks(bench.pid), ticks(broker), time.monotonic())
    bench.wait()
    for i, (worker, node, seconds) in enumerate(rows, 1):
        print(f"end-to-end-cpu: round {i}: bench process {worker * 1e6 / count:.1f} µs/task, broker {node * 1e6 / count:.1f} µs/task, "
              f"together {(worker + node) / seconds:.2f} cores over {seconds:.1f} s")
    sys.exit(bench.returncode)


if __name__ == "__main__":
    main()
