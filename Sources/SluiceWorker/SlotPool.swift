import DequeModule
import Synchronization

/// Limits how many tasks run at once, and decides which waiting delivery
/// starts when a slot frees.
///
/// A delivery is submitted with the code that starts it. With a free slot
/// that code runs at once, under no suspension (with a prefetch of the
/// concurrency, the default, this is the common case). Otherwise it
/// waits at its level (0 highest), and each released slot starts a waiting
/// delivery of a level picked by smooth weighted round robin over the levels
/// with deliveries waiting: each gets its weight's share of the starts and
/// none starves; within a level, first come, first started. Consumers hand
/// over every delivery they receive (the broker sends at most the prefetch),
/// so a level with a backlog always has one waiting when a slot frees.
final class SlotPool: Sendable {
    /// Called with `true` to start the delivery (holding a slot), or with
    /// `false` to hand it back without one (``abandonWaiting()``). One
    /// closure, not two: it is made for every delivery.
    typealias Start = @Sendable (_ run: Bool) -> Void

    private struct State {
        var free: Int
        var waiting: [Deque<Start>]
        /// Smooth weighted round robin: each level's running credit.
        var credit: [Int]
    }

    private let state: Mutex<State>
    private let weights: [Int]

    /// `weights`: one per level, highest level first; one level by default.
    init(_ count: Int, weights: [Int] = [1]) {
        self.weights = weights.isEmpty ? [1] : weights.map { max(1, $0) }
        state = Mutex(State(free: max(1, count), waiting: Array(repeating: [], count: self.weights.count),
                            credit: Array(repeating: 0, count: self.weights.count)))
    }

    /// Calls `start(true)` now if a slot is free (taking it), else once one
    /// is released to this level; a start must lead to exactly one
    /// ``release()``. If ``abandonWaiting()`` comes first, `start(false)`
    /// (no slot taken).
    func submit(level: Int = 0, _ start: @escaping Start) {
        let level = min(max(0, level), weights.count - 1)
        let now = state.withLock { s -> Bool in
            guard s.free > 0 else {
                s.waiting[level].append(start)
                return false
            }
            s.free -= 1
            return true
        }
        if now { start(true) }
    }

    /// Gives the slot to the next waiting delivery, or frees it.
    func release() {
        let next = state.withLock { s -> Start? in
            guard let level = Self.pick(&s, weights: weights) else {
                s.free += 1
                return nil
            }
            return s.waiting[level].popFirst()
        }
        next?(true)
    }

    /// Calls `start(false)` for every delivery still waiting (shutdown: they
    /// are handed back now rather than when a slot frees).
    func abandonWaiting() {
        let abandoned = state.withLock { s -> [Start] in
            let all = s.waiting.flatMap { Array($0) }
            for level in s.waiting.indices { s.waiting[level].removeAll() }
            return all
        }
        for start in abandoned { start(false) }
    }

    /// The level whose first delivery gets a released slot, or nil if none waits.
    private static func pick(_ s: inout State, weights: [Int]) -> Int? {
        if weights.count == 1 { return s.waiting[0].isEmpty ? nil : 0 }
        var best: Int?
        var total = 0
        for level in weights.indices where !s.waiting[level].isEmpty {
            s.credit[level] += weights[level]
            total += weights[level]
            if best == nil || s.credit[level] > s.credit[best!] { best = level }
        }
        if let best { s.credit[best] -= total }
        return best
    }

    /// How many deliveries wait at `level` (for tests).
    func waiting(level: Int) -> Int { state.withLock { $0.waiting[level].count } }
}
