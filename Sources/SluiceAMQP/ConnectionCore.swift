import CRabbitMQ
import DequeModule
#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import SluiceWire
import Synchronization

/// The thread that owns one rabbitmq-c connection, and everything it knows.
///
/// `@unchecked Sendable`: other threads touch only `inbox` (a Mutex), the
/// eventfd, `events` and the atomic flags. Every other stored property is read
/// and written on the connection thread alone, inside `run()` and the commands
/// it executes.
final class ConnectionCore: @unchecked Sendable {
    typealias Command = @Sendable (ConnectionCore) -> Void

    struct Inbox {
        var commands: [Command] = []
        var wakePending = false
        var closeRequested = false
        /// The thread has exited; new commands are refused.
        var finished = false
        var closeWaiters: [PendingResult<Void>] = []
        /// Plain acks, kept apart from commands so that the thread can send
        /// a run of them as one `multiple` ack (see `sendAcks`).
        var acks: [PendingAck] = []
        /// Every queued command only writes (publishes, acks): none waits for a
        /// reply, so the thread may cork the socket while it runs them.
        var onlyWrites = true
    }

    struct PendingAck {
        let channel: ChannelState
        let deliveryTag: UInt64
        let generation: UInt64
    }

    let configuration: AMQPConnection.Configuration
    let events = EventHub()
    let blockedFlag = AtomicFlag(false)
    let generationFlag = AtomicFlag<UInt64>(0)
    let connectedFlag = AtomicFlag(false)
    /// The node of the current (or last) connection, for other threads.
    let connectedNode = Mutex<AMQPURL.Node?>(nil)
    let inbox = Mutex(Inbox())
    private let wakeFD: Int32
    var logger: Logger { configuration.logger }

    // Connection-thread state.
    /// Connecting, connected, recovering or closed, and the numbers that go
    /// with it (generation, backoff, heartbeat): see ``ConnectionStateMachine``.
    var lifecycle: ConnectionStateMachine
    var connection: amqp_connection_state_t?
    var socketFD: Int32 = -1
    var channelMax = 2047
    /// The negotiated frame size: content headers must fit one frame.
    var frameMax = 131_072
    var channels: [UInt16: ChannelState] = [:]
    /// Callers of channel.open that found every channel number in use, in
    /// the order they came (see ``openChannel(confirms:for:)``).
    var channelWaiters = Deque<ChannelWaiter>() {
        didSet { channelWaitersFlag.store(channelWaiters.count) }
    }
    /// ``channelWaiters``' count, for other threads.
    let channelWaitersFlag = AtomicFlag<Int>(0)
    var topology = TopologyRecorder()
    var pendingLostDeliveries: [LostDelivery] = []
    /// The node of the URL's list to try first: a random one at the start
    /// (so that processes spread over a cluster), the next after a loss.
    var nodeIndex: Int
    let publishArena = CArenaPool()
    private var startPending: PendingResult<Void>?
    /// ``finish(error:)`` has run.
    var finished = false

    /// Which connection this is, counting reconnects.
    var generation: UInt64 { lifecycle.generation }
    /// The broker has blocked publishing.
    var blocked: Bool { lifecycle.isBlocked }

    init(configuration: AMQPConnection.Configuration) throws {
        self.configuration = configuration
        self.lifecycle = ConnectionStateMachine(recovery: configuration.recovery, now: .now)
        guard !configuration.url.nodes.isEmpty else {
            throw AMQPError(.invalidURL, operation: "connect", message: "the URL names no broker node")
        }
        self.nodeIndex = Int.random(in: 0..<configuration.url.nodes.count)
        let fd = sluice_eventfd()
        guard fd >= 0 else {
            throw AMQPError(.library, operation: "eventfd", message: String(cString: strerror(errno)))
        }
        wakeFD = fd
    }

    deinit {
        // Closed only here: any thread that can still signal holds a reference.
        Glibc.close(wakeFD)
    }

    // MARK: Hand-over from async callers

    /// Starts the thread and waits for the first connection attempt.
    func start() async throws {
        let pending = PendingResult<Void>()
        startPending = pending
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            pending.install(continuation)
            do {
                try ConnectionThread.start(name: "sluice-amqp", stackSize: 1 << 20) { [self] in self.run() }
            } catch {
                pending.fail(error)
            }
        }
    }

    /// Queues a command for the thread; false if the connection is finished.
    ///
    /// `onlyWrites`: the command sends frames and never waits for a reply
    /// (a publish), so it may run with the socket corked.
    @discardableResult
    func submit(onlyWrites: Bool = false, _ command: @escaping Command) -> Bool {
        hand {
            $0.commands.append(command)
            if !onlyWrites { $0.onlyWrites = false }
        }
    }

    /// Queues a single ack; false if the connection is finished.
    func submitAck(_ ack: PendingAck) -> Bool {
        hand { $0.acks.append(ack) }
    }

    /// Adds work to the inbox and wakes the thread unless a wake-up is already pending.
    private func hand(_ add: (inout Inbox) -> Void) -> Bool {
        let (accepted, wake) = inbox.withLock { inbox -> (Bool, Bool) in
            if inbox.finished { return (false, false) }
            add(&inbox)
            if inbox.wakePending { return (true, false) }
            inbox.wakePending = true
            return (true, true)
        }
        if wake { signal() }
        return accepted
    }

    private func signal() {
        var one: UInt64 = 1
        _ = withUnsafeBytes(of: &one) { write(wakeFD, $0.baseAddress, 8) }
    }

    /// Runs `body` on the connection thread; the body settles `pending` (now or later).
    func perform<T: Sendable>(onlyWrites: Bool = false,
                              _ body: @escaping @Sendable (ConnectionCore, PendingResult<T>) -> Void) async throws -> T {
        let pending = PendingResult<T>()
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
                pending.install(continuation)
                let accepted = submit(onlyWrites: onlyWrites) { core in
                    if pending.isSettled { return }  // cancelled while queued
                    body(core, pending)
                }
                if !accepted {
                    pending.fail(AMQPError(.connectionClosed, operation: "submit", message: "the connection is closed"))
                }
            }
        } onCancel: {
            pending.cancel()
        }
    }

    /// Runs a synchronous `body` on the connection thread and returns its result.
    /// Connection-level failures inside it start recovery.
    func call<T: Sendable>(_ operation: @autoclosure () -> String,
                           _ body: @escaping @Sendable (ConnectionCore) throws -> T) async throws -> T {
        try await perform { core, pending in
            do {
                pending.succeed(try body(core))
            } catch {
                pending.fail(error)
                if let error = error as? AMQPError { core.failIfConnectionLevel(error) }
            }
        }
    }

    /// Asks the thread to close and waits until it has.
    func close() async {
        let pending = PendingResult<Void>()
        let alreadyDone = inbox.withLock { inbox -> Bool in
            if inbox.finished { return true }
            inbox.closeRequested = true
            inbox.closeWaiters.append(pending)
            return false
        }
        if alreadyDone { return }
        signal()
        _ = try? await withCheckedThrowingContinuation { (c: CheckedContinuation<Void, any Error>) in pending.install(c) }
    }

    func closeRequested() -> Bool {
        inbox.withLock { $0.closeRequested }
    }

    /// Close without waiting (from deinit).
    func requestClose() {
        let needSignal = inbox.withLock { inbox -> Bool in
            if inbox.finished || inbox.closeRequested { return false }
            inbox.closeRequested = true
            return true
        }
        if needSignal { signal() }
    }

    // MARK: The thread

    private func run() {
        do {
            let heartbeat = try connect()
            execute(lifecycle.connected(heartbeatSeconds: heartbeat, at: .now))
            publishGeneration()
            startPending?.succeed(())
        } catch {
            startPending?.fail(error)
            startPending = nil
            execute(lifecycle.connectFailed(error))
            return
        }
        startPending = nil

        var moreFrames = false
        while !lifecycle.isClosed {
            if lifecycle.isRecovering {
                recoverStep()
                continue
            }
            runCommands()
            if closeRequested() {
                execute(lifecycle.closeRequested())
                break
            }
            if connection == nil { continue }
            if !channelWaiters.isEmpty { serveChannelWaiters() }
            // Frames that rabbitmq-c already read (during RPCs) come first.
            moreFrames = drain(readSocket: false) || moreFrames
            if connection == nil { continue }
            let readable = waitForWork(timeoutMilliseconds: moreFrames ? 0 : pollTimeoutMillisecondsWithWaiters)
            if readable.socket {
                lifecycle.inbound(at: .now)
            }
            // Read the socket when it has data, and on idle timeouts so that
            // rabbitmq-c sends its heartbeat when one is due.
            if readable.socket || !readable.wake || moreFrames {
                moreFrames = drain(readSocket: true)
            }
            execute(lifecycle.heartbeatCheck(at: .now))
        }
        if !finished { finish(error: nil) }
    }

    /// Carries out what the lifecycle decided.
    func execute(_ action: ConnectionStateMachine.Action) {
        switch action {
        case .none, .reconnect:
            // Reconnects are paced by recoverStep(), which asks for them.
            break
        case .announceRecovered:
            announceRecovered()
        case .tearDown(let error):
            tearDown(error)
        case .closeGracefully:
            closeGracefully()
        case .finish(let error):
            finish(error: error)
        }
    }

    private var pollTimeoutMilliseconds: Int32 {
        let heartbeat = lifecycle.heartbeatSeconds
        return heartbeat > 0 ? Int32(max(100, heartbeat * 1000 / 4)) : 1000
    }

    /// The poll timeout, shortened to the first channel waiter's deadline
    /// (so that it fails on time, not a quarter heartbeat later).
    private var pollTimeoutMillisecondsWithWaiters: Int32 {
        guard let first = channelWaiters.first else { return pollTimeoutMilliseconds }
        // Rounded up: a wake-up just before the deadline would poll again at 0.
        let left = ContinuousClock.now.duration(to: first.deadline) + .milliseconds(1)
        return min(pollTimeoutMilliseconds, max(0, Int32(pollMilliseconds: left)))
    }

    /// Waits on the socket and the wake-up eventfd.
    func waitForWork(timeoutMilliseconds: Int32, includeSocket: Bool = true) -> (socket: Bool, wake: Bool) {
        var fds = [pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)]
        if includeSocket && socketFD >= 0 {
            fds.append(pollfd(fd: socketFD, events: Int16(POLLIN), revents: 0))
        }
        let n = poll(&fds, nfds_t(fds.count), timeoutMilliseconds)
        guard n > 0 else { return (false, false) }
        let wake = fds[0].revents != 0
        if wake {
            var value: UInt64 = 0
            _ = withUnsafeMutableBytes(of: &value) { read(wakeFD, $0.baseAddress, 8) }
        }
        let socket = fds.count > 1 && fds[1].revents != 0
        return (socket, wake)
    }

    private func runCommands() {
        let (commands, acks, onlyWrites) = inbox.withLock { inbox -> ([Command], [PendingAck], Bool) in
            let taken = (inbox.commands, inbox.acks, inbox.onlyWrites)
            inbox.commands.removeAll(keepingCapacity: true)
            inbox.acks.removeAll(keepingCapacity: true)
            inbox.wakePending = false
            inbox.onlyWrites = true
            return taken
        }
        // rabbitmq-c writes every frame with its own send(). Corked, a run of
        // publishes and acks leaves as a few full segments, and the broker
        // wakes once for them instead of once per message. Never corked around
        // a command that waits for a reply: its request would sit in the cork.
        let corked: Int32 = onlyWrites && !commands.isEmpty ? socketFD : -1
        if corked >= 0 { setCork(corked, true) }
        defer { if corked >= 0 && corked == socketFD { setCork(corked, false) } }
        if !acks.isEmpty { sendAcks(acks) }
        var next = 0
        while next < commands.count && !lifecycle.isRecovering && !lifecycle.isClosed {
            commands[next](self)
            next += 1
        }
        // The connection went down (while acking or inside a command): the rest
        // wait for recovery, or fail when the connection is finished for good.
        let rest = commands[next...]
        if finished {
            for command in rest { command(self) }
        } else if !rest.isEmpty {
            inbox.withLock { $0.commands.insert(contentsOf: rest, at: 0) }
        }
    }

    /// TCP_CORK on or off; turning it off sends what it held.
    private func setCork(_ fd: Int32, _ on: Bool) {
        var value: Int32 = on ? 1 : 0
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_CORK, &value, socklen_t(MemoryLayout<Int32>.size))
    }

    /// Reads and handles frames; returns true if it stopped at its limit with more to read.
    func drain(readSocket: Bool) -> Bool {
        guard let connection else { return false }
        let c = RabbitMQC(state: connection)
        var frame = amqp_frame_t()
        var zero = timeval(tv_sec: 0, tv_usec: 0)
        for _ in 0..<512 {
            if !readSocket && !c.hasBufferedInput { return false }
            let status = c.nextFrame(&frame, timeout: &zero)
            if status == AMQP_STATUS_TIMEOUT.rawValue { return false }
            do {
                try AMQPCheck.status(status, "read frame")
                try handle(frame)
            } catch {
                connectionLost(error)
                return false
            }
            if let connection = self.connection {
                RabbitMQC(state: connection).releaseBuffers(frame.channel)
            } else {
                return false
            }
        }
        return true
    }

    /// Whether a pending command's error means the connection itself is gone.
    func failIfConnectionLevel(_ error: AMQPError) {
        if error.isConnectionLevel || error.code == .timeout {
            execute(lifecycle.lost(error))
        }
    }
}

/// Keeps one arena for the publishes of one drain, freed in between.
final class CArenaPool {
    private(set) var arena = CArena()
    func reset() { arena = CArena() }
}

extension Int32 {
    /// `duration` in whole milliseconds, as poll(2) takes a timeout (clamped).
    init(pollMilliseconds duration: Duration) {
        self.init(clamping: duration.components.seconds * 1000 + duration.components.attoseconds / 1_000_000_000_000_000)
    }
}

extension timeval {
    init(milliseconds: Int) {
        self.init(tv_sec: milliseconds / 1000, tv_usec: (milliseconds % 1000) * 1000)
    }

    init(duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self.init(tv_sec: Int(seconds), tv_usec: Int(attoseconds / 1_000_000_000_000))
    }
}
