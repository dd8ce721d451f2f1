import ArgumentParser
import Foundation
import SluiceAMQP
import SluiceCore
import SluiceWire

struct TopologyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topology",
        abstract: "Show the broker objects Sluice uses.",
        subcommands: [Export.self])

    struct Export: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a RabbitMQ definitions file (exchanges, queues, bindings) for these queues; no broker needed.",
            discussion: """
            Load it with `load_definitions` in rabbitmq.conf or `rabbitmqctl import_definitions`, so \
            that a cluster has every queue before the first worker starts (a worker declares the same \
            objects itself; the arguments must agree, including --delivery-limit).

            Example:
              sluice topology export --queue default --queue emails > deploy/rabbitmq/definitions.json
            """)

        @Option(name: .customLong("queue"), help: "A task queue (repeat for several).")
        var queues: [String] = ["default"]
        @Option(help: "The virtual host the objects belong to.")
        var vhost: String = "/"
        @Flag(help: "Include the coordinator's queues (workflows, tracked tasks).")
        var coordinator = false
        @Flag(help: "Include each queue's other priority levels (<queue>~high, <queue>~low), as workers started with --priorities declare them.")
        var priorities = false
        @Flag(help: "Include each queue's 16 ordered partitions and the ordered exchange, as producers of ordered tasks and workers started with --ordered declare them.")
        var ordered = false
        @Option(help: "Name prefix of Sluice's exchanges and queues.")
        var prefix: String = "sluice"
        @Option(help: "Deliveries after which the broker dead-letters a task (a queue argument; workers must agree).")
        var deliveryLimit: Int = 10

        func validate() throws {
            for q in queues where !Topology.isValidName(q) { throw ValidationError("--queue '\(q)' must be letters, digits, '-', '_' or '.'") }
            guard !vhost.isEmpty else { throw ValidationError("--vhost must not be empty") }
        }

        func run() throws {
            let topology: Topology
            do { topology = try Topology(prefix: prefix, deliveryLimit: deliveryLimit) } catch let e as SluiceError { throw ValidationError(e.message) }
            print(Self.definitions(topology, queues: queues, vhost: vhost, coordinator: coordinator, priorities: priorities, ordered: ordered))
        }

        static func definitions(_ t: Topology, queues: [String], vhost: String, coordinator: Bool, priorities: Bool = false,
                                ordered: Bool = false) -> String {
            var exchanges: [[String: Any]] = []
            // The revocation exchange and stream: every worker reads them.
            for e in t.exchanges + [t.revocationExchangeDeclaration] + (ordered ? [t.orderedExchangeDeclaration] : []) {
                exchanges.append(["name": e.name, "vhost": vhost, "type": e.type, "durable": e.durable, "auto_delete": e.autoDelete,
                                  "internal": e.internal, "arguments": json(e.arguments)])
            }
            var declared: [QueueDeclaration] = t.delayQueues.map(\.queue)
            var bindings: [[String: Any]] = []
            func bind(_ queue: String, _ exchange: String, _ key: String) {
                bindings.append(["source": exchange, "vhost": vhost, "destination": queue, "destination_type": "queue",
                                 "routing_key": key, "arguments": [String: Any]()])
            }
            for (q, exchange) in t.delayQueues { bind(q.name, exchange, "") }
            declared.append(t.revocationStreamDeclaration)
            bind(t.revocationStream, t.revocationExchange, "")
            for q in queues {
                for level in priorities ? TaskPriority.highestFirst : [.normal] {
                    let name = Topology.levelName(q, level)
                    declared.append(t.workQueueDeclaration(name))
                    bind(t.workQueue(name), t.tasksExchange, name)
                }
                declared.append(t.deadQueueDeclaration(q))
                bind(t.deadQueue(q), t.deadExchange, q)
                for index in 0..<(ordered ? Topology.orderPartitionCount : 0) {
                    declared.append(t.orderPartitionDeclaration(q, index))
                    bind(t.orderPartitionQueue(q, index), t.orderedExchange, t.orderRoutingKey(q, partition: index))
                }
            }
            if coordinator {
                declared.append(t.coordinatorQueueDeclaration)
                for key in t.coordinatorBindings { bind(t.coordinatorQueue, t.eventsExchange, key) }
                declared.append(t.coordinatorDeadQueueDeclaration)
                for q in queues { bind(t.coordinatorDeadQueue, t.deadExchange, q) }
                declared.append(t.trackingQueueDeclaration)
                for key in t.trackingBindings { bind(t.trackingQueue, t.eventsExchange, key) }
            }
            let queueList: [[String: Any]] = declared.map {
                ["name": $0.name, "vhost": vhost, "durable": $0.durable, "auto_delete": $0.autoDelete, "arguments": json($0.arguments)]
            }
            let document: [String: Any] = [
                "vhosts": [["name": vhost]],
                "exchanges": exchanges, "queues": queueList, "bindings": bindings,
            ]
            // Built from our own declarations (no NaN or other unencodable value), but never trap on it.
            guard let data = try? JSONSerialization.data(withJSONObject: document, options: [.prettyPrinted, .sortedKeys]) else { return "{}" }
            return String(decoding: data, as: UTF8.self)
        }

        static func json(_ table: FieldTable) -> [String: Any] {
            var out: [String: Any] = [:]
            for (k, v) in table { out[k] = json(v) }
            return out
        }

        static func json(_ value: FieldValue) -> Any {
            switch value {
            case .bool(let b): return b
            case .int8(let v): return Int(v)
            case .uint8(let v): return Int(v)
            case .int16(let v): return Int(v)
            case .uint16(let v): return Int(v)
            case .int32(let v): return Int(v)
            case .uint32(let v): return Int(v)
            case .int64(let v): return Int(v)
            case .float(let v): return Double(v)
            case .double(let v): return v
            case .string(let s): return s
            case .array(let a): return a.map(json)
            case .table(let t): return json(t)
            case .timestamp(let t): return Int(t)
            default: return value.stringValue ?? NSNull()
            }
        }
    }
}

