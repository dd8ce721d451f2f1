import Foundation
import HTTPTypes
import Hummingbird
import Logging
import SluiceAPI

/// Turns every error into a JSON error response.
struct ErrorMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch {
            let api = APIError.from(error)
            if api.code == .internalError { context.logger.error("request failed", metadata: ["error": "\(error)"]) }
            return try encoded(APIErrorBody(error: .init(code: api.code.rawValue, message: api.message)), status: api.code.status)
        }
    }
}

/// Requires `Authorization: Bearer <token>` everywhere but /healthz and the
/// dashboard (`/ui`), which signs browsers in with the same token itself.
struct TokenMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext
    let token: String
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        if path == "/healthz" || path == "/ui" || path.hasPrefix("/ui/") { return try await next(request, context) }
        guard let header = request.headers[.authorization], header.hasPrefix("Bearer "),
              constantTimeEqual(Array(header.dropFirst(7).utf8), Array(token.utf8)) else {
            throw APIError(.unauthorized, "a bearer token is required (Authorization: Bearer <token>)")
        }
        return try await next(request, context)
    }

    /// Compares without stopping at the first difference.
    private func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var diff: UInt8 = 0
        for (x, y) in zip(a, b) { diff |= x ^ y }
        return diff == 0
    }
}

/// Without a token (loopback only), keeps web pages out: any site a local
/// browser opens could otherwise send requests to 127.0.0.1 (a form or a
/// `no-cors` fetch needs no permission), and a site whose name it points at
/// 127.0.0.1 (DNS rebinding) could even read the answers. So the Host must
/// name this machine, and a request that changes something must not come
/// from a page of another origin. Clients that are not browsers send
/// neither Origin nor Sec-Fetch-Site, and are unaffected.
struct LoopbackGuardMiddleware: RouterMiddleware {
    typealias Context = BasicRequestContext

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let authority = request.head.authority
        if let authority, !Self.isLoopbackAuthority(authority) {
            throw APIError(.unauthorized, "this coordinator has no token, so it answers only requests addressed to a loopback name (127.0.0.1, [::1], localhost), not \(authority)")
        }
        if request.method != .get && request.method != .head {
            let fetchSite = request.headers[HTTPField.Name("Sec-Fetch-Site")!]
            let origin = request.headers[.origin]
            let crossSite = fetchSite == "cross-site" || fetchSite == "same-site"
            let otherOrigin = origin.map { $0 == "null" || Self.authority(ofOrigin: $0) != authority?.lowercased() } ?? false
            if crossSite || otherOrigin {
                throw APIError(.unauthorized, "a request from a web page of another site (Origin \(origin ?? "none")) is refused; this coordinator has no token")
            }
        }
        return try await next(request, context)
    }

    /// `127.0.0.1:27200`, `localhost:27200`, `[::1]:27200` (with or without the port).
    static func isLoopbackAuthority(_ authority: String) -> Bool {
        var host = authority.lowercased()
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return false }
            host = String(host[host.index(after: host.startIndex)..<close])
            return host == "::1"
        }
        if let colon = host.lastIndex(of: ":") { host = String(host[..<colon]) }
        if host == "localhost" { return true }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }

    /// `http://127.0.0.1:27200` → `127.0.0.1:27200`.
    static func authority(ofOrigin origin: String) -> String? {
        guard let scheme = origin.range(of: "://") else { return nil }
        return String(origin[scheme.upperBound...]).lowercased()
    }
}
