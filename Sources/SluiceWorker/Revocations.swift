#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SluiceCore
import Synchronization

/// A worker's ``RevocationList``, shared by the follower that fills it and
/// the deliveries that consult it. While it is empty a lookup is one atomic load.
final class Revocations: Sendable {
    private let list: Mutex<RevocationList>
    private let known = Atomic<Int>(0)

    init(_ list: RevocationList = RevocationList()) {
        self.list = Mutex(list)
    }

    var count: Int { known.load(ordering: .relaxed) }

    /// The revocation of `taskID`, if one counts now.
    func revocation(of taskID: String, now: Date = Date()) -> RevocationList.Entry? {
        guard known.load(ordering: .acquiring) > 0 else { return nil }
        return list.withLock { $0.revocation(of: taskID, now: now) }
    }

    /// Records an entry; returns the ids it asks to terminate.
    func apply(_ revocation: Revocation, now: Date = Date()) -> [String] {
        list.withLock { l in
            let terminate = l.apply(revocation, now: now)
            known.store(l.count, ordering: .releasing)
            return terminate
        }
    }
}

/// How a handler a revocation cancelled ended: its task is dead as ``DeadReason/revoked``.
struct TaskRevoked: Error, CustomStringConvertible {
    var at: Date?
    var reason: String?

    var description: String {
        "revoked while running" + (at.map { " (at \($0))" } ?? "") + (reason.map { ": \($0)" } ?? "")
    }
}
