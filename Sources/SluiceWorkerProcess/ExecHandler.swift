#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import SluiceCore
import SluiceSpawn
public import SluiceWorker
import Synchronization

/// Runs a shell command per task (`sluice worker --exec`).
public struct ExecHandler: Sendable {
    public let command: String
    /// A tracer exports spans: `SLUICE_TRACEPARENT` names the handler's own
    /// span, so what the command starts is its child. Without one it is the
    /// value the task arrived with.
    public var traced = false
    /// Standard output kept as the result.
    let maxOutput = 64 << 10
    /// Variables of the worker that a task's command does not inherit: the
    /// broker URL (with its password), the API token, the store URL, the event key.
    public static let withheldVariables = ["SLUICE_URL", "SLUICE_API_TOKEN", "SLUICE_STORE", "SLUICE_MANAGEMENT_URL", "SLUICE_EVENT_KEY"]

    /// The worker's environment without the withheld variables, read once:
    /// a worker never changes its own.
    private let inherited: [String: String]

    public init(command: String, traced: Bool = false) {
        self.command = command
        self.traced = traced
        // The worker's own secrets are not the task's: a script gets its task, not the broker's password.
        inherited = Environment.all().filter { !Self.withheldVariables.contains($0.key) }
    }

    public func handle(_ context: TaskContext) async throws -> [UInt8]? {
        var environment = inherited
        environment["SLUICE_TASK_ID"] = context.id
        environment["SLUICE_TASK_NAME"] = context.name
        environment["SLUICE_TASK_QUEUE"] = context.task.queue
        environment["SLUICE_TASK_ATTEMPT"] = String(context.attempt)
        if let trace = (traced ? TraceParent.current?.description : nil) ?? context.task.traceparent {
            environment["SLUICE_TRACEPARENT"] = trace
        }
        if let run = context.task.workflowRunID { environment["SLUICE_WORKFLOW_RUN"] = run }
        if let step = context.task.workflowStep { environment["SLUICE_WORKFLOW_STEP"] = step }
        environment["SLUICE_IDEMPOTENCY_KEY"] = context.idempotencyKey
        // posix_spawn, not Foundation's Process: its run() can crash (see ChildProcess).
        let child: ChildProcess
        do {
            child = try ChildProcess(executable: "/bin/sh", arguments: ["-c", command], environment: environment,
                                     standardInput: .pipe, standardOutput: .pipe, standardError: .inherit)
        } catch let error as ChildProcess.SpawnError where [EAGAIN, EMFILE, ENFILE, ENOMEM].contains(error.errno) {
            // Out of processes, descriptors or memory for now: worth a retry.
            throw TaskFailure(kind: "exec_failed", "cannot run \(command) now: \(error)")
        } catch {
            throw TaskFailure.permanent("cannot run \(command): \(error)", kind: "exec_failed")
        }
        let collected = OutputBuffer(limit: maxOutput)
        // Blocking pipe I/O stays off the concurrency pool, each end on a
        // thread of its own: a child may write all its output before it
        // reads its input, or never read it (the write then fails with
        // EPIPE, which is fine: the worker ignores SIGPIPE).
        let arguments = context.arguments
        do {
            if let input = child.standardInput {
                try DetachedThread.start {
                    try? input.write(arguments)
                    input.close()
                }
            }
            if let output = child.standardOutput {
                try DetachedThread.start {
                    var buffer = [UInt8](repeating: 0, count: 64 << 10)
                    while let n = try? output.read(into: &buffer), n > 0 { collected.append(buffer[0..<n]) }
                    collected.finish()
                }
            } else {
                collected.finish()
            }
        } catch {
            // No thread for the pipes: the command cannot be fed; end it and try again later.
            child.signal(SIGKILL)
            _ = await child.wait()
            throw TaskFailure(kind: "exec_failed", "cannot run \(command) now: \(error)")
        }
        let termination = await withTaskCancellationHandler {
            await child.wait()
        } onCancel: {
            child.signal(SIGTERM)
        }
        // The output ends when every holder of the pipe has closed it; a
        // background grandchild may keep it open, so wait a little, not forever.
        await collected.waitUntilFinished(timeout: .seconds(2))
        try Task.checkCancellation()
        switch termination {
        case .exited(0):
            let bytes = collected.bytes
            // A JSON result is kept as is; other text becomes a JSON string.
            if bytes.isEmpty { return nil }
            if TaskEnvelope.isValidJSON(bytes) && String(validating: bytes, as: UTF8.self) != nil { return bytes }
            let text = String(decoding: bytes, as: UTF8.self).trimmedOfWhitespace
            return Array((try? JSONEncoder().encode(text)) ?? Data())
        case .exited(75):
            throw TaskFailure(kind: "exec_retry", "the command asked for a retry (exit 75)")
        case .exited(let status):
            throw TaskFailure(kind: "exec_exit_\(status)", "the command exited with status \(status)")
        case .signaled(let signal):
            throw TaskFailure(kind: "exec_signal_\(signal)", "the command was killed by signal \(signal)")
        }
    }
}

/// Standard output collected from a child, capped, and whether it has ended.
final class OutputBuffer: Sendable {
    private struct State {
        var data: [UInt8] = []
        var finished = false
        var waiter: CheckedContinuation<Void, Never>?
    }
    private let state = Mutex(State())
    private let limit: Int
    init(limit: Int) { self.limit = limit }

    func append(_ more: ArraySlice<UInt8>) {
        state.withLock { s in if s.data.count < limit { s.data.append(contentsOf: more.prefix(limit - s.data.count)) } }
    }

    /// The output reached its end.
    func finish() {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.finished = true
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume()
    }

    /// Waits for ``finish()`` for at most `timeout`.
    func waitUntilFinished(timeout: Duration) async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withCheckedContinuation { continuation in
                    let done = self.state.withLock { s -> Bool in
                        if s.finished { return true }
                        s.waiter = continuation
                        return false
                    }
                    if done { continuation.resume() }
                }
            }
            group.addTask { try? await Task.sleep(for: timeout) }
            await group.next()
            group.cancelAll()
            // The continuation must be resumed exactly once: release it if it is still waiting.
            self.finish()
        }
    }

    var bytes: [UInt8] { state.withLock { $0.data } }
}
