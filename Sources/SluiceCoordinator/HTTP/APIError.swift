import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOHTTP1
import SluiceClient
import SluiceCore
import SluiceWorkflow

/// An API error: an HTTP status and a stable code.
public struct APIError: Error, Sendable, CustomStringConvertible {
    /// The error codes the API answers with (`error.code` in the body); each has its HTTP status.
    public enum Code: String, Sendable {
        case badRequest = "bad_request"
        case unauthorized
        case notFound = "not_found"
        case conflict
        case tooLarge = "too_large"
        case standby
        case invalidDefinition = "invalid_definition"
        case unknownWorkflow = "unknown_workflow"
        case internalError = "internal"
        case unavailable

        var status: HTTPResponse.Status {
            switch self {
            case .badRequest, .invalidDefinition: return .badRequest
            case .unauthorized: return .unauthorized
            case .notFound, .unknownWorkflow: return .notFound
            case .conflict: return .conflict
            case .tooLarge: return .contentTooLarge
            case .standby, .unavailable: return .serviceUnavailable
            case .internalError: return .internalServerError
            }
        }
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }

    /// The API error for any error a handler threw.
    static func from(_ error: any Error) -> APIError {
        switch error {
        case let e as APIError: return e
        case let e as WorkflowError: return APIError(.invalidDefinition, e.description)
        case let e as StoreError:
            switch e.code {
            case .conflict: return APIError(.conflict, e.message)
            case .leaseLost: return APIError(.standby, e.message)
            case .notFound: return APIError(.notFound, e.message)
            case .invalidArgument: return APIError(.badRequest, e.message)
            default: return APIError(.internalError, e.message)
            }
        case let e as RunEngine.EngineError:
            switch e {
            case .unknownWorkflow: return APIError(.unknownWorkflow, e.description)
            case .unknownRun: return APIError(.notFound, e.description)
            case .invalid: return APIError(.badRequest, e.description)
            }
        case let e as SluiceError:
            // The broker's failures are the server's, not the caller's.
            if e.code == .enqueueFailed || e.code == .broker { return APIError(.unavailable, "\(e)") }
            if e.code == .notFound { return APIError(.notFound, e.message) }
            return APIError(.badRequest, "\(e)")
        case let e as HTTPParserError:
            // A body the HTTP parser could not read (a malformed chunk): the client's fault.
            return APIError(.badRequest, "the request is malformed: \(HTTPGuard.describe(e))")
        case let e as any HTTPResponseError:
            // Hummingbird's own: no route, a body over the limit (NIOTooManyBytesError), ...
            switch e.status {
            case .contentTooLarge: return APIError(.tooLarge, "the request body is too large")
            case .notFound: return APIError(.notFound, "no such route")
            case .methodNotAllowed: return APIError(.badRequest, "method not allowed")
            default: return APIError(e.status.code < 500 ? .badRequest : .internalError, (e as? HTTPError)?.body ?? "\(e.status)")
            }
        default: return APIError(.internalError, "\(error)")
        }
    }
}
