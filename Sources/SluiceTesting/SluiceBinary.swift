public import Foundation
public import SluiceSpawn
import Synchronization

/// The `sluice` executable built next to the tests.
///
/// Processes are started with `posix_spawn` (``ChildProcess``): the test
/// runner starts hundreds, and Foundation's `Process.run()` can crash on
/// Linux (see ``ChildProcess``).
public enum SluiceBinary {
    public static var url: URL {
        if let path = ProcessInfo.processInfo.environment["SLUICE_BIN"] { return URL(fileURLWithPath: path) }
        let tests = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        // .build/<triple>/debug/SluicePackageTests.xctest → the same folder holds `sluice`.
        return tests.deletingLastPathComponent().appendingPathComponent("sluice")
    }

    /// Starts `sluice ARGS`; output goes to a log file (see ``logTail(of:)``).
    public static func start(_ arguments: [String], environment: [String: String] = [:]) throws -> ChildProcess {
        try start(executable: url.path, arguments, environment: environment)
    }

    /// Starts any program the same way (its environment: ours, with `environment` on top).
    public static func start(executable: String, _ arguments: [String], environment: [String: String] = [:]) throws -> ChildProcess {
        let log = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(UUID().uuidString).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        defer { try? handle.close() }
        let process = try ChildProcess(executable: executable, arguments: arguments,
                                       environment: ProcessInfo.processInfo.environment.merging(environment) { $1 },
                                       standardOutput: .descriptor(handle.fileDescriptor), standardError: .descriptor(handle.fileDescriptor))
        logs.withLock { $0[process.pid] = log }
        return process
    }

    private static let logs = Mutex<[Int32: URL]>([:])

    /// The last lines a started process wrote, for failure messages.
    public static func logTail(of process: ChildProcess, lines: Int = 25) -> String {
        guard let text = log(of: process) else { return "(no log)" }
        let tail = text.split(separator: "\n", omittingEmptySubsequences: false).suffix(lines).joined(separator: "\n")
        return tail.isEmpty ? "(empty log)" : tail
    }

    /// Everything a started process wrote so far.
    public static func log(of process: ChildProcess) -> String? {
        guard let url = logs.withLock({ $0[process.pid] }) else { return nil }
        return try? String(contentsOf: url, encoding: .utf8)
    }

    /// An error if `process` has ended: what a wait for it should throw instead of timing out.
    public static func exited(_ process: ChildProcess, _ what: String) -> (any Error)? {
        guard let ended = process.termination else { return nil }
        return ProcessExited(description: "\(what) \(ended); its log ends:\n\(logTail(of: process))")
    }

    /// A process ended while a test waited for something else.
    public struct ProcessExited: Error, CustomStringConvertible {
        public var description: String
    }

    /// Ends a process a test started, if a failed test left it running.
    public static func stopIfRunning(_ process: ChildProcess) {
        process.signal(SIGKILL)
    }

    /// Runs `sluice ARGS` to the end; returns its status and output.
    public static func run(_ arguments: [String], environment: [String: String] = [:]) async throws -> (status: Int32, output: String) {
        let process = try start(arguments, environment: environment)
        let status = try await exitStatus(of: process)
        let output = log(of: process) ?? ""
        if let url = logs.withLock({ $0.removeValue(forKey: process.pid) }) { try? FileManager.default.removeItem(at: url) }
        return (status, output)
    }

    /// Waits for a process to end: its exit status, or the signal that
    /// killed it. A cancelled wait (a bounded wait ran out) kills it.
    public static func exitStatus(of process: ChildProcess) async throws -> Int32 {
        let ended = await withTaskCancellationHandler {
            await process.wait()
        } onCancel: {
            process.signal(SIGKILL)
        }
        return ended.status
    }
}

extension ChildProcess {
    /// The names tests use, as Foundation's `Process` has them.
    public var processIdentifier: Int32 { pid }
    /// SIGTERM.
    public func terminate() { signal(SIGTERM) }
    /// The exit status, or the signal that ended it (0 while it runs).
    public var terminationStatus: Int32 { termination?.status ?? 0 }
}

extension ChildProcess.Termination {
    /// The exit status, or the signal number, as Foundation's `terminationStatus` gives it.
    public var status: Int32 {
        switch self {
        case .exited(let status): status
        case .signaled(let signal): signal
        }
    }
}
