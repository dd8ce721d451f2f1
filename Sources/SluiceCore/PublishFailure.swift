import SluiceWire

/// The kinds of failed publish that callers handle rather than pass on.
///
/// A ``Broker`` reports a failed publish with the wire vocabulary's
/// `AMQPError`; these read its code, so that no caller matches codes itself.
public enum PublishFailure {
    /// The message breaks an AMQP or broker limit: it was not sent, the
    /// connection is fine, and sending it again fails the same way.
    public static func isOverLimit(_ error: any Error) -> Bool {
        (error as? AMQPError)?.code == .unencodable
    }

    /// A `mandatory` message reached no queue (for events: nobody listens).
    public static func isUnroutable(_ error: any Error) -> Bool {
        (error as? AMQPError)?.code == .unroutable
    }
}
