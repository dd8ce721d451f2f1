import Logging
import SluiceTesting

/// A worker's log handler for tests: prints warnings and worse as the
/// default handler would, and optionally
/// - fires `started` at the worker's "worker started" line (logged right
///   after its last consume-ok), for tests that must know the worker has
///   subscribed to all its queues: the broker's own listings of consumers
///   lag (quorum queues report consumers through metrics), so they cannot
///   say this;
/// - keeps every line from info up in `recorder`, for a failure message.
struct WorkerTestLogHandler: LogHandler {
    let started: OneShotSignal?
    let recorder: LogRecorder?
    var printed = StreamLogHandler.standardError(label: "test.worker")
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    init(started: OneShotSignal?, recorder: LogRecorder?) {
        self.started = started
        self.recorder = recorder
        printed.logLevel = .warning
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        if event.message.description == "worker started" { started?.fire() }
        if let recorder {
            let fields = metadata.merging(event.metadata ?? [:]) { $1 }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
            recorder.record("+\(ContinuousClock.now - recorder.start) \(event.level) \(event.message) \(fields.joined(separator: " "))")
        }
        guard event.level >= .warning else { return }
        printed.log(event: event)
    }
}
