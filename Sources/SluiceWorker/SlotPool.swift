import DequeModule
import Synchronization

/// Limits how many tasks run at once; waiters resume in order.
///
/// A lock, not an actor: a free slot is taken without suspending, so the
/// common case (prefetch already bounds deliveries to the concurrency) costs
/// no executor hop per task.
final class SlotPool: Sendable {
    private struct State {
        var free: Int
        var waiters: Deque<CheckedContinuation<Void, Never>> = []
    }

    private let state: Mutex<State>

    init(_ count: Int) { state = Mutex(State(free: max(1, count))) }

    func acquire() async {
        let taken = state.withLock { s -> Bool in
            guard s.free > 0 else { return false }
            s.free -= 1
            return true
        }
        if taken { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            // A slot may have been released since the check above.
            let resumeNow = state.withLock { s -> Bool in
                if s.free > 0 {
                    s.free -= 1
                    return true
                }
                s.waiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    func release() {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            if let next = s.waiters.popFirst() { return next }
            s.free += 1
            return nil
        }
        waiter?.resume()
    }
}
