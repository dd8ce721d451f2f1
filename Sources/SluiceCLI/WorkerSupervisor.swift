import Foundation
import Logging
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
final class WorkerSupervisor: Sendable {
    struct Slot: Sendable {
        var process: Process?
        var startedAt = ContinuousClock.now
        var failures = 0
        /// Running tasks by id, with when they started.
        var tasks: [String: ContinuousClock.Instant] = [:]
        /// Report bytes after the last newline (a read may end mid-line).
        var partial: [UInt8] = []
        var killedForLimit = false
    }

    private let arguments: @Sendable (Int) -> [String]
    private let environment: [String: String]
    private let count: Int
    private let hardLimit: Duration?
    private let logger: Logger
    private let state: Mutex<(slots: [Slot], stopping: Bool)>
    private let exits = AsyncStream<(Int, Int32)>.makeStream()

    init(count: Int, hardLimit: Duration?, logger: Logger, environment: [String: String] = [:],
         arguments: @escaping @Sendable (Int) -> [String]) {
        self.environment = environment
        self.count = count
        self.hardLimit = hardLimit
        self.logger = logger
        self.arguments = arguments
        state = Mutex((Array(repeating: Slot(), count: count), false))
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
        var live = count
        var worst: Int32 = 0
        for await (slot, status) in exits.stream {
            let stopping = state.withLock { s -> Bool in
                s.slots[slot].process = nil
                s.slots[slot].tasks = [:]
                return s.stopping
            }
            if stopping {
                live -= 1
                // 128+SIGTERM: a process that had only just been (re)started
                // and had not set up its handlers yet; it held no task.
                if status != 0 && status != 128 + SIGTERM { worst = 1 }
                logger.info("worker process exited", metadata: ["slot": "\(slot)", "status": "\(status)", "left": "\(live)"])
                if live == 0 { break }
                continue
            }
            let (delay, killed) = state.withLock { s -> (Duration, Bool) in
                let lived = ContinuousClock.now - s.slots[slot].startedAt
                s.slots[slot].failures = lived > .seconds(30) ? 1 : s.slots[slot].failures + 1
                let killed = s.slots[slot].killedForLimit
                s.slots[slot].killedForLimit = false
                let ms = min(30_000, 500 << min(s.slots[slot].failures - 1, 6))
                return (.milliseconds(ms), killed)
            }
            logger.warning(killed ? "worker process killed at the hard time limit; restarting" : "worker process exited unexpectedly; restarting",
                           metadata: ["slot": "\(slot)", "status": "\(status)", "in": "\(delay)"])
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

    private func start(_ slot: Int) {
        let (process, input) = SupervisedChild.process(arguments(slot), environment: environment)
        let reports = Pipe()
        process.standardOutput = reports
        reports.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            if data.isEmpty { handle.readabilityHandler = nil; return }
            self?.read(reports: data, slot: slot)
        }
        let continuation = exits.continuation
        process.terminationHandler = { p in
            try? input.fileHandleForWriting.close()
            continuation.yield((slot, p.terminationReason == .uncaughtSignal ? 128 + p.terminationStatus : p.terminationStatus))
        }
        do {
            try process.run()
            try? input.fileHandleForReading.close()
            try? reports.fileHandleForWriting.close()
            let stopping = state.withLock { s -> Bool in
                s.slots[slot].process = process
                s.slots[slot].startedAt = .now
                s.slots[slot].tasks = [:]
                s.slots[slot].partial = []
                return s.stopping
            }
            // A stop that came while this one was being started.
            if stopping { kill(process.processIdentifier, SIGTERM) }
            logger.info("worker process started", metadata: ["slot": "\(slot)", "pid": "\(process.processIdentifier)"])
        } catch {
            logger.error("cannot start a worker process", metadata: ["error": "\(error)"])
            continuation.yield((slot, 127))
        }
    }

    /// Lines `started <id>` / `finished <id>` from a child; only whole lines
    /// count, the rest waits for the next read.
    private func read(reports data: Data, slot: Int) {
        state.withLock { s in
            var bytes = s.slots[slot].partial + Array(data)
            guard let end = bytes.lastIndex(of: UInt8(ascii: "\n")) else {
                s.slots[slot].partial = bytes
                return
            }
            s.slots[slot].partial = Array(bytes[(end + 1)...])
            bytes.removeSubrange((end + 1)...)
            let text = String(decoding: bytes, as: UTF8.self)
            for line in text.split(separator: "\n") {
                let parts = line.split(separator: " ", maxSplits: 1)
                guard parts.count == 2 else { continue }
                let id = String(parts[1])
                if parts[0] == "started" { s.slots[slot].tasks[id] = .now } else if parts[0] == "finished" { s.slots[slot].tasks[id] = nil }
            }
        }
    }

    private func watchdog() async {
        guard let hardLimit else { return }
        while !Task.isCancelled {
            try? await Task.sleep(for: .milliseconds(250))
            let now = ContinuousClock.now
            let stuck = state.withLock { s -> [(Int32, String)] in
                var result: [(Int32, String)] = []
                for i in s.slots.indices {
                    guard let p = s.slots[i].process, !s.slots[i].killedForLimit,
                          let (id, _) = s.slots[i].tasks.first(where: { now - $0.value > hardLimit }) else { continue }
                    s.slots[i].killedForLimit = true
                    result.append((p.processIdentifier, id))
                }
                return result
            }
            for (pid, task) in stuck {
                logger.error("a task ran past the hard time limit: killing its worker process (the task will be redelivered)",
                             metadata: ["pid": "\(pid)", "task.id": "\(task)", "limit": "\(hardLimit)"])
                kill(pid, SIGKILL)
            }
        }
    }

    private func signalChildren(_ sig: Int32) {
        let pids = state.withLock { $0.slots.compactMap { $0.process?.processIdentifier } }
        for pid in pids { kill(pid, sig) }
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

    static func report(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        bytes.withUnsafeBytes { _ = write(STDOUT_FILENO, $0.baseAddress, $0.count) }
    }

    /// A spawned process inherits ignored and blocked signals from whatever
    /// started its parent: put SIGTERM and SIGINT back to their defaults, so
    /// that the supervisor's SIGTERM always reaches the service group.
    static func resetSignals() {
        signal(SIGTERM, SIG_DFL)
        signal(SIGINT, SIG_DFL)
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGINT)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    static func stopWhenSupervisorGoes() {
        let thread = Thread {
            var buffer = [UInt8](repeating: 0, count: 64)
            while true {
                let n = read(STDIN_FILENO, &buffer, buffer.count)
                if n == 0 || (n < 0 && errno != EINTR) { break }
            }
            kill(getpid(), SIGTERM)
        }
        thread.start()
    }
}
