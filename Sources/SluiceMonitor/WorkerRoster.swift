public import Foundation
public import SluiceCore

/// Live workers, from their heartbeats (pure: fed beats and a clock).
///
/// A worker is `gone` when it has been silent for three of its heartbeat
/// intervals (it was killed, or lost its broker); `stopped` when its last
/// beat said so (a graceful exit). Gone and stopped workers are forgotten
/// after `forgetAfter`.
public struct WorkerRoster: Sendable {
    /// One worker: its last heartbeat, whether it is live, and how long it has run.
    public struct Entry: Sendable, Hashable, Codable {
        public var heartbeat: WorkerHeartbeat
        /// `running`, `stopping`, `stopped` or `gone`.
        public var status: String
        /// Seconds since the worker started.
        public var uptimeSeconds: Double
        /// Seconds since its last beat.
        public var silentSeconds: Double
    }

    private var last: [String: WorkerHeartbeat] = [:]
    private var heardAt: [String: Date] = [:]
    public var forgetAfter: TimeInterval

    public init(forgetAfter: TimeInterval = 300) {
        self.forgetAfter = forgetAfter
    }

    /// Records a beat, heard at `now` (the receiver's clock decides
    /// silence, so clock skew between hosts does not make workers vanish).
    public mutating func record(_ beat: WorkerHeartbeat, now: Date = Date()) {
        if let previous = last[beat.worker], previous.at > beat.at { return }  // out of order
        last[beat.worker] = beat
        heardAt[beat.worker] = now
    }

    /// Workers by id, with their status at `now`.
    public mutating func entries(now: Date = Date()) -> [Entry] {
        var result: [Entry] = []
        for (id, beat) in last.sorted(by: { $0.key < $1.key }) {
            let silent = now.timeIntervalSince(heardAt[id] ?? now)
            let interval = beat.intervalSeconds ?? 5
            var status = beat.state ?? "running"
            if status != "stopped" && silent > 3 * interval { status = "gone" }
            if (status == "gone" || status == "stopped") && silent > forgetAfter {
                last[id] = nil
                heardAt[id] = nil
                continue
            }
            result.append(Entry(heartbeat: beat, status: status, uptimeSeconds: max(0, beat.at.timeIntervalSince(beat.startedAt)),
                                silentSeconds: max(0, silent)))
        }
        return result
    }
}
