import Synchronization

/// The lease a store's writes are fenced with (see ``WorkflowStore/setFence(_:)``).
public struct StoreFence: Sendable, Hashable {
    public var lease: String
    public var holder: String

    public init(lease: String, holder: String) {
        self.lease = lease
        self.holder = holder
    }
}

/// A store's current fence.
final class FenceBox: Sendable {
    private let value = Mutex<StoreFence?>(nil)
    var current: StoreFence? { value.withLock { $0 } }
    func set(_ fence: StoreFence?) { value.withLock { $0 = fence } }

    static func lost(_ fence: StoreFence) -> StoreError {
        StoreError(.leaseLost, "coordinator \(fence.holder) no longer holds the lease \(fence.lease); another coordinator took over")
    }
}
