import Foundation
import SluiceCore
import SluiceWorkflow
import SluiceAPI

/// The statements of task tracking, shared by both stores: written with
/// PostgreSQL's `$n` placeholders, which SQLite takes as `?n` (``sqlite``).
enum TaskTrackingSQL {
    /// A parameter, for either engine to bind.
    enum Value: Sendable {
        case text(String?)
        case integer(Int64?)
        case real(Double?)
    }

    static func sqlite(_ statement: String) -> String { statement.replacingOccurrences(of: "$", with: "?") }

    /// Inserts a status change, or applies it over a lower stage.
    static let upsert = """
        INSERT INTO sluice_tasks (id, name, queue, status, attempt, stage, enqueued_at, started_at, finished_at, updated_at,
                                  worker, error_type, error_message, dead_reason, next_attempt_at, result)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
        ON CONFLICT (id) DO UPDATE SET status = excluded.status, attempt = excluded.attempt, stage = excluded.stage,
            enqueued_at = COALESCE(sluice_tasks.enqueued_at, excluded.enqueued_at),
            started_at = CASE WHEN excluded.attempt > sluice_tasks.attempt THEN excluded.started_at
                              ELSE COALESCE(excluded.started_at, sluice_tasks.started_at) END,
            finished_at = excluded.finished_at, updated_at = excluded.updated_at,
            worker = COALESCE(excluded.worker, sluice_tasks.worker),
            error_type = COALESCE(excluded.error_type, sluice_tasks.error_type),
            error_message = COALESCE(excluded.error_message, sluice_tasks.error_message),
            dead_reason = excluded.dead_reason, next_attempt_at = excluded.next_attempt_at, result = excluded.result,
            progress = CASE WHEN excluded.attempt > sluice_tasks.attempt THEN NULL ELSE sluice_tasks.progress END,
            progress_message = CASE WHEN excluded.attempt > sluice_tasks.attempt THEN NULL ELSE sluice_tasks.progress_message END,
            progress_at = CASE WHEN excluded.attempt > sluice_tasks.attempt THEN NULL ELSE sluice_tasks.progress_at END
        WHERE excluded.stage > sluice_tasks.stage
           OR (excluded.stage = sluice_tasks.stage AND excluded.stage % 4 = 3 AND excluded.updated_at > sluice_tasks.updated_at)
        """

    /// A producer's `queued`: a new record, never a change to one.
    static let insertQueued = """
        INSERT INTO sluice_tasks (id, name, queue, status, attempt, stage, enqueued_at, started_at, finished_at, updated_at,
                                  worker, error_type, error_message, dead_reason, next_attempt_at, result)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
        ON CONFLICT (id) DO NOTHING
        """

    /// A `started` that came after a later event of its attempt: only its start time.
    static let lateStart = """
        UPDATE sluice_tasks SET started_at = $1 WHERE id = $2 AND attempt = $3 AND (started_at IS NULL OR started_at < $1)
        """

    static func upsertValues(_ c: TaskTrackingChange) -> [Value] {
        [.text(c.taskID), .text(c.name), .text(c.queue), .text(c.status?.rawValue ?? "running"), .integer(Int64(c.attempt)),
         .integer(Int64(c.stage)), .integer(c.enqueuedAt?.epochMilliseconds), .integer(c.startedAt?.epochMilliseconds),
         .integer(c.finishedAt?.epochMilliseconds), .integer(c.at.epochMilliseconds), .text(c.worker), .text(c.errorType),
         .text(c.errorMessage), .text(c.deadReason), .integer(c.nextAttemptAt?.epochMilliseconds), .text(c.result)]
    }

    /// A `queued` event that came after a later one: only its enqueue time.
    static let lateEnqueue = "UPDATE sluice_tasks SET enqueued_at = $1 WHERE id = $2 AND enqueued_at IS NULL"

    /// Progress of the attempt that runs now; an older report does not overwrite a newer one.
    static let progress = """
        UPDATE sluice_tasks SET progress = $1, progress_message = $2, progress_at = $3, updated_at = $3
        WHERE id = $4 AND attempt = $5 AND status = 'running' AND (progress_at IS NULL OR progress_at <= $3)
        """

    /// The statements of changes, by task id (stable): coordinators applying
    /// batches at once lock rows in the same order, so none waits on another
    /// in a cycle (PostgreSQL would abort one as a deadlock).
    static func statements(for changes: [TaskTrackingChange]) -> [(String, [Value])] {
        changes.enumerated().sorted { ($0.element.taskID, $0.offset) < ($1.element.taskID, $1.offset) }
            .flatMap { statements(for: $0.element) }
    }

    /// The statements (and parameters) of one change, in order.
    static func statements(for change: TaskTrackingChange) -> [(String, [Value])] {
        switch change.kind {
        case .status(.queued):
            return [(insertQueued, upsertValues(change)), (lateEnqueue, [.integer(change.at.epochMilliseconds), .text(change.taskID)])]
        case .status(let status):
            var out = [(upsert, upsertValues(change))]
            if status == .running {
                out.append((lateStart, [.integer(change.at.epochMilliseconds), .text(change.taskID), .integer(Int64(change.attempt))]))
            }
            return out
        case .progress(let fraction, let message):
            // A report means the attempt runs, even if its `started` has not come yet.
            return [(upsert, upsertValues(change)), (progress, [.real(fraction), .text(message), .integer(change.at.epochMilliseconds), .text(change.taskID),
                                .integer(Int64(change.attempt))])]
        }
    }

    static let select = """
        SELECT id, name, queue, status, attempt, enqueued_at, started_at, finished_at, updated_at, worker, error_type, error_message,
               dead_reason, next_attempt_at, result, progress, progress_message, progress_at
        FROM sluice_tasks WHERE id = $1
        """

    static let prune = """
        DELETE FROM sluice_tasks WHERE id IN (
            SELECT id FROM sluice_tasks WHERE (status IN ('succeeded', 'dead') AND updated_at < $1) OR updated_at < $2 LIMIT $3)
        RETURNING id
        """

    /// A record from a row of ``select``, read through the engine's accessors.
    static func record(text: (String) throws -> String?, integer: (String) throws -> Int64?,
                       real: (String) throws -> Double?) throws -> TrackedTask {
        func date(_ column: String) throws -> Date? { try integer(column).map { Date(epochMilliseconds: $0) } }
        guard let id = try text("id"), let name = try text("name"), let queue = try text("queue"),
              let status = try text("status").flatMap(TrackedTask.Status.init(rawValue:)),
              let attempt = try integer("attempt"), let updated = try date("updated_at") else {
            throw StoreError(.database, "a bad tracked task row")
        }
        return TrackedTask(id: id, name: name, queue: queue, status: status, attempt: Int(attempt), enqueuedAt: try date("enqueued_at"),
                           startedAt: try date("started_at"), finishedAt: try date("finished_at"), updatedAt: updated,
                           worker: try text("worker"), errorType: try text("error_type"), errorMessage: try text("error_message"),
                           deadReason: try text("dead_reason"), nextAttemptAt: try date("next_attempt_at"),
                           // A result that is not JSON (a foreign worker's) is shown as a string.
                           result: try text("result").map { (try? JSONValue.parse($0)) ?? .string($0) },
                           progress: try real("progress"), progressMessage: try text("progress_message"),
                           progressAt: try date("progress_at"))
    }
}
