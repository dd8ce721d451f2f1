@testable import SluiceAMQP
import SluiceWire
import Testing

/// The connection lifecycle, driven by hand: no socket, no broker, no clock.
@Suite("Connection state machine")
struct ConnectionStateMachineTests {
    typealias Recovery = AMQPConnection.Configuration.Recovery
    static let t0 = ContinuousClock.now
    static let lostError = AMQPError(.connectionLost, operation: "read frame", message: "socket closed")

    static func noJitter(maxAttempts: Int? = nil) -> Recovery {
        Recovery(backoff: ReconnectBackoff(initial: .milliseconds(100), maximum: .seconds(1), factor: 2, jitter: 0), maxAttempts: maxAttempts)
    }

    @Test("a first connection that fails ends at once, whatever the recovery setting")
    func firstAttemptFails() {
        var m = ConnectionStateMachine(recovery: Self.noJitter(), now: Self.t0)
        let refused = AMQPError(.authenticationFailed, operation: "login", message: "no")
        #expect(m.connectFailed(refused) == .finish(refused))
        #expect(m.state == .closed(refused))
        #expect(m.generation == 0)
    }

    @Test("without recovery, a lost connection is torn down and stays closed")
    func lostWithoutRecovery() {
        var m = ConnectionStateMachine(recovery: nil, now: Self.t0)
        _ = m.connected(heartbeatSeconds: 60, at: Self.t0)
        #expect(m.generation == 1)
        #expect(m.lost(Self.lostError) == .tearDown(Self.lostError))
        #expect(m.isClosed)
        #expect(m.nextStep() == .finish(Self.lostError))
        #expect(m.lost(Self.lostError) == .none, "lost twice: nothing more to do")
    }

    @Test("with recovery: backoff delays grow, a success counts a new generation and resets the backoff")
    func recovers() {
        var m = ConnectionStateMachine(recovery: Self.noJitter(), now: Self.t0)
        _ = m.connected(heartbeatSeconds: 0, at: Self.t0)
        #expect(m.lost(Self.lostError) == .tearDown(Self.lostError))
        #expect(m.isRecovering)
        #expect(m.nextStep() == .reconnect(after: .milliseconds(100)))
        #expect(m.reconnectFailed(Self.lostError) == .none)
        #expect(m.nextStep() == .reconnect(after: .milliseconds(200)))
        #expect(m.reconnectFailed(Self.lostError) == .none)
        #expect(m.failedAttempts == 2)
        #expect(m.nextStep() == .reconnect(after: .milliseconds(400)))
        #expect(m.reconnected(heartbeatSeconds: 0, at: Self.t0) == .announceRecovered)
        #expect(m.state == .connected)
        #expect(m.generation == 2)
        #expect(m.failedAttempts == 0)
        _ = m.lost(Self.lostError)
        #expect(m.nextStep() == .reconnect(after: .milliseconds(100)), "the backoff starts over")
    }

    @Test("recovery gives up after its maximum attempts, with the last error")
    func givesUp() {
        var m = ConnectionStateMachine(recovery: Self.noJitter(maxAttempts: 2), now: Self.t0)
        _ = m.connected(heartbeatSeconds: 0, at: Self.t0)
        _ = m.lost(Self.lostError)
        _ = m.nextStep()
        #expect(m.reconnectFailed(Self.lostError) == .none)
        _ = m.nextStep()
        let last = AMQPError(.connectionFailed, operation: "connect", message: "refused")
        #expect(m.reconnectFailed(last) == .finish(last))
        #expect(m.state == .closed(last))
    }

    @Test("closing: gracefully when connected, at once while recovering, once only")
    func closing() {
        var connected = ConnectionStateMachine(recovery: nil, now: Self.t0)
        _ = connected.connected(heartbeatSeconds: 0, at: Self.t0)
        #expect(connected.closeRequested() == .closeGracefully)
        #expect(connected.closeRequested() == .none)
        #expect(connected.state == .closed(nil))

        var recovering = ConnectionStateMachine(recovery: Self.noJitter(), now: Self.t0)
        _ = recovering.connected(heartbeatSeconds: 0, at: Self.t0)
        _ = recovering.lost(Self.lostError)
        #expect(recovering.closeRequested() == .finish(nil))
        #expect(recovering.reconnected(heartbeatSeconds: 0, at: Self.t0) == .none, "a late success does not reopen a closed connection")
    }

    @Test("no data for two heartbeat intervals loses the connection; data in time keeps it")
    func heartbeat() {
        var m = ConnectionStateMachine(recovery: Self.noJitter(), now: Self.t0)
        _ = m.connected(heartbeatSeconds: 10, at: Self.t0)
        #expect(m.heartbeatCheck(at: Self.t0 + .seconds(19)) == .none)
        m.inbound(at: Self.t0 + .seconds(15))
        #expect(m.heartbeatCheck(at: Self.t0 + .seconds(30)) == .none)
        guard case .tearDown(let error) = m.heartbeatCheck(at: Self.t0 + .seconds(36)) else {
            Issue.record("no timeout")
            return
        }
        #expect(error.code == .heartbeatTimeout)
        #expect(m.isRecovering)

        var none = ConnectionStateMachine(recovery: nil, now: Self.t0)
        _ = none.connected(heartbeatSeconds: 0, at: Self.t0)
        #expect(none.heartbeatCheck(at: Self.t0 + .seconds(3600)) == .none, "heartbeat 0: never checked")
    }

    @Test("blocked and unblocked change state once each; a lost connection is no longer blocked")
    func blocked() {
        var m = ConnectionStateMachine(recovery: Self.noJitter(), now: Self.t0)
        _ = m.connected(heartbeatSeconds: 0, at: Self.t0)
        let first = m.blocked(), second = m.blocked()
        #expect(first && !second)
        #expect(m.isBlocked)
        let opened = m.unblocked(), again = m.unblocked()
        #expect(opened && !again)
        _ = m.blocked()
        _ = m.lost(Self.lostError)
        #expect(!m.isBlocked)
    }
}
