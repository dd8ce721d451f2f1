/// A task type: its name, its default queue and its arguments.
///
/// ```swift
/// struct SendEmail: TaskDefinition {
///     struct Arguments: Codable, Sendable { var to: String; var subject: String }
///     static let name = "emails.send"
///     static let queue = "emails"
/// }
/// ```
public protocol TaskDefinition: Sendable {
    /// The JSON arguments.
    associatedtype Arguments: Codable & Sendable
    /// The registered name; workers look handlers up by it.
    static var name: String { get }
    /// The queue it goes to unless the caller says otherwise.
    static var queue: String { get }
}

extension TaskDefinition {
    public static var queue: String { "default" }
}
