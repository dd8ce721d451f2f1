import Foundation

/// `postgres://user:password@host:port/database` (also `postgresql://`).
/// The password never appears in `description`.
public struct PostgresURL: Sendable, Hashable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String

    public init(_ text: String) throws {
        guard let components = URLComponents(string: text), let scheme = components.scheme,
              scheme == "postgres" || scheme == "postgresql" else {
            throw StoreError(.invalidArgument, "expected postgres://user@host:port/database, got '\(Self.redact(text))'")
        }
        guard let host = components.host, !host.isEmpty else { throw StoreError(.invalidArgument, "the PostgreSQL URL has no host") }
        self.host = host
        self.port = components.port ?? 5432
        self.username = components.percentEncodedUser.flatMap { $0.removingPercentEncoding } ?? "postgres"
        self.password = components.percentEncodedPassword.flatMap { $0.removingPercentEncoding }
        let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        self.database = path.isEmpty ? username : path
    }

    public var description: String {
        "postgres://\(username)\(password == nil ? "" : ":***")@\(host):\(port)/\(database)"
    }

    static func redact(_ text: String) -> String {
        guard let at = text.lastIndex(of: "@"), let colon = text[..<at].lastIndex(of: ":"),
              text[..<colon].hasSuffix("//") == false, text[..<colon].contains("//") else { return text }
        return String(text[...colon]) + "***" + String(text[at...])
    }
}
