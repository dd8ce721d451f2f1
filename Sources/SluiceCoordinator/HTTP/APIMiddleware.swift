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
