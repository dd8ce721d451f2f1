/// An error from Sluice's task layer, saying which task and queue it concerns.
public struct SluiceError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure; stable for programs.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        let raw: String
        public var description: String { raw }
        /// Bad input from the caller (name, queue, arguments, options).
        public static let invalidArgument = Code(raw: "invalid_argument")
        /// Arguments could not be encoded as JSON.
        public static let encodingFailed = Code(raw: "encoding_failed")
        /// The broker refused or failed to confirm the message.
        public static let enqueueFailed = Code(raw: "enqueue_failed")
        /// A received message is not a valid task.
        public static let invalidEnvelope = Code(raw: "invalid_envelope")
        /// The broker connection failed.
        public static let broker = Code(raw: "broker_error")
        /// Something was not found (a task id in a dead queue...).
        public static let notFound = Code(raw: "not_found")
        /// A wait ended at its timeout (a task's result...).
        public static let timedOut = Code(raw: "timed_out")
    }

    /// What kind of failure.
    public var code: Code
    /// Explanation.
    public var message: String
    /// The task name, when known.
    public var task: String?
    /// The queue, when known.
    public var queue: String?

    /// An error.
    public init(_ code: Code, _ message: String, task: String? = nil, queue: String? = nil) {
        self.code = code
        self.message = message
        self.task = task
        self.queue = queue
    }

    public var description: String {
        var context: [String] = []
        if let task { context.append("task \(task)") }
        if let queue { context.append("queue \(queue)") }
        return (context.isEmpty ? "" : context.joined(separator: ", ") + ": ") + message + " [\(code)]"
    }
}
