public import Foundation

/// Counts for the coordinator's gauges, read with aggregate queries (no run
/// state is loaded).
public struct StoreStatistics: Sendable, Hashable {
    /// Runs by status (`RunState.Status` raw values); missing means none.
    public var runsByStatus: [String: Int]
    /// Step tasks in the outbox, not yet published.
    public var unsentOutbox: Int
    /// When the oldest of those was written.
    public var oldestUnsent: Date?

    public init(runsByStatus: [String: Int], unsentOutbox: Int, oldestUnsent: Date?) {
        self.runsByStatus = runsByStatus
        self.unsentOutbox = unsentOutbox
        self.oldestUnsent = oldestUnsent
    }
}
