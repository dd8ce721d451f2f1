import Foundation
import SluiceCore
import SluiceWire
import Testing

@Suite("Priority levels: names, routing, headers")
struct PriorityTests {
    static let topology = try! Topology(prefix: "unit")

    @Test("a level's name is its queue's with ~high or ~low; normal is the queue itself; unknown levels are refused")
    func names() throws {
        #expect(Topology.levelName("emails", .high) == "emails~high")
        #expect(Topology.levelName("emails", .normal) == "emails")
        #expect(Topology.levelName("emails", .low) == "emails~low")
        #expect(Topology.splitLevel("emails~high") == ("emails", .high))
        #expect(Topology.splitLevel("a.b-c") == ("a.b-c", .normal))
        #expect(Topology.splitLevel("emails~urgent").priority == nil)
        #expect(Topology.splitLevel("emails~normal").priority == nil, "normal is the plain name, never spelt out")
        try Topology.validateQueue("emails~low")
        for bad in ["emails~urgent", "emails~normal", "~high", "a~b~high", "emails~"] {
            #expect(throws: SluiceError.self, "\(bad)") { try Topology.validateQueue(bad) }
        }
        #expect(Self.topology.workQueue("emails~high") == "unit.q.emails~high")
        let declaration = Self.topology.workQueueDeclaration("emails~high")
        #expect(declaration.arguments["x-dead-letter-routing-key"] == .string("emails"), "every level dead-letters to the queue's one dead queue")
    }

    @Test("a task routes to its level, also through the delay ladder; the header says the level, normal writes none")
    func routing() throws {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        var task = TaskEnvelope(id: "t", name: "n", queue: "emails", arguments: Array("{}".utf8), priority: .high)
        var message = Self.topology.message(for: task, now: now)
        #expect(message.exchange == "unit.tasks")
        #expect(message.routingKey == "emails~high")
        #expect(message.properties.headers?[WireHeader.priority] == .string("high"))
        task.notBefore = now.addingTimeInterval(5)
        message = Self.topology.message(for: task, now: now)
        #expect(message.exchange.hasPrefix("unit.delay."))
        #expect(message.routingKey == "emails~high", "the ladder dead-letters under this key: a delayed task keeps its level")
        let normal = TaskEnvelope(id: "t", name: "n", queue: "emails", arguments: Array("{}".utf8))
        #expect(Self.topology.message(for: normal, now: now).routingKey == "emails")
        #expect(normal.encode().properties.headers?[WireHeader.priority] == nil)
    }

    @Test("decoding: the level consumed from wins over the header; an isolation queue's tasks take the header's")
    func decoding() throws {
        let task = TaskEnvelope(id: "t", name: "n", queue: "emails", arguments: Array("{}".utf8), priority: .low)
        let (properties, body) = task.encode()
        #expect(try TaskEnvelope.decode(properties: properties, body: body, queue: "emails", priority: .high).priority == .high)
        #expect(try TaskEnvelope.decode(properties: properties, body: body, queue: "emails", priority: nil).priority == .low)
        #expect(try TaskEnvelope.decode(properties: properties, body: body, queue: "emails").priority == .normal)
        let decoded = try TaskEnvelope.decode(properties: properties, body: body, queue: "emails", priority: nil)
        #expect(decoded.otherHeaders[WireHeader.priority] == nil, "a known header, not kept twice")
    }

    @Test("dead letters keep the level: in the worker's copy, else from the level queue RabbitMQ dead-lettered it from")
    func deadLetters() throws {
        let copy = Self.topology.deadMessage(queue: "emails", properties: BasicProperties(), body: [], reason: .maxAttempts,
                                             errorType: nil, errorMessage: nil, worker: "w", priority: .high)
        #expect(copy.routingKey == "emails")
        #expect(Self.topology.priority(ofDeadLetter: copy.properties.headers ?? [:]) == .high)
        // A producer's header that disagrees with the level the task was taken from does not survive.
        let claimed = BasicProperties(headers: [WireHeader.priority: "high"])
        let normalCopy = Self.topology.deadMessage(queue: "emails", properties: claimed, body: [], reason: .maxAttempts,
                                                   errorType: nil, errorMessage: nil, worker: "w", priority: .normal)
        #expect(normalCopy.properties.headers?[WireHeader.priority] == nil)
        #expect(throws: SluiceError.self) { try Topology.validateBaseQueue("emails~high") }
        try Topology.validateBaseQueue("emails")
        let byBroker: FieldTable = ["x-death": .array([.table(["queue": .string("unit.q.emails~low"), "reason": .string("delivery_limit")])])]
        #expect(Self.topology.priority(ofDeadLetter: byBroker) == .low)
        let plain: FieldTable = ["x-death": .array([.table(["queue": .string("unit.q.emails"), "reason": .string("delivery_limit")])])]
        #expect(Self.topology.priority(ofDeadLetter: plain) == .normal)
        #expect(Self.topology.priority(ofDeadLetter: [:]) == .normal)
        let isolated = Self.topology.isolationMessage(queue: "emails", properties: BasicProperties(), body: [], priority: .low)
        #expect(isolated.properties.headers?[WireHeader.priority] == .string("low"), "one isolation queue holds every level")
    }

    @Test("weights parse as HIGH,NORMAL,LOW and must each be 1 or more")
    func weights() throws {
        let w = try PriorityWeights(parsing: "10, 3,1")
        #expect(w.weight(of: .high) == 10 && w.weight(of: .normal) == 3 && w.weight(of: .low) == 1)
        #expect(PriorityWeights.standard == (try PriorityWeights(high: 6, normal: 3, low: 1)))
        for bad in ["6,3", "6,3,0", "a,b,c", "", "6,3,1,1", "-1,2,3", "9223372036854775807,1,1", "1001,1,1"] {
            #expect(throws: SluiceError.self, "\(bad)") { try PriorityWeights(parsing: bad) }
        }
    }
}
