import SluiceWire

/// The lifecycle of one connection, decided without I/O: connecting,
/// connected (blocked or not), recovering with backoff, closed.
///
/// The connection thread (`ConnectionCore`) owns one and feeds it what
/// happened (a login succeeded or failed, the socket was lost, a close was
/// asked for, data arrived); it executes the ``Action`` it gets back. The
/// machine also keeps the numbers that follow from the lifecycle: the
/// generation (which connection a delivery came on), the failed attempts,
/// the backoff, and when data last arrived (for the heartbeat check).
struct ConnectionStateMachine {
    enum State: Equatable {
        /// The first attempt: its failure is the caller's error, not a reason to retry.
        case connecting
        case connected
        /// Lost; reconnecting after backoff delays.
        case recovering
        /// Ended, by a close (nil) or an error.
        case closed(AMQPError?)
    }

    /// What the connection thread does next.
    enum Action: Equatable {
        /// Nothing more.
        case none
        /// Wait this long, then try to connect again (``reconnected(heartbeatSeconds:at:)``
        /// or ``reconnectFailed(_:)``).
        case reconnect(after: Duration)
        /// Tell users the connection is back, and resend what waited.
        case announceRecovered
        /// The socket is gone: fail what waited on it and report the loss;
        /// then recovery runs (``nextStep()``), or the connection ends.
        case tearDown(AMQPError)
        /// Close the connection cleanly (`connection.close`), then end.
        case closeGracefully
        /// End for good: fail everything that still waits.
        case finish(AMQPError?)
    }

    private(set) var state = State.connecting
    /// Which connection this is, counting reconnects: 1 for the first.
    private(set) var generation: UInt64 = 0
    /// Reconnect attempts that failed since the connection was lost.
    private(set) var failedAttempts = 0
    /// The broker has blocked publishing (`connection.blocked`).
    private(set) var isBlocked = false
    /// When data last arrived from the broker.
    private(set) var lastInbound: ContinuousClock.Instant
    /// The negotiated heartbeat (0: none).
    private(set) var heartbeatSeconds = 0

    private let recovery: AMQPConnection.Configuration.Recovery?
    private var backoff: ReconnectBackoff

    init(recovery: AMQPConnection.Configuration.Recovery?, now: ContinuousClock.Instant) {
        self.recovery = recovery
        self.backoff = recovery?.backoff ?? ReconnectBackoff()
        self.lastInbound = now
    }

    var isRecovering: Bool { state == .recovering }
    var isClosed: Bool { if case .closed = state { true } else { false } }

    // MARK: Connecting

    /// The first login succeeded.
    mutating func connected(heartbeatSeconds: Int, at now: ContinuousClock.Instant) -> Action {
        guard state == .connecting else { return .none }
        up(heartbeatSeconds: heartbeatSeconds, at: now)
        return .none
    }

    /// The first attempt failed: the connection never was.
    mutating func connectFailed(_ error: AMQPError) -> Action {
        guard state == .connecting else { return .none }
        state = .closed(error)
        return .finish(error)
    }

    /// A reconnect succeeded and the topology was restored.
    mutating func reconnected(heartbeatSeconds: Int, at now: ContinuousClock.Instant) -> Action {
        guard state == .recovering else { return .none }
        up(heartbeatSeconds: heartbeatSeconds, at: now)
        return .announceRecovered
    }

    /// A reconnect attempt failed: give up after the configured attempts;
    /// otherwise ``nextStep()`` says when to try again.
    mutating func reconnectFailed(_ error: AMQPError) -> Action {
        guard state == .recovering else { return .none }
        failedAttempts += 1
        if let max = recovery?.maxAttempts, failedAttempts >= max {
            state = .closed(error)
            return .finish(error)
        }
        return .none
    }

    /// What a recovering connection does now: wait, then try.
    mutating func nextStep() -> Action {
        switch state {
        case .recovering: .reconnect(after: backoff.nextDelay())
        case .closed(let error): .finish(error)
        default: .none
        }
    }

    // MARK: Losing it

    /// The socket failed (read, write, heartbeat, a connection-level error).
    mutating func lost(_ error: AMQPError) -> Action {
        guard state == .connected else { return .none }
        isBlocked = false
        if recovery == nil {
            state = .closed(error)
        } else {
            state = .recovering
            failedAttempts = 0
            backoff.reset()
        }
        return .tearDown(error)
    }

    /// Checks the heartbeat: with no data for two intervals the connection is lost.
    mutating func heartbeatCheck(at now: ContinuousClock.Instant) -> Action {
        guard state == .connected, heartbeatSeconds > 0, now - lastInbound > .seconds(2 * heartbeatSeconds) else { return .none }
        return lost(AMQPError(.heartbeatTimeout, operation: "heartbeat", message: "no data from the broker for \(2 * heartbeatSeconds) s"))
    }

    /// Data arrived from the broker.
    mutating func inbound(at now: ContinuousClock.Instant) {
        lastInbound = now
    }

    // MARK: Flow

    /// `connection.blocked`: publishes are held until ``unblocked()``.
    /// Returns whether this changed anything.
    mutating func blocked() -> Bool {
        guard state == .connected, !isBlocked else { return false }
        isBlocked = true
        return true
    }

    /// `connection.unblocked`. Returns whether this changed anything.
    mutating func unblocked() -> Bool {
        guard isBlocked else { return false }
        isBlocked = false
        return true
    }

    // MARK: Closing

    /// The user asked to close.
    mutating func closeRequested() -> Action {
        switch state {
        case .connected:
            state = .closed(nil)
            return .closeGracefully
        case .connecting, .recovering:
            state = .closed(nil)
            return .finish(nil)
        case .closed:
            return .none
        }
    }

    private mutating func up(heartbeatSeconds: Int, at now: ContinuousClock.Instant) {
        state = .connected
        generation += 1
        failedAttempts = 0
        isBlocked = false
        backoff.reset()
        self.heartbeatSeconds = heartbeatSeconds
        lastInbound = now
    }
}
