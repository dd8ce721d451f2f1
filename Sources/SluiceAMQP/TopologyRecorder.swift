import SluiceWire

/// The exchanges, queues and bindings declared through a connection, in order,
/// so that a recovered connection can declare them again.
///
/// Passive declares are not recorded; a delete removes what it deletes
/// (a deleted queue takes its bindings with it, as on the broker).
struct TopologyRecorder: Sendable {
    enum Declaration: Sendable, Equatable {
        case exchange(ExchangeDeclaration)
        case queue(QueueDeclaration)
        case binding(Binding)
    }

    struct Binding: Sendable, Equatable {
        var queue: String
        var exchange: String
        var routingKey: String
        var arguments: FieldTable
    }

    private(set) var declarations: [Declaration] = []

    mutating func record(_ declaration: Declaration) {
        // A re-declaration replaces the earlier one in place, keeping the order
        // in which things first appeared (exchanges before their bindings).
        if let i = declarations.firstIndex(where: { Self.sameObject($0, declaration) }) {
            declarations[i] = declaration
        } else {
            declarations.append(declaration)
        }
    }

    mutating func unbind(_ binding: Binding) {
        declarations.removeAll { $0 == .binding(binding) }
    }

    mutating func deleteQueue(_ name: String) {
        declarations.removeAll {
            switch $0 {
            case .queue(let q): q.name == name
            case .binding(let b): b.queue == name
            case .exchange: false
            }
        }
    }

    mutating func deleteExchange(_ name: String) {
        declarations.removeAll {
            switch $0 {
            case .exchange(let e): e.name == name
            case .binding(let b): b.exchange == name
            case .queue: false
            }
        }
    }

    private static func sameObject(_ a: Declaration, _ b: Declaration) -> Bool {
        switch (a, b) {
        case (.exchange(let x), .exchange(let y)): x.name == y.name
        case (.queue(let x), .queue(let y)): x.name == y.name
        case (.binding(let x), .binding(let y)):
            x.queue == y.queue && x.exchange == y.exchange && x.routingKey == y.routingKey && x.arguments == y.arguments
        default: false
        }
    }
}
