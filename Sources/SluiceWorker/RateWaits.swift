import DequeModule
import Synchronization

/// Deliveries waiting for a rate-limited start (``RateGate``).
///
/// Deliveries under the same limits wait in one lane, first come, first
/// started, served by one runner: it reserves the head's start when it
/// reaches the head, hands it over at that time, and counts the start
/// when the delivery gets its slot (so tasks that waited for a slot do not
/// start as a burst). A delivery under other limits (another task, another
/// queue) never waits behind it. Like ``SlotPool``, a delivery is
/// submitted with the code that starts it: called with `true` and a
/// `granted` callback to call once it holds a slot (or is handed back), or
/// with `false` if ``abandonWaiting()`` comes first (shutdown hands it back
/// at once). One whose connection is gone (`isStale`) is dropped unreserved.
final class RateWaits: Sendable {
    typealias Start = @Sendable (_ run: Bool, _ granted: @escaping @Sendable () -> Void) -> Void

    private struct Waiting {
        var start: Start
        var isStale: @Sendable () -> Bool
    }

    private struct Lane {
        var waiting: Deque<Waiting> = []
        /// The lane's one runner; the lane goes when it has nothing left.
        var runner: Task<Void, Never>?
    }

    private struct State {
        var lanes: [[String]: Lane] = [:]
        var abandoned = false
    }

    private let gate: RateGate
    private let state = Mutex(State())

    init(gate: RateGate) {
        self.gate = gate
    }

    /// Calls `start(true, granted)` when the limits `keys` allow it.
    func submit(keys: [String], isStale: @escaping @Sendable () -> Bool = { false }, _ start: @escaping Start) {
        let abandoned = state.withLock { s -> Bool in
            if s.abandoned { return true }
            s.lanes[keys, default: Lane()].waiting.append(Waiting(start: start, isStale: isStale))
            if s.lanes[keys]!.runner == nil {
                s.lanes[keys]!.runner = Task { await self.run(lane: keys) }
            }
            return false
        }
        if abandoned { start(false, {}) }
    }

    /// Calls `start(false)` for every delivery still waiting, and for any
    /// submitted from now on.
    func abandonWaiting() {
        let abandoned = state.withLock { s -> [Waiting] in
            s.abandoned = true
            var all: [Waiting] = []
            for lane in s.lanes.values {
                lane.runner?.cancel()
                all += lane.waiting
            }
            s.lanes = [:]
            return all
        }
        for waiting in abandoned { waiting.start(false, {}) }
    }

    /// How many deliveries wait (for tests).
    var count: Int { state.withLock { $0.lanes.values.reduce(0) { $0 + $1.waiting.count } } }

    private func run(lane keys: [String]) async {
        while true {
            // Deliveries of a lost connection come again: drop them before they cost a start.
            let stale = state.withLock { s -> [Waiting] in
                var stale: [Waiting] = []
                while let head = s.lanes[keys]?.waiting.first, head.isStale() { stale.append(s.lanes[keys]!.waiting.removeFirst()) }
                return stale
            }
            for waiting in stale { waiting.start(false, {}) }
            guard state.withLock({ s -> Bool in
                guard let lane = s.lanes[keys], !s.abandoned else { return false }
                if lane.waiting.isEmpty { s.lanes[keys] = nil; return false }
                return true
            }) else { return }
            // The head's start, reserved now that it is the head.
            if let at = gate.reserve(keys), at > .now {
                guard (try? await Task.sleep(until: at, clock: .continuous)) != nil else { return }  // abandoned
            }
            guard let head = state.withLock({ s -> Waiting? in s.abandoned ? nil : s.lanes[keys]?.waiting.popFirst() }) else { return }
            await withCheckedContinuation { (granted: CheckedContinuation<Void, Never>) in
                head.start(true) { granted.resume() }
            }
            gate.started(keys)
        }
    }
}
