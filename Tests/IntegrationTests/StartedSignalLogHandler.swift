import Logging
import SluiceTesting

/// A worker's log handler for tests that must know when the worker has
/// subscribed to all its queues: fires `started` at the worker's
/// "worker started" line (logged right after its last consume-ok), and
/// prints warnings and worse as the default handler would. The broker's
/// own listings of consumers lag (quorum queues report consumers through
/// metrics), so they cannot say this.
struct StartedSignalLogHandler: LogHandler {
    let started: OneShotSignal
    var printed = StreamLogHandler.standardError(label: "test.worker")
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .info

    init(started: OneShotSignal) {
        self.started = started
        printed.logLevel = .warning
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        if event.message.description == "worker started" { started.fire() }
        guard event.level >= .warning else { return }
        printed.log(event: event)
    }
}
