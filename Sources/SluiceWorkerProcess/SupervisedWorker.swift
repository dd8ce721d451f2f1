#if canImport(Glibc)
import Glibc
#endif
import SluiceWorker
import SluiceSpawn
import Synchronization

/// A worker process run by a supervisor (`sluice worker --processes`):
/// it reports task starts and ends on standard output, takes the
/// supervisor's verdicts on crashed tasks from standard input (see
/// ``CrashVerdicts``), and stops when the supervisor goes (standard input
/// reaches end-of-file).
public struct Supervision: Sendable {
    /// This is the process that runs suspects of a crash, one at a time.
    public var isolation: Bool
    /// Crashes while running alone after which a task is dead-lettered.
    public var crashLimit: Int

    public init(isolation: Bool, crashLimit: Int) {
        self.isolation = isolation
        self.crashLimit = crashLimit
    }

    /// Reports and admission through the supervisor's protocol; in the
    /// isolation process, one task at a time and no share of rate limits.
    func apply(to configuration: inout Worker.Configuration) {
        configuration.taskReporter = { report in
            switch report {
            case .started(let id): SupervisedWorker.report("started", taskID: id)
            case .finished(let id): SupervisedWorker.report("finished", taskID: id)
            }
        }
        let isolation = self.isolation, crashLimit = self.crashLimit
        configuration.admission = { task in
            CrashVerdicts.shared.admission(task, inIsolation: isolation, crashLimit: crashLimit)
        }
        if isolation {
            configuration.consumesIsolationQueues = true
            configuration.concurrency = 1
            // Suspects run one at a time and rarely: no share of the limits.
            configuration.rateLimits = []
        }
    }
}

/// The child's side of the supervisor's line protocol.
public enum SupervisedWorker {
    /// Tells the supervisor that a task started or finished (`started`/`finished <hex id>`).
    public static func report(_ event: String, taskID: String) {
        report("\(event) \(SupervisorLine.encode(taskID))")
    }

    public static func report(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        bytes.withUnsafeBytes { _ = write(STDOUT_FILENO, $0.baseAddress, $0.count) }
    }

    /// A spawned process inherits ignored and blocked signals from whatever
    /// started its parent: put SIGTERM and SIGINT back to their defaults, so
    /// that the supervisor's SIGTERM always reaches the service group.
    public static func resetSignals() {
        signal(SIGTERM, SIG_DFL)
        signal(SIGINT, SIG_DFL)
        var set = sigset_t()
        sigemptyset(&set)
        sigaddset(&set, SIGTERM)
        sigaddset(&set, SIGINT)
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
    }

    /// For a worker process: reads the supervisor's verdicts from standard
    /// input (see ``CrashVerdicts``) on a thread of its own, returns once the
    /// first batch has arrived (`ready`), and stops the process when the
    /// supervisor goes (end-of-file).
    public static func listenToSupervisor() async throws {
        let ready = OnceSignal()
        try DetachedThread.start {
            var pending: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let n = read(STDIN_FILENO, &buffer, buffer.count)
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                pending += buffer[0..<n]
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = String(decoding: pending[..<newline], as: UTF8.self)
                    pending.removeSubrange(...newline)
                    if CrashVerdicts.shared.apply(line: line) { ready.fire() }
                }
            }
            ready.fire()
            kill(getpid(), SIGTERM)
        }
        await ready.wait()
    }

    /// For a process with nothing to hear from its supervisor (the
    /// coordinator under `sluice dev`): stops it when the supervisor goes.
    public static func stopWhenSupervisorGoes() throws {
        try DetachedThread.start {
            var buffer = [UInt8](repeating: 0, count: 64)
            while true {
                let n = read(STDIN_FILENO, &buffer, buffer.count)
                if n == 0 || (n < 0 && errno != EINTR) { break }
            }
            kill(getpid(), SIGTERM)
        }
    }
}

/// A one-time signal a thread fires and an async caller awaits.
public final class OnceSignal: Sendable {
    private let state = Mutex<(fired: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    public init() {}

    public func fire() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            if s.fired { return [] }
            s.fired = true
            defer { s.waiters = [] }
            return s.waiters
        }
        for w in waiters { w.resume() }
    }

    public func wait() async {
        await withCheckedContinuation { continuation in
            let fired = state.withLock { s -> Bool in
                if s.fired { return true }
                s.waiters.append(continuation)
                return false
            }
            if fired { continuation.resume() }
        }
    }
}
