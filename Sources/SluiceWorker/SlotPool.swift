import DequeModule
import Synchronization

/// Limits how many tasks run at once; waiters resume in order.
///
/// A lock, not an actor: a free slot is taken without suspending, so the
/// common case (prefetch already bounds deliveries to the concurrency) costs
/// no executor hop per task.
///
/// With priority levels, each waiter waits at a level (0 highest). A free
/// slot goes to whoever asks; a slot released while several levels wait goes
/// to a level picked by smooth weighted round robin over the levels that
/// wait, so each gets its weight's share of the starts and none starves.
final class SlotPool: Sendable {
    private struct State {
        var free: Int
        var waiters: [Deque<CheckedContinuation<Void, Never>>]
        /// Smooth weighted round robin: each level's running credit.
        var credit: [Int]
    }

    private let state: Mutex<State>
    private let weights: [Int]

    /// `weights`: one per level, highest level first; one level by default.
    init(_ count: Int, weights: [Int] = [1]) {
        self.weights = weights.isEmpty ? [1] : weights.map { max(1, $0) }
        state = Mutex(State(free: max(1, count), waiters: Array(repeating: [], count: self.weights.count),
                            credit: Array(repeating: 0, count: self.weights.count)))
    }

    func acquire(level: Int = 0) async {
        let taken = state.withLock { s -> Bool in
            guard s.free > 0 else { return false }
            s.free -= 1
            return true
        }
        if taken { return }
        let level = min(max(0, level), weights.count - 1)
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            // A slot may have been released since the check above.
            let resumeNow = state.withLock { s -> Bool in
                if s.free > 0 {
                    s.free -= 1
                    return true
                }
                s.waiters[level].append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    func release() {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            guard let level = Self.pick(&s, weights: weights) else {
                s.free += 1
                return nil
            }
            return s.waiters[level].popFirst()
        }
        waiter?.resume()
    }

    /// The level whose first waiter gets a released slot, or nil if none waits.
    private static func pick(_ s: inout State, weights: [Int]) -> Int? {
        if weights.count == 1 { return s.waiters[0].isEmpty ? nil : 0 }
        var best: Int?
        var total = 0
        for level in weights.indices where !s.waiters[level].isEmpty {
            s.credit[level] += weights[level]
            total += weights[level]
            if best == nil || s.credit[level] > s.credit[best!] { best = level }
        }
        if let best { s.credit[best] -= total }
        return best
    }

    /// How many wait at `level` (for tests).
    func waiting(level: Int) -> Int { state.withLock { $0.waiters[level].count } }
}
