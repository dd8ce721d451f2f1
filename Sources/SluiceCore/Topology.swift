public import SluiceWire

/// Every exchange, queue, binding and argument Sluice uses, derived from a
/// prefix and queue names. Nothing else in Sluice spells a broker name.
///
/// ```
/// <prefix>.tasks        direct exchange; routing key = queue name
/// <prefix>.q.<queue>    quorum work queue; delivery limit; dead-letters to <prefix>.dead
/// <prefix>.q.<queue>~high, <prefix>.q.<queue>~low
///                       its other priority levels (routing keys <queue>~high, <queue>~low);
///                       they dead-letter to the queue's one dead queue
/// <prefix>.dead         direct exchange; routing key = queue name
/// <prefix>.dead.<queue> quorum dead queue
/// <prefix>.delay.<ms>   fanout exchange + quorum queue with TTL <ms> that
///                       dead-letters to <prefix>.tasks with the task's queue as key
/// <prefix>.events       topic exchange; routing key = <queue>.<event kind>
/// <prefix>.reply.<id>   quorum reply queue of a producer waiting for results
/// ```
///
/// Two prefixes on one vhost share nothing.
public struct Topology: Sendable, Hashable {
    /// The name prefix (default `sluice`).
    public let prefix: String
    /// Deliveries of one message after which the broker dead-letters it
    /// (a task that keeps crashing its worker); reason `delivery_limit`.
    public var deliveryLimit: Int
    /// The delay ladder, shortest first, in milliseconds.
    public var delayTiers: [Int]
    /// Members of each quorum queue when it is created
    /// (`x-quorum-initial-group-size`; RabbitMQ takes at most the cluster's
    /// node count); nil leaves it to the broker (every node). A queue
    /// argument: processes sharing queues should agree on it, though a queue
    /// that exists with another size is kept as it is.
    public var replicas: Int?

    /// The queue argument that sets a quorum queue's initial member count.
    public static let replicasArgument = "x-quorum-initial-group-size"

    /// The default ladder: 250 ms, 1 s, 5 s, 30 s, 2 min, 10 min, 1 h.
    public static let defaultDelayTiers = [250, 1_000, 5_000, 30_000, 120_000, 600_000, 3_600_000]

    /// A topology; throws if the prefix is not a plain name.
    public init(prefix: String = "sluice", deliveryLimit: Int = 10, delayTiers: [Int] = Topology.defaultDelayTiers,
                replicas: Int? = 3) throws {
        guard Self.isValidName(prefix) else {
            throw SluiceError(.invalidArgument, "prefix '\(prefix)' must be 1-100 letters, digits, '-', '_' or '.'")
        }
        guard deliveryLimit > 0 else { throw SluiceError(.invalidArgument, "the delivery limit must be positive") }
        if let replicas, replicas < 1 { throw SluiceError(.invalidArgument, "replicas must be 1 or more") }
        self.replicas = replicas
        self.prefix = prefix
        tasksExchange = "\(prefix).tasks"
        deadExchange = "\(prefix).dead"
        eventsExchange = "\(prefix).events"
        self.deliveryLimit = deliveryLimit
        self.delayTiers = delayTiers.filter { $0 > 0 }.sorted()
        guard !self.delayTiers.isEmpty else { throw SluiceError(.invalidArgument, "the delay ladder needs at least one tier") }
    }

    /// Whether `name` is usable as a prefix or queue name.
    public static func isValidName(_ name: String) -> Bool {
        // Bytes, not characters: every allowed character is one ASCII byte,
        // and any other byte makes the name invalid (checked per enqueue).
        let bytes = name.utf8
        return !bytes.isEmpty && bytes.count <= 100 && bytes.allSatisfy {
            (0x61...0x7A).contains($0) || (0x41...0x5A).contains($0) || (0x30...0x39).contains($0) || $0 == 0x2D || $0 == 0x5F || $0 == 0x2E
        }
    }

    /// Checks a queue name, or one level of a queue (`emails~high`); throws
    /// a clear error if it is not usable.
    public static func validateQueue(_ queue: String) throws {
        let (base, priority) = splitLevel(queue)
        guard isValidName(base), priority != nil else {
            throw SluiceError(.invalidArgument, "queue name '\(queue)' must be 1-100 letters, digits, '-', '_' or '.'"
                              + " (and may end in ~high or ~low to name one priority level)", queue: queue)
        }
    }

    /// Checks a queue name that may not name a level (dead queues, isolation
    /// queues: one per queue, shared by its levels).
    public static func validateBaseQueue(_ queue: String) throws {
        guard isValidName(queue) else {
            let hint = splitLevel(queue).priority != nil && isValidName(splitLevel(queue).queue)
                ? "; every level of a queue shares its dead and isolation queues: name '\(splitLevel(queue).queue)'" : ""
            throw SluiceError(.invalidArgument, "queue name '\(queue)' must be 1-100 letters, digits, '-', '_' or '.'" + hint, queue: queue)
        }
    }

    // MARK: Priority levels

    /// Between a queue's name and its level: a character queue names cannot hold.
    public static let levelSeparator: Character = "~"
    private static let levelSeparatorByte = levelSeparator.asciiValue!

    /// The name of one priority level of `queue`: the queue itself for normal,
    /// `<queue>~high` or `<queue>~low` otherwise. It is the level's routing
    /// key on the tasks exchange and names its work queue
    /// (``workQueue(_:)``), so whatever routes by a task's queue (enqueues,
    /// the delay ladder) keeps its level.
    public static func levelName(_ queue: String, _ priority: TaskPriority) -> String {
        priority == .normal ? queue : "\(queue)\(levelSeparator)\(priority.rawValue)"
    }

    /// The queue and level a level name stands for; the level is nil for an
    /// unknown suffix (`emails~urgent`), normal without one.
    public static func splitLevel(_ name: String) -> (queue: String, priority: TaskPriority?) {
        // The separator is one ASCII byte: found among the bytes, not by
        // walking characters (this runs per enqueue).
        guard let index = name.utf8.lastIndex(of: levelSeparatorByte) else { return (name, .normal) }
        let level = TaskPriority(rawValue: String(name[name.index(after: index)...]))
        return (String(name[..<index]), level == .normal ? nil : level)
    }

    // MARK: Names

    // The three exchanges every task and outcome goes through: names made
    // once (interpolated on each use, they cost a worker a string per event).
    public let tasksExchange: String
    public let deadExchange: String
    public let eventsExchange: String
    public func workQueue(_ queue: String) -> String { "\(prefix).q.\(queue)" }
    public func deadQueue(_ queue: String) -> String { "\(prefix).dead.\(queue)" }
    public func delayExchange(_ milliseconds: Int) -> String { "\(prefix).delay.\(milliseconds)" }
    public func delayQueue(_ milliseconds: Int) -> String { "\(prefix).delay.\(milliseconds)" }
    /// Routing key of an event on the events exchange: `<queue>.<kind>` for a
    /// plain task; a workflow step's has its own (``stepEventRoutingKey(runID:queue:kind:)``).
    public func eventRoutingKey(queue: String, kind: TaskEvent.Kind) -> String { DottedText.join(queue, kind.rawValue) }

    /// Routing key of the event of a workflow step:
    /// `~wf.<bucket>.<queue>.<kind>`. The first word cannot start a queue name,
    /// so the coordinator binds `~wf.#` patterns and never receives plain
    /// tasks' outcomes; the key still ends in `<queue>.<kind>`, so monitors'
    /// `#.<kind>` bindings see steps too. The bucket, from a stable hash of the
    /// run id, lets coordinators share runs by binding buckets. (Outcomes a
    /// coordinator asked for in packs go on ``eventPackRoutingKey(bucket:kind:)``
    /// instead, which names no queue.)
    public func stepEventRoutingKey(runID: String, queue: String, kind: TaskEvent.Kind) -> String {
        "\(Self.stepEventWord).\(Self.stepEventBucket(runID: runID)).\(queue).\(kind.rawValue)"
    }

    /// Routing key of the event of a tracked task (``TaskEnvelope/track``):
    /// `~track.<queue>.<kind>`. Like a step's, its first word cannot start a
    /// queue name, so the coordinator's tracking queue binds `~track.#` and
    /// receives no untracked task's events; monitors' `#.<kind>` still match.
    public func trackEventRoutingKey(queue: String, kind: TaskEvent.Kind) -> String {
        "\(Self.trackEventWord).\(queue).\(kind.rawValue)"
    }

    /// The first word of every tracked task's event key.
    public static let trackEventWord = "~track"

    /// The routing key an event is published with.
    public func eventRoutingKey(for event: TaskEvent) -> String {
        eventRoutingKey(kind: event.kind, queue: event.queue, runID: event.workflowRunID, tracked: event.tracked == true)
    }

    /// The routing key of a task's event of `kind` (before the event exists:
    /// a worker asks whether anybody listens before it builds one). A
    /// workflow step's key wins over tracking: the coordinator follows steps anyway.
    public func eventRoutingKey(kind: TaskEvent.Kind, queue: String, runID: String?, tracked: Bool = false) -> String {
        if let runID { return stepEventRoutingKey(runID: runID, queue: queue, kind: kind) }
        return tracked ? trackEventRoutingKey(queue: queue, kind: kind) : eventRoutingKey(queue: queue, kind: kind)
    }

    /// The coordinator's queue of tracked tasks' events (quorum, bound to
    /// `~track.#`): every coordinator consumes it; applying an event twice,
    /// or out of order, changes nothing (see the store's task records).
    public var trackingQueue: String { "\(prefix).coordinator.tasks" }

    public var trackingQueueDeclaration: QueueDeclaration { quorumQueue(trackingQueue) }

    public var trackingBindings: [String] { ["\(Self.trackEventWord).#"] }

    /// The routing key of a pack of step outcome events of one `kind`
    /// (``EventPack``): `~wf.<bucket>.~pack.<kind>`, so that it matches the
    /// bucket's coordinator bindings (`~wf.<bucket>.#.<kind>`). The bucket is
    /// the one the coordinator names on the step task (``TaskEnvelope/eventPackBucket``):
    /// the first of its run's partition, so that one partition's outcomes share packs.
    public func eventPackRoutingKey(bucket: Int, kind: TaskEvent.Kind) -> String {
        "\(Self.stepEventWord).\(bucket).\(Self.eventPackWord).\(kind.rawValue)"
    }

    /// The routing key of a pack of plain tasks' outcome events of one
    /// `kind` from `queue`: `~pack.<kind>.<queue>.~`. Its last word, `~`, is
    /// never a kind, so bindings made for one event per message
    /// (`<queue>.<kind>`, `#.<kind>`) never receive it, whatever the queue is
    /// called; a listener that reads packs binds this key, `~pack.<kind>.#`
    /// or `~pack.#`. A worker publishes each form only while somebody is
    /// bound to it (``plainEventPackRoutingKey(forEventKey:)``).
    public func plainEventPackRoutingKey(queue: String, kind: TaskEvent.Kind) -> String {
        "\(Self.eventPackWord).\(kind.rawValue).\(queue).~"
    }

    /// The pack key that goes with a plain task's event key `<queue>.<kind>`,
    /// or nil for any other key (steps', tracked tasks', or a kind that is
    /// never packed: `progress`, `started`, heartbeats and pings).
    public func plainEventPackRoutingKey(forEventKey key: String) -> String? {
        guard key.utf8.first != UInt8(ascii: "~"), let dot = key.utf8.lastIndex(of: UInt8(ascii: ".")) else { return nil }
        let kindWord = key[key.index(after: dot)...]
        guard let kind = Self.packedEventKinds.first(where: { $0.rawValue == kindWord }) else { return nil }
        return plainEventPackRoutingKey(queue: String(key[..<dot]), kind: kind)
    }

    /// Whether a routing key is a pack of plain tasks' outcomes
    /// (`~pack.<kind>.<queue>.~`). A listener bound to `#` receives those
    /// outcomes twice, alone and in packs: it reads one of the two forms.
    public static func isPlainEventPackKey(_ routingKey: String) -> Bool {
        routingKey.utf8.starts(with: "~pack.".utf8)
    }

    /// Whether a routing key is an event pack's: a pack of step outcomes
    /// (`~wf.<bucket>.~pack.<kind>`) or of plain tasks' (`~pack.<kind>.<queue>.~`).
    public static func isEventPackKey(_ routingKey: String) -> Bool {
        // Checked on every event a worker publishes and every step event a
        // coordinator reads: no allocation. A plain task's key starts with its queue name, never `~`.
        var utf8 = routingKey.utf8[...]
        if isPlainEventPackKey(routingKey) { return true }
        guard utf8.starts(with: "~wf.".utf8) else { return false }
        utf8 = utf8.dropFirst(4)
        // The bucket, then `~pack.`, then the kind (one word).
        guard let dot = utf8.firstIndex(of: UInt8(ascii: ".")), dot > utf8.startIndex else { return false }
        let rest = utf8[utf8.index(after: dot)...]
        guard rest.starts(with: "~pack.".utf8) else { return false }
        let kind = rest.dropFirst(6)
        return !kind.isEmpty && !kind.contains(UInt8(ascii: "."))
    }

    /// The word that marks an event pack's key (after the bucket in a step
    /// pack's, first in a plain pack's): cannot be a queue name.
    public static let eventPackWord = "~pack"

    /// The outcome kinds that travel in packs (not `progress` or `started`).
    public static let packedEventKinds: [TaskEvent.Kind] = [.succeeded, .retrying, .dead]

    /// The first word of every workflow step's event key.
    public static let stepEventWord = "~wf"

    /// Whether a routing key is a workflow step's event (alone or in a
    /// pack), or a message between coordinators: `~wf.<bucket>.…`.
    public static func isStepEventKey(_ routingKey: String) -> Bool {
        routingKey.utf8.starts(with: "~wf.".utf8)
    }

    /// Whether a routing key is a tracked task's event: `~track.…`.
    public static func isTrackEventKey(_ routingKey: String) -> Bool {
        routingKey.utf8.starts(with: "~track.".utf8)
    }

    /// How many buckets step events are spread over (by run id).
    public static let stepEventBuckets = 64

    /// A run's bucket: FNV-1a of its id, modulo ``stepEventBuckets``, stable
    /// across processes and versions.
    public static func stepEventBucket(runID: String) -> Int {
        var hash: UInt32 = 0x811c_9dc5
        for byte in runID.utf8 { hash = (hash ^ UInt32(byte)) &* 0x0100_0193 }
        return Int(hash % UInt32(stepEventBuckets))
    }
    /// Routing key of worker heartbeats on the events exchange.
    public var workerHeartbeatRoutingKey: String { "_workers.heartbeat" }
    /// Routing key of a ping: every worker answers with a heartbeat at once.
    public var workerPingRoutingKey: String { "_workers.ping" }
    /// A temporary queue of one connection for reading events (monitoring,
    /// pings): classic, exclusive, deleted with its connection.
    public func monitorQueue(_ id: String) -> String { "\(prefix).mon.\(id)" }

    /// Whether a broker queue name is one of this prefix's, and which kind.
    public func queueKind(_ name: String) -> (kind: QueueKind, queue: String)? {
        if let q = queueName(fromWorkQueue: name) { return (.work, q) }
        let dead = "\(prefix).dead."
        if name.hasPrefix(dead) { return (.dead, String(name.dropFirst(dead.count))) }
        let delay = "\(prefix).delay."
        if name.hasPrefix(delay), let ms = Int(name.dropFirst(delay.count)) { return (.delay, String(ms)) }
        if name == coordinatorQueue || name == coordinatorDeadQueue || name == trackingQueue { return (.coordinator, name) }
        let partition = "\(prefix).coordinator.p"
        if name.hasPrefix(partition), Int(name.dropFirst(partition.count)) != nil { return (.coordinator, name) }
        let isolate = "\(prefix).isolate."
        if name.hasPrefix(isolate) { return (.isolation, String(name.dropFirst(isolate.count))) }
        let reply = "\(prefix).reply."
        if name.hasPrefix(reply) { return (.reply, String(name.dropFirst(reply.count))) }
        if let partition = orderPartition(fromQueue: name) { return (.order, partition.queue) }
        return nil
    }

    /// The roles of Sluice's queues.
    public enum QueueKind: String, Sendable {
        case work, dead, delay, coordinator, isolation
        /// A producer's reply queue (results of tasks it waits for).
        case reply
        /// One of a queue's ordered partitions (``orderPartitionQueue(_:_:)``).
        case order
    }

    /// The queue name inside a work or dead queue's broker name, if it is one of ours.
    public func queueName(fromWorkQueue name: String) -> String? {
        let p = "\(prefix).q."
        return name.hasPrefix(p) ? String(name.dropFirst(p.count)) : nil
    }

    // MARK: Declarations

    /// The exchanges every producer and worker needs.
    public var exchanges: [ExchangeDeclaration] {
        [
            ExchangeDeclaration(name: tasksExchange, type: "direct"),
            ExchangeDeclaration(name: deadExchange, type: "direct"),
            ExchangeDeclaration(name: eventsExchange, type: "topic"),
        ] + delayTiers.map { ExchangeDeclaration(name: delayExchange($0), type: "fanout") }
    }

    /// The delay ladder's queues: each holds messages for its TTL, then
    /// dead-letters them to the tasks exchange under their own routing key
    /// (the task's queue), so no worker holds a waiting task.
    public var delayQueues: [(queue: QueueDeclaration, exchange: String)] {
        delayTiers.map { ms in
            (quorumQueue(delayQueue(ms), arguments: [
                "x-message-ttl": .int64(Int64(ms)),
                "x-dead-letter-exchange": .string(tasksExchange),
                "x-dead-letter-strategy": "at-least-once",
                "x-overflow": "reject-publish",
            ]), delayExchange(ms))
        }
    }

    /// A work queue (or one level of one): quorum, delivery limit,
    /// at-least-once dead-lettering to its queue's dead queue.
    public func workQueueDeclaration(_ queue: String) -> QueueDeclaration {
        quorumQueue(workQueue(queue), arguments: [
            "x-delivery-limit": .int64(Int64(deliveryLimit)),
            "x-dead-letter-exchange": .string(deadExchange),
            "x-dead-letter-routing-key": .string(Self.splitLevel(queue).queue),
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        ])
    }

    // MARK: Isolation

    /// Where a supervised worker sends tasks suspected of crashing their
    /// process, to run them one at a time in a process of their own
    /// (`sluice worker --processes`): one queue per task queue, bound to the
    /// isolation exchange with the queue's name. (Not the default exchange:
    /// permissions could not tell it from any other publish.)
    public func isolationQueue(_ queue: String) -> String { "\(prefix).isolate.\(queue)" }

    /// Direct exchange of the isolation queues; routing key = queue name.
    public var isolationExchange: String { "\(prefix).isolate" }

    /// Like a work queue: quorum, delivery limit, dead-lettering to the
    /// task's own dead queue.
    public func isolationQueueDeclaration(_ queue: String) -> QueueDeclaration {
        var declaration = workQueueDeclaration(queue)
        declaration.name = isolationQueue(queue)
        return declaration
    }

    // MARK: Coordinator

    /// The coordinator's event queue: the outcomes of every task (workflow
    /// steps among them), consumed by one coordinator at a time.
    public var coordinatorQueue: String { "\(prefix).coordinator" }

    /// Quorum, single active consumer: a standby coordinator's consumer waits
    /// until the active one's goes away, so one run's events are applied in order.
    public var coordinatorQueueDeclaration: QueueDeclaration {
        quorumQueue(coordinatorQueue, arguments: ["x-single-active-consumer": .bool(true)])
    }

    /// The coordinator's watch on dead letters: bound to the dead exchange
    /// with each queue its steps use, it gets a copy of every task dead-lettered
    /// there, including those RabbitMQ dead-letters itself at the delivery limit
    /// (no worker lives to report those).
    public var coordinatorDeadQueue: String { "\(prefix).coordinator.dead" }

    public var coordinatorDeadQueueDeclaration: QueueDeclaration { quorumQueue(coordinatorDeadQueue) }

    /// What the coordinator queue is bound to on the events exchange: the
    /// outcomes and progress of workflow steps only (queue names may contain dots, hence `#`).
    public var coordinatorBindings: [String] {
        Self.coordinatorEventKinds.map { "\(Self.stepEventWord).#.\($0.rawValue)" }
    }

    /// The step events a coordinator applies.
    static let coordinatorEventKinds: [TaskEvent.Kind] = [.succeeded, .retrying, .dead, .progress]

    // MARK: Partitions

    /// The first word after a step event key's bucket in a run message's
    /// key (`~wf.<bucket>.~run`): cannot be a queue name, so no step event has it.
    public static let runMessageWord = "~run"

    /// Whether `count` can be a store's partition count: from 1 to 64, dividing
    /// the 64 buckets evenly (each partition binds the same number of them).
    public static func isValidPartitionCount(_ count: Int) -> Bool {
        (1...stepEventBuckets).contains(count) && stepEventBuckets % count == 0
    }

    /// A run's partition among `count`: its bucket modulo `count`.
    public static func partition(runID: String, of count: Int) -> Int {
        stepEventBucket(runID: runID) % count
    }

    /// The buckets whose runs belong to partition `partition` of `count`.
    public static func buckets(ofPartition partition: Int, of count: Int) -> [Int] {
        stride(from: partition, to: stepEventBuckets, by: count).map { $0 }
    }

    /// The routing key of a message from one coordinator to the leader of a
    /// run's partition (a child's end for its parent, a cancel for a child, a
    /// command sent to another coordinator's API): `~wf.<bucket>.~run`.
    public func runMessageRoutingKey(runID: String) -> String {
        "\(Self.stepEventWord).\(Self.stepEventBucket(runID: runID)).\(Self.runMessageWord)"
    }

    /// A partition's event queue. One partition (SQLite, or a store created
    /// with one) keeps the single coordinator queue of earlier versions.
    public func coordinatorQueue(partition: Int, of count: Int) -> String {
        count == 1 ? coordinatorQueue : "\(prefix).coordinator.p\(partition)"
    }

    /// Quorum, single active consumer, like ``coordinatorQueueDeclaration``.
    public func coordinatorQueueDeclaration(partition: Int, of count: Int) -> QueueDeclaration {
        quorumQueue(coordinatorQueue(partition: partition, of: count), arguments: ["x-single-active-consumer": .bool(true)])
    }

    /// A partition queue's bindings on the events exchange: the step
    /// outcomes and run messages of its buckets.
    public func coordinatorBindings(partition: Int, of count: Int) -> [String] {
        guard count > 1 else { return coordinatorBindings + ["\(Self.stepEventWord).*.\(Self.runMessageWord)"] }
        return Self.buckets(ofPartition: partition, of: count).flatMap { bucket in
            Self.coordinatorEventKinds.map { "\(Self.stepEventWord).\(bucket).#.\($0.rawValue)" }
                + ["\(Self.stepEventWord).\(bucket).\(Self.runMessageWord)"]
        }
    }

    /// What versions before step event keys bound the coordinator queue to:
    /// every task's outcome. Bound again only while workers of such a version
    /// still run (`sluice coordinator --legacy-event-bindings`); unbound otherwise.
    public var legacyCoordinatorBindings: [String] {
        [TaskEvent.Kind.succeeded, .retrying, .dead].map { "#.\($0.rawValue)" }
    }

    /// A quorum queue with ``replicas`` initial members.
    func quorumQueue(_ name: String, arguments: FieldTable = [:]) -> QueueDeclaration {
        var arguments = arguments
        if let replicas { arguments[Self.replicasArgument] = .int64(Int64(replicas)) }
        return .quorum(name, arguments: arguments)
    }

    /// A dead queue: quorum, kept until replayed or purged.
    public func deadQueueDeclaration(_ queue: String) -> QueueDeclaration {
        quorumQueue(deadQueue(queue))
    }

    // MARK: Delays

    /// The tier to wait in for `milliseconds`: the longest tier not longer than
    /// the wait (a longer wait hops through the ladder: the worker that sees
    /// the task before its time sends it back), or the shortest tier.
    public func delayTier(for milliseconds: Int) -> Int {
        delayTiers.last(where: { $0 <= milliseconds }) ?? delayTiers[0]
    }
}
