import Foundation

/// `postgres://user:password@host:port/database?sslmode=...` (also `postgresql://`).
/// The password never appears in `description`.
///
/// TLS follows libpq's `sslmode` (default `prefer`): `disable`; `prefer`
/// (TLS if the server offers it, else plain); `require` (TLS; the certificate
/// is checked against `sslrootcert` only if one is given, as libpq does);
/// `verify-ca` (the chain must lead to `sslrootcert`, which it requires);
/// `verify-full` (the chain must lead to `sslrootcert`, or the system's CAs,
/// and the host name or IP address must match the certificate). `sslcert`
/// and `sslkey` give a client certificate.
public struct PostgresURL: Sendable, Hashable, CustomStringConvertible {
    /// libpq's `sslmode`: whether to use TLS and what to verify.
    public enum SSLMode: String, Sendable, Hashable, CaseIterable {
        case disable, prefer, require
        case verifyCA = "verify-ca"
        case verifyFull = "verify-full"
    }

    public var host: String
    public var port: Int
    public var username: String
    public var password: String?
    public var database: String
    public var sslMode: SSLMode
    /// PEM file of the CAs to trust (`sslrootcert`); nil: the system's.
    public var sslRootCertificate: String?
    /// PEM files of a client certificate and its key (`sslcert`, `sslkey`).
    public var sslCertificate: String?
    public var sslKey: String?

    /// The query parameters this URL understands.
    public static let parameters = ["sslmode", "sslrootcert", "sslcert", "sslkey"]

    public init(_ text: String) throws {
        guard let components = URLComponents(string: text), let scheme = components.scheme,
              scheme == "postgres" || scheme == "postgresql" else {
            // Not echoed: a URL that does not parse may hide its password anywhere.
            throw StoreError(.invalidArgument, "expected a URL like postgres://user:password@host:port/database")
        }
        guard let host = components.host, !host.isEmpty else { throw StoreError(.invalidArgument, "the PostgreSQL URL has no host") }
        self.host = host
        self.port = components.port ?? 5432
        self.username = components.percentEncodedUser.flatMap { $0.removingPercentEncoding } ?? "postgres"
        self.password = components.percentEncodedPassword.flatMap { $0.removingPercentEncoding }
        let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        self.database = path.isEmpty ? username : path

        var query: [String: String] = [:]
        for item in components.queryItems ?? [] {
            guard Self.parameters.contains(item.name) else {
                throw StoreError(.invalidArgument, "the PostgreSQL URL has an unknown parameter '\(item.name)'"
                                 + " (known: \(Self.parameters.joined(separator: ", ")))")
            }
            guard let value = item.value, !value.isEmpty else {
                throw StoreError(.invalidArgument, "the PostgreSQL URL parameter '\(item.name)' has no value")
            }
            guard query.updateValue(value, forKey: item.name) == nil else {
                throw StoreError(.invalidArgument, "the PostgreSQL URL gives '\(item.name)' twice")
            }
        }
        if let mode = query["sslmode"] {
            guard let parsed = SSLMode(rawValue: mode) else {
                throw StoreError(.invalidArgument, "sslmode '\(mode)' is not one of "
                                 + SSLMode.allCases.map(\.rawValue).joined(separator: ", ")
                                 + " (allow is not supported: use prefer)")
            }
            self.sslMode = parsed
        } else {
            self.sslMode = .prefer
        }
        self.sslRootCertificate = query["sslrootcert"]
        self.sslCertificate = query["sslcert"]
        self.sslKey = query["sslkey"]
        if (sslCertificate == nil) != (sslKey == nil) {
            throw StoreError(.invalidArgument, "sslcert and sslkey go together: give both or neither")
        }
        if sslMode == .disable, sslRootCertificate != nil || sslCertificate != nil {
            throw StoreError(.invalidArgument, "sslmode=disable with certificate files: choose a TLS mode or drop the files")
        }
        // Any public CA would do for a chain checked without the host name.
        if sslMode == .verifyCA, sslRootCertificate == nil {
            throw StoreError(.invalidArgument, "sslmode=verify-ca needs sslrootcert (the CA that signed the server's certificate)")
        }
        for path in [sslRootCertificate, sslCertificate, sslKey].compactMap({ $0 }) where !FileManager.default.isReadableFile(atPath: path) {
            throw StoreError(.invalidArgument, "cannot read \(path), named in the PostgreSQL URL")
        }
    }

    public var description: String {
        var text = "postgres://\(username)\(password == nil ? "" : ":***")@\(host):\(port)/\(database)?sslmode=\(sslMode.rawValue)"
        if let sslRootCertificate { text += "&sslrootcert=\(sslRootCertificate)" }
        if let sslCertificate { text += "&sslcert=\(sslCertificate)" }
        if let sslKey { text += "&sslkey=\(sslKey)" }
        return text
    }
}
