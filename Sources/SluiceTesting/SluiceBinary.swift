public import Foundation
import Synchronization

/// The `sluice` executable built next to the tests.
public enum SluiceBinary {
    public static var url: URL {
        if let path = ProcessInfo.processInfo.environment["SLUICE_BIN"] { return URL(fileURLWithPath: path) }
        let tests = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        // .build/<triple>/debug/SluicePackageTests.xctest → the same folder holds `sluice`.
        return tests.deletingLastPathComponent().appendingPathComponent("sluice")
    }

    /// A `sluice ARGS` process (not started) whose output goes to a new log file.
    private static func process(_ arguments: [String], environment: [String: String] = [:]) throws -> (Process, log: URL, handle: FileHandle) {
        let process = Process()
        process.executableURL = url
        process.arguments = arguments
        if !environment.isEmpty { process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 } }
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        return (process, log, handle)
    }

    /// Starts `sluice ARGS`; output goes to a log file (see ``logTail(of:)``).
    public static func start(_ arguments: [String], environment: [String: String] = [:]) throws -> Process {
        let (process, log, _) = try process(arguments, environment: environment)
        try process.run()
        logs.withLock { $0[process.processIdentifier] = log }
        return process
    }

    private static let logs = Mutex<[Int32: URL]>([:])

    /// The last lines a started process wrote, for failure messages.
    public static func logTail(of process: Process, lines: Int = 25) -> String {
        guard let log = logs.withLock({ $0[process.processIdentifier] }),
              let text = try? String(contentsOf: log, encoding: .utf8) else { return "(no log)" }
        let tail = text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
        return tail.isEmpty ? "(empty log)" : tail
    }

    /// An error if `process` has ended: what a wait for it should throw instead of timing out.
    public static func exited(_ process: Process, _ what: String) -> (any Error)? {
        guard !process.isRunning else { return nil }
        return ProcessExited(description: "\(what) exited with status \(process.terminationStatus); its log ends:\n\(logTail(of: process))")
    }

    /// A process ended while a test waited for something else.
    public struct ProcessExited: Error, CustomStringConvertible {
        public var description: String
    }

    /// Ends a process a test started, if a failed test left it running.
    public static func stopIfRunning(_ process: Process) {
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    /// Runs `sluice ARGS` to the end; returns its status and output.
    public static func run(_ arguments: [String], environment: [String: String] = [:]) async throws -> (status: Int32, output: String) {
        let (process, log, handle) = try process(arguments, environment: environment)
        defer { try? FileManager.default.removeItem(at: log) }
        let status = try await exitStatus(of: process, start: true)
        try? handle.close()
        return (status, (try? String(contentsOf: log, encoding: .utf8)) ?? "")
    }

    /// Waits for a process to end (starting it first if asked).
    public static func exitStatus(of process: Process, start: Bool = false) async throws -> Int32 {
        let once = OnceFlag()
        // Cancelled (a bounded wait ran out): end the process, so the wait ends too.
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                process.terminationHandler = { p in if once.claim() { continuation.resume(returning: p.terminationStatus) } }
                if start {
                    do { try process.run() } catch { if once.claim() { continuation.resume(throwing: error) } }
                } else if !process.isRunning, once.claim() {
                    continuation.resume(returning: process.terminationStatus)
                }
            }
        } onCancel: {
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
    }
}

/// True for the first caller only.
final class OnceFlag: Sendable {
    private let taken = Mutex(false)
    func claim() -> Bool { taken.withLock { t in defer { t = true }; return !t } }
}
