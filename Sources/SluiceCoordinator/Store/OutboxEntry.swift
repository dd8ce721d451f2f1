public import Foundation
public import SluiceWorkflow

/// A task (or a run message) waiting in the outbox to be published.
public struct OutboxEntry: Sendable, Hashable {
    /// What a row holds.
    public enum Item: Sendable, Hashable {
        case task(StepTask)
        case message(RunMessage)
    }

    /// Increasing: the publish order.
    public var id: Int64
    public var item: Item
    public var createdAt: Date

    public init(id: Int64, task: StepTask, createdAt: Date) {
        self.init(id: id, item: .task(task), createdAt: createdAt)
    }

    public init(id: Int64, item: Item, createdAt: Date) {
        self.id = id
        self.item = item
        self.createdAt = createdAt
    }

    /// The task, if the row holds one.
    public var task: StepTask? {
        if case .task(let task) = item { return task }
        return nil
    }

    /// The run the row concerns (a scheduled standalone task has none: "").
    var runID: String {
        switch item {
        case .task(let task): return task.runID
        case .message(let message): return message.runID
        }
    }

    /// The row as stored.
    static func decode(id: Int64, payload: String, createdAt: Date) throws -> OutboxEntry {
        if let message = try RunMessage.fromPayload(payload) { return OutboxEntry(id: id, item: .message(message), createdAt: createdAt) }
        return OutboxEntry(id: id, task: try StoreCoding.decode(StepTask.self, payload), createdAt: createdAt)
    }
}
