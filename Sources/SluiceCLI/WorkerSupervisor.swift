import Foundation
import Logging
import SluiceSpawn
import SluiceWorkerProcess
import Synchronization
import UnixSignals

/// `sluice worker --processes N`: runs N worker processes and keeps them
/// running.
///
/// - A child that exits unasked is restarted, after a backoff that doubles
///   from 0.5 s to 30 s while it keeps failing within 30 s of its start.
/// - SIGTERM or SIGINT is passed on to every child as SIGTERM; each drains
///   (its shutdown grace) and exits; the supervisor exits 0 when all did.
///   A second signal kills them.
/// - With a hard time limit, each child reports the start and end of every
///   task on its standard output; a child with one task running past the
///   limit is killed (SIGKILL), so the broker redelivers that task, and the
///   queue's delivery limit dead-letters one that keeps doing it.
/// - Each child's standard input is a pipe from the supervisor: when the
///   supervisor dies, however it dies, the children see end-of-file and stop.
/// - A crash costs innocent tasks almost nothing. Children report every
///   task's start and end, so when one dies the supervisor knows what was
///   running. Those tasks become suspects: every child hands a suspect to
///   the queue's isolation queue instead of running it, and one more child
///   (started at the first crash) runs those one at a time. A task that
///   crashes a child while it runs alone is counted; at `crashLimit`
///   crashes it is poison, and whichever child meets it next dead-letters it
///   as `crashed_worker`. A crash with tasks in flight is explained, so its
///   child restarts at once (0.25-0.75 s, jittered so children never move
///   in lockstep); only unexplained exits back off.
final class WorkerSupervisor: Sendable {
    struct Slot: Sendable {
        var process: ChildProcess?
        var startedAt = ContinuousClock.now
        var failures = 0
        /// Running tasks by id, with when they started.
        var tasks: [String: ContinuousClock.Instant] = [:]
        /// Report bytes after the last newline (a read may end mid-line).
        var partial: [UInt8] = []
        var killedForLimit = false
        /// The write end of the child's standard input: verdicts go there.
        var input: PipeEnd?
        /// Started at least once: the exit loop restarts it from then on.
        var inUse = false
    }

    /// What the supervisor has learnt about tasks present at crashes.
    struct Verdicts {
        /// Crashes of a process in which the task ran alone.
        var crashes: [String: Int] = [:]
        /// Tasks to run alone, oldest first (bounded).
        var suspects: [String] = []
        var suspectSet: Set<String> = []
        var poisons: [String] = []

        mutating func suspect(_ id: String) {
            guard suspectSet.insert(id).inserted else { return }
            suspects.append(id)
            if suspects.count > 10_000 { suspectSet.remove(suspects.removeFirst()) }
        }

        /// The lines that bring a new child up to date.
        var lines: [String] {
            suspects.map { "suspect \(SupervisorLine.encode($0))" } + poisons.map { "poison \(SupervisorLine.encode($0))" }
        }
    }

    private let arguments: @Sendable (Int) -> [String]
    /// The children's program: nil for this very binary (`sluice`).
    private let executable: String?
    private let environment: [String: String]
    private let count: Int
    private let hardLimit: Duration?
    private let logger: Logger
    private let state: Mutex<(slots: [Slot], stopping: Bool, verdicts: Verdicts)>
    private let crashLimit: Int
    /// The slot of the child that runs suspects (after the `count` others).
    private var isolationSlot: Int { count }
    private let exits = AsyncStream<(Int, Int32)>.makeStream()

    /// `arguments(slot)`: the command line of a child; slot `count` is the
    /// child that runs suspects (its arguments should add `--isolation`);
    /// `executable`: the program to run (sluice-worker), else this binary.
    init(count: Int, hardLimit: Duration?, crashLimit: Int = 2, logger: Logger, executable: String? = nil,
         environment: [String: String] = [:], arguments: @escaping @Sendable (Int) -> [String]) {
        self.executable = executable
        self.environment = environment
        self.crashLimit = max(1, crashLimit)
        self.count = count
        self.hardLimit = hardLimit
        self.logger = logger
        self.arguments = arguments
        state = Mutex((Array(repeating: Slot(), count: count + 1), false, Verdicts()))
    }

    /// Runs until the children have stopped after a signal; returns the exit status.
    func run() async -> Int32 {
        let signals = await UnixSignalsSequence(trapping: .sigterm, .sigint)
        for i in 0..<count { start(i) }
        let watchdog = Task { await self.watchdog() }
        let forwarder = Task {
            var received = 0
            var resender: Task<Void, Never>?
            defer { resender?.cancel() }
            for await sig in signals {
                received += 1
                self.logger.info("\(received == 1 ? "stopping" : "killing") worker processes", metadata: ["signal": "\(sig)"])
                self.state.withLock { $0.stopping = true }
                self.signalChildren(received == 1 ? SIGTERM : SIGKILL)
                if received == 1 {
                    // Again each second: a process started a moment ago may
                    // not have set up its handlers yet. A draining worker
                    // ignores the repeats.
                    resender = Task {
                        while !Task.isCancelled {
                            try? await Task.sleep(for: .seconds(1))
                            self.signalChildren(SIGTERM)
                        }
                    }
                }
            }
        }
        var worst: Int32 = 0
        for await (slot, status) in exits.stream {
            let (stopping, inFlight) = state.withLock { s -> (Bool, [String]) in
                let inFlight = Array(s.slots[slot].tasks.keys)
                s.slots[slot].process = nil
                // Closed here, under the lock that writes to it (`tell`), never while a write is under way.
                s.slots[slot].input?.close()
                s.slots[slot].input = nil
                s.slots[slot].tasks = [:]
                return (s.stopping, inFlight)
            }
            if stopping {
                // 128+SIGTERM: a process that had only just been (re)started
                // and had not set up its handlers yet; it held no task.
                if status != 0 && status != 128 + SIGTERM { worst = 1 }
                // Every slot that had a process is waited for (the one that runs suspects too).
                let left = state.withLock { $0.slots.filter { $0.process != nil }.count }
                logger.info("worker process exited", metadata: ["slot": "\(slot)", "status": "\(status)", "left": "\(left)"])
                if left == 0 { break }
                continue
            }
            // A crash (a signal, or an exit status that is not Sluice's own error
            // or usage status) is laid at the tasks that were running.
            let crashed = status != 0 && status != 1 && status != 64
            let (delay, killed) = state.withLock { s -> (Duration, Bool) in
                let lived = ContinuousClock.now - s.slots[slot].startedAt
                let killed = s.slots[slot].killedForLimit
                s.slots[slot].killedForLimit = false
                // Jitter: children that died together must not restart together.
                let jitter = Double.random(in: 0.5...1.5)
                if !inFlight.isEmpty && !killed && crashed {
                    // Explained by the tasks it ran: they are dealt with, so restart now.
                    s.slots[slot].failures = 0
                    return (.milliseconds(Int64(500 * jitter)), killed)
                }
                s.slots[slot].failures = lived > .seconds(30) ? 1 : s.slots[slot].failures + 1
                let ms = min(30_000, 500 << min(s.slots[slot].failures - 1, 6))
                return (.milliseconds(Int64(Double(ms) * jitter)), killed)
            }
            logger.warning(killed ? "worker process killed at the hard time limit; restarting" : "worker process exited unexpectedly; restarting",
                           metadata: ["slot": "\(slot)", "status": "\(status)", "in": "\(delay)", "tasks": "\(inFlight.count)"])
            if crashed && !killed && !inFlight.isEmpty { judge(inFlight, alone: slot == isolationSlot || inFlight.count == 1) }
            Task {
                // Wait out the backoff, unless a stop comes first.
                let until = ContinuousClock.now + delay
                while ContinuousClock.now < until, !self.state.withLock({ $0.stopping }) {
                    try? await Task.sleep(for: .milliseconds(100))
                }
                if !self.state.withLock({ $0.stopping }) { self.start(slot) } else { self.exits.continuation.yield((slot, 0)) }
            }
        }
        watchdog.cancel()
        forwarder.cancel()
        return worst
    }

    /// Draws conclusions from the tasks that were running when a child
    /// died, and tells every child.
    private func judge(_ inFlight: [String], alone: Bool) {
        let (lines, startIsolation) = state.withLock { s -> ([String], Bool) in
            var lines: [String] = []
            for id in inFlight {
                if alone {
                    s.verdicts.crashes[id, default: 0] += 1
                    if s.verdicts.crashes[id]! >= crashLimit, !s.verdicts.poisons.contains(id) {
                        s.verdicts.poisons.append(id)
                        lines.append("poison \(SupervisorLine.encode(id))")
                        continue
                    }
                }
                s.verdicts.suspect(id)
                lines.append("suspect \(SupervisorLine.encode(id))")
            }
            // Started once, it is restarted by the exit loop like any child.
            let startIsolation = !s.slots[isolationSlot].inUse && !s.stopping
            if startIsolation { s.slots[isolationSlot].inUse = true }
            return (lines, startIsolation)
        }
        if alone, let id = inFlight.first {
            logger.warning("a task crashed its worker process while running alone", metadata: [
                "task.id": "\(id.prefix(300))", "crashes": "\(state.withLock { $0.verdicts.crashes[id] ?? 0 })", "limit": "\(crashLimit)"])
        }
        tell(lines)
        if startIsolation { start(isolationSlot) }
    }

    /// Writes verdict lines to every running child. Under the lock, so that
    /// no handle is closed meanwhile; the lines are short and every child
    /// reads them on a thread of its own, and a dead one's pipe fails at once
    /// (EPIPE: SIGPIPE is ignored).
    private func tell(_ lines: [String]) {
        guard !lines.isEmpty else { return }
        let data = Array((lines.joined(separator: "\n") + "\n").utf8)
        state.withLock { s in
            for input in s.slots.compactMap(\.input) { try? input.write(data) }
        }
    }

    /// Forgets what is known of these tasks and tells every child: a suspect
    /// that ran alone to its end is innocent; a poison that was dead-lettered
    /// is gone (a later task may reuse its id).
    private func clear(_ ids: [String]) {
        guard !ids.isEmpty else { return }
        state.withLock { s in
            for id in ids {
                s.verdicts.crashes[id] = nil
                s.verdicts.poisons.removeAll { $0 == id }
                if s.verdicts.suspectSet.remove(id) != nil { s.verdicts.suspects.removeAll { $0 == id } }
            }
        }
        tell(ids.map { "clear \(SupervisorLine.encode($0))" })
    }

    private func start(_ slot: Int) {
        let continuation = exits.continuation
        let child: ChildProcess
        do {
            child = try SupervisedChild.spawn(executable: executable, arguments(slot), environment: environment, output: .pipe)
        } catch {
            logger.error("cannot start a worker process", metadata: ["error": "\(error)"])
            continuation.yield((slot, 127))
            return
        }
        // The slot is set before the exit is watched: one that exits at once
        // is then cleared by the exit loop, never marked live after it.
        let stopping = state.withLock { s -> Bool in
            s.slots[slot].process = child
            s.slots[slot].input = child.standardInput
            s.slots[slot].inUse = true
            s.slots[slot].startedAt = .now
            s.slots[slot].tasks = [:]
            s.slots[slot].partial = []
            return s.stopping
        }
        // Reports, read on a thread of their own until the child's end closes the pipe.
        let reportsRead = OnceSignal()
        if let reports = child.standardOutput {
            Thread { [weak self] in
                var buffer = [UInt8](repeating: 0, count: 64 << 10)
                while let n = try? reports.read(into: &buffer), n > 0, let self {
                    self.clear(self.read(reports: Data(buffer[0..<n]), slot: slot))
                }
                reportsRead.fire()
            }.start()
        } else {
            reportsRead.fire()
        }
        Task {
            let termination = await child.wait()
            // Reports still in the pipe (a task that crashed the child at once
            // was reported just before) are read before the exit is judged:
            // until the pipe's end, or 2 s if something else still holds it.
            await withTaskGroup(of: Void.self) { group in
                group.addTask { await reportsRead.wait() }
                group.addTask { try? await Task.sleep(for: .seconds(2)) }
                await group.next()
                group.cancelAll()
                reportsRead.fire()  // releases the first task if the sleep won
            }
            switch termination {
            case .exited(let status): continuation.yield((slot, status))
            case .signaled(let signal): continuation.yield((slot, 128 + signal))
            }
        }
        // What is known so far, then `ready`: the child starts consuming only after it.
        state.withLock { s in
            guard let handle = s.slots[slot].input else { return }
            try? handle.write(Array((s.verdicts.lines + ["ready"]).joined(separator: "\n").utf8) + [UInt8(ascii: "\n")])
        }
        // A stop that came while this one was being started.
        if stopping { child.signal(SIGTERM) }
        logger.info("worker process started", metadata: ["slot": "\(slot)", "pid": "\(child.pid)"])
    }

    /// Lines `started <id>`, `finished <id>` and `poisoned <id>` from a
    /// child; only whole lines count, the rest waits for the next read.
    /// Returns the tasks to clear: suspects that ran to their end alone,
    /// poisons that were dead-lettered.
    private func read(reports data: Data, slot: Int) -> [String] {
        let isolation = slot == isolationSlot
        return state.withLock { s -> [String] in
            var cleared: [String] = []
            var bytes = s.slots[slot].partial + Array(data)
            guard let end = bytes.lastIndex(of: UInt8(ascii: "\n")) else {
                s.slots[slot].partial = bytes
                return cleared
            }
            s.slots[slot].partial = Array(bytes[(end + 1)...])
            bytes.removeSubrange((end + 1)...)
            let text = String(decoding: bytes, as: UTF8.self)
            for line in text.split(separator: "\n") {
                let parts = line.split(separator: " ", maxSplits: 1)
                guard parts.count == 2, let id = SupervisorLine.decode(String(parts[1])) else { continue }
                switch parts[0] {
                case "started":
                    s.slots[slot].tasks[id] = .now
                case "finished":
                    s.slots[slot].tasks[id] = nil
                    if isolation && s.verdicts.suspectSet.contains(id) { cleared.append(id) }
                case "poisoned":
                    cleared.append(id)
                default:
                    break
                }
            }
            return cleared
        }
    }

    private func watchdog() async {
        guard let hardLimit else { return }
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(250))
            let now = ContinuousClock.now
            let stuck = state.withLock { s -> [(ChildProcess, String)] in
                var result: [(ChildProcess, String)] = []
                for i in s.slots.indices {
                    guard let p = s.slots[i].process, !s.slots[i].killedForLimit,
                          let (id, _) = s.slots[i].tasks.first(where: { now - $0.value > hardLimit }) else { continue }
                    s.slots[i].killedForLimit = true
                    result.append((p, id))
                }
                return result
            }
            for (child, task) in stuck {
                logger.error("a task ran past the hard time limit: killing its worker process (the task will be redelivered)",
                             metadata: ["pid": "\(child.pid)", "task.id": "\(task)", "limit": "\(hardLimit)"])
                child.signal(SIGKILL)
            }
        }
    }

    private func signalChildren(_ sig: Int32) {
        let children = state.withLock { $0.slots.compactMap(\.process) }
        for child in children { child.signal(sig) }
    }
}

/// In a supervised child: reports task starts and ends on standard output,
/// and stops when the supervisor goes (standard input reaches end-of-file).
enum SupervisedChild {
    /// `sluice ARGUMENTS` (this very binary) as a child process, not started,
    /// whose standard input is a pipe from us: while we hold its write end
    /// the child runs; when it closes (we exited, however) the child stops.
    /// The arguments should include `--supervised`.
    /// `environment`: variables set for the child on top of this process's
    /// own; secrets (the broker URL with its password) go this way, never in
    /// argv, which every user of the machine can read with `ps`.
    static func process(_ arguments: [String], environment: [String: String] = [:]) -> (Process, input: Pipe) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = arguments
        if !environment.isEmpty {
            process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
        }
        let input = Pipe()
        process.standardInput = input
        return (process, input)
    }

    /// The same (or `executable ARGUMENTS`), started at once with `posix_spawn`
    /// (see ``ChildProcess``; a supervisor restarts children often): its standard input is
    /// ``ChildProcess/standardInput``, its output goes where `output` says,
    /// its errors to ours.
    static func spawn(executable: String? = nil, _ arguments: [String], environment: [String: String] = [:],
                      output: ChildProcess.Stream) throws -> ChildProcess {
        let executable = executable ?? URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath().path
        return try ChildProcess(executable: executable, arguments: arguments,
                                environment: ProcessInfo.processInfo.environment.merging(environment) { _, new in new },
                                standardInput: .pipe, standardOutput: output, standardError: .inherit)
    }
}

