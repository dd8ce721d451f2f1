import Foundation
import SluiceCore
import SluiceWorker
import Synchronization

/// Runs a shell command per task (`sluice worker --exec`).
struct ExecHandler: Sendable {
    let command: String
    /// Standard output kept as the result.
    let maxOutput = 64 << 10
    /// Variables of the worker that a task's command does not inherit: the
    /// broker URL (with its password), the API token, the store URL, the event key.
    static let withheldVariables = ["SLUICE_URL", "SLUICE_API_TOKEN", "SLUICE_STORE", "SLUICE_MANAGEMENT_URL", "SLUICE_EVENT_KEY"]

    func handle(_ context: TaskContext) async throws -> [UInt8]? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        var environment = ProcessInfo.processInfo.environment
        // The worker's own secrets are not the task's: a script gets its task, not the broker's password.
        for secret in Self.withheldVariables { environment[secret] = nil }
        environment["SLUICE_TASK_ID"] = context.id
        environment["SLUICE_TASK_NAME"] = context.name
        environment["SLUICE_TASK_QUEUE"] = context.task.queue
        environment["SLUICE_TASK_ATTEMPT"] = String(context.attempt)
        if let trace = context.task.traceparent { environment["SLUICE_TRACEPARENT"] = trace }
        if let run = context.task.workflowRunID { environment["SLUICE_WORKFLOW_RUN"] = run }
        if let step = context.task.workflowStep { environment["SLUICE_WORKFLOW_STEP"] = step }
        environment["SLUICE_IDEMPOTENCY_KEY"] = context.idempotencyKey
        process.environment = environment
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.standardError
        let collected = OutputBuffer(limit: maxOutput)
        let status: Int32 = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
                do {
                    try process.run()
                } catch {
                    continuation.resume(throwing: TaskFailure.permanent("cannot run \(command): \(error)", kind: "exec_failed"))
                    return
                }
                // Blocking pipe I/O stays off the concurrency pool, each end on a
                // thread of its own: a child may write all its output before it
                // reads its input, or never read it (the write then fails with
                // EPIPE, which is fine: the worker ignores SIGPIPE).
                let arguments = Data(context.arguments)
                let writer = Thread {
                    try? input.fileHandleForWriting.write(contentsOf: arguments)
                    try? input.fileHandleForWriting.close()
                }
                writer.start()
                let reader = Thread {
                    let handle = output.fileHandleForReading
                    while let data = try? handle.read(upToCount: 64 << 10), !data.isEmpty { collected.append(data) }
                    collected.finish()
                }
                reader.start()
            }
        } onCancel: {
            if process.isRunning { process.terminate() }
        }
        // The output ends when every holder of the pipe has closed it; a
        // background grandchild may keep it open, so wait a little, not forever.
        await collected.waitUntilFinished(timeout: .seconds(2))
        try Task.checkCancellation()
        switch status {
        case 0:
            let bytes = collected.bytes
            // A JSON result is kept as is; other text becomes a JSON string.
            if bytes.isEmpty { return nil }
            if (try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])) != nil { return bytes }
            let text = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            return Array((try? JSONEncoder().encode(text)) ?? Data())
        case 75:
            throw TaskFailure(kind: "exec_retry", "the command asked for a retry (exit 75)")
        default:
            throw TaskFailure(kind: "exec_exit_\(status)", "the command exited with status \(status)")
        }
    }
}

/// Standard output collected from a child, capped, and whether it has ended.
final class OutputBuffer: Sendable {
    private struct State {
        var data = Data()
        var finished = false
        var waiter: CheckedContinuation<Void, Never>?
    }
    private let state = Mutex(State())
    private let limit: Int
    init(limit: Int) { self.limit = limit }

    func append(_ more: Data) {
        state.withLock { s in if s.data.count < limit { s.data.append(more.prefix(limit - s.data.count)) } }
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

    var bytes: [UInt8] { state.withLock { Array($0.data) } }
}
