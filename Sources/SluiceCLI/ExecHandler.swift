import Foundation
import SluiceCore
import SluiceWorker
import Synchronization

/// Runs a shell command per task (`sluice worker --exec`).
struct ExecHandler: Sendable {
    let command: String
    /// Standard output kept as the result.
    let maxOutput = 64 << 10

    func handle(_ context: TaskContext) async throws -> [UInt8]? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        var environment = ProcessInfo.processInfo.environment
        environment["SLUICE_TASK_ID"] = context.id
        environment["SLUICE_TASK_NAME"] = context.name
        environment["SLUICE_TASK_QUEUE"] = context.task.queue
        environment["SLUICE_TASK_ATTEMPT"] = String(context.attempt)
        environment["SLUICE_IDEMPOTENCY_KEY"] = context.idempotencyKey
        process.environment = environment
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = FileHandle.standardError
        let collected = OutputBuffer(limit: maxOutput)
        output.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            if data.isEmpty { handle.readabilityHandler = nil } else { collected.append(data) }
        }
        let status: Int32 = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
                do {
                    try process.run()
                } catch {
                    continuation.resume(throwing: TaskFailure.permanent("cannot run \(command): \(error)", kind: "exec_failed"))
                    return
                }
                input.fileHandleForWriting.write(Data(context.arguments))
                try? input.fileHandleForWriting.close()
            }
        } onCancel: {
            if process.isRunning { process.terminate() }
        }
        output.fileHandleForReading.readabilityHandler = nil
        let rest = output.fileHandleForReading.readDataToEndOfFile()
        collected.append(rest)
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

/// Standard output collected from a child, capped.
final class OutputBuffer: Sendable {
    private let data = Mutex(Data())
    private let limit: Int
    init(limit: Int) { self.limit = limit }
    func append(_ more: Data) {
        data.withLock { d in if d.count < limit { d.append(more.prefix(limit - d.count)) } }
    }
    var bytes: [UInt8] { data.withLock { Array($0) } }
}
