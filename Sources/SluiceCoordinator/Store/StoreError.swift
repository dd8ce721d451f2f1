/// A store operation that failed, with a stable code.
public struct StoreError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of store error this is; stable, for programs to switch on.
    public enum Code: String, Sendable, Hashable {
        /// A unique key is taken (a run id, an idempotency key, a definition version with other content).
        case conflict
        case notFound = "not_found"
        case invalidArgument = "invalid_argument"
        /// The database said no.
        case database
        /// The stored schema is newer than this version of Sluice knows.
        case schemaTooNew = "schema_too_new"
        /// The coordinator lease this store writes under is held by another coordinator.
        case leaseLost = "lease_lost"
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
