public import Foundation
public import SluiceWorkflow
public import SluiceAPI

/// Where the coordinator keeps workflow state: definitions, runs, the
/// outbox of tasks to publish, durable timers, cron schedules and the
/// coordinators' lease. Two implementations pass one test suite:
/// ``SQLiteWorkflowStore`` (one file, the embedded default) and
/// ``PostgresWorkflowStore`` (several coordinators).
///
/// Every method is one transaction. ``commit(_:)`` is the heart of it: a
/// run's new state, the tasks its step decided to publish and its timer
/// changes are written together or not at all (the transactional outbox).
public protocol WorkflowStore: Sendable {
    /// Creates or upgrades the schema (numbered migrations; safe to call on every start).
    func migrate() async throws

    /// Registers a definition. The same name and version again is accepted
    /// only with the same content (`conflict` otherwise).
    func saveDefinition(_ definition: WorkflowDefinition) async throws
    /// A definition by name, and version (nil: the highest).
    func definition(name: String, version: Int?) async throws -> WorkflowDefinition?
    /// The highest registered version of a definition (a cheap read: the
    /// engine keeps definitions decoded, by version).
    func latestDefinitionVersion(name: String) async throws -> Int?
    /// Registered definitions without their bodies, by name then version,
    /// after the cursor (``DefinitionSummary/cursor``), at most `limit`.
    func definitionSummaries(after cursor: String?, limit: Int) async throws -> [DefinitionSummary]
    /// Deletes a definition unless a run that may still need it uses it.
    func deleteDefinition(name: String, version: Int) async throws -> DefinitionDeletion

    /// A run by id.
    func run(id: String) async throws -> RunState?
    /// The run started with an idempotency key.
    func run(idempotencyKey: String) async throws -> RunState?
    /// Runs matching a query, newest first, a page at a time.
    func runs(_ query: RunQuery) async throws -> RunPage
    /// Runs that are not finished (running, paused, pending): what a coordinator resumes.
    func activeRunIDs() async throws -> [String]
    /// A run's status alone (nil: no such run): cheap whatever the run's size.
    func runStatus(id: String) async throws -> RunState.Status?

    /// Applies changes to one or more runs atomically (see ``RunChange``),
    /// writes `messages` (for runs in partitions other coordinators lead)
    /// to the outbox, and deletes the outbox rows `sent` (published since),
    /// in the same transaction.
    /// Returns the ids of the outbox rows written: the changes' `publish`
    /// tasks in order, then the messages (so the relay can publish them
    /// without reading them back).
    /// Throws `conflict` if a new run's id or idempotency key is taken.
    @discardableResult
    func commit(_ changes: [RunChange], messages: [RunMessage], sent: [Int64]) async throws -> [Int64]

    /// Outbox rows not yet marked sent with ids above `after`, oldest
    /// first (with a fence that names buckets, only those of its buckets),
    /// undecoded (see ``OutboxRow``).
    func unsentOutboxRows(limit: Int, after: Int64) async throws -> [OutboxRow]

    /// Run counts by status and the outbox backlog, for metrics.
    func statistics() async throws -> StoreStatistics

    /// Deletes up to `limit` finished runs (completed, failed, cancelled) last
    /// changed before `before` (with a fence that names buckets, only in
    /// those), with their timers, and returns their ids.
    /// A child run goes only once its parent is finished or gone. Fenced like
    /// `commit`. Also clears outbox rows that older versions kept after sending.
    func pruneRuns(finishedBefore before: Date, limit: Int) async throws -> [String]

    /// Timers due at or before `now`, earliest first (with a fence that
    /// names buckets, only those of its runs; so for `nextTimerDue`).
    func dueTimers(now: Date, limit: Int) async throws -> [TimerEntry]
    /// The earliest pending timer's due time, if any.
    func nextTimerDue() async throws -> Date?

    /// Adds or replaces a schedule.
    func saveSchedule(_ schedule: ScheduleRecord) async throws
    func schedules() async throws -> [ScheduleRecord]
    /// Removes a schedule; false if there was none.
    func removeSchedule(id: String) async throws -> Bool
    /// Replaces a schedule only if its stored definition is still `expected`
    /// (a pause or resume read it): false if it changed or went meanwhile,
    /// so that a concurrent replace or removal is not undone.
    func replaceSchedule(_ schedule: ScheduleRecord, ifSpec expected: String) async throws -> Bool
    /// Moves a schedule's next fire time from `expected` to `next` and applies
    /// `changes` (and outbox rows for standalone `publish` tasks) in the same
    /// transaction, only if the schedule still expects `expected`: so a fire
    /// happens once, even across restarts and coordinators.
    func fireSchedule(id: String, expected: Date, next: Date, changes: [RunChange], publish: [StepTask]) async throws -> Bool

    /// Takes or renews a named lease for `holder` until `now + ttl`; true if
    /// `holder` holds it now. Coordinators use it to choose the active one.
    func acquireLease(_ name: String, holder: String, now: Date, ttl: Duration) async throws -> Bool
    /// Extends a lease `holder` still holds; false once another holder took it
    /// (or it was released). A renewal that comes late, after a stall or a
    /// clock step, still succeeds if nobody took the lease over meanwhile:
    /// takeover rewrites the holder, and every fenced write checks the holder,
    /// so the late holder cannot have overlapped with another one.
    func renewLease(_ name: String, holder: String, now: Date, ttl: Duration) async throws -> Bool

    /// Gives a lease up (if `holder` holds it).
    func releaseLease(_ name: String, holder: String) async throws

    /// The leases whose names start with `prefix` that have not expired at
    /// `now`: name → holder (coordinators read who is alive and who leads what).
    func leases(prefix: String, now: Date) async throws -> [String: String]

    /// The store's partition count: fixed the first time it is asked (to
    /// `proposed`, or 1 if the store already held runs before it had
    /// partitions), the same ever after.
    func partitionCount(proposed: Int) async throws -> Int

    /// From now on, every `commit` and `fireSchedule` first checks, in its own
    /// transaction, that `holder` still holds lease `name` (and fails with
    /// `leaseLost` if not): a coordinator that stalled past its lease cannot
    /// write over the one that took over. Nil turns the check off.
    func setFence(_ fence: StoreFence?)

    /// Applies tracked tasks' changes in order, in one transaction: each moves
    /// its task's record forward only (see ``TaskTrackingChange``), so a
    /// change applied twice or late changes nothing. Not fenced: any
    /// coordinator may apply them.
    func recordTaskChanges(_ changes: [TaskTrackingChange]) async throws
    /// A tracked task's record (nil: never tracked, or pruned).
    func trackedTask(id: String) async throws -> TrackedTask?
    /// Deletes up to `limit` task records, finished ones last changed before
    /// `finishedBefore` and the others before `unfinishedBefore`; returns how many.
    func pruneTrackedTasks(finishedBefore: Date, unfinishedBefore: Date, limit: Int) async throws -> Int

    /// Closes connections.
    func close() async throws
}

extension WorkflowStore {
    /// Outbox entries not yet marked sent with ids above `after`, oldest first, decoded.
    public func unsentOutbox(limit: Int, after: Int64) async throws -> [OutboxEntry] {
        try await unsentOutboxRows(limit: limit, after: after).map { try $0.decode() }
    }

    /// Outbox entries not yet marked sent, oldest first.
    public func unsentOutbox(limit: Int) async throws -> [OutboxEntry] {
        try await unsentOutbox(limit: limit, after: 0)
    }

    /// Applies changes to one or more runs atomically (see ``RunChange``).
    @discardableResult
    public func commit(_ changes: [RunChange]) async throws -> [Int64] {
        try await commit(changes, messages: [], sent: [])
    }

    /// Applies changes and deletes the outbox rows `sent` (see ``commit(_:messages:sent:)``).
    @discardableResult
    public func commit(_ changes: [RunChange], sent: [Int64]) async throws -> [Int64] {
        try await commit(changes, messages: [], sent: sent)
    }
}
