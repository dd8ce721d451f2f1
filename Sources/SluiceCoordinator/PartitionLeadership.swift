import Synchronization

/// The partitions a coordinator leads (with several), kept where shutdown
/// can read them to release their leases, and the API to report them.
final class PartitionLeadership: Sendable {
    struct Term: Sendable {
        var holder: String
        /// This coordinator's membership lease (how others count the live ones).
        var member: String
        var count: Int
        var leases: [Int: String] = [:]
    }

    private let state = Mutex<Term?>(nil)
    /// The store's partition count, once read (0 before).
    private let storeCount = Mutex(0)

    func setStoreCount(_ count: Int) { storeCount.withLock { $0 = count } }

    /// The store's partition count, once read (0 before).
    var knownStoreCount: Int { storeCount.withLock { $0 } }

    func begin(holder: String, member: String, count: Int) {
        state.withLock { $0 = Term(holder: holder, member: member, count: count) }
    }

    func set(_ partition: Int, lease: String?) {
        state.withLock { $0?.leases[partition] = lease }
    }

    /// Partitions led, sorted, of the store's count (0 with one partition).
    var led: (partitions: [Int], count: Int) {
        let known = storeCount.withLock { $0 }
        return state.withLock { term in (term?.leases.keys.sorted() ?? [], term?.count ?? known) }
    }

    /// The term's leases to release at exit (nil with one partition), forgotten here.
    func takeAll() -> (holder: String, member: String, leases: [String])? {
        state.withLock { term in
            defer { term = nil }
            guard let t = term else { return nil }
            return (t.holder, t.member, t.leases.keys.sorted().compactMap { t.leases[$0] })
        }
    }
}

/// The event consumers of the partitions a coordinator leads, one task
/// each, started and stopped as partitions come and go.
final class PartitionConsumers: Sendable {
    private let state = Mutex<(tasks: [Int: Task<Void, Never>], lost: Bool)>(([:], false))
    /// Rung when a consumer found the lease lost: the balancing loop looks at once.
    let wake = Wake()

    /// Whether a consumer found that another coordinator took a lease over.
    var lost: Bool { state.withLock { $0.lost } }

    func markLost() {
        state.withLock { $0.lost = true }
        wake.signal()
    }

    func start(_ partition: Int, _ body: @escaping @Sendable () async -> Void) {
        let task = Task { await body() }
        state.withLock { $0.tasks[partition] = task }
    }

    /// Stops a partition's consumer and waits until it has closed (its
    /// unacknowledged deliveries are back in the queue).
    func stop(_ partition: Int) async {
        let task = state.withLock { $0.tasks.removeValue(forKey: partition) }
        task?.cancel()
        await task?.value
    }

    func cancelAll() {
        let tasks = state.withLock { s -> [Task<Void, Never>] in
            defer { s.tasks = [:] }
            return Array(s.tasks.values)
        }
        for task in tasks { task.cancel() }
    }
}
