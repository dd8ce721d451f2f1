import Synchronization

/// A store lookup that many callers ask at once, made once per batch of
/// them: per key, one lookup runs at a time, and the callers that ask while
/// it runs share the next one. A caller's lookup always begins after it
/// asked, so it sees every write that finished before it asked, as a
/// lookup of its own would.
final class CoalescedLookup<Value: Sendable>: Sendable {
    typealias Lookup = @Sendable (String) async throws -> Value

    private struct Lane {
        var waiting: [CheckedContinuation<Value, any Error>] = []
        var running = false
    }

    private let lookup: Lookup
    private let lanes = Mutex<[String: Lane]>([:])

    init(_ lookup: @escaping Lookup) {
        self.lookup = lookup
    }

    /// The value for `key`, from a lookup that begins after this call.
    func value(for key: String) async throws -> Value {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Value, any Error>) in
            let first = lanes.withLock { lanes in
                lanes[key, default: Lane()].waiting.append(continuation)
                guard !lanes[key]!.running else { return false }
                lanes[key]!.running = true
                return true
            }
            // In a task of its own: one caller's cancellation must not fail the others.
            if first { Task { await self.run(key) } }
        }
    }

    /// Callers of `key` waiting for a lookup that has not begun.
    func waitingCount(for key: String) -> Int {
        lanes.withLock { $0[key]?.waiting.count ?? 0 }
    }

    /// Looks `key` up for those waiting, again while more wait.
    private func run(_ key: String) async {
        while true {
            let batch: [CheckedContinuation<Value, any Error>]? = lanes.withLock { lanes in
                guard let waiting = lanes[key]?.waiting, !waiting.isEmpty else {
                    lanes[key] = nil
                    return nil
                }
                lanes[key]!.waiting = []
                return waiting
            }
            guard let batch else { return }
            do {
                let value = try await lookup(key)
                for continuation in batch { continuation.resume(returning: value) }
            } catch {
                for continuation in batch { continuation.resume(throwing: error) }
            }
        }
    }
}
