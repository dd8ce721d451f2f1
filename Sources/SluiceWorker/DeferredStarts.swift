import SluiceWire
import Synchronization

/// `started` events of tracked tasks, held back for ``delay``: one whose
/// task ends first is dropped (its outcome says all), the rest go out
/// together. Most tasks end within it, so tracking costs them no start event;
/// a long one shows as running a tenth of a second after it started.
final class DeferredStarts: Sendable {
    static let delay: Duration = .milliseconds(100)

    private let state = Mutex<(next: Int, pending: [Int: OutboundMessage])>((0, [:]))

    /// Holds a start event; returns the token that withdraws it.
    func add(_ message: OutboundMessage) -> Int {
        state.withLock { s in
            s.next &+= 1
            s.pending[s.next] = message
            return s.next
        }
    }

    /// The task ended: its start event, if still held, is not sent.
    func withdraw(_ token: Int) {
        _ = state.withLock { $0.pending.removeValue(forKey: token) }
    }

    /// Takes every event held (in the order held).
    func takeAll() -> [OutboundMessage] {
        state.withLock { s in
            guard !s.pending.isEmpty else { return [] }
            defer { s.pending = [:] }
            return s.pending.sorted { $0.key < $1.key }.map(\.value)
        }
    }

    /// Sends what is held every ``delay`` until cancelled.
    func run(send: @Sendable ([OutboundMessage]) async -> Void) async {
        while !Task.isCancelled {
            guard (try? await Task.sleep(for: Self.delay)) != nil else { return }
            let due = takeAll()
            if !due.isEmpty { await send(due) }
        }
    }
}
