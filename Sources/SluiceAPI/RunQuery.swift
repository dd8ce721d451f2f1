public import Foundation
public import SluiceWorkflow

/// Which runs to list: all filters optional; newest first.
public struct RunQuery: Sendable, Hashable {
    public var workflow: String?
    public var status: RunState.Status?
    /// Created at or after.
    public var createdAfter: Date?
    /// Created before.
    public var createdBefore: Date?
    /// Only the run started with this idempotency key (at most one).
    public var idempotencyKey: String?
    /// At most this many (1-1000).
    public var limit: Int
    /// The `nextCursor` of the previous page.
    public var cursor: String?

    public init(workflow: String? = nil, status: RunState.Status? = nil, createdAfter: Date? = nil, createdBefore: Date? = nil,
                limit: Int = 50, cursor: String? = nil, idempotencyKey: String? = nil) {
        self.idempotencyKey = idempotencyKey
        self.workflow = workflow
        self.status = status
        self.createdAfter = createdAfter
        self.createdBefore = createdBefore
        self.limit = min(max(limit, 1), 1000)
        self.cursor = cursor
    }
}

/// One page of runs.
/// Also the body of `GET /v1/runs`.
public struct RunPage: Sendable, Codable {
    public var runs: [RunState]
    /// Pass as ``RunQuery/cursor`` for the next page; nil on the last one.
    public var nextCursor: String?

    public init(runs: [RunState], nextCursor: String?) {
        self.runs = runs
        self.nextCursor = nextCursor
    }
}
