import Foundation
import UnixSignals

/// Prints a snapshot once, or with `watch` every `interval` until Ctrl-C:
/// as JSON (one object per line when watching) or as text lines (the
/// screen cleared first on a terminal).
func printSnapshots<T: Encodable & Sendable>(watch: Bool, json: Bool, every interval: Duration,
                                  _ snapshot: @escaping @Sendable () async -> (T, [String])) async throws {
    let clear = watch && !json && isatty(STDOUT_FILENO) == 1
    let show: @Sendable () async throws -> Void = {
        let (value, lines) = await snapshot()
        if json {
            print(try encodeJSON(value, pretty: !watch))
        } else {
            if clear { print("\u{1B}[2J\u{1B}[H", terminator: "") }
            print(lines.joined(separator: "\n"))
        }
        flushStandardOutput()
    }
    guard watch else { return try await show() }
    try await untilInterrupted {
        while !Task.isCancelled {
            try await show()
            try await Task.sleep(for: interval)
        }
    }
}

/// JSON text of an Encodable value, dates as ISO 8601.
func encodeJSON<T: Encodable>(_ value: T, pretty: Bool = true) throws -> String {
    let encoder = JSONEncoder()
    encoder.dateEncodingStrategy = .iso8601
    encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted] : [.sortedKeys]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}

/// Runs `body` until it returns or SIGINT/SIGTERM arrives (then cancels it
/// and returns). Signals come from swift-service-lifecycle's UnixSignals.
func untilInterrupted(_ body: @escaping @Sendable () async throws -> Void) async throws {
    let signals = await UnixSignalsSequence(trapping: .sigint, .sigterm)
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask {
            do { try await body() } catch is CancellationError {}
        }
        group.addTask {
            for await _ in signals { return }
        }
        _ = try await group.next()
        group.cancelAll()
    }
}
