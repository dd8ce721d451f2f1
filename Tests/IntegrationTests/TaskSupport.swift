import Foundation
import Logging
import ServiceLifecycle
import SluiceAMQP
import SluiceCore
import SluiceRabbitMQ
import SluiceTesting
import SluiceWire
import SluiceWorker
import Synchronization
import Testing

/// A task-layer test setup on its own prefix, so tests never see each other's tasks.
struct TaskHarness {
    let topology: Topology
    let broker: RabbitMQBroker
    let url: String

    /// `prefix`: an earlier harness's, to see its tasks again (after a broker restart).
    /// `connectionName`: to find this harness's connections at the broker.
    /// `channelMax`: the channels the broker's connection may open (the URL's own if nil).
    static func make(deliveryLimit: Int = 10, url: String? = nil, prefix: String? = nil,
                     connectionName: String = "test harness", publishingConnections: Int = 0, channelMax: Int? = nil) async throws -> TaskHarness {
        let resolved: String
        if let url { resolved = url } else { resolved = try await SharedBroker.url() }
        let url = resolved
        let topology = try Topology(prefix: prefix ?? "it\(UInt32.random(in: 0...UInt32.max))", deliveryLimit: deliveryLimit)
        var amqpURL = try AMQPURL(url)
        if let channelMax { amqpURL.channelMax = channelMax }
        let broker = try await RabbitMQBroker.connect(url: amqpURL, topology: topology, connectionName: connectionName,
                                                      publishingConnections: publishingConnections)
        return TaskHarness(topology: topology, broker: broker, url: url)
    }

    /// Publishes a task to `queue` and takes its delivery, unsettled (prefetch 1:
    /// the consumer gets nothing else until it is settled or redelivered).
    func deliveryInHand(queue: String) async throws -> (task: TaskEnvelope, consumer: BrokerConsumer, delivery: BrokerDelivery) {
        try await broker.prepare(queues: [queue])
        let task = TaskEnvelope(name: "t", queue: queue, arguments: Array("{}".utf8))
        let (properties, body) = task.encode()
        try await broker.publish(OutboundMessage(exchange: topology.tasksExchange, routingKey: queue, body: body, properties: properties))
        let consumer = try await broker.consume(queue: topology.workQueue(queue), prefetch: 1)
        let first = try await within(60, "the delivery") { () -> BrokerDelivery? in
            for try await delivery in consumer { return delivery }
            return nil
        }
        return (task, consumer, try #require(first))
    }

    /// Starts recording every task event of this prefix.
    func recordEvents() async throws -> EventRecorder {
        let channel = try await broker.connection.openChannel()
        try await channel.exchangeDeclare(ExchangeDeclaration(name: topology.eventsExchange, type: "topic"))
        let queue = "\(topology.prefix).test-events"
        try await channel.queueDeclare(QueueDeclaration(name: queue, durable: false, exclusive: true, autoDelete: true))
        try await channel.queueBind(queue: queue, exchange: topology.eventsExchange, routingKey: "#")
        let consumer = try await channel.consume(queue: queue, noAck: true)
        let recorder = EventRecorder()
        Task {
            for try await delivery in consumer {
                // A pack of step outcomes counts as its events; packs of plain
                // tasks' outcomes repeat what this `#` binding receives alone.
                if Topology.isPlainEventPackKey(delivery.routingKey) { continue }
                if Topology.isEventPackKey(delivery.routingKey) {
                    for event in (try? EventPack.decode(delivery.body)) ?? [] { await recorder.append(event) }
                } else if let event = try? TaskEvent.decode(delivery.body) { await recorder.append(event) }
            }
        }
        return recorder
    }

    /// Runs a worker in this process until `stop()`.
    /// `started`: fired once the worker has subscribed to all its queues.
    /// `log`: keeps the worker's info lines too, for a failure message.
    func startWorker(queues: [String], registry: HandlerRegistry, started: OneShotSignal? = nil, log: LogRecorder? = nil,
                     configure: (inout Worker.Configuration) -> Void = { _ in }) -> RunningWorker {
        var configuration = Worker.Configuration(queues: queues, concurrency: 10, heartbeatInterval: .seconds(1))
        configure(&configuration)
        var logger = Logger(label: "test.worker")
        logger.logLevel = .warning
        if started != nil || log != nil {
            logger = Logger(label: "test.worker") { _ in WorkerTestLogHandler(started: started, recorder: log) }
        }
        let worker = Worker(broker: broker, registry: registry, configuration: configuration, logger: logger)
        let group = ServiceGroup(configuration: .init(services: [worker], logger: logger))
        let task = Task { try await group.run() }
        return RunningWorker(worker: worker, group: group, task: task)
    }

    /// Takes every message now in a queue's dead queue.
    func takeDead(_ queue: String) async throws -> [AMQPDelivery] {
        let channel = try await broker.connection.openChannel()
        var out: [AMQPDelivery] = []
        while let d = try await channel.get(queue: topology.deadQueue(queue), noAck: true) { out.append(d) }
        try await channel.close()
        return out
    }

    /// Waits until a work queue holds `count` ready messages. Messages a closed
    /// consumer held return to a quorum queue asynchronously (through Raft), so a
    /// count read right after the worker exits may still be low.
    func waitForReady(_ queue: String, count: Int, seconds: Double = 10) async throws {
        let broker = self.broker
        let name = topology.workQueue(queue)
        var last = -1
        let deadline = TestTime.deadline(seconds)
        while ContinuousClock.now < deadline {
            last = Int(try await broker.queueState(name).messageCount)
            if last == count { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TimedOut(what: "\(name) to hold \(count) ready messages (it holds \(last))", seconds: TestTime.scaled(seconds))
    }

    /// The ready count of `queue`'s work queue once it counts no consumer. A
    /// quorum queue gives a gone consumer's unacknowledged deliveries back in
    /// the same step that removes the consumer, so this counts any delivery a
    /// stopped worker took and never acked (a plain read right after the stop
    /// may not yet).
    func readyOnceUnconsumed(_ queue: String, seconds: Double = 60) async throws -> UInt32 {
        let broker = self.broker
        let name = topology.workQueue(queue)
        return try await within(seconds, "\(name) to count no consumer") { () -> UInt32 in
            while true {
                let state = try await broker.queueState(name)
                if state.consumerCount == 0 { return state.messageCount }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }

    /// Publishes a raw message to the tasks exchange (as a foreign client would).
    func publishRaw(queue: String, body: [UInt8], properties: BasicProperties) async throws {
        try await broker.prepare(queues: [queue])
        try await broker.publish(OutboundMessage(exchange: topology.tasksExchange, routingKey: queue, body: body,
                                                 properties: properties, mandatory: true))
    }
}

struct RunningWorker {
    let worker: Worker
    let group: ServiceGroup
    let task: Task<Void, any Error>

    func stop() async throws {
        await group.triggerGracefulShutdown()
        try await within(60, "the worker to stop") { try await task.value }
    }
}

/// Task events as they arrive; tests await conditions on them without polling.
actor EventRecorder {
    private(set) var events: [TaskEvent] = []
    /// The final event (succeeded or dead) of each task so far.
    private(set) var outcomes: [String: TaskEvent] = [:]
    private var waiters: [(id: Int, ready: ([TaskEvent]) -> Bool, continuation: CheckedContinuation<Void, Never>)] = []
    private var outcomeWaiters: [(id: Int, remaining: Set<String>, continuation: CheckedContinuation<Void, Never>)] = []
    private var nextID = 0

    func append(_ event: TaskEvent) {
        events.append(event)
        if event.kind == .succeeded || event.kind == .dead {
            outcomes[event.taskID] = event
            for i in outcomeWaiters.indices { outcomeWaiters[i].remaining.remove(event.taskID) }
            let done = outcomeWaiters.filter { $0.remaining.isEmpty }
            outcomeWaiters.removeAll { $0.remaining.isEmpty }
            for w in done { w.continuation.resume() }
        }
        if !waiters.isEmpty {
            let ready = waiters.filter { $0.ready(events) }
            waiters.removeAll { w in ready.contains { $0.id == w.id } }
            for w in ready { w.continuation.resume() }
        }
    }

    private func wait(_ ready: @escaping ([TaskEvent]) -> Bool) async {
        if ready(events) { return }
        let id = nextID
        nextID += 1
        await withTaskCancellationHandler {
            await withCheckedContinuation { waiters.append((id, ready, $0)) }
        } onCancel: {
            Task { await self.cancelWaiter(id) }
        }
    }

    private func waitOutcomes(_ ids: Set<String>) async {
        let remaining = ids.subtracting(outcomes.keys)
        if remaining.isEmpty { return }
        let id = nextID
        nextID += 1
        await withTaskCancellationHandler {
            await withCheckedContinuation { outcomeWaiters.append((id, remaining, $0)) }
        } onCancel: {
            Task { await self.cancelWaiter(id) }
        }
    }

    /// A bounded wait ran out: let its waiter go so the wait can end.
    private func cancelWaiter(_ id: Int) {
        if let i = waiters.firstIndex(where: { $0.id == id }) { waiters.remove(at: i).continuation.resume() }
        if let i = outcomeWaiters.firstIndex(where: { $0.id == id }) { outcomeWaiters.remove(at: i).continuation.resume() }
    }

    /// Waits (bounded) until `ready` holds for the events so far; returns them.
    func waitUntil(_ what: String, seconds: Double = 60, _ ready: @escaping @Sendable ([TaskEvent]) -> Bool) async throws -> [TaskEvent] {
        try await within(seconds, what) { await self.wait(ready) }
        return events
    }

    /// Waits for a final event (succeeded or dead) of each of these task ids.
    func waitForOutcomes(_ ids: Set<String>, seconds: Double = 60) async throws -> [String: TaskEvent] {
        try await within(seconds, "outcomes of \(ids.count) tasks") { await self.waitOutcomes(ids) }
        return outcomes.filter { ids.contains($0.key) }
    }
}

extension HandlerRegistry {
    static func echo() -> HandlerRegistry {
        var r = HandlerRegistry()
        r.register("echo") { $0.arguments }
        return r
    }
}
