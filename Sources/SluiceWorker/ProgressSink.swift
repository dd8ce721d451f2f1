#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SluiceCore
import Synchronization

/// Where handlers' progress reports go: one per worker, shared by every
/// task's ``TaskContext``. Rate-limited per task: a report within
/// ``interval`` of the last one sent for the same task is dropped, except
/// one saying it is done (fraction 1), so a busy loop reporting every item
/// costs a lock and a clock read, not a publish.
final class ProgressSink: Sendable {
    static let interval: Duration = .seconds(1)

    /// Set once, after the worker is made (it publishes through the worker).
    private let send = Mutex<(@Sendable (TaskEvent) -> Void)?>(nil)
    private let worker: String
    /// Per task id, when its last report went out (entries older than a
    /// minute are dropped as reports come: no per-task cost when nobody reports).
    private let lastSent = Mutex<(byTask: [String: ContinuousClock.Instant], swept: ContinuousClock.Instant)>(([:], .now))

    init(worker: String) {
        self.worker = worker
    }

    func connect(_ send: @escaping @Sendable (TaskEvent) -> Void) {
        self.send.withLock { $0 = send }
    }

    /// Whether a report of `fraction` for `taskID` at `now` goes out; records it if so.
    func admit(taskID: String, fraction: Double, now: ContinuousClock.Instant) -> Bool {
        lastSent.withLock { sent in
            if let last = sent.byTask[taskID], now - last < Self.interval, fraction < 1 { return false }
            // Entries of tasks that ended go, at most once every 10 s.
            if sent.byTask.count > 1000, now - sent.swept > .seconds(10) {
                sent.byTask = sent.byTask.filter { now - $0.value < .seconds(60) }
                sent.swept = now
            }
            sent.byTask[taskID] = now
            return true
        }
    }

    func report(_ task: TaskEnvelope, fraction: Double, message: String?) {
        guard fraction.isFinite else { return }
        let clamped = min(1, max(0, fraction))
        guard admit(taskID: task.id, fraction: clamped, now: .now) else { return }
        var event = TaskEvent(kind: .progress, task: task, worker: worker)
        event.progress = clamped
        // A short string in practice; bounded so a chatty handler cannot make an event huge.
        event.progressMessage = message.map { String($0.prefix(1000)) }
        send.withLock { $0 }?(event)
    }
}
