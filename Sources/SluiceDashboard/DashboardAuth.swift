import Crypto
import Foundation

/// Who may see and act on the dashboard, and which forms are genuine.
///
/// With a token (any coordinator listening beyond loopback has one), a
/// browser signs in once: the session cookie holds an HMAC of the token (not
/// the token), HttpOnly and SameSite=Strict, Secure when the page came over
/// TLS. Every form that changes something carries a field derived from a
/// secret (the token, or a key made at start when there is none) that a page
/// of another site cannot read, and a request whose Origin is another site
/// is refused outright: loopback-only dashboards are protected the same way,
/// since any site a local browser opens could post to 127.0.0.1.
struct DashboardAuth: Sendable {
    static let sessionCookie = "sluice_session"
    static let flashCookie = "sluice_flash"

    let token: String?
    private let secret: SymmetricKey

    init(token: String?) {
        let token = (token?.isEmpty ?? true) ? nil : token
        self.token = token
        secret = token.map { SymmetricKey(data: Data($0.utf8)) } ?? SymmetricKey(size: .bits256)
    }

    var needsSignIn: Bool { token != nil }

    /// How long a sign-in lasts.
    static let sessionSeconds = 12 * 3600

    /// A session cookie's value: when it was issued, and an HMAC of that
    /// under the token, so a copied cookie ends with its session.
    func sessionValue(issuedAt: Int = Int(Date().timeIntervalSince1970)) -> String {
        "\(issuedAt).\(mac("sluice-ui-session.\(issuedAt)"))"
    }

    /// A new session's cookie value.
    var sessionValue: String { sessionValue() }

    /// The hidden field every changing form carries.
    var formToken: String { mac("sluice-ui-form") }

    /// Whether `token` (typed at sign-in) is the configured one.
    func accepts(token candidate: String) -> Bool {
        guard let token else { return true }
        // Digests, of equal length whatever was typed: the comparison says nothing of the token's length.
        return Self.constantTimeEqual(Array(SHA256.hash(data: Data(candidate.utf8))), Array(SHA256.hash(data: Data(token.utf8))))
    }

    /// Whether the request's cookies hold a valid session.
    func isSignedIn(cookieHeader: String?) -> Bool {
        guard needsSignIn else { return true }
        guard let value = Self.cookie(Self.sessionCookie, in: cookieHeader), let dot = value.firstIndex(of: "."),
              let issued = Int(value[..<dot]) else { return false }
        let age = Int(Date().timeIntervalSince1970) - issued
        guard age >= -60, age < Self.sessionSeconds else { return false }
        return Self.constantTimeEqual(Array(value.utf8), Array(sessionValue(issuedAt: issued).utf8))
    }

    func isGenuine(formToken candidate: String?) -> Bool {
        guard let candidate else { return false }
        return Self.constantTimeEqual(Array(candidate.utf8), Array(formToken.utf8))
    }

    /// False when the browser says the request comes from another site.
    static func isSameOrigin(origin: String?, fetchSite: String?, host: String?) -> Bool {
        if let fetchSite, fetchSite == "cross-site" || fetchSite == "same-site" { return false }
        guard let origin, origin != "null" else { return fetchSite == nil || fetchSite == "same-origin" || fetchSite == "none" }
        guard let host, let url = URL(string: origin), let originHost = url.host else { return false }
        let originAuthority = url.port.map { "\(originHost):\($0)" } ?? originHost
        return originAuthority.lowercased() == host.lowercased()
    }

    static func cookie(_ name: String, in header: String?) -> String? {
        guard let header else { return nil }
        for part in header.split(separator: ";") {
            let pair = part.trimmingCharacters(in: .whitespaces)
            guard let eq = pair.firstIndex(of: "=") else { continue }
            if pair[..<eq] == name { return String(pair[pair.index(after: eq)...]) }
        }
        return nil
    }

    /// A cookie for the dashboard's paths.
    static func setCookie(_ name: String, _ value: String, secure: Bool, maxAge: Int? = nil) -> String {
        var text = "\(name)=\(value); Path=/ui; HttpOnly; SameSite=Strict"
        if let maxAge { text += "; Max-Age=\(maxAge)" }
        if secure { text += "; Secure" }
        return text
    }

    private func mac(_ purpose: String) -> String {
        HMAC<SHA256>.authenticationCode(for: Data(purpose.utf8), using: secret).map { String(format: "%02x", $0) }.joined()
    }

    private static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for (x, y) in zip(a, b) { diff |= x ^ y }
        return diff == 0
    }
}
