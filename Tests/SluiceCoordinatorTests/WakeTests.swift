@testable import SluiceCoordinator
import SluiceTesting
import Testing

@Suite("Wake: the outbox relay's wake-up")
struct WakeTests {
    @Test("a signal before the wait is kept for it; a signal ends a wait that began first")
    func signals() async throws {
        let wake = Wake()
        wake.signal()
        // An hour's timeout: only the kept signal can end this wait within the bound.
        #expect(try await within(30, "a wait after a signal") { await wake.wait(upTo: .seconds(3600)) }, "it says a signal ended it")
        let waiting = Task { await wake.wait(upTo: .seconds(3600)) }
        // The signal may come before or after the wait begins: either way the wait ends.
        wake.signal()
        #expect(try await within(30, "a wait ended by a signal") { await waiting.value })
    }

    @Test("a wait ends at its timeout with no signal, and at once when its task is cancelled")
    func timeoutAndCancel() async throws {
        let wake = Wake()
        #expect(try await within(30, "a wait of 10 ms without a signal") { await wake.wait(upTo: .milliseconds(10)) } == false,
                "it says its time ran out")
        let waiting = Task { await wake.wait(upTo: .seconds(3600)) }
        waiting.cancel()
        #expect(try await within(30, "a cancelled wait") { await waiting.value } == false)
        // Many short waits in a row, none left behind waiting for a signal.
        try await within(60, "1,000 waits of 1 ms") { for _ in 0..<1_000 { await wake.wait(upTo: .milliseconds(1)) } }
    }
}
