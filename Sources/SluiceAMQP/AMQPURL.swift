#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SluiceWire

/// A parsed `amqp://` or `amqps://` URL, following RabbitMQ's URI spec,
/// with one extension: several nodes of a cluster, comma-separated.
///
/// `amqp://user:pass@host:port/vhost?heartbeat=10&connection_timeout=5000`
/// `amqp://user:pass@node1:5672,node2:5672,node3:5672/vhost`
///
/// * user and password default to `guest`; the port to 5672 (`amqps`: 5671),
///   for each node that gives none. Every node shares the user, vhost and
///   options: they are one cluster. A connection starts at a random node and
///   moves to the next when one cannot be reached or is lost.
/// * The vhost is the percent-decoded path: `%2f` is `/`. With no path the
///   vhost is `/`; with an empty path (`amqp://host/`) it is the empty name,
///   as the spec says.
/// * Query options: `heartbeat` (seconds, 0 turns heartbeats off),
///   `connection_timeout` (milliseconds), `channel_max`, `frame_max`, and for
///   TLS `cacertfile`, `certfile`, `keyfile`, `verify` (`verify_peer` or
///   `verify_none`) and `server_name_indication` (`disable` turns hostname
///   checks off). Unknown options are errors, so a typo is not ignored.
///
/// The password never appears in ``description`` or in errors.
public struct AMQPURL: Sendable, Hashable, CustomStringConvertible {
    /// TLS settings for `amqps://` URLs.
    public struct TLS: Sendable, Hashable {
        /// PEM file with the CA certificates that sign the broker's certificate.
        public var caCertificateFile: String?
        /// PEM file with this client's certificate, for mutual TLS.
        public var certificateFile: String?
        /// PEM file with this client's private key.
        public var keyFile: String?
        /// Verify the broker's certificate chain (on by default).
        public var verifyPeer: Bool = true
        /// Verify that the certificate names the host (on by default).
        public var verifyHostname: Bool = true

        /// TLS with verification on and no files.
        public init(caCertificateFile: String? = nil, certificateFile: String? = nil, keyFile: String? = nil,
                    verifyPeer: Bool = true, verifyHostname: Bool = true) {
            self.caCertificateFile = caCertificateFile
            self.certificateFile = certificateFile
            self.keyFile = keyFile
            self.verifyPeer = verifyPeer
            self.verifyHostname = verifyHostname
        }
    }

    /// `amqp` or `amqps`.
    public var scheme: String
    /// User name (default `guest`).
    public var user: String
    /// Password (default `guest`); never printed.
    public var password: String
    /// One broker node: a host name or address (IPv6 without brackets) and a TCP port.
    public struct Node: Sendable, Hashable, CustomStringConvertible {
        public var host: String
        public var port: Int

        public init(host: String, port: Int) {
            self.host = host
            self.port = port
        }

        /// `host:port` (`[v6]:port`).
        public var description: String { "\(host.contains(":") ? "[\(host)]" : host):\(port)" }
    }

    /// The nodes to connect to, at least one (several for a cluster).
    public var nodes: [Node]
    /// The first node's host.
    public var host: String {
        get { nodes[0].host }
        set { nodes[0].host = newValue }
    }
    /// The first node's port.
    public var port: Int {
        get { nodes[0].port }
        set { nodes[0].port = newValue }
    }
    /// Virtual host.
    public var vhost: String
    /// Heartbeat interval proposed to the broker, in seconds; 0 turns heartbeats off.
    public var heartbeatSeconds: Int
    /// How long to wait for TCP, TLS and the AMQP handshake, in milliseconds.
    public var connectionTimeoutMilliseconds: Int
    /// Highest channel number this client asks for.
    public var channelMax: Int
    /// Largest frame this client asks for, in bytes.
    public var frameMax: Int
    /// TLS settings; non-nil exactly for `amqps`.
    public var tls: TLS?

    /// RabbitMQ's defaults: `amqp://guest:guest@localhost:5672/`.
    public init(host: String = "localhost", port: Int? = nil, user: String = "guest", password: String = "guest",
                vhost: String = "/", tls: TLS? = nil) {
        self.scheme = tls == nil ? "amqp" : "amqps"
        self.nodes = [Node(host: host, port: port ?? (tls == nil ? 5672 : 5671))]
        self.user = user
        self.password = password
        self.vhost = vhost
        self.heartbeatSeconds = 60
        self.connectionTimeoutMilliseconds = 30_000
        self.channelMax = 2047
        self.frameMax = 131_072
        self.tls = tls
    }

    /// Parses a URL; throws ``AMQPError`` with code `invalidURL` and a reason.
    public init(_ string: String) throws {
        func fail(_ why: String) -> AMQPError {
            AMQPError(.invalidURL, operation: "parse URL \(AMQPURL.redacted(string))", message: why)
        }
        guard let schemeEnd = string.firstRange(of: "://") else {
            throw fail("expected amqp://host or amqps://host")
        }
        let scheme = string[..<schemeEnd.lowerBound].lowercased()
        guard scheme == "amqp" || scheme == "amqps" else {
            throw fail("unsupported scheme '\(scheme)': use amqp or amqps")
        }
        self.init(tls: scheme == "amqps" ? TLS() : nil)

        var rest = string[schemeEnd.upperBound...]
        var query: Substring = ""
        if let q = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: q)...]
            rest = rest[..<q]
        }
        if rest.contains("#") { throw fail("fragments (#) are not allowed") }
        var path: Substring? = nil
        if let slash = rest.firstIndex(of: "/") {
            path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }
        var hostPort = rest
        if let at = rest.lastIndex(of: "@") {
            let userInfo = rest[..<at]
            hostPort = rest[rest.index(after: at)...]
            if let colon = userInfo.firstIndex(of: ":") {
                user = try Self.decode(userInfo[..<colon], fail)
                password = try Self.decode(userInfo[userInfo.index(after: colon)...], fail)
            } else {
                user = try Self.decode(userInfo, fail)
            }
        }
        // A comma cannot be part of a host name, an address or a port.
        let entries = hostPort.split(separator: ",", omittingEmptySubsequences: false)
        if entries.count > 1 && entries.contains(where: \.isEmpty) { throw fail("an empty node in the list '\(hostPort)'") }
        let defaultPort = port
        nodes = try entries.map { try Self.node($0, defaultPort: defaultPort, fail) }
        if let path {
            if path.contains("/") { throw fail("the vhost must be one path segment; write '/' in a vhost as %2f") }
            vhost = try Self.decode(path, fail)
        }
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = try Self.decode(parts[0], fail)
            let value = parts.count > 1 ? try Self.decode(parts[1], fail) : ""
            try applyOption(key, value, fail)
        }
    }

    /// One `host[:port]` (or `[v6][:port]`) of the node list.
    private static func node(_ text: Substring, defaultPort: Int, _ fail: (String) -> AMQPError) throws -> Node {
        var host = ""
        var portText: Substring? = nil
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw fail("unclosed '[' in IPv6 host") }
            host = String(text[text.index(after: text.startIndex)..<close])
            let after = text[text.index(after: close)...]
            if after.hasPrefix(":") { portText = after.dropFirst() } else if !after.isEmpty { throw fail("unexpected text after IPv6 host") }
        } else if let colon = text.lastIndex(of: ":") {
            host = try decode(text[..<colon], fail)
            portText = text[text.index(after: colon)...]
        } else if !text.isEmpty {
            host = try decode(text, fail)
        }
        if host.isEmpty { host = "localhost" }
        var port = defaultPort
        if let portText {
            guard let value = Int(portText), (1...65535).contains(value) else {
                throw fail("port '\(portText)' is not a number from 1 to 65535")
            }
            port = value
        }
        return Node(host: host, port: port)
    }

    /// Several URLs of one cluster (a repeated `--url`) as one: their nodes
    /// in order, duplicates dropped. They must agree on everything else.
    public init(joining strings: [String]) throws {
        guard let first = strings.first else {
            throw AMQPError(.invalidURL, operation: "parse URLs", message: "no URL given")
        }
        self = try AMQPURL(first)
        for string in strings.dropFirst() {
            let other = try AMQPURL(string)
            var comparable = other
            comparable.nodes = nodes
            guard comparable == self else {
                throw AMQPError(.invalidURL, operation: "parse URL \(AMQPURL.redacted(string))",
                                message: "the URLs of one cluster must differ only in their nodes (scheme, user, password, vhost and options the same)")
            }
            for node in other.nodes where !nodes.contains(node) { nodes.append(node) }
        }
    }

    /// The same URL with only `node` (what one connection attempt uses).
    public func only(_ node: Node) -> AMQPURL {
        var url = self
        url.nodes = [node]
        return url
    }

    private mutating func applyOption(_ key: String, _ value: String, _ fail: (String) -> AMQPError) throws {
        func int(_ range: ClosedRange<Int>) throws -> Int {
            guard let v = Int(value), range.contains(v) else {
                throw fail("option \(key)=\(value) must be a whole number from \(range.lowerBound) to \(range.upperBound)")
            }
            return v
        }
        func needTLS() throws {
            if tls == nil { throw fail("option \(key) needs an amqps:// URL") }
        }
        switch key {
        case "heartbeat": heartbeatSeconds = try int(0...65535)
        case "connection_timeout": connectionTimeoutMilliseconds = try int(1...3_600_000)
        case "channel_max": channelMax = try int(1...65535)
        case "frame_max": frameMax = try int(4096...Int(Int32.max))
        case "cacertfile": try needTLS(); tls?.caCertificateFile = value
        case "certfile": try needTLS(); tls?.certificateFile = value
        case "keyfile": try needTLS(); tls?.keyFile = value
        case "verify":
            try needTLS()
            switch value {
            case "verify_peer": tls?.verifyPeer = true
            case "verify_none": tls?.verifyPeer = false; tls?.verifyHostname = false
            default: throw fail("option verify=\(value) must be verify_peer or verify_none")
            }
        case "server_name_indication":
            try needTLS()
            if value == "disable" { tls?.verifyHostname = false }
        case "auth_mechanism":
            if value.uppercased() != "PLAIN" { throw fail("only auth_mechanism=plain is supported") }
        default:
            throw fail("unknown option '\(key)'")
        }
    }

    private static func decode(_ text: Substring, _ fail: (String) -> AMQPError) throws -> String {
        guard text.contains("%") else { return String(text) }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(text.utf8.count)
        var iterator = text.utf8.makeIterator()
        while let byte = iterator.next() {
            if byte == UInt8(ascii: "%") {
                guard let h = iterator.next(), let l = iterator.next(),
                      let hi = Hex.value(ofDigit: h), let lo = Hex.value(ofDigit: l) else {
                    throw fail("bad percent-encoding in '\(redactedComponent(text))'")
                }
                bytes.append(hi << 4 | lo)
            } else {
                bytes.append(byte)
            }
        }
        guard let decoded = String(validating: bytes, as: UTF8.self) else {
            throw fail("percent-encoding is not valid UTF-8")
        }
        return decoded
    }

    /// Hides anything that could be a password in a component we report.
    private static func redactedComponent(_ text: Substring) -> String {
        text.count > 24 ? String(text.prefix(8)) + "…" : String(text)
    }

    /// A URL string with its password replaced by `***`.
    static func redacted(_ string: String) -> String {
        guard let schemeEnd = string.firstRange(of: "://") else { return string }
        let afterScheme = string[schemeEnd.upperBound...]
        let authorityEnd = afterScheme.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? afterScheme.endIndex
        let authority = afterScheme[..<authorityEnd]
        guard let at = authority.lastIndex(of: "@"), let colon = authority[..<at].firstIndex(of: ":") else { return string }
        return String(string[..<colon]) + ":***" + String(string[at...])
    }

    /// The vhost as it appears in a URL path (`/` is written `%2f`).
    private var encodedVhost: String {
        var out = ""
        for scalar in vhost.unicodeScalars {
            switch scalar {
            case "a"..."z", "A"..."Z", "0"..."9", "-", ".", "_", "~": out.unicodeScalars.append(scalar)
            default:
                for byte in String(scalar).utf8 { out += "%" + String(byte, radix: 16, uppercase: false).leftPadded(to: 2) }
            }
        }
        return out
    }

    /// The URL with the password shown as `***`.
    public var description: String {
        "\(scheme)://\(user):***@\(nodes.map(\.description).joined(separator: ","))/\(encodedVhost)"
    }
}

extension String {
    fileprivate func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
