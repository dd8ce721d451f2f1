import Logging
import Synchronization

/// Keeps a worker's log lines (info and up, the last `limit`) so that a test
/// can show them when it fails; warnings and errors are printed as well, as
/// the harness's default logger does.
final class LogRecorder: Sendable {
    private let lines = Mutex<[String]>([])
    private let limit: Int
    /// Lines are stamped with the time since this.
    let start = ContinuousClock.now

    init(limit: Int = 200) { self.limit = limit }

    func record(_ line: String) {
        lines.withLock {
            $0.append(line)
            if $0.count > limit { $0.removeFirst($0.count - limit) }
        }
    }

    /// The recorded lines, one per line.
    var text: String { lines.withLock { $0.joined(separator: "\n") } }

    /// A logger writing here.
    func logger(label: String) -> Logger {
        Logger(label: label) { _ in Handler(recorder: self) }
    }

    struct Handler: LogHandler {
        let recorder: LogRecorder
        var printed = StreamLogHandler.standardError(label: "test.worker")
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .info

        init(recorder: LogRecorder) {
            self.recorder = recorder
            printed.logLevel = .warning
        }

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            let fields = metadata.merging(event.metadata ?? [:]) { $1 }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            recorder.record("+\(ContinuousClock.now - recorder.start) \(event.level) \(event.message) \(fields.joined(separator: " "))")
            if event.level >= .warning { printed.log(event: event) }
        }
    }
}
