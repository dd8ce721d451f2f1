public import Foundation
public import SluiceWorkflow

/// A task waiting in the outbox to be published.
public struct OutboxEntry: Sendable, Hashable {
    /// Increasing: the publish order.
    public var id: Int64
    public var task: StepTask
    public var createdAt: Date

    public init(id: Int64, task: StepTask, createdAt: Date) {
        self.id = id
        self.task = task
        self.createdAt = createdAt
    }
}
