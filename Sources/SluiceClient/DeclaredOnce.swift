import Synchronization

/// Declarations a client makes once per key (a queue's topology), however
/// many of its calls ask at the same moment: the first caller for a key
/// declares, the others wait for that declaration instead of opening a
/// channel each (a burst of first enqueues would otherwise exhaust the
/// connection's channels). A declaration that fails is tried again by the
/// next caller.
final class DeclaredOnce: Sendable {
    private struct State {
        var done: Set<String> = []
        var running: [String: Task<Void, any Error>] = [:]
    }

    private let state = Mutex(State())
    private let declare: @Sendable ([String]) async throws -> Void

    /// `declare(keys)` declares what those keys name.
    init(declare: @escaping @Sendable ([String]) async throws -> Void) {
        self.declare = declare
    }

    /// Returns once every key in `keys` is declared: by `declare(missing)`
    /// for those nobody declared or is declaring, by waiting for the
    /// declarations already running for the others.
    func ensure(_ keys: Set<String>) async throws {
        let (mine, missing, theirs) = state.withLock { state -> (Task<Void, any Error>?, [String], [Task<Void, any Error>]) in
            let open = keys.subtracting(state.done)
            guard !open.isEmpty else { return (nil, [], []) }
            var theirs: [Task<Void, any Error>] = []
            var missing: [String] = []
            for key in open {
                if let running = state.running[key] {
                    if !theirs.contains(running) { theirs.append(running) }
                } else {
                    missing.append(key)
                }
            }
            guard !missing.isEmpty else { return (nil, [], theirs) }
            missing.sort()
            // Unstructured: a caller cancelled while it waits does not cancel the
            // declaration the others wait for.
            let task = Task { [declare, missing] in try await declare(missing) }
            for key in missing { state.running[key] = task }
            return (task, missing, theirs)
        }
        if let mine {
            do {
                try await mine.value
                state.withLock { state in
                    for key in missing where state.running[key] == mine {
                        state.running[key] = nil
                        state.done.insert(key)
                    }
                }
            } catch {
                state.withLock { state in
                    for key in missing where state.running[key] == mine { state.running[key] = nil }
                }
                throw error
            }
        }
        for task in theirs { try await task.value }
    }
}
