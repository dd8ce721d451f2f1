public import Foundation

/// A durable timer: when due, the coordinator sends `timerFired` to its run.
public struct TimerEntry: Sendable, Hashable {
    public var id: String
    public var runID: String
    public var dueAt: Date

    public init(id: String, runID: String, dueAt: Date) {
        self.id = id
        self.runID = runID
        self.dueAt = dueAt
    }
}
