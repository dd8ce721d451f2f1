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

    /// Name and version from a cursor made by ``cursor``.
    public static func parse(cursor: String) throws -> (name: String, version: Int) {
        guard let colon = cursor.firstIndex(of: ":"), let version = Int(cursor[..<colon]) else {
            throw StoreError(.invalidArgument, "'\(cursor.prefix(100))' is not a definition cursor")
        }
        return (String(cursor[cursor.index(after: colon)...]), version)
    }
}

/// What deleting a definition did.
public enum DefinitionDeletion: Sendable, Hashable {
    case deleted
    case notFound
    /// Refused: runs that may still need it (pending, running, paused or
    /// failed, which can be retried) use it.
    case inUse(runs: Int)
}
