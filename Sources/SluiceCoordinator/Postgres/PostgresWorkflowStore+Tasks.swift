public import Foundation
import PostgresNIO
import SluiceCore
public import SluiceAPI

/// Tracked tasks' records in PostgreSQL (see ``TaskTrackingChange``).
extension PostgresWorkflowStore {
    private static func query(_ sql: String, _ values: [TaskTrackingSQL.Value]) -> PostgresQuery {
        var binds = PostgresBindings()
        for value in values {
            switch value {
            case .text(let v): binds.append(v)
            case .integer(let v): binds.append(v)
            case .real(let v): binds.append(v)
            }
        }
        return PostgresQuery(unsafeSQL: sql, binds: binds)
    }

    public func recordTaskChanges(_ changes: [TaskTrackingChange]) async throws {
        guard !changes.isEmpty else { return }
        let queries = TaskTrackingSQL.statements(for: changes).map { Self.query($0.0, $0.1) }
        try await mapped("record task changes") { [self] in
            try await client.withTransaction(logger: logger) { connection in
                for query in queries { _ = try await connection.query(query, logger: logger) }
            }
        }
    }

    public func trackedTask(id: String) async throws -> TrackedTask? {
        guard let row = try await rows(Self.query(TaskTrackingSQL.select, [.text(id)]), "tracked task").first else { return nil }
        let columns = row.makeRandomAccess()
        return try TaskTrackingSQL.record(text: { try columns[$0].decode(String?.self) }, integer: { try columns[$0].decode(Int64?.self) },
                                          real: { try columns[$0].decode(Double?.self) })
    }

    public func pruneTrackedTasks(finishedBefore: Date, unfinishedBefore: Date, limit: Int) async throws -> Int {
        try await rows(Self.query(TaskTrackingSQL.prune, [.integer(finishedBefore.epochMilliseconds),
                                                              .integer(unfinishedBefore.epochMilliseconds), .integer(Int64(limit))]),
                       "prune tracked tasks").count
    }
}
