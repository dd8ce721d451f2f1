import Synchronization

/// A one-shot signal that tasks can await (no polling).
final class ShutdownSignal: Sendable {
    private let state = Mutex<(fired: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))

    var isFired: Bool { state.withLock { $0.fired } }

    func fire() {
        let waiters = state.withLock { s -> [CheckedContinuation<Void, Never>] in
            if s.fired { return [] }
            s.fired = true
            let w = s.waiters
            s.waiters = []
            return w
        }
        for w in waiters { w.resume() }
    }

    func wait() async {
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let resumeNow = state.withLock { s -> Bool in
                if s.fired { return true }
                s.waiters.append(c)
                return false
            }
            if resumeNow { c.resume() }
        }
    }
}

/// The handler tasks currently running, so that shutdown can wait for or cancel them.
final class RunningTasks: Sendable {
    private let tasks = Mutex<(next: Int, running: [Int: Task<Void, Never>], emptied: [CheckedContinuation<Void, Never>])>((0, [:], []))

    func start(_ body: @escaping @Sendable () async -> Void) {
        tasks.withLock { t in
            let id = t.next
            t.next += 1
            t.running[id] = Task {
                await body()
                self.finish(id)
            }
        }
    }

    private func finish(_ id: Int) {
        let waiters = tasks.withLock { t -> [CheckedContinuation<Void, Never>] in
            t.running.removeValue(forKey: id)
            guard t.running.isEmpty else { return [] }
            let w = t.emptied
            t.emptied = []
            return w
        }
        for w in waiters { w.resume() }
    }

    /// Returns when no task runs, or when the calling task is cancelled.
    func waitUntilEmpty() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
                let now = tasks.withLock { t -> Bool in
                    if t.running.isEmpty || Task.isCancelled { return true }
                    t.emptied.append(c)
                    return false
                }
                if now { c.resume() }
            }
        } onCancel: {
            let waiters = tasks.withLock { t -> [CheckedContinuation<Void, Never>] in
                let w = t.emptied
                t.emptied = []
                return w
            }
            for w in waiters { w.resume() }
        }
    }

    var count: Int { tasks.withLock { $0.running.count } }

    func cancelAll() {
        for task in tasks.withLock({ Array($0.running.values) }) { task.cancel() }
    }
}

/// A counter shared by tasks.
final class SharedCount: Sendable {
    private let value: Mutex<Int>
    init(_ initial: Int) { value = Mutex(initial) }
    /// Subtracts one and returns the new value.
    func decrement() -> Int { value.withLock { $0 -= 1; return $0 } }
}

/// The first error some task reports.
final class FirstError: Sendable {
    private let error = Mutex<(any Error)?>(nil)
    func set(_ e: any Error) { error.withLock { if $0 == nil { $0 = e } } }
    var value: (any Error)? { error.withLock { $0 } }
}
