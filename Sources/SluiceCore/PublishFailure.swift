public import SluiceWire

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

    /// What settling a delivery whose connection was lost fails with: its
    /// outcome is not published, and the broker delivers the task again.
    public static let staleOutcome = AMQPError(.staleDelivery, operation: "publish",
                                               message: "the outcome of a delivery from a connection that was lost; the broker redelivers it")

    /// The delivery being settled came on a connection since lost (publishing its outcome or acking it).
    public static func isStale(_ error: any Error) -> Bool {
        (error as? AMQPError)?.code == .staleDelivery
    }

    /// The message went nowhere because of where it was going, not because
    /// of the connection: unroutable, nacked by the broker (a full or
    /// unavailable queue), or over a limit. Sending it again would not help.
    public static func isRefusedByDestination(_ error: any Error) -> Bool {
        guard let code = (error as? AMQPError)?.code else { return false }
        return code == .unroutable || code == .publishNacked || code == .unencodable
    }
}
