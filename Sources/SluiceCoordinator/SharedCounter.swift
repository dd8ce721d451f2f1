import Synchronization

/// A count shared by the copies of a value type.
final class SharedCounter: Sendable {
    private let count = Mutex(0)
    var value: Int { count.withLock { $0 } }
    func increment(by n: Int = 1) { count.withLock { $0 += n } }
}
