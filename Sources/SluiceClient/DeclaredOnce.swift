import Synchronization

/// Declarations a client makes once per key (a queue's topology), however
/// many of its calls ask at the same moment: the first caller for a key
/// starts the declaration, the others wait for it instead of opening a
/// channel each (a burst of first enqueues would otherwise exhaust the
/// connection's channels). A declaration that fails is tried again by the
/// next caller.
final class DeclaredOnce: Sendable {
    private struct Attempt {
        var number: UInt64
        var task: Task<Void, any Error>
    }

    private struct State {
        var done: Set<String> = []
        var running: [String: Attempt] = [:]
        var attempts: UInt64 = 0
    }

    private let state = Mutex(State())
    private let declare: @Sendable ([String]) async throws -> Void

    /// `declare(keys)` declares what those keys name.
    init(declare: @escaping @Sendable ([String]) async throws -> Void) {
        self.declare = declare
    }

    /// Returns once every key in `keys` is declared: starts a declaration
    /// of those nobody declared or is declaring, and waits for it and for
    /// those already running. A caller cancelled while it waits stops
    /// waiting; the declaration goes on for the others.
    func ensure(_ keys: Set<String>) async throws {
        let waits = state.withLock { state -> [Task<Void, any Error>] in
            guard !keys.isSubset(of: state.done) else { return [] }
            var waits: [Task<Void, any Error>] = []
            var waited: Set<UInt64> = []
            var missing: [String] = []
            for key in keys where !state.done.contains(key) {
                if let attempt = state.running[key] {
                    if waited.insert(attempt.number).inserted { waits.append(attempt.task) }
                } else {
                    missing.append(key)
                }
            }
            guard !missing.isEmpty else { return waits }
            missing.sort()
            state.attempts += 1
            let number = state.attempts
            // The attempt records its own outcome (under this lock, so not
            // before it is registered below): whether or not anyone still waits.
            let task = Task { [declare, missing] in
                do {
                    try await declare(missing)
                    self.finish(missing, attempt: number, declared: true)
                } catch {
                    self.finish(missing, attempt: number, declared: false)
                    throw error
                }
            }
            for key in missing { state.running[key] = Attempt(number: number, task: task) }
            waits.append(task)
            return waits
        }
        for task in waits { try await value(of: task, until: nil, what: "the queue's declaration") }
    }

    private func finish(_ keys: [String], attempt number: UInt64, declared: Bool) {
        state.withLock { state in
            for key in keys where state.running[key]?.number == number {
                state.running[key] = nil
                if declared { state.done.insert(key) }
            }
        }
    }
}
