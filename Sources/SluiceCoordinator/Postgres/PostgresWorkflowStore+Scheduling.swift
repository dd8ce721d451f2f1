import SluiceCore
public import Foundation
import Logging
import NIOSSL
import PostgresNIO
public import SluiceWorkflow
import Synchronization

/// The outbox, statistics and pruning, timers, schedules and the coordinator lease, in PostgreSQL.
extension PostgresWorkflowStore {
    // MARK: Outbox

    public func unsentOutboxRows(limit: Int, after: Int64) async throws -> [OutboxRow] {
        try await rows("SELECT id, payload, created_at FROM workflow_outbox WHERE sent_at IS NULL AND id > \(after)\(unescaped: bucketFilter()) ORDER BY id LIMIT \(limit)",
                       "outbox")
            .map { row in
                let (id, payload, created) = try row.decode((Int64, String, Int64).self)
                return OutboxRow(id: id, payload: payload, createdAt: Date(epochMilliseconds: created))
            }
    }

    public func statistics() async throws -> StoreStatistics {
        var byStatus: [String: Int] = [:]
        for row in try await rows("SELECT status, COUNT(*) FROM workflow_runs GROUP BY status", "run counts") {
            let (status, n) = try row.decode((String, Int64).self)
            byStatus[status] = Int(n)
        }
        let count = try await rows("SELECT COUNT(*) FROM workflow_outbox WHERE sent_at IS NULL", "outbox count")
            .first.map { try $0.decode(Int64.self) } ?? 0
        let oldest = try await rows("SELECT created_at FROM workflow_outbox WHERE sent_at IS NULL ORDER BY id LIMIT 1", "outbox age")
            .first.map { try $0.decode(Int64.self) }
        return StoreStatistics(runsByStatus: byStatus, unsentOutbox: Int(count), oldestUnsent: oldest.map { Date(epochMilliseconds: $0) })
    }

    public func pruneRuns(finishedBefore before: Date, limit: Int) async throws -> [String] {
        let finished = RunState.Status.allCases.filter(\.isFinal).map(\.rawValue)
        let cutoff = before.epochMilliseconds
        let fence = self.fence.current
        let buckets = fence?.bucketList
        return try await mapped("prune runs") { [self] in
            try await client.withTransaction(logger: logger) { connection in
                try await Self.checkFence(fence, on: connection, logger: logger)
                let rows = try await Self.collect(try await connection.query("""
                    SELECT r.id FROM workflow_runs r LEFT JOIN workflow_runs p ON p.id = r.parent_run
                    WHERE r.status = ANY(\(finished)) AND r.updated_at < \(cutoff) AND (p.id IS NULL OR p.status = ANY(\(finished)))
                          AND (\(buckets == nil) OR r.bucket = ANY(\(buckets ?? [])))
                    ORDER BY r.updated_at LIMIT \(limit)
                    """, logger: logger))
                let ids = try rows.map { try $0.decode(String.self) }
                if !ids.isEmpty {
                    _ = try await connection.query("DELETE FROM workflow_timers WHERE run_id = ANY(\(ids))", logger: logger)
                    _ = try await connection.query("DELETE FROM workflow_elements WHERE run_id = ANY(\(ids))", logger: logger)
                    _ = try await connection.query("DELETE FROM workflow_inputs WHERE run_id = ANY(\(ids))", logger: logger)
                    _ = try await connection.query("DELETE FROM workflow_runs WHERE id = ANY(\(ids))", logger: logger)
                }
                _ = try await connection.query("DELETE FROM workflow_outbox WHERE sent_at IS NOT NULL", logger: logger)
                return ids
            }
        }
    }

    // MARK: Timers

    public func dueTimers(now: Date, limit: Int) async throws -> [TimerEntry] {
        try await rows("""
            SELECT id, run_id, due_at FROM workflow_timers WHERE due_at <= \(now.epochMilliseconds)\(unescaped: bucketFilter()) ORDER BY due_at, id LIMIT \(limit)
            """, "due timers").map { row in
            let (id, run, due) = try row.decode((String, String, Int64).self)
            return TimerEntry(id: id, runID: run, dueAt: Date(epochMilliseconds: due))
        }
    }

    public func nextTimerDue() async throws -> Date? {
        try await rows("SELECT MIN(due_at) FROM workflow_timers WHERE true\(unescaped: bucketFilter())", "next timer").first
            .flatMap { try $0.decode(Int64?.self) }.map { Date(epochMilliseconds: $0) }
    }

    // MARK: Schedules

    public func saveSchedule(_ schedule: ScheduleRecord) async throws {
        let next = schedule.nextFireAt.epochMilliseconds, now = Date().epochMilliseconds
        _ = try await rows("""
            INSERT INTO workflow_schedules (id, spec, next_fire_at, updated_at) VALUES (\(schedule.id), \(schedule.spec), \(next), \(now))
            ON CONFLICT (id) DO UPDATE SET spec = EXCLUDED.spec, next_fire_at = EXCLUDED.next_fire_at, updated_at = EXCLUDED.updated_at
            """, "save schedule")
    }

    public func schedules() async throws -> [ScheduleRecord] {
        try await rows("SELECT id, spec, next_fire_at FROM workflow_schedules ORDER BY id", "schedules").map { row in
            let (id, spec, next) = try row.decode((String, String, Int64).self)
            return ScheduleRecord(id: id, spec: spec, nextFireAt: Date(epochMilliseconds: next))
        }
    }

    public func replaceSchedule(_ schedule: ScheduleRecord, ifSpec expected: String) async throws -> Bool {
        let next = schedule.nextFireAt.epochMilliseconds, now = Date().epochMilliseconds
        return !(try await rows("""
            UPDATE workflow_schedules SET spec = \(schedule.spec), next_fire_at = \(next), updated_at = \(now)
            WHERE id = \(schedule.id) AND spec = \(expected) RETURNING id
            """, "replace schedule")).isEmpty
    }

    public func removeSchedule(id: String) async throws -> Bool {
        !(try await rows("DELETE FROM workflow_schedules WHERE id = \(id) RETURNING id", "remove schedule")).isEmpty
    }

    public func fireSchedule(id: String, expected: Date, next: Date, changes: [RunChange], publish: [StepTask]) async throws -> Bool {
        let prepared = try StoreCoding.prepare(changes)
        let standalone = try publish.map(StoreCoding.taskText)
        let was = expected.epochMilliseconds, then = next.epochMilliseconds, now = Date().epochMilliseconds
        let fence = self.fence.current
        return try await mapped("fire schedule") { [self] in
            try await client.withTransaction(logger: logger) { connection in
                try await Self.checkFence(fence, on: connection, logger: logger)
                let moved = try await Self.collect(try await connection.query("""
                    UPDATE workflow_schedules SET next_fire_at = \(then), updated_at = \(now) WHERE id = \(id) AND next_fire_at = \(was)
                    RETURNING id
                    """, logger: logger))
                guard !moved.isEmpty else { return false }
                let started = try await Self.applySlots(StoreCoding.slotWork(prepared), on: connection, logger: logger)
                try await Self.apply(prepared, outbox: try StoreCoding.outboxRows(prepared, started), on: connection, logger: logger)
                let bucket = Topology.stepEventBucket(runID: "")
                for payload in standalone {
                    _ = try await connection.query(
                        "INSERT INTO workflow_outbox (run_id, payload, created_at, bucket) VALUES ('', \(payload), \(now), \(bucket))", logger: logger)
                }
                return true
            }
        }
    }

    // MARK: Leases

    public func acquireLease(_ name: String, holder: String, now: Date, ttl: Duration) async throws -> Bool {
        let until = now.addingTimeInterval(ttl.timeInterval).epochMilliseconds
        let at = now.epochMilliseconds
        let rows = try await rows("""
            INSERT INTO coordinator_leases (name, holder, expires_at) VALUES (\(name), \(holder), \(until))
            ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at = EXCLUDED.expires_at
            WHERE coordinator_leases.holder = EXCLUDED.holder OR coordinator_leases.expires_at < \(at)
            RETURNING holder
            """, "acquire lease")
        return try rows.first?.decode(String.self) == holder
    }

    public func renewLease(_ name: String, holder: String, now: Date, ttl: Duration) async throws -> Bool {
        let until = now.addingTimeInterval(ttl.timeInterval).epochMilliseconds
        return !(try await rows("""
            UPDATE coordinator_leases SET expires_at = \(until) WHERE name = \(name) AND holder = \(holder)
            RETURNING name
            """, "renew lease")).isEmpty
    }

    public func releaseLease(_ name: String, holder: String) async throws {
        _ = try await rows("DELETE FROM coordinator_leases WHERE name = \(name) AND holder = \(holder)", "release lease")
    }

    public func leases(prefix: String, now: Date) async throws -> [String: String] {
        var found: [String: String] = [:]
        for row in try await rows("""
            SELECT name, holder FROM coordinator_leases WHERE left(name, \(prefix.unicodeScalars.count)::int) = \(prefix) AND expires_at >= \(now.epochMilliseconds)
            """, "list leases") {
            let (name, holder) = try row.decode((String, String).self)
            found[name] = holder
        }
        return found
    }

    public func partitionCount(proposed: Int) async throws -> Int {
        _ = try await rows("INSERT INTO sluice_settings (name, value) VALUES ('partitions', \(String(proposed))) ON CONFLICT (name) DO NOTHING",
                           "partition count")
        let stored = try await rows("SELECT value FROM sluice_settings WHERE name = 'partitions'", "partition count")
            .first.map { try $0.decode(String.self) }
        guard let count = stored.flatMap({ Int($0) }) else { throw StoreError(.database, "the store's partition count is not a number") }
        return count
    }

    /// ` AND bucket = ANY(...)` for a fence that names buckets, else nothing.
    func bucketFilter() -> String {
        guard let buckets = fence.current?.bucketList else { return "" }
        guard !buckets.isEmpty else { return " AND false" }
        return " AND bucket IN (\(buckets.map(String.init).joined(separator: ",")))"
    }
}
