import Foundation
import ServiceLifecycle
import SluiceAMQP
import SluiceClient
import SluiceCore
import SluiceLocalBroker
import SluiceRabbitMQ
import SluiceTesting
import SluiceWire
import SluiceWorker
import Synchronization
import Testing

struct Greet: TaskDefinition {
    struct Arguments: Codable, Sendable { var name: String }
    struct Greeting: Codable, Sendable, Equatable { var text: String }
    static let name = "greet"
    static let queue = "greetings"
}

@Suite("Tasks end to end against the private broker")
struct TaskTests {
    @Test("a broker consumer closed from a cancelled task hands its unacknowledged deliveries back to the queue")
    func closeWhileCancelled() async throws {
        let h = try await TaskHarness.make()
        defer { Task { await h.broker.close() } }
        let q = "handback"
        try await h.broker.prepare(queues: [q])
        for i in 0..<3 { try await h.publishRaw(queue: q, body: Array("{\"i\":\(i)}".utf8), properties: BasicProperties(type: "t")) }
        let consumer = try await h.broker.consume(queue: h.topology.workQueue(q), prefetch: 10)
        let held = try await within(30, "3 deliveries") { () -> Int in
            var n = 0
            for try await _ in consumer {
                n += 1
                if n == 3 { break }
            }
            return n
        }
        #expect(held == 3)
        try await h.waitForReady(q, count: 0)
        // As when a coordinator's loops are cancelled on losing its lease.
        let closer = Task {
            while !Task.isCancelled { await Task.yield() }
            await consumer.close()
        }
        closer.cancel()
        await closer.value
        try await h.waitForReady(q, count: 3)
    }

    @Test("typed and raw JSON tasks run and publish succeeded with the handler's result")
    func succeeded() async throws {
        let h = try await TaskHarness.make()
        let events = try await h.recordEvents()
        var registry = HandlerRegistry()
        registry.register(Greet.self) { args, _ in Greet.Greeting(text: "hello \(args.name)") }
        registry.register("raw.sum") { context in
            let numbers = try JSONDecoder().decode([Int].self, from: Data(context.arguments))
            return Array("\(numbers.reduce(0, +))".utf8)
        }
        let worker = h.startWorker(queues: ["greetings"], registry: registry)
        let client = TaskClient(broker: h.broker)
        let typed = try await client.enqueue(Greet.self, .init(name: "Ada"))
        let raw = try await client.enqueue(name: "raw.sum", json: Array("[1,2,3]".utf8), options: .init(queue: "greetings"))
        let outcomes = try await events.waitForOutcomes([typed, raw])
        #expect(outcomes[typed]?.kind == .succeeded)
        #expect(outcomes[typed]?.result == #"{"text":"hello Ada"}"#)
        #expect(outcomes[raw]?.kind == .succeeded)
        #expect(outcomes[raw]?.result == "6")
        #expect(outcomes[typed]?.attempt == 1)
        try await worker.stop()
        await h.broker.close()
    }

    @Test("a plain task nobody listens to is acknowledged without its event; once a listener binds, events flow again")
    func unheardEvents() async throws {
        let h = try await TaskHarness.make()
        var registry = HandlerRegistry()
        registry.register("noop") { _ in nil }
        let worker = h.startWorker(queues: ["quiet"], registry: registry) { $0.unheardEventHold = .seconds(2) }
        let client = TaskClient(broker: h.broker)
        // No coordinator, no monitor: nobody binds the events exchange.
        let quiet = try await client.enqueue(batch: Array(repeating: TaskClient.Request(
            name: "noop", arguments: Array("{}".utf8), options: .init(queue: "quiet")), count: 200))
        #expect(quiet.allSatisfy { (try? $0.get()) != nil })
        try await within(60, "the worker to run the 200 tasks") {
            while worker.worker.stats.succeeded < 200 { try await Task.sleep(for: .milliseconds(20)) }
        }
        // The first events ask the broker and come back unroutable; later ones are
        // held back. How many go out first depends on the machine's speed (all
        // that finish before the first return is read, and one more round per
        // hold that passes), so only "some were held back" is certain.
        #expect(worker.worker.stats.eventsHeldBack > 0, "\(worker.worker.stats)")
        try await h.waitForReady("quiet", count: 0)

        // A listener binds: within the hold, events reach it again. One task
        // at a time until one is heard, then every later one is.
        let events = try await h.recordEvents()
        let first = try await within(30, "an event to be heard after the listener bound") {
            while true {
                let id = try await client.enqueue(name: "noop", json: Array("{}".utf8), options: .init(queue: "quiet"))
                if (try? await events.waitForOutcomes([id], seconds: 1)) != nil { return id }
            }
        }
        #expect(!first.isEmpty)
        let later = try await client.enqueue(batch: Array(repeating: TaskClient.Request(
            name: "noop", arguments: Array("{}".utf8), options: .init(queue: "quiet")), count: 50))
        let ids = Set(try later.map { try $0.get() })
        let outcomes = try await events.waitForOutcomes(ids)
        #expect(outcomes.values.allSatisfy { $0.kind == .succeeded })
        try await worker.stop()
        await h.broker.close()
    }

    @Test("a listener bound to a queue's outcome packs gets every plain task's outcome, several to a message; one bound to single events gets them alone too")
    func plainEventPacks() async throws {
        let h = try await TaskHarness.make()
        let wave = 40
        let firstWave = Locked(0)
        let released = OneShotSignal()
        var registry = HandlerRegistry()
        // The first wave finishes together, so that events become ready while a pack is in flight.
        registry.register("noop") { _ in
            if firstWave.withLock({ $0 += 1; return $0 }) >= wave { released.fire() }
            await released.wait()
            return nil
        }
        struct Heard: Sendable { var packs = 0; var inPacks: [String: Int] = [:]; var alone: Set<String> = []; var strays: [String] = [] }
        let heard = Locked(Heard())
        let packKey = h.topology.plainEventPackRoutingKey(queue: "packed", kind: .succeeded)
        let packs = try await h.broker.subscribeEvents(bindings: [packKey])
        let packReader = Task {
            for try await delivery in packs {
                let events = (try? EventPack.decode(delivery.body)) ?? []
                heard.withLock { heard in
                    heard.packs += 1
                    if delivery.routingKey != packKey || delivery.properties.type != "sluice.event.pack" || events.isEmpty {
                        heard.strays.append("\(delivery.routingKey) \(delivery.properties.type ?? "")")
                    }
                    for event in events { heard.inPacks[event.taskID, default: 0] += 1 }
                }
            }
        }
        let worker = h.startWorker(queues: ["packed"], registry: registry) {
            $0.concurrency = wave
            $0.unheardEventHold = .seconds(1)
        }
        let client = TaskClient(broker: h.broker)
        let requests = Array(repeating: TaskClient.Request(name: "noop", arguments: Array("{}".utf8), options: .init(queue: "packed")), count: 300)
        let ids = try await client.enqueue(batch: requests).map { try $0.get() }
        // Every outcome arrives once, in packs on the pack key (nobody is bound to `packed.succeeded`).
        try await within(60, "300 outcomes in packs") {
            while heard.withLock({ $0.inPacks.count }) < ids.count { try await Task.sleep(for: .milliseconds(10)) }
        }
        let first = heard.withLock { $0 }
        #expect(Set(first.inPacks.keys) == Set(ids))
        #expect(first.inPacks.values.allSatisfy { $0 == 1 }, "\(first.inPacks.filter { $0.value != 1 })")
        #expect(first.packs < ids.count, "\(first.packs) pack messages for \(ids.count) outcomes")
        #expect(first.strays.isEmpty, "\(first.strays)")

        // A listener of single events binds too: once the worker hears of it
        // (within the hold), each outcome goes both ways.
        let singles = try await h.broker.subscribeEvents(bindings: [h.topology.eventRoutingKey(queue: "packed", kind: .succeeded)])
        let singleReader = Task {
            for try await delivery in singles {
                if let event = try? TaskEvent.decode(delivery.body) { heard.withLock { _ = $0.alone.insert(event.taskID) } }
            }
        }
        try await within(30, "an outcome sent alone after the single listener bound") {
            while true {
                let id = try await client.enqueue(name: "noop", json: Array("{}".utf8), options: .init(queue: "packed"))
                let deadline = ContinuousClock.now + .seconds(2)
                while ContinuousClock.now < deadline {
                    if heard.withLock({ $0.alone.contains(id) }) { return }
                    try await Task.sleep(for: .milliseconds(10))
                }
            }
        }
        let last = try await client.enqueue(name: "noop", json: Array("{}".utf8), options: .init(queue: "packed"))
        try await within(30, "the last outcome alone and in a pack") {
            while !heard.withLock({ $0.alone.contains(last) && $0.inPacks[last] == 1 }) { try await Task.sleep(for: .milliseconds(10)) }
        }
        packReader.cancel()
        singleReader.cancel()
        try await packs.cancel()
        try await singles.cancel()
        try await worker.stop()
        await h.broker.close()
    }

    @Test("outcomes in packs at shutdown, on RabbitMQ: every task is settled when the worker stops, each outcome heard once, none back in the queue")
    func packedOutcomesAtShutdown() async throws {
        let h = try await TaskHarness.make(connectionName: "test packs at shutdown")
        let wave = 200
        let started = Locked(0)
        let allStarted = OneShotSignal(), released = OneShotSignal()
        var registry = HandlerRegistry()
        registry.register("warm-up") { _ in nil }
        registry.register("held") { _ in
            if started.withLock({ $0 += 1; return $0 }) == wave { allStarted.fire() }
            await released.wait()
            return nil
        }
        let heard = Locked<[String: Int]>([:])
        let packs = try await h.broker.subscribeEvents(bindings: [h.topology.plainEventPackRoutingKey(queue: "drained", kind: .succeeded)])
        let packReader = Task {
            for try await delivery in packs {
                for event in (try? EventPack.decode(delivery.body)) ?? [] { heard.withLock { $0[event.taskID, default: 0] += 1 } }
            }
        }
        let running = h.startWorker(queues: ["drained"], registry: registry) {
            $0.concurrency = wave
            $0.unheardEventHold = .seconds(600)
        }
        let client = TaskClient(broker: h.broker)
        // The first outcome goes alone too, and comes back unroutable: from
        // then on this queue's outcomes go in packs only.
        let first = try await client.enqueue(name: "warm-up", json: Array("{}".utf8), options: .init(queue: "drained"))
        try await within(30, "the warm-up task's outcome") {
            while heard.withLock({ $0[first] }) == nil || running.worker.stats.processed < 1 { try await Task.sleep(for: .milliseconds(10)) }
        }
        let ids = try await client.enqueue(batch: Array(repeating: TaskClient.Request(
            name: "held", arguments: Array("{}".utf8), options: .init(queue: "drained")), count: wave)).map { try $0.get() }
        try await within(60, "\(wave) tasks to start") { await allStarted.wait() }
        // Every handler returns at once after shutdown began: one pack is in
        // flight and the other outcomes wait for the next when the last task ends.
        await running.group.triggerGracefulShutdown()
        released.fire()
        try await within(60, "the worker to stop") { try await running.task.value }
        // Stopped means settled: a delivery acknowledged after this would be
        // lost with the connection, and its task would run again.
        #expect(running.worker.stats.processed == wave + 1)
        #expect(running.worker.stats.inFlight == 0)
        try await within(30, "every outcome in a pack") {
            while heard.withLock({ $0.count }) < wave + 1 { try await Task.sleep(for: .milliseconds(10)) }
        }
        #expect(Set(heard.withLock { $0.keys }) == Set(ids + [first]))
        #expect(heard.withLock { $0.values.allSatisfy { $0 == 1 } })
        packReader.cancel()
        // Every ack reaches the broker while the connection is still open
        // (acks are sent after stop returns, by the connection's thread).
        let workQueue = h.topology.workQueue("drained")
        try await within(60, "the broker to hold no unacknowledged task") {
            while true {
                let listing = try await SharedBroker.node.ctl("list_queues", "name", "messages_unacknowledged", "messages_ready", "-q")
                let row = listing.split(separator: "\n").first { $0.split(separator: "\t").first.map(String.init) == workQueue }
                if let row, row.split(separator: "\t").dropFirst().allSatisfy({ $0 == "0" }) { return }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        await h.broker.close()
    }

    @Test("fails twice then succeeds: three runs with growing delays; always failing ends dead with the details")
    func retries() async throws {
        let h = try await TaskHarness.make()
        let events = try await h.recordEvents()
        var registry = HandlerRegistry()
        registry.register("flaky") { context in
            if context.attempt < 3 { throw TaskFailure(kind: "flaky", "attempt \(context.attempt) fails") }
            return Array(#""ok""#.utf8)
        }
        registry.register("broken") { _ in throw TaskFailure(kind: "broken", "never works") }
        // Delays that are whole tiers of the ladder (1 s, then 1 s + 1 s), so the
        // broker's TTL expiry is the only imprecision.
        let policy = RetryPolicy(maxAttempts: 3, baseMilliseconds: 1000, factor: 2, capMilliseconds: 10_000, jitter: 0)
        let worker = h.startWorker(queues: ["retry"], registry: registry) {
            $0.retryPolicy = policy
            $0.publishStartedEvents = true  // off by default; this test times the runs by them
        }
        let client = TaskClient(broker: h.broker)
        let flaky = try await client.enqueue(name: "flaky", json: Array("{}".utf8), options: .init(queue: "retry"))
        let broken = try await client.enqueue(name: "broken", json: Array("{}".utf8), options: .init(queue: "retry"))
        let outcomes = try await events.waitForOutcomes([flaky, broken])

        #expect(outcomes[flaky]?.kind == .succeeded)
        #expect(outcomes[flaky]?.attempt == 3)
        // Outcome events carry the attempt's wait (due → start) and run time.
        #expect(outcomes[flaky]?.waitMilliseconds.map { $0 >= 0 && $0 < 60_000 } == true, "a plausible wait, not a clock mix-up")
        #expect(outcomes[flaky]?.durationMilliseconds != nil)
        // `started` events are not waited for by the worker: they may trail the outcome.
        let flakyID = flaky
        let all = try await events.waitUntil("three started events of the flaky task", seconds: 30) { events in
            events.filter { $0.taskID == flakyID && $0.kind == .started }.count >= 3
        }
        let retrying = all.filter { $0.taskID == flaky && $0.kind == .retrying }
        #expect(retrying.map(\.nextDelayMilliseconds) == [1000, 2000])
        let starts = all.filter { $0.taskID == flaky && $0.kind == .started }.map(\.at)
        #expect(starts.count == 3)
        if starts.count == 3 {
            let gap1 = starts[1].timeIntervalSince(starts[0]), gap2 = starts[2].timeIntervalSince(starts[1])
            // Each wait is at least the policy's delay. The bound above it only catches a
            // delay gone wrong by far: TTL expiry and a loaded 2-core CI machine add seconds
            // (once over 10 s in a full run: scaled like the suite's other waits).
            let slack = TestTime.scaled(10)
            #expect(gap1 >= 0.95 && gap1 < 1 + slack, "first retry after ~1 s, was \(gap1)")
            #expect(gap2 >= 1.95 && gap2 < 2 + slack, "second retry after ~2 s, was \(gap2)")
        }

        #expect(outcomes[broken]?.kind == .dead)
        #expect(outcomes[broken]?.deadReason == .maxAttempts)
        let dead = try await h.takeDead("retry")
        #expect(dead.count == 1)
        let headers = try #require(dead.first?.properties.headers)
        #expect(dead.first?.properties.messageId == broken)
        #expect(headers[WireHeader.deadReason]?.stringValue == "max_attempts")
        #expect(headers[WireHeader.errorMessage]?.stringValue == "never works")
        #expect(headers[WireHeader.errorType]?.stringValue == "broken")
        #expect(headers[WireHeader.attempt]?.intValue == 3)
        #expect(headers[WireHeader.deadBy]?.stringValue?.contains(":") == true)
        try await worker.stop()
        await h.broker.close()
    }

    @Test("bad input ends dead, each with its own reason, and the worker keeps going")
    func badInput() async throws {
        let h = try await TaskHarness.make()
        let events = try await h.recordEvents()
        let worker = h.startWorker(queues: ["bad"], registry: .echo()) { $0.maxBodyBytes = 1000 }
        let q = "bad"
        func props(_ id: String, name: String = "echo", headers: FieldTable = [:]) -> BasicProperties {
            BasicProperties(contentType: "application/json", headers: headers, deliveryMode: 2, messageId: id, type: name)
        }
        try await h.publishRaw(queue: q, body: Array("not json".utf8), properties: props("undecodable"))
        try await h.publishRaw(queue: q, body: Array("{}".utf8), properties: props("unknown", name: "no.such.task"))
        try await h.publishRaw(queue: q, body: Array(("[" + String(repeating: "1,", count: 1000) + "1]").utf8), properties: props("large"))
        try await h.publishRaw(queue: q, body: Array("{}".utf8), properties: props("expired", headers: [
            WireHeader.deadline: .int64(Date().addingTimeInterval(-60).epochMilliseconds)]))
        try await h.publishRaw(queue: q, body: Array("{}".utf8), properties: props("future", headers: [WireHeader.version: 99]))
        try await h.publishRaw(queue: q, body: Array("{}".utf8), properties: BasicProperties(deliveryMode: 2, messageId: "nameless"))
        let good = try await TaskClient(broker: h.broker).enqueue(name: "echo", json: Array("[42]".utf8), options: .init(queue: q))

        let outcomes = try await events.waitForOutcomes(["undecodable", "unknown", "large", "expired", "future", "nameless", good])
        #expect(outcomes["undecodable"]?.deadReason == .undecodable)
        #expect(outcomes["unknown"]?.deadReason == .unknownTask)
        #expect(outcomes["large"]?.deadReason == .tooLarge)
        #expect(outcomes["expired"]?.deadReason == .deadlineExpired)
        #expect(outcomes["future"]?.deadReason == .unsupportedVersion)
        #expect(outcomes["nameless"]?.deadReason == .invalidEnvelope)
        #expect(outcomes[good]?.kind == .succeeded)
        let dead = try await h.takeDead(q)
        let reasons = Dictionary(uniqueKeysWithValues: dead.map {
            ($0.properties.messageId ?? "", $0.properties.headers?[WireHeader.deadReason]?.stringValue ?? "")
        })
        #expect(reasons == ["undecodable": "undecodable", "unknown": "unknown_task", "large": "too_large",
                            "expired": "deadline_expired", "future": "unsupported_version", "nameless": "invalid_envelope"])
        #expect(dead.first { $0.properties.messageId == "undecodable" }?.body == Array("not json".utf8), "the original body is kept")
        try await worker.stop()
        await h.broker.close()
    }

    @Test("10,000 no-op tasks through one worker: every one succeeds, counted exactly")
    func tenThousand() async throws {
        let h = try await TaskHarness.make()
        let events = try await h.recordEvents()
        let worker = h.startWorker(queues: ["bulk"], registry: .echo()) {
            $0.concurrency = 100
            $0.publishStartedEvents = false
        }
        let client = TaskClient(broker: h.broker)
        var ids: Set<String> = []
        for _ in 0..<20 {
            let results = try await client.enqueue(batch: Array(repeating: TaskClient.Request(
                name: "echo", arguments: Array("{}".utf8), options: .init(queue: "bulk")), count: 500))
            for r in results { ids.insert(try r.get()) }
        }
        #expect(ids.count == 10_000)
        let outcomes = try await events.waitForOutcomes(ids, seconds: 120)
        #expect(outcomes.count == 10_000)
        #expect(outcomes.values.allSatisfy { $0.kind == .succeeded })
        let succeededEvents = await events.events.filter { $0.kind == .succeeded }
        #expect(succeededEvents.count == 10_000, "no task ran twice in a calm run")
        // Counted after the event is confirmed: read once the worker has stopped.
        try await worker.stop()
        #expect(worker.worker.stats.succeeded == 10_000)
        #expect(try await h.broker.queueState(h.topology.workQueue("bulk")).messageCount == 0)
        await h.broker.close()
    }

    @Test("a delayed task waits in the delay ladder, not in a worker")
    func delayed() async throws {
        let h = try await TaskHarness.make()
        let events = try await h.recordEvents()
        let worker = h.startWorker(queues: ["later"], registry: .echo())
        let start = Date()
        let id = try await TaskClient(broker: h.broker).enqueue(name: "echo", json: Array("{}".utf8),
                                                                 options: .init(queue: "later", delay: .milliseconds(1500)))
        let outcome = try await events.waitForOutcomes([id])[id]
        #expect(outcome?.kind == .succeeded)
        let waited = try #require(outcome?.at.timeIntervalSince(start))
        #expect(waited >= 1.45, "ran after \(waited) s")
        #expect(worker.worker.stats.processed <= 3, "at most a hop or two through the ladder")
        try await worker.stop()
        await h.broker.close()
    }
}

