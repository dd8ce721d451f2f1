import Foundation
import SluiceClient
import SluiceCore
import SluiceWire
import Testing

/// Unique keys on the in-memory broker, which keeps a lock queue's rules
/// (one message, a second refused while the first lives).
@Suite("Unique tasks (no server)")
struct UniqueTaskTests {
    static func client() throws -> (TaskClient, InMemoryBroker) {
        let broker = InMemoryBroker(topology: try Topology(prefix: "uq"))
        return (TaskClient(broker: broker), broker)
    }

    @Test("a second enqueue with the key returns the first task's id and publishes nothing; another key enqueues")
    func duplicate() async throws {
        let (client, broker) = try Self.client()
        let key = UniqueKey("report:42", for: .seconds(60))
        let first = try await client.enqueueUnique(name: "report", json: Array("{}".utf8), options: EnqueueOptions(queue: "r", unique: key))
        let second = try await client.enqueueUnique(name: "report", json: Array(#"{"again":1}"#.utf8), options: EnqueueOptions(queue: "r", unique: key))
        #expect(first.enqueued)
        #expect(!second.enqueued)
        #expect(second.id == first.id)
        // Through the plain API too: the holder's id.
        let third = try await client.enqueue(name: "report", json: Array("{}".utf8), options: EnqueueOptions(queue: "r", unique: key))
        #expect(third == first.id)
        let other = try await client.enqueueUnique(name: "report", json: Array("{}".utf8),
                                                   options: EnqueueOptions(queue: "r", unique: UniqueKey("report:43", for: .seconds(60))))
        #expect(other.enqueued && other.id != first.id)
        let ready = await broker.readyMessages(broker.topology.workQueue("r"))
        #expect(ready.count == 2, "one task per key")
    }

    @Test("the task carries its lock's queue and expiry for the worker to give it back; a window-long key carries none")
    func ticket() async throws {
        let (client, broker) = try Self.client()
        let before = Date()
        let key = UniqueKey("k", for: .seconds(30))
        _ = try await client.enqueueUnique(name: "t", json: Array("{}".utf8), options: EnqueueOptions(queue: "r", unique: key))
        _ = try await client.enqueueUnique(name: "t", json: Array("{}".utf8),
                                           options: EnqueueOptions(queue: "r", unique: UniqueKey("w", for: .seconds(30), policy: .forWindow)))
        let ready = await broker.readyMessages(broker.topology.workQueue("r"))
        let tasks = try ready.map { try TaskEnvelope.decode(properties: $0.properties, body: $0.body, queue: "r") }
        let header = tasks[0].otherHeaders[WireHeader.uniqueLock]?.stringValue
        let ticket = try #require(header.flatMap(UniqueLockTicket.init(headerValue:)))
        #expect(ticket.queue == broker.topology.uniqueLockQueue(key))
        #expect(broker.topology.isUniqueLockQueue(ticket.queue))
        #expect(ticket.expiresAt >= before.addingTimeInterval(29) && ticket.expiresAt <= Date().addingTimeInterval(30.001))
        #expect(tasks[1].otherHeaders[WireHeader.uniqueLock] == nil)
    }

    @Test("once the lock is given back, the key enqueues again")
    func released() async throws {
        let (client, broker) = try Self.client()
        let key = UniqueKey("k", for: .seconds(60))
        let first = try await client.enqueueUnique(name: "t", json: Array("{}".utf8), options: EnqueueOptions(queue: "r", unique: key))
        try await broker.releaseUniqueLock(queue: broker.topology.uniqueLockQueue(key), taskID: first.id)
        let second = try await client.enqueueUnique(name: "t", json: Array("{}".utf8), options: EnqueueOptions(queue: "r", unique: key))
        #expect(second.enqueued && second.id != first.id)
    }

    @Test("only the holder gives a lock back; the same id enqueued again finds itself holding it; a unique task cannot be waited for")
    func ownership() async throws {
        let (client, broker) = try Self.client()
        let key = UniqueKey("k", for: .seconds(60))
        let first = try await client.enqueueUnique(name: "t", json: Array("{}".utf8), options: EnqueueOptions(queue: "r", unique: key))
        try await broker.releaseUniqueLock(queue: broker.topology.uniqueLockQueue(key), taskID: "someone-else")
        let still = try await client.enqueueUnique(name: "t", json: Array("{}".utf8), options: EnqueueOptions(queue: "r", unique: key))
        #expect(!still.enqueued && still.id == first.id, "another task's release changes nothing")
        let again = try await client.enqueueUnique(name: "t", json: Array("{}".utf8), options: EnqueueOptions(queue: "r", id: first.id, unique: key))
        #expect(again == UniqueEnqueue(id: first.id, enqueued: true), "a producer retrying with its id")
        let error = await #expect(throws: SluiceError.self) {
            _ = try await client.enqueueForResult(name: "t", json: Array("{}".utf8), options: EnqueueOptions(queue: "r", unique: key))
        }
        #expect(error?.code == .invalidArgument)
    }

    @Test("a task that cannot be sent takes no lock; bad keys and windows are refused before anything is sent")
    func refused() async throws {
        let (client, broker) = try Self.client()
        let key = UniqueKey("k", for: .seconds(60))
        await #expect(throws: SluiceError.self) {
            _ = try await client.enqueueUnique(name: "t", json: Array("{".utf8), options: EnqueueOptions(queue: "r", unique: key))
        }
        let ok = try await client.enqueueUnique(name: "t", json: Array("{}".utf8), options: EnqueueOptions(queue: "r", unique: key))
        #expect(ok.enqueued, "the bad task did not hold the key")
        for bad in [UniqueKey("", for: .seconds(60)), UniqueKey(String(repeating: "k", count: 1001), for: .seconds(60)),
                    UniqueKey("k", for: .milliseconds(500)), UniqueKey("k", for: .seconds(25 * 86400))] {
            let error = await #expect(throws: SluiceError.self) {
                _ = try await client.enqueueUnique(name: "t", json: Array("{}".utf8), options: EnqueueOptions(queue: "r", unique: bad))
            }
            #expect(error?.code == .invalidArgument)
        }
        #expect(await broker.readyMessages(broker.topology.workQueue("r")).count == 1)
    }

    @Test("lock queue names: the window in the name, the key hashed; only this prefix's shape passes as one")
    func names() throws {
        let t = try Topology(prefix: "uq")
        let name = t.uniqueLockQueue(UniqueKey("a key with spaces and ünïcode", for: .seconds(90)))
        #expect(name.hasPrefix("uq.unique.90000."))
        #expect(name.utf8.count == "uq.unique.90000.".utf8.count + 40)
        #expect(t.isUniqueLockQueue(name))
        #expect(t.uniqueLockQueue(UniqueKey("a", for: .seconds(90))) != t.uniqueLockQueue(UniqueKey("b", for: .seconds(90))))
        for other in ["uq.q.default", "uq.unique.90000.xyz", name + ".holder", "other.unique.90000." + String(repeating: "a", count: 40),
                      "uq.unique..\(String(repeating: "a", count: 40))"] {
            #expect(!t.isUniqueLockQueue(other), "\(other)")
        }
        #expect(UniqueLockTicket(headerValue: "\(name) 1764806400000") == UniqueLockTicket(queue: name, expiresAt: Date(epochMilliseconds: 1764806400000)))
        #expect(UniqueLockTicket(headerValue: "garbage") == nil)
    }
}
