#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
public import SluiceCore

/// Task handlers by name.
///
/// A handler returns its result as JSON bytes (or nil); the worker puts the
/// result in the `succeeded` event. Cooperative cancellation tells a handler
/// that its time limit passed or the worker is shutting down.
public struct HandlerRegistry: Sendable {
    /// A handler on raw JSON.
    public typealias Handler = @Sendable (TaskContext) async throws -> [UInt8]?

    private(set) var handlers: [String: Handler] = [:]
    /// Runs every task name without a handler of its own (e.g. `sluice worker --exec`).
    public var fallback: Handler?

    public init() {}

    /// The registered task names.
    public var names: [String] { handlers.keys.sorted() + (fallback == nil ? [] : ["*"]) }

    /// Registers a handler on raw JSON arguments.
    public mutating func register(_ name: String, _ handler: @escaping Handler) {
        handlers[name] = handler
    }

    /// Registers a typed handler for a ``TaskDefinition``.
    public mutating func register<T: TaskDefinition, R: Encodable & Sendable>(
        _ task: T.Type, _ handler: @escaping @Sendable (T.Arguments, TaskContext) async throws -> R
    ) {
        handlers[T.name] = { context in
            let arguments = try context.decode(T.Arguments.self)
            let result = try await handler(arguments, context)
            if result is EmptyResult { return nil }
            return Array(try JSONEncoder().encode(result))
        }
    }

    func handler(for name: String) -> Handler? { handlers[name] ?? fallback }

    /// The same registry with every handler (and the fallback) wrapped by `wrap`.
    func wrapped(_ wrap: (@escaping Handler) -> Handler) -> HandlerRegistry {
        var copy = self
        copy.handlers = handlers.mapValues { wrap($0) }
        copy.fallback = fallback.map { wrap($0) }
        return copy
    }
}

/// A result for handlers that return nothing.
public struct EmptyResult: Codable, Sendable {
    public init() {}
}
