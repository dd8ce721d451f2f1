public import SluiceWire

/// The revocation stream: see ``Revocation``.
extension Topology {
    /// `<prefix>.revocations`: a durable RabbitMQ stream, kept for
    /// ``revocationRetention``.
    public var revocationStream: String { "\(prefix).revocations" }

    /// `<prefix>.revoke`: the fanout exchange revocations are published to;
    /// the stream is bound to it. (An exchange rather than the default one,
    /// so that an account can be allowed to revoke without being allowed to
    /// publish to any queue.)
    public var revocationExchange: String { "\(prefix).revoke" }

    public var revocationExchangeDeclaration: ExchangeDeclaration {
        ExchangeDeclaration(name: revocationExchange, type: "fanout")
    }

    /// How long revocations are kept (a stream's `x-max-age`): a task
    /// enqueued earlier and revoked is refused by workers for this long
    /// after its revocation. Fixed: RabbitMQ refuses a declaration whose
    /// arguments differ from the stream's.
    public static let revocationRetention = "7D"

    public var revocationStreamDeclaration: QueueDeclaration {
        // On every node of a cluster (a stream's default), whatever ``replicas`` says.
        QueueDeclaration(name: revocationStream, arguments: [
            "x-queue-type": "stream",
            "x-max-age": .string(Self.revocationRetention),
            // Retention drops whole segments: small ones, so old entries go in time.
            "x-stream-max-segment-size-bytes": .int64(8 << 20),
        ])
    }

    /// An entry for the stream, through ``revocationExchange`` (mandatory:
    /// an exchange without its stream makes it unroutable, not lost in silence).
    public func revocationMessage(_ revocation: Revocation) -> OutboundMessage {
        OutboundMessage(exchange: revocationExchange, routingKey: "", body: revocation.jsonBytes(),
                        properties: BasicProperties(contentType: "application/json", deliveryMode: 2,
                                                    type: revocation.marker == nil ? "sluice.revocation" : "sluice.revocation.marker"),
                        mandatory: true)
    }
}
