import SluiceCore
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
    /// At most this many (1-1000).
    public var limit: Int
    /// The `nextCursor` of the previous page.
    public var cursor: String?

    public init(workflow: String? = nil, status: RunState.Status? = nil, createdAfter: Date? = nil, createdBefore: Date? = nil,
                limit: Int = 50, cursor: String? = nil) {
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

    /// A page from up to `limit + 1` rows: the extra row only says there is a next page.
    init(fetched: [RunState], limit: Int) {
        var runs = fetched
        var next: String?
        if runs.count > limit {
            runs.removeLast(runs.count - limit)
            next = runs.last.map(RunCursor.make)
        }
        self.init(runs: runs, nextCursor: next)
    }
}

/// Page cursors: the last row's creation time and id, so pages stay stable
/// while runs are added.
enum RunCursor {
    static func make(_ run: RunState) -> String { "\(run.createdAt.epochMilliseconds):\(run.runID)" }

    static func parse(_ cursor: String) throws -> (createdAt: Int64, id: String) {
        guard let colon = cursor.firstIndex(of: ":"), let ms = Int64(cursor[..<colon]) else {
            throw StoreError(.invalidArgument, "invalid cursor '\(cursor)'")
        }
        return (ms, String(cursor[cursor.index(after: colon)...]))
    }
}
