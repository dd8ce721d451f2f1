#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SluiceCore

/// The revoked task ids a worker knows (pure: the follower feeds it the
/// stream's entries). An entry counts for ``retention`` after its
/// revocation, as long as the stream keeps it; beyond ``capacity`` ids the
/// oldest are forgotten first.
struct RevocationList {
    struct Entry: Equatable {
        var at: Date
        var terminate: Bool
        var reason: String?
    }

    let retention: TimeInterval
    let capacity: Int
    private(set) var entries: [String: Entry] = [:]

    init(retention: TimeInterval = 7 * 86_400, capacity: Int = 1_000_000) {
        self.retention = retention
        self.capacity = max(1, capacity)
    }

    var count: Int { entries.count }

    /// Records a stream entry; returns the ids it asks to terminate (new or
    /// not: a terminate that follows a plain revocation still stops a handler).
    mutating func apply(_ revocation: Revocation, now: Date) -> [String] {
        guard revocation.marker == nil, now.timeIntervalSince(revocation.at) < retention else { return [] }
        for id in revocation.taskIDs {
            var entry = Entry(at: revocation.at, terminate: revocation.terminate, reason: revocation.reason)
            if let old = entries[id] {
                // Terminate once asked stays asked; the later time keeps it longest.
                entry.terminate = entry.terminate || old.terminate
                entry.at = max(entry.at, old.at)
                entry.reason = entry.reason ?? old.reason
            }
            entries[id] = entry
        }
        if entries.count > capacity { shrink(now: now) }
        return revocation.terminate ? revocation.taskIDs : []
    }

    /// The revocation of `taskID`, if one counts at `now`.
    func revocation(of taskID: String, now: Date) -> Entry? {
        guard let entry = entries[taskID], now.timeIntervalSince(entry.at) < retention else { return nil }
        return entry
    }

    /// Forgets expired entries, then (still over capacity) the oldest, down to
    /// nine tenths of the capacity, so that this runs rarely.
    mutating func shrink(now: Date) {
        entries = entries.filter { now.timeIntervalSince($0.value.at) < retention }
        let target = capacity - capacity / 10
        guard entries.count > target else { return }
        let oldest = entries.sorted { $0.value.at < $1.value.at }.prefix(entries.count - target)
        for (id, _) in oldest { entries[id] = nil }
    }
}
