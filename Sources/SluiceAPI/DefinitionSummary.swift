public import Foundation

/// A registered definition without its body: what a listing shows.
public struct DefinitionSummary: Sendable, Hashable, Codable {
    public var name: String
    public var version: Int
    public var createdAt: Date
    /// The stored definition's size in bytes (JSON).
    public var bytes: Int

    public init(name: String, version: Int, createdAt: Date, bytes: Int) {
        self.name = name
        self.version = version
        self.createdAt = createdAt
        self.bytes = bytes
    }

    /// The cursor that continues a listing after this entry.
    public var cursor: String { "\(version):\(name)" }
}
