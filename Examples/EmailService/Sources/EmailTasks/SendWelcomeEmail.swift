import SluiceCore

/// The task both sides agree on: its name, queue and arguments.
public struct SendWelcomeEmail: TaskDefinition {
    public struct Arguments: Codable, Sendable {
        public var to: String
        public var name: String
        public init(to: String, name: String) {
            self.to = to
            self.name = name
        }
    }

    public struct Receipt: Codable, Sendable {
        public var messageID: String
        public init(messageID: String) { self.messageID = messageID }
    }

    public static let name = "emails.welcome"
    public static let queue = "emails"
}
