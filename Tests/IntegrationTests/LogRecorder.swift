import Logging
import Synchronization

/// Keeps a worker's log lines (info and up, all of them: the first show
/// who heard whom) so that a test can show them when it fails.
final class LogRecorder: Sendable {
    private let lines = Mutex<[String]>([])
    /// Lines are stamped with the time since this.
    let start = ContinuousClock.now

    func record(_ line: String) { lines.withLock { $0.append(line) } }

    /// The recorded lines, one per line.
    var text: String { lines.withLock { $0.joined(separator: "\n") } }
}
