public import Foundation

/// A stored cron schedule: its definition as JSON (the coordinator reads
/// it) and when it fires next.
public struct ScheduleRecord: Sendable, Hashable {
    public var id: String
    /// The schedule's definition (JSON).
    public var spec: String
    public var nextFireAt: Date

    public init(id: String, spec: String, nextFireAt: Date) {
        self.id = id
        self.spec = spec
        self.nextFireAt = nextFireAt
    }
}
