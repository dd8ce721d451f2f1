import Foundation
import SluiceClient
import SluiceCore
import SluiceTesting
import SluiceWorker
import Synchronization
import Testing

/// Two ordered workers, `a` and `b`, on one queue of a harness: the steps
/// each ran, their logs, and a stream of steps over some keys. What the
/// tests of shared partitions have in common (OrderIntegrationTests).
final class OrderedPair: Sendable {
    typealias Step = OrderIntegrationTests.Step

    let h: TaskHarness
    let queue: String
    let keys: [String]
    let logA = LogRecorder(), logB = LogRecorder()
    private let client: TaskClient
    /// How long a step takes (long enough for two of a key to overlap if order broke).
    private let stepTime: Duration
    private let ran = Mutex<[(worker: String, step: Step)]>([])
    private let running = Mutex<Set<String>>([])
    private let overlapCount = Mutex(0)
    /// Each key's next step number: every step below it was enqueued.
    private let next: Mutex<[String: Int]>

    init(_ h: TaskHarness, queue: String, keys: Int, stepTime: Duration = .zero) {
        self.h = h
        self.queue = queue
        self.keys = (0..<keys).map { "k\($0)" }
        self.client = TaskClient(broker: h.broker)
        self.stepTime = stepTime
        next = Mutex(Dictionary(uniqueKeysWithValues: self.keys.map { ($0, 0) }))
    }

    /// Starts worker `name` ("a" or "b"), ordered, its log kept for failure messages.
    func start(_ name: String) -> RunningWorker {
        var registry = HandlerRegistry()
        registry.register("step") { [self] context in
            let step = try JSONDecoder().decode(Step.self, from: Data(context.arguments))
            if !running.withLock({ $0.insert(step.k).inserted }) { overlapCount.withLock { $0 += 1 } }
            if stepTime > .zero { try? await Task.sleep(for: stepTime) }
            ran.withLock { $0.append((name, step)) }
            running.withLock { _ = $0.remove(step.k) }
            return nil
        }
        return h.startWorker(queues: [queue], registry: registry, log: name == "a" ? logA : logB) {
            $0.workerID = "\(self.h.topology.prefix)-\(name)"
            $0.ordered = true
        }
    }

    /// Enqueues the next step of `key`.
    func enqueueNext(_ key: String) async throws {
        let n = next.withLock { next in
            defer { next[key]! += 1 }
            return next[key]!
        }
        _ = try await client.enqueue(name: "step", json: OrderIntegrationTests.json(Step(k: key, n: n)),
                                     options: .init(queue: queue, orderKey: key))
    }

    /// Enqueues one step and waits until a worker ran it.
    func firstStep() async throws {
        try await enqueueNext(keys[0])
        try await within(60, "the first worker's first task") {
            while self.ran.withLock({ $0.isEmpty }) { try await Task.sleep(for: .milliseconds(20)) }
        }
    }

    /// Whether worker `name` ran a step.
    func ranSome(_ name: String) -> Bool { ran.withLock { $0.contains { $0.worker == name } } }

    /// A step of every key every `pace` until worker b has run one (at most
    /// 120 s, scaled; the failure message holds both workers' logs).
    func streamUntilBRuns(pace: Duration) async throws {
        let deadline = TestTime.deadline(120)
        while !ranSome("b") {
            try #require(ContinuousClock.now < deadline, """
                the second worker ran no ordered task within 120 s (scaled)
                worker a's log:
                \(logA.text)
                worker b's log:
                \(logB.text)
                """)
            for key in keys { try await enqueueNext(key) }
            try await Task.sleep(for: pace)  // a steady stream, not a synchronisation
        }
    }

    /// Waits until every enqueued step ran (each by identity: a step run
    /// twice does not stand in for one that never ran).
    func everyStepRan() async throws {
        let total = next.withLock { $0.values.reduce(0, +) }
        try await within(120, "every task to run") {
            while Set(self.ran.withLock { $0.map(\.step) }).count < total { try await Task.sleep(for: .milliseconds(20)) }
        }
    }

    /// Each key's steps ran in enqueue order, and never two of a key at once.
    func expectOrder() {
        let order = OrderIntegrationTests.collapsed(ran.withLock { $0.map(\.step) })
        let next = next.withLock { $0 }
        for key in keys { #expect(order[key] == Array(0..<next[key]!), "key \(key)") }
        #expect(overlapCount.withLock { $0 } == 0)
    }
}
