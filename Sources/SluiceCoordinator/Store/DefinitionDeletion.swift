public import SluiceAPI

extension DefinitionSummary {
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
    /// Refused: runs that may still need it (pending, running, paused,
    /// failed, which can be retried, or compensating) use it.
    case inUse(runs: Int)
}
