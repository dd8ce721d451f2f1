import Foundation
import SluiceClient
import SluiceCore
import SluiceWire
import Testing

/// The producer on the in-memory broker: what it sends, and what it refuses
/// before anything is sent.
@Suite("TaskClient (no server)")
struct TaskClientTests {
    static func client() throws -> (TaskClient, InMemoryBroker) {
        let broker = InMemoryBroker(topology: try Topology(prefix: "unit"))
        return (TaskClient(broker: broker), broker)
    }

    @Test("an enqueued task reaches its queue with its id, name, options and arguments")
    func enqueue() async throws {
        let (client, broker) = try Self.client()
        let id = try await client.enqueue(name: "emails.send", json: Array(#"{"to":"a@b"}"#.utf8),
                                          options: EnqueueOptions(queue: "emails", maxAttempts: 3, idempotencyKey: "k-1"))
        let messages = await broker.readyMessages(broker.topology.workQueue("emails"))
        #expect(messages.count == 1)
        let task = try TaskEnvelope.decode(properties: messages[0].properties, body: messages[0].body, queue: "emails")
        #expect(task.id == id)
        #expect(task.name == "emails.send")
        #expect(task.maxAttempts == 3)
        #expect(task.idempotencyKey == "k-1")
        #expect(task.arguments == Array(#"{"to":"a@b"}"#.utf8))
        #expect(task.enqueuedAt != nil)
    }

    @Test("a batch returns one result per request, in order; bad requests fail alone and are not sent")
    func batch() async throws {
        let (client, broker) = try Self.client()
        let long = String(repeating: "n", count: 256)
        let results = try await client.enqueue(batch: [
            .init(name: "ok", arguments: Array("{}".utf8), options: EnqueueOptions(queue: "b")),
            .init(name: "bad.json", arguments: Array("{".utf8), options: EnqueueOptions(queue: "b")),
            .init(name: long, arguments: Array("{}".utf8), options: EnqueueOptions(queue: "b")),
            .init(name: "bad.attempts", arguments: Array("{}".utf8), options: EnqueueOptions(queue: "b", maxAttempts: 0)),
            .init(name: "bad.queue", arguments: Array("{}".utf8), options: EnqueueOptions(queue: "no spaces")),
            .init(name: "ok.too", arguments: Array("[]".utf8), options: EnqueueOptions(queue: "b")),
        ])
        #expect(results.count == 6)
        #expect((try? results[0].get()) != nil)
        #expect((try? results[5].get()) != nil)
        for (index, result) in results.enumerated() where ![0, 5].contains(index) {
            guard case .failure(let error) = result else {
                Issue.record("request \(index) was accepted")
                continue
            }
            #expect(error.code == .invalidArgument, "request \(index): \(error)")
        }
        guard case .failure(let tooLong) = results[2] else { return }
        #expect(tooLong.message.contains("255"), "the limit is named: \(tooLong.message)")
        #expect(await broker.readyMessages(broker.topology.workQueue("b")).count == 2, "only the valid tasks were sent")
    }

    @Test("a delayed task goes to a delay tier, not its work queue; an explicit id is kept")
    func delayAndID() async throws {
        let (client, broker) = try Self.client()
        try await broker.prepare(queues: ["d"])
        let id = try await client.enqueue(name: "later", json: Array("{}".utf8),
                                          options: EnqueueOptions(queue: "d", delay: .seconds(600), id: "my-id"))
        #expect(id == "my-id")
        #expect(await broker.readyMessages(broker.topology.workQueue("d")).isEmpty, "not due for ten minutes")
        let now = try await client.enqueue(name: "now", json: Array("{}".utf8), options: EnqueueOptions(queue: "d"))
        let ready = await broker.readyMessages(broker.topology.workQueue("d"))
        #expect(ready.map(\.properties.messageId) == [now])
    }
}
