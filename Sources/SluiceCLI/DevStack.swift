import Foundation
import SluiceLocalBroker

/// The child processes `sluice dev` started, and how to stop them.
final class DevStack: @unchecked Sendable {
    struct Exit { var name: String; var status: Int32; var log: String }

    let dataDir: String
    /// Stops the private broker (a node or a cluster) this command started, if it started one.
    var stopBroker: (what: String, stop: @Sendable () async throws -> Void)?
    /// Set for every child on top of this process's environment (the broker URL).
    var environment: [String: String] = [:]
    private var children: [(name: String, process: Process, input: Pipe)] = []
    private let lock = NSLock()
    private var exits: [Exit] = []
    private var stopping = false

    init(dataDir: String) { self.dataDir = dataDir }

    func logPath(_ name: String) -> String { URL(fileURLWithPath: dataDir).appendingPathComponent("\(name).log").path }

    /// Starts `sluice ARGS` with its output in `<dataDir>/<name>.log`.
    func spawn(_ name: String, _ arguments: [String]) throws {
        let (process, input) = SupervisedChild.process(arguments, environment: environment)
        let path = logPath(name)
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        process.standardOutput = log
        process.standardError = log
        process.terminationHandler = { [weak self] p in
            guard let self else { return }
            self.lock.lock()
            if !self.stopping { self.exits.append(Exit(name: name, status: p.terminationStatus, log: path)) }
            self.lock.unlock()
        }
        try process.run()
        try? input.fileHandleForReading.close()
        // A supervised worker waits for its supervisor's verdicts on crashed tasks: there are none.
        try? input.fileHandleForWriting.write(contentsOf: Data("ready\n".utf8))
        try? log.close()
        lock.lock()
        children.append((name, process, input))
        lock.unlock()
    }

    /// A child that exited on its own, if any.
    func exited() -> Exit? {
        lock.lock()
        defer { lock.unlock() }
        return exits.first
    }

    private func beginStopping() -> [(name: String, process: Process, input: Pipe)] {
        lock.withLock {
            stopping = true
            return children
        }
    }

    /// SIGTERM to every child, a wait for them (SIGKILL after 40 s), then the broker.
    func tearDown() async {
        let list = beginStopping()
        if !list.isEmpty { print("dev: stopping the worker and the coordinator...") }
        for child in list where child.process.isRunning { kill(child.process.processIdentifier, SIGTERM) }
        let deadline = ContinuousClock.now + .seconds(40)
        while list.contains(where: { $0.process.isRunning }) && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(100))
        }
        for child in list where child.process.isRunning { kill(child.process.processIdentifier, SIGKILL) }
        for child in list { try? child.input.fileHandleForWriting.close() }
        if let broker = stopBroker {
            print("dev: stopping the private RabbitMQ \(broker.what)...")
            do { try await broker.stop() } catch { standardError("dev: could not stop the \(broker.what): \(error)") }
        }
        print("dev: stopped.")
        flushStandardOutput()
    }
}
