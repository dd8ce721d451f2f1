public import Foundation
public import Logging
public import Metrics
public import SluiceCore
public import SluiceWorkflow
public import SluiceAPI

/// Applies events to runs and commits the results: the one place where run
/// state changes. Every change goes through one gate, so changes apply one
/// at a time even across the actor's suspension points (an actor alone would
/// let a second caller read a run while the first is committing it); each call
/// commits one store transaction (the run's new state, its outbox rows and
/// its timers, and the same for any child or parent run the event reaches)
/// before it returns, and only then may its event be acknowledged.
///
/// It keeps unfinished runs' state machines in memory: only the coordinator
/// that leads a run's partition writes it, so its copy stays current while
/// it leads. The coordinator empties the cache whenever it starts or stops
/// leading (``forgetRuns()``, ``lead(partitions:of:fence:)``), so runs are
/// then loaded from the store again.
///
/// With several partitions, an event for an existing run in a partition
/// this engine does not lead is not applied here: it becomes a
/// ``RunMessage`` in the outbox, which the relay publishes to that
/// partition's queue. New runs (starts, children) are written wherever
/// they belong: nobody else can hold one yet.
public actor RunEngine {
    /// A command the engine refused: an unknown workflow or run, or one it cannot apply.
    public enum EngineError: Error, CustomStringConvertible {
        case unknownWorkflow(String, Int?)
        case unknownRun(String)
        case invalid(String)

        public var description: String {
            switch self {
            case .unknownWorkflow(let name, let version): return "no workflow \(name)\(version.map { " version \($0)" } ?? "") is registered"
            case .unknownRun(let id): return "no run \(id)"
            case .invalid(let message): return message
            }
        }
    }

    /// Where runs are kept.
    public let store: any WorkflowStore
    private let logger: Logger
    private var machines: [String: WorkflowStateMachine] = [:]
    private var definitionCache: [String: CompiledWorkflow] = [:]
    /// A definition's latest version, looked up once for the starts that
    /// ask together (a service starting many runs would otherwise make a
    /// store query per start, each waiting its turn with the commits).
    private let latestVersions: CoalescedLookup<Int?>
    /// Runs whose machines a commit in progress took out of `machines`.
    private var checkedOut: Set<String> = []
    private let gate = AsyncGate()
    /// Committed outbox rows for the relay (see ``OutboxFeed``).
    nonisolated let outboxFeed = OutboxFeed()
    /// How large a run's step tasks and maps may be.
    public let limits: WorkflowLimits
    /// Where the engine's metrics go (nil: the bootstrapped `MetricsSystem`).
    private let metricsFactory: (any MetricsFactory)?
    /// The store's partition count, and those this engine leads (nil: all).
    private var partitionCount = 1
    private var ledPartitions: Set<Int>?

    public init(store: any WorkflowStore, limits: WorkflowLimits = .standard, logger: Logger = Logger(label: "sluice.coordinator"),
                metricsFactory: (any MetricsFactory)? = nil) {
        self.store = store
        latestVersions = CoalescedLookup { name in try await store.latestDefinitionVersion(name: name) }
        self.limits = limits
        self.logger = logger
        self.metricsFactory = metricsFactory
    }

    // MARK: Definitions

    /// The most bytes a definition may take as stored (JSON): YAML aliases
    /// and long templates are counted expanded.
    public static let maxDefinitionBytes = 1 << 20

    /// Validates and stores a definition.
    public func register(_ definition: WorkflowDefinition) async throws {
        try definition.validate()
        let size = try definition.jsonBytes().count
        guard size <= Self.maxDefinitionBytes else {
            throw WorkflowError(.tooLarge, "the definition takes \(size) bytes expanded; the limit is \(Self.maxDefinitionBytes)")
        }
        try await store.saveDefinition(definition)
        definitionCache["\(definition.name)@\(definition.version)"] = try CompiledWorkflow(definition)
    }

    /// Deletes a definition unless a run that may still need it uses it.
    /// Serialised with run starts, so that no start uses a definition being deleted.
    public func deleteDefinition(name: String, version: Int) async throws -> DefinitionDeletion {
        try await exclusively { engine in
            let result = try await engine.store.deleteDefinition(name: name, version: version)
            if result == .deleted { engine.definitionCache["\(name)@\(version)"] = nil }
            return result
        }
    }

    private func definition(_ name: String, _ version: Int?) async throws -> CompiledWorkflow {
        // Without a version: the latest, asked of the store after this call
        // began (another coordinator may have registered a newer one), but
        // once for all the starts that ask meanwhile, and decoded once.
        var version = version
        if version == nil { version = try await latestVersions.value(for: name) }
        guard let version else { throw EngineError.unknownWorkflow(name, nil) }
        if let cached = definitionCache["\(name)@\(version)"] { return cached }
        guard let found = try await store.definition(name: name, version: version) else { throw EngineError.unknownWorkflow(name, version) }
        let compiled = try CompiledWorkflow(found)
        definitionCache["\(found.name)@\(found.version)"] = compiled
        return compiled
    }

    // MARK: Runs

    /// Starts a run; with an idempotency key, a second start returns the first run.
    /// `traceparent`: the caller's W3C trace context; every step task joins
    /// that trace (invalid values are ignored).
    /// Without `runID`, a new UUID in a partition this engine leads, so that
    /// the run stays in its cache (a run started here for another
    /// coordinator's partition would be read back from the store at its
    /// first event there).
    public func start(workflow name: String, version: Int? = nil, input: JSONValue, idempotencyKey: String? = nil,
                      runID givenID: String? = nil, traceparent: String? = nil, at: Date = Date()) async throws -> RunState {
        let runID = givenID ?? newRunID()
        let trace = traceparent.flatMap(TraceParent.init)?.description
        if let key = idempotencyKey, let existing = try await store.run(idempotencyKey: key) { return existing }
        let definition = try await definition(name, version)
        try checkMapSizes(definition.definition, input: input)
        if let concurrency = definition.definition.concurrency {
            // The input's fault, not the definition's.
            do { _ = try concurrency.key(for: input) } catch { throw EngineError.invalid("input: \(error.message)") }
        }
        let machine = try WorkflowStateMachine(compiled: definition, runID: runID, input: input, createdAt: at,
                                               traceparent: trace, limits: limits)
        do {
            _ = try await submit(.start(machine, idempotencyKey: idempotencyKey, at: at))
        } catch let error as StoreError where error.code == .conflict {
            // Two starts with one key raced: the other won.
            if let key = idempotencyKey, let existing = try await store.run(idempotencyKey: key) { return existing }
            throw error
        }
        if let state = machines[runID]?.state { return state }
        return try await store.run(id: runID) ?? machine.state
    }

    /// A new run id in a partition this engine leads, if it leads any: a
    /// UUID of version 7, whose first 48 bits are the time in milliseconds,
    /// so that runs started together sit together in the stores' indexes
    /// (with random ids every start wrote a page somewhere in SQLite's
    /// index on the id and in the inputs table: a commit of a few hundred
    /// runs wrote twice the pages it does now).
    private func newRunID() -> String {
        let now = Date().epochMilliseconds
        var id = UUIDText.timeOrdered(milliseconds: now)
        guard let led = ledPartitions, !led.isEmpty else { return id }
        // Expected tries: the partition count over those led.
        for _ in 0..<1000 where !leads(id) { id = UUIDText.timeOrdered(milliseconds: now) }
        return id
    }

    /// Runs `body` with no commit or other change in progress.
    private func exclusively<T: Sendable>(_ body: @Sendable @escaping (isolated RunEngine) async throws -> T) async throws -> T {
        try await gate.run { try await body(self) }
    }

    /// Refuses a start whose input already holds a map larger than the limit
    /// (maps over the input are known at once; others fail their step when
    /// they start).
    private func checkMapSizes(_ definition: WorkflowDefinition, input: JSONValue) throws {
        for step in definition.steps {
            guard case .map(let spec) = step.kind, case .key("input")? = spec.over.components.first,
                  case .array(let items)? = spec.over.resolve(in: .object(["input": input])),
                  items.count > limits.maxMapElements else { continue }
            throw EngineError.invalid("step '\(step.id)' maps over \(items.count) elements of '\(spec.over)'; the limit is \(limits.maxMapElements)")
        }
    }

    /// Those of `runIDs` this engine applies the events of itself (one actor hop for a batch).
    func led(among runIDs: [String]) -> Set<String> {
        Set(runIDs.filter(leads))
    }

    /// Whether this engine applies `runID`'s events itself.
    func leads(_ runID: String) -> Bool {
        guard let led = ledPartitions else { return true }
        return led.contains(Topology.partition(runID: runID, of: partitionCount))
    }

    /// From now on, leads `partitions` of `count` (nil: all) and fences the
    /// store with `fence`. Waits for the commit in progress, and drops the
    /// cached runs of partitions it no longer leads (another coordinator may
    /// change them from now on).
    public func lead(partitions: Set<Int>?, of count: Int, fence: StoreFence?) async throws {
        try await exclusively { engine in
            engine.partitionCount = count
            engine.ledPartitions = partitions
            engine.store.setFence(fence)
            for id in engine.machines.keys where !engine.leads(id) { engine.machines[id] = nil }
        }
    }

    /// Drops every cached run, so that runs are read from the store again.
    /// The coordinator calls it when it starts or stops leading: while it
    /// stood by, another coordinator may have changed them.
    public func forgetRuns() async throws {
        // Definitions too: another coordinator may have deleted some meanwhile.
        try await exclusively { engine in
            engine.machines = [:]
            engine.definitionCache = [:]
        }
    }

    /// Drops the cached runs at once, without waiting for a commit in
    /// progress (which, after a lost lease, can only fail): reads then come
    /// from the store as soon as the coordinator says it stands by.
    /// ``forgetRuns()`` follows once its loops have stopped.
    public func dropCachedRuns() {
        machines = [:]
    }

    /// Deletes finished runs past `before` from the store (see
    /// ``WorkflowStore/pruneRuns(finishedBefore:limit:)``) and from the cache.
    public func pruneRuns(finishedBefore before: Date, limit: Int) async throws -> Int {
        try await exclusively { engine in
            let ids = try await engine.store.pruneRuns(finishedBefore: before, limit: limit)
            for id in ids { engine.machines[id] = nil }
            return ids.count
        }
    }

    /// A run's status alone: unlike ``run(_:)``, cheap for a run with a large map.
    public func runStatus(_ id: String) async throws -> RunState.Status? {
        try await read(id, \.status) { try await $0.runStatus(id: id) }
    }

    /// A run's current state.
    public func run(_ id: String) async throws -> RunState? {
        try await read(id, \.self) { try await $0.run(id: id) }
    }

    /// `field` of a run's state from the cache, or else `fromStore`. A run
    /// out of the cache for a commit in progress is back once the commit
    /// ends: reading it from the store meanwhile would cost a large map's
    /// whole state.
    private func read<T: Sendable>(_ id: String, _ field: @Sendable @escaping (RunState) -> T,
                                   _ fromStore: @Sendable @escaping (any WorkflowStore) async throws -> T?) async throws -> T? {
        if let m = machines[id] { return field(m.state) }
        guard checkedOut.contains(id) else { return try await fromStore(store) }
        return try await exclusively { engine in
            if let m = engine.machines[id] { return field(m.state) }
            return try await fromStore(engine.store)
        }
    }

    /// Applies a worker's task event; events of tasks that are not workflow steps are ignored.
    public func apply(_ event: TaskEvent) async throws {
        try await apply([event])
    }

    /// Applies several task events in order, committing them together (one
    /// transaction, one write of each run touched, however many events it got).
    /// Events of unknown runs are logged and skipped.
    public func apply(_ events: [TaskEvent]) async throws {
        try await apply(events, messages: [])
    }

    /// Applies task events and messages from other coordinators (see
    /// ``RunMessage``) in one commit.
    public func apply(_ events: [TaskEvent], messages: [RunMessage]) async throws {
        var initial: [Incoming] = messages.map { ($0.runID, $0.event, $0.id) }
        var at = messages.isEmpty ? Date.distantPast : Date()
        for event in events {
            guard let runID = event.workflowRunID, let workflowEvent = WorkflowEvent(event) else { continue }
            initial.append((runID, workflowEvent, nil))
            at = max(at, event.at)
        }
        guard !initial.isEmpty else { return }
        _ = try await submit(.events(initial, at: at))
    }

    /// What became of a command.
    public enum CommandOutcome: Sendable {
        /// Applied and committed here.
        case applied
        /// The run is in a partition another coordinator leads: the command
        /// was committed to the outbox as a message to it, and is applied there.
        case forwarded
    }

    /// Applies a command or timer to a run (or forwards it to the run's
    /// partition, if another coordinator leads it).
    @discardableResult
    public func apply(_ event: WorkflowEvent, to runID: String, removeTimers: [String] = [], at: Date = Date()) async throws -> CommandOutcome {
        if !leads(runID) {
            guard try await store.runStatus(id: runID) != nil else { throw EngineError.unknownRun(runID) }
            _ = try await submit(.forward(RunMessage(runID: runID, event: event)))
            return .forwarded
        }
        switch try await submit(.command(runID: runID, event, removeTimers: removeTimers, at: at)) {
        case .done: return .applied
        case .forwarded: return .forwarded
        case .unknownRun: throw EngineError.unknownRun(runID)
        }
    }

    /// Fires a due timer (and removes it, in the same commit).
    /// False when the timer's run does not exist (the timer is then left alone).
    public func fire(_ timer: TimerEntry, at: Date = Date()) async throws -> Bool {
        // Its partition moved to another coordinator since the timer was
        // read: that one fires it.
        guard leads(timer.runID) else { return true }
        return try await submit(.command(runID: timer.runID, .timerFired(timerID: timer.id, at: at), removeTimers: [timer.id], at: at)) != .unknownRun
    }

    /// Deletes the outbox rows of published tasks, in the next commit (with
    /// whatever events and starts it carries, so sending costs no transaction of its own).
    public func markSent(_ ids: [Int64]) async throws {
        guard !ids.isEmpty else { return }
        _ = try await submit(.sent(ids))
    }

    /// Outbox rows published: deleted with the next commit, which this does
    /// not wait for. The relay goes on publishing meanwhile (it skips rows
    /// it published lately), instead of waiting a whole group commit per
    /// batch: with many partitions' events in each commit, that wait held
    /// every step task of every run behind it.
    public func markSentSoon(_ ids: [Int64]) {
        guard !ids.isEmpty else { return }
        queued.append(Submission(work: .sent(ids), continuation: nil))
        if !draining {
            draining = true
            Task { await self.drain() }
        }
    }

    /// A child run's id: its key (`parent/step/generation`) with dots for
    /// slashes, so that it fits in a URL path segment.
    /// Bounded like every id that becomes an AMQP short string (it is the
    /// correlation id and the prefix of its tasks' ids): sub-workflows nested
    /// deep, or with long step ids, get a hashed id of 120 bytes at most.
    static func childRunID(_ key: String) -> String { RunState.childRunID(key) }

    /// A run's machine for a plan, taken out of the cache: changed in place
    /// there, it shares no elements with a cached copy (which would copy a
    /// large map's elements at every commit). The commit puts it back; if
    /// the commit fails, the run is read from the store next time.
    private func takeMachine(_ id: String) async throws -> WorkflowStateMachine? {
        if let cached = machines.removeValue(forKey: id) {
            checkedOut.insert(id)
            return cached
        }
        guard let state = try await store.run(id: id) else { return nil }
        let definition = try await definition(state.workflow, state.version)
        return try WorkflowStateMachine(compiled: definition, state: state, limits: limits)
    }

    /// Keeps the machines of a committed change (finished ones leave the
    /// cache, and so do new runs of partitions another coordinator leads).
    private func adopt(_ working: [String: WorkflowStateMachine]) {
        for (id, machine) in working {
            if (machine.state.status.isFinal && machine.state.status != .failed) || !leads(id) {
                machines[id] = nil
            } else {
                machines[id] = machine
            }
        }
    }

    /// Fires a schedule: claims the fire time and creates its run (or task) in one transaction.
    /// Returns false if another coordinator (or an earlier attempt) claimed it.
    public func fire(schedule spec: ScheduleSpec, expected: Date, next: Date, defaultQueue: String) async throws -> Bool {
        try await exclusively { try await $0.fireUnlocked(schedule: spec, expected: expected, next: next, defaultQueue: defaultQueue) }
    }

    private func fireUnlocked(schedule spec: ScheduleSpec, expected: Date, next: Date, defaultQueue: String) async throws -> Bool {
        defer { checkedOut = [] }
        let ms = expected.epochMilliseconds
        switch spec.action {
        case .task(let name, let queue, let arguments):
            let task = StepTask(taskID: "sched-\(spec.id)-\(ms)", name: name, queue: queue ?? defaultQueue, arguments: arguments,
                                maxAttempts: nil, retry: nil, runID: "", stepID: "", index: nil)
            return try await store.fireSchedule(id: spec.id, expected: expected, next: next, changes: [], publish: [task])
        case .workflow(let name, let version, let input):
            let runID = "sched-\(spec.id)-\(ms)"
            let now = Date()
            let definition = try await definition(name, version)
            let machine = try WorkflowStateMachine(compiled: definition, runID: runID, input: input, createdAt: now, limits: limits)
            var plan = Plan()
            plan.create(machine, idempotencyKey: runID)
            if plan.waitsForSlot(runID) == false { try await cascade([(runID, .start(at: now), nil)], at: now, into: &plan) }
            let fired = try await store.fireSchedule(id: spec.id, expected: expected, next: next, changes: plan.takeRunChanges(), publish: [])
            if fired { adopt(plan.working) }
            // A run given a concurrency slot at once is started by a message the store wrote.
            if fired, machine.state.slot != nil { outboxFeed.storeChanged() }
            return fired
        }
    }

    // MARK: Group commit

    /// An event for a run, with the id of the message that brought it if
    /// it must apply once (see ``RunMessage``).
    typealias Incoming = (runID: String, event: WorkflowEvent, messageID: String?)

    /// What became of one caller's work.
    enum WorkOutcome: Sendable {
        case done
        /// A command for a run whose partition moved away meanwhile: sent to its leader.
        case forwarded
        case unknownRun
    }

    /// What one caller asks of the next commit.
    enum Work: Sendable {
        /// A new run (its machine not yet started).
        case start(WorkflowStateMachine, idempotencyKey: String?, at: Date)
        /// Task events; those of unknown runs are skipped.
        case events([Incoming], at: Date)
        /// A command or timer for one run (`unknownRun` if there is none).
        case command(runID: String, WorkflowEvent, removeTimers: [String], at: Date)
        /// Outbox rows to delete.
        case sent([Int64])
        /// A command for a run another coordinator leads, to send it.
        case forward(RunMessage)
    }

    private struct Submission {
        var work: Work
        /// Nil for work nobody waits for (rows the relay published).
        var continuation: CheckedContinuation<WorkOutcome, any Error>?
    }

    /// Changes planned for one commit: every run touched, in the order first touched.
    struct Plan {
        var working: [String: WorkflowStateMachine] = [:]
        var changes: [String: RunChange] = [:]
        var order: [String] = []
        var created: [String: String?] = [:]
        var sent: [Int64] = []
        /// Events for runs other coordinators lead.
        var messages: [RunMessage] = []
        var transitions = 0
        /// Step tasks of cancelled runs, revoked once the commit is done.
        var revoked: [String] = []
        /// Each stored run's status when it entered the plan (a run that
        /// finishes gives its concurrency slot back).
        var statusBefore: [String: RunState.Status] = [:]

        /// Puts a run read from the cache or the store into the plan.
        mutating func load(_ machine: WorkflowStateMachine) {
            working[machine.state.runID] = machine
            statusBefore[machine.state.runID] = machine.state.status
        }

        mutating func create(_ machine: WorkflowStateMachine, idempotencyKey: String?) {
            working[machine.state.runID] = machine
            created[machine.state.runID] = .some(idempotencyKey)
        }

        /// For a new run of a workflow with a concurrency limit: records it
        /// in line for a slot (the store starts it when it gets one) and
        /// returns true; false for a run that starts now.
        mutating func waitsForSlot(_ id: String) -> Bool {
            guard working[id]?.state.slot != nil else { return false }
            touch(id)
            changes[id]!.slot = .wait
            return true
        }

        /// Makes sure run `id` (in `working`) has a change to collect its consequences in.
        mutating func touch(_ id: String) {
            guard changes[id] == nil else { return }
            order.append(id)
            // The run's state is taken once the group is planned
            // (`runChanges`); meanwhile the change holds no steps, so that it
            // shares no elements with the machine being changed.
            var run = working[id]!.state
            run.steps = [:]
            changes[id] = RunChange(run: run, isNew: created.keys.contains(id), idempotencyKey: created[id] ?? nil)
        }

        /// The changes to commit, each with its run's state as planned and
        /// the map elements it changed (taken from the machines, which then
        /// start counting changes afresh).
        mutating func takeRunChanges() -> [RunChange] {
            order.compactMap { id in
                guard var change = changes[id] else { return nil }
                let before = statusBefore[id] ?? change.run.status
                change.run = working[id]!.state
                change.elements = working[id]!.takeElementChanges()
                // A new run that ended in its first commit (cancelled at once) never queues.
                if change.isNew, change.run.status.isFinal { change.slot = nil }
                if change.run.slot != nil, !change.isNew {
                    // A run that finished gives its slot back; one made active again (a retry) takes one.
                    if !before.isFinal && change.run.status.isFinal { change.slot = .release }
                    if before.isFinal && !change.run.status.isFinal { change.slot = .hold }
                }
                return change
            }
        }
    }

    /// Work waiting for the commit in progress to end.
    private var queued: [Submission] = []
    private var draining = false

    /// Queues work for the next commit and waits until it is committed.
    /// Whatever arrives while a commit is in progress goes into the next one
    /// together (group commit): one transaction for many starts, event
    /// batches, timers and outbox deletions, instead of one each.
    private func submit(_ work: Work) async throws -> WorkOutcome {
        try await withCheckedThrowingContinuation { continuation in
            queued.append(Submission(work: work, continuation: continuation))
            if !draining {
                draining = true
                Task { await self.drain() }
            }
        }
    }

    private func drain() async {
        while !queued.isEmpty {
            let batch = queued
            queued = []
            await commit(batch)
        }
        draining = false
    }

    /// Plans a group into one transaction. If the group fails, each piece is
    /// committed on its own, so that one that cannot be applied does not fail
    /// the others (nothing of a failed group was kept: the cache changes only
    /// after a commit).
    private func commit(_ batch: [Submission]) async {
        do {
            let results = try await exclusively { try await $0.planAndCommit(batch.map(\.work)) }
            for (submission, result) in zip(batch, results) { submission.continuation?.resume(with: result) }
        } catch where batch.count > 1 && Self.isPieceError(error) {
            logger.debug("a group commit failed; committing its pieces one by one", metadata: ["error": "\(error)"])
            for submission in batch { await commit([submission]) }
        } catch {
            // The store's failure (or a lost lease): every caller of the group learns it.
            for submission in batch {
                if let continuation = submission.continuation {
                    continuation.resume(throwing: error)
                } else if case .sent(let ids) = submission.work {
                    // The relay skips rows it published lately, so a store
                    // read would not find them again: it asks again instead.
                    logger.debug("published outbox rows were not deleted; the relay asks again", metadata: ["error": "\(error)"])
                    outboxFeed.deletionFailed(ids)
                }
            }
        }
    }

    /// Whether a group's failure may come from one of its pieces (so that
    /// committing them one by one isolates it), rather than from the store
    /// itself: after a timeout the group may yet have committed, and replaying
    /// its pieces would apply commands twice.
    private static func isPieceError(_ error: any Error) -> Bool {
        guard let store = error as? StoreError else { return !(error is CancellationError) }
        return store.code == .conflict || store.code == .notFound || store.code == .invalidArgument
    }

    private func planAndCommit(_ works: [Work]) async throws -> [Result<WorkOutcome, any Error>] {
        // Taken machines are back in the cache after a commit, or dropped
        // (read from the store next time) after a failure.
        defer { checkedOut = [] }
        var plan = Plan()
        var results: [Result<WorkOutcome, any Error>] = []
        for work in works {
            switch work {
            case .start(let machine, let key, let at):
                let id = machine.state.runID
                if plan.working[id] != nil || machines[id] != nil {
                    results.append(.failure(StoreError(.conflict, "run \(id) exists")))
                    continue
                }
                if let key, plan.created.values.contains(where: { $0 == key }) {
                    results.append(.failure(StoreError(.conflict, "idempotency key \(key) is taken")))
                    continue
                }
                // Checked again under the gate: the definition may have been deleted since the start looked it up.
                do {
                    _ = try await definition(machine.definition.name, machine.definition.version)
                } catch {
                    results.append(.failure(error))
                    continue
                }
                plan.create(machine, idempotencyKey: key)
                if !plan.waitsForSlot(id) { try await cascade([(id, .start(at: at), nil)], at: at, into: &plan) }
                results.append(.success(.done))
            case .events(let events, let at):
                try await cascade(events, at: at, into: &plan)
                results.append(.success(.done))
            case .command(let runID, let event, let removeTimers, let at):
                if plan.working[runID] == nil {
                    // Its partition moved away since the command was submitted.
                    guard leads(runID) else {
                        // A command goes to the new leader; a timer is that leader's to fire.
                        if removeTimers.isEmpty { plan.messages.append(RunMessage(runID: runID, event: event)) }
                        results.append(.success(removeTimers.isEmpty ? .forwarded : .done))
                        continue
                    }
                    guard let loaded = try await takeMachine(runID) else {
                        results.append(.success(.unknownRun))
                        continue
                    }
                    plan.load(loaded)
                }
                plan.touch(runID)
                plan.changes[runID]!.addTimers.removeAll { removeTimers.contains($0.id) }
                plan.changes[runID]!.removeTimers += removeTimers
                try await cascade([(runID, event, nil)], at: at, into: &plan)
                results.append(.success(.done))
            case .sent(let ids):
                plan.sent += ids
                results.append(.success(.done))
            case .forward(let message):
                plan.messages.append(message)
                results.append(.success(.done))
            }
        }
        let changes = plan.takeRunChanges()
        // Timed for operators, failed commits too (a store that times out is
        // the store-bound case): the time per second spent here (the sum's
        // rate) near 1 means the engine commits back to back, so the store
        // is what bounds its transitions.
        let factory = metricsFactory ?? MetricsSystem.factory
        let committing = ContinuousClock.now
        let ids: [Int64]
        do {
            defer { Metrics.Timer(label: "sluice_coordinator_commit_seconds", factory: factory).record(duration: ContinuousClock.now - committing) }
            ids = try await store.commit(changes, messages: plan.messages, sent: plan.sent)
        }
        // Runs the store gave slots to are started by outbox messages it wrote: the relay reads them there.
        if changes.contains(where: { $0.slot != nil }) { outboxFeed.storeChanged() }
        let now = Date()
        let items = changes.flatMap(\.publish).map(OutboxEntry.Item.task) + plan.messages.map(OutboxEntry.Item.message)
        outboxFeed.append(zip(ids, items).map { OutboxEntry(id: $0, item: $1, createdAt: now) })
        outboxFeed.revoke(plan.revoked)
        adopt(plan.working)
        Counter(label: "sluice_workflow_transitions_total", factory: factory).increment(by: plan.transitions)
        return results
    }

    /// Applies events to the plan's copies of the runs, following them into
    /// child and parent runs.
    private func cascade(_ initial: [Incoming], at: Date, into plan: inout Plan) async throws {
        var pending = initial[...]
        var steps = 0
        while let (id, event, messageID) = pending.popFirst() {
            steps += 1
            guard steps < 10_000 else { throw EngineError.invalid("an event cascaded through too many runs") }
            if plan.working[id] == nil {
                guard leads(id) else {
                    plan.messages.append(RunMessage(runID: id, event: event, id: messageID))
                    continue
                }
                guard let loaded = try await takeMachine(id) else {
                    logger.warning("an event for an unknown run", metadata: ["run": "\(id)"])
                    continue
                }
                plan.load(loaded)
            }
            if let messageID {
                // A command message delivered again: applied already.
                guard plan.working[id]!.recordMessage(messageID) else { continue }
                plan.touch(id)
            }
            if case .taskProgress(let taskID, let attempt, let fraction, let message, _) = event {
                // At most two fields of one step: the run is written only if they changed.
                if plan.working[id]!.applyProgress(taskID: taskID, attempt: attempt, fraction: fraction, message: message) { plan.touch(id) }
                continue
            }
            plan.transitions += 1
            // Handled in place in `working`: a copy of the machine per event
            // would copy a map's elements per event. (The cache keeps the
            // state before this group until the commit succeeds.)
            let actions = plan.working[id]!.handle(event)
            let parent = plan.working[id]!.state.parent
            plan.touch(id)
            var change = plan.changes[id]!
            plan.changes[id] = nil
            for action in actions {
                switch action {
                case .publish(let tasks):
                    change.publish += tasks
                case .scheduleTimer(let timerID, let due):
                    change.removeTimers.removeAll { $0 == timerID }
                    change.addTimers.removeAll { $0.id == timerID }
                    change.addTimers.append(TimerEntry(id: timerID, runID: id, dueAt: due))
                case .cancelTimer(let timerID):
                    change.addTimers.removeAll { $0.id == timerID }
                    change.removeTimers.append(timerID)
                case .startChild(let key, let workflow, let version, let input):
                    let childID = Self.childRunID(key)
                    if plan.working[childID] != nil { break }
                    if try await store.run(id: childID) != nil { break }  // already started (a replayed event)
                    do {
                        let definition = try await definition(workflow, version)
                        let child = try WorkflowStateMachine(compiled: definition, runID: childID, input: input, createdAt: at,
                                                             parent: RunState.ParentLink(runID: id, childKey: key),
                                                             traceparent: plan.working[id]?.state.traceparent, limits: limits)
                        plan.create(child, idempotencyKey: nil)
                        if !plan.waitsForSlot(childID) { pending.append((childID, .start(at: at), nil)) }
                    } catch {
                        pending.append((id, .childFinished(childKey: key, succeeded: false, output: nil, error: "\(error)", at: at), nil))
                    }
                case .cancelChild(let key):
                    pending.append((Self.childRunID(key), .cancel(reason: "the parent run was cancelled", at: at), nil))
                case .revokeTasks(let ids):
                    plan.revoked += ids
                case .completed(let output):
                    if let parent {
                        pending.append((parent.runID, .childFinished(childKey: parent.childKey, succeeded: true, output: output, error: nil, at: at), nil))
                    }
                case .failed(let reason):
                    if let parent {
                        pending.append((parent.runID, .childFinished(childKey: parent.childKey, succeeded: false, output: nil, error: reason, at: at), nil))
                    }
                case .cancelled(let reason):
                    if let parent {
                        pending.append((parent.runID, .childFinished(childKey: parent.childKey, succeeded: false, output: nil,
                                                                     error: "cancelled: \(reason)", at: at), nil))
                    }
                }
            }
            plan.changes[id] = change
        }
    }
}
