import Synchronization

/// Whether the coordinator leads, and under which lease holder name.
final class ActiveFlag: Sendable {
    private let state = Mutex<(holder: String?, last: String?)>((nil, nil))
    var value: Bool { state.withLock { $0.holder != nil } }
    /// The holder name of the current or latest term, or the one being asked
    /// for (for releasing the lease at shutdown).
    var lastHolder: String? { state.withLock { $0.last } }
    func set(_ holder: String?) {
        state.withLock {
            $0.holder = holder
            if let holder { $0.last = holder }
        }
    }
    func setCandidate(_ holder: String) { state.withLock { $0.last = holder } }
}
