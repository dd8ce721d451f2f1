public import Logging
public import SluiceWire
import Synchronization

/// A connection to RabbitMQ, owned by a thread of its own.
///
/// rabbitmq-c is blocking and not thread-safe, so every call on the C
/// connection happens on one dedicated OS thread; async callers hand it work
/// and are resumed when it is done. Nothing here blocks Swift's cooperative
/// pool. With ``Configuration/recovery`` set (the default), a lost connection
/// is re-established with backoff, and its topology, channels and consumers
/// are restored (see ``AMQPConnectionEvent``).
public final class AMQPConnection: Sendable {
    /// Connection settings.
    public struct Configuration: Sendable {
        /// Where to connect, with heartbeat, timeouts and TLS.
        public var url: AMQPURL
        /// Shown in the management UI (`connection_name`).
        public var connectionName: String?
        /// Reconnection settings; nil turns automatic recovery off.
        public var recovery: Recovery?
        /// How long to wait for a broker's reply to a synchronous method.
        public var rpcTimeout: Duration
        /// Most unconfirmed publishes per confirm channel; more wait their turn.
        public var confirmWindow: Int
        /// Largest body a publish may carry: RabbitMQ's `max_message_size`
        /// (128 MiB unless the broker is configured otherwise). A larger one
        /// fails alone with `unencodable` instead of closing the channel.
        public var maxMessageBytes: Int
        /// Where connection-level events are logged.
        public var logger: Logger

        /// Automatic recovery settings.
        public struct Recovery: Sendable {
            /// Delay between attempts.
            public var backoff: ReconnectBackoff
            /// Give up after this many failed attempts in a row (nil: never).
            public var maxAttempts: Int?

            /// Retry forever, 100 ms doubling to 5 s.
            public init(backoff: ReconnectBackoff = ReconnectBackoff(), maxAttempts: Int? = nil) {
                self.backoff = backoff
                self.maxAttempts = maxAttempts
            }
        }

        /// Defaults: recovery on, 30 s RPC timeout, a confirm window of 1024.
        public init(url: AMQPURL, connectionName: String? = nil, recovery: Recovery? = Recovery(),
                    rpcTimeout: Duration = .seconds(30), confirmWindow: Int = 1024,
                    maxMessageBytes: Int = MessageLimits.defaultMaxMessageBytes,
                    logger: Logger = Logger(label: "sluice.amqp")) {
            self.url = url
            self.connectionName = connectionName
            self.recovery = recovery
            self.rpcTimeout = rpcTimeout
            self.confirmWindow = max(1, confirmWindow)
            self.maxMessageBytes = maxMessageBytes
            self.logger = logger
        }
    }

    let core: ConnectionCore

    private init(core: ConnectionCore) {
        self.core = core
    }

    /// Connects and logs in; throws if the first attempt fails (recovery only
    /// applies to a connection that was once established).
    public static func connect(_ configuration: Configuration) async throws -> AMQPConnection {
        let core = try ConnectionCore(configuration: configuration)
        try await core.start()
        return AMQPConnection(core: core)
    }

    /// Connects to `url` with default settings.
    public static func connect(_ url: AMQPURL) async throws -> AMQPConnection {
        try await connect(Configuration(url: url))
    }

    /// Connects to the URL in `string`.
    public static func connect(_ string: String) async throws -> AMQPConnection {
        try await connect(Configuration(url: AMQPURL(string)))
    }

    deinit {
        core.requestClose()
    }

    /// The broker node this connection is on (or was on last, while it
    /// reconnects): one of the URL's nodes.
    public var node: AMQPURL.Node? {
        core.connectedNode.withLock { $0 }
    }

    /// Opens a channel; with `confirms`, publishes on it wait for the broker's ack.
    public func openChannel(confirms: Bool = false) async throws -> AMQPChannel {
        // With every channel number in use, this waits (up to the RPC
        // timeout) for a channel to close.
        let state = try await core.perform { core, pending in core.openChannel(confirms: confirms, for: pending) }
        return AMQPChannel(connection: self, state: state)
    }

    /// Closes the connection: consumers end, waiting callers get `connectionClosed`.
    public func close() async {
        await core.close()
    }

    /// A stream of this connection's events, from now on.
    public func events() -> AsyncStream<AMQPConnectionEvent> {
        core.events.subscribe()
    }

    /// What the connection was opened with (to open another one like it).
    public var configuration: Configuration { core.configuration }

    /// The logger the connection was configured with.
    public var logger: Logger { core.logger }

    /// Whether the broker has blocked this connection (resource alarm).
    public var isBlocked: Bool { core.blockedFlag.load() }

    /// How many `openChannel` calls wait for a channel number, every one
    /// being in use (a cancelled call counts until the connection skips
    /// it): more than now and then means `channel_max` is too small for
    /// this connection's callers.
    public var channelOpensWaiting: Int { core.channelWaitersFlag.load() }

    /// How many times the connection was established (1 before any recovery).
    public var generation: UInt64 { core.generationFlag.load() }
}
