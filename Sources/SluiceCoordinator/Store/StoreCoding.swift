import Foundation
import SluiceWorkflow

/// How stores turn values into text columns and back: JSON with sorted keys
/// and times in milliseconds, the same in SQLite and PostgreSQL.
enum StoreCoding {
    static func encode<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .millisecondsSince1970
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .millisecondsSince1970
        do {
            return try decoder.decode(type, from: Data(text.utf8))
        } catch {
            throw StoreError(.database, "a stored \(type) could not be read: \(error)")
        }
    }

    static func definition(_ text: String) throws -> WorkflowDefinition {
        do {
            return try JSONDecoder().decode(WorkflowDefinition.self, from: Data(text.utf8))
        } catch {
            throw StoreError(.database, "a stored workflow definition could not be read: \(error)")
        }
    }

    static func definitionText(_ d: WorkflowDefinition) throws -> String {
        String(decoding: try d.jsonBytes(), as: UTF8.self)
    }

    /// Changes with their state and outbox payloads encoded, before a
    /// transaction begins (so it stays short).
    typealias PreparedChanges = [(change: RunChange, state: String, payloads: [String])]

    static func prepare(_ changes: [RunChange]) throws -> PreparedChanges {
        try changes.map { ($0, String(decoding: $0.run.storedJSON, as: UTF8.self), try $0.publish.map { try encode($0) }) }
    }
}

/// Serialises async work: one holder at a time, first come first served.
/// (An actor alone does not: it interleaves calls at every `await`.)
actor AsyncGate {
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func acquire() async {
        if !busy {
            busy = true
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    func release() {
        if waiters.isEmpty { busy = false } else { waiters.removeFirst().resume() }
    }

    func run<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        await acquire()
        do {
            let result = try await body()
            release()
            return result
        } catch {
            release()
            throw error
        }
    }
}
