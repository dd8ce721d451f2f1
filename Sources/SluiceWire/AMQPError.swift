/// An error from the AMQP layer: what failed, why, and what the broker said.
///
/// Every `amqp_*` result goes through one checker (see `AMQPCheck.swift`) that
/// produces one of these. The description never contains a password.
public struct AMQPError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure this is; stable, for programs to switch on.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        let raw: String
        public var description: String { raw }

        /// The URL could not be parsed or has an invalid option.
        public static let invalidURL = Code(raw: "invalid_url")
        /// An argument was rejected before anything was sent.
        public static let invalidArgument = Code(raw: "invalid_argument")
        /// A message breaks a limit of AMQP or of the broker (a short string
        /// over 255 bytes, headers larger than a frame, a body over the
        /// broker's maximum); it was not sent and the connection is unaffected.
        public static let unencodable = Code(raw: "unencodable")
        /// The TCP or TLS connection could not be established.
        public static let connectionFailed = Code(raw: "connection_failed")
        /// TLS handshake or certificate verification failed.
        public static let tlsFailed = Code(raw: "tls_failed")
        /// The broker refused the user name or password.
        public static let authenticationFailed = Code(raw: "authentication_failed")
        /// The broker refused access (for example to the virtual host).
        public static let accessRefused = Code(raw: "access_refused")
        /// The broker closed the connection (see `replyCode` and `replyText`).
        public static let connectionClosedByBroker = Code(raw: "connection_closed_by_broker")
        /// The socket was lost (broker stopped, network cut, heartbeat missed).
        public static let connectionLost = Code(raw: "connection_lost")
        /// No heartbeat or other data arrived within twice the heartbeat interval.
        public static let heartbeatTimeout = Code(raw: "heartbeat_timeout")
        /// The connection was closed by this process.
        public static let connectionClosed = Code(raw: "connection_closed")
        /// The broker closed the channel (see `replyCode` and `replyText`).
        public static let channelClosedByBroker = Code(raw: "channel_closed_by_broker")
        /// The channel was closed by this process.
        public static let channelClosed = Code(raw: "channel_closed")
        /// The broker answered a publish with `basic.nack`.
        public static let publishNacked = Code(raw: "publish_nacked")
        /// A `mandatory` publish could not be routed to any queue (`basic.return`).
        public static let unroutable = Code(raw: "unroutable")
        /// The broker cancelled the consumer (for example, its queue was deleted).
        public static let consumerCancelled = Code(raw: "consumer_cancelled")
        /// The delivery came on a connection that has since been lost; its ack
        /// was not sent, and the broker will redeliver the message.
        public static let staleDelivery = Code(raw: "stale_delivery")
        /// The broker did not answer in time.
        public static let timeout = Code(raw: "timeout")
        /// rabbitmq-c reported an error that fits no other code.
        public static let library = Code(raw: "library_error")
        /// The broker sent something this client did not expect.
        public static let protocolError = Code(raw: "protocol_error")
    }

    /// What kind of failure this is.
    public var code: Code
    /// The operation that failed, for example `queue.declare sluice.q.emails`.
    public var operation: String
    /// The AMQP reply code from the broker (404, 406, 403, 320...), if any.
    public var replyCode: UInt16?
    /// The broker's reply text, if any.
    public var replyText: String?
    /// A human explanation.
    public var message: String

    /// Creates an error.
    public init(_ code: Code, operation: String, message: String, replyCode: UInt16? = nil, replyText: String? = nil) {
        self.code = code
        self.operation = operation
        self.message = message
        self.replyCode = replyCode
        self.replyText = replyText
    }

    /// Whether the failure ended the connection (so a supervised connection
    /// reconnects) rather than just one channel or one call.
    public var isConnectionLevel: Bool {
        [.connectionLost, .heartbeatTimeout, .connectionClosedByBroker, .connectionFailed, .tlsFailed].contains(code)
    }

    /// Whether the same operation may succeed if tried again shortly: the
    /// connection went away (a supervised one comes back), the broker did not
    /// answer in time, or it failed inside (541 `INTERNAL_ERROR`, which a
    /// quorum queue declare gets as `cluster_not_formed` when its replicas do
    /// not start in time on a busy node or cluster). Refusals that would
    /// repeat (access, arguments, a missing queue) are not transient, and
    /// neither is a connection or channel this process closed.
    public var isTransient: Bool {
        switch code {
        case .connectionLost, .heartbeatTimeout, .timeout, .connectionFailed: true
        // 320 CONNECTION_FORCED: a node shutting down; 541 INTERNAL_ERROR.
        case .connectionClosedByBroker, .channelClosedByBroker: replyCode == 320 || replyCode == 541
        default: false
        }
    }

    public var description: String {
        var text = "\(operation): \(message)"
        if let replyCode {
            text += " (broker reply \(replyCode)"
            if let replyText, !replyText.isEmpty { text += " \(replyText)" }
            text += ")"
        }
        return text + " [\(code)]"
    }
}
