import ArgumentParser
import Foundation
import Logging
import SluiceAMQP
import SluiceCore
import SluiceRabbitMQ
import SluiceWire
import SluiceWorkflow

extension ConnectionOptions {
    func resolvedURL() throws -> AMQPURL {
        let text = url ?? ProcessInfo.processInfo.environment["SLUICE_URL"] ?? Self.localBroker
        do {
            return try AMQPURL(text)
        } catch let error as AMQPError {
            throw ValidationError("--url: \(error.message)")
        }
    }

    func topology() throws -> Topology {
        do { return try Topology(prefix: prefix, deliveryLimit: deliveryLimit) } catch let error as SluiceError { throw ValidationError(error.message) }
    }

    func connect(name: String) async throws -> RabbitMQBroker {
        let url = try resolvedURL()
        do {
            return try await RabbitMQBroker.connect(url: url, topology: try topology(), connectionName: name)
        } catch let error as AMQPError where error.code == .connectionFailed {
            throw CLIError("cannot reach the broker at \(url): \(error.message). Start one with scripts/broker start, or pass --url.")
        }
    }
}

/// The key that signs and checks step outcomes: `--event-key-file`'s
/// contents (surrounding whitespace dropped), else `SLUICE_EVENT_KEY`, else
/// none (outcomes unsigned and unchecked).
func eventSigner(keyFile: String?) throws -> EventSigner? {
    var key: String?
    if let keyFile {
        guard let data = FileManager.default.contents(atPath: keyFile), let text = String(data: data, encoding: .utf8) else {
            throw CLIError("cannot read --event-key-file \(keyFile)")
        }
        key = text.trimmingCharacters(in: .whitespacesAndNewlines)
    } else {
        key = ProcessInfo.processInfo.environment["SLUICE_EVENT_KEY"]
    }
    guard let key, !key.isEmpty else { return nil }
    do {
        return try EventSigner(key: Array(key.utf8))
    } catch let error as SluiceError {
        throw CLIError("the event key: \(error.message)")
    }
}

/// Logs to standard error at `level` (a valid --log-level; info if not).
func bootstrapLogging(_ level: String) {
    let level = Logger.Level(rawValue: level) ?? .info
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = level
        return handler
    }
}

/// An error printed as-is, exit status 1.
struct CLIError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}

/// Parses a duration as workflow files do (`500ms`, `30s`, `2m`, `1h30m`,
/// or a plain number of seconds), from 0 to a year.
func parseDuration(_ text: String) throws -> Duration {
    guard let ms = try? WorkflowDuration.milliseconds(text), ms <= 365 * 24 * 3_600_000 else {
        throw ValidationError("'\(text)' is not a duration from 0 to a year (examples: 500ms, 30s, 2m, 1h)")
    }
    return .milliseconds(Int64(ms))
}

/// Reads JSON arguments from a literal, `@file`, or `-` (standard input).
func readArguments(_ spec: String) throws -> [UInt8] {
    let bytes: [UInt8]
    if spec == "-" {
        bytes = Array(FileHandle.standardInput.readDataToEndOfFile())
    } else if spec.hasPrefix("@") {
        let path = String(spec.dropFirst())
        guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read \(path)") }
        bytes = Array(data)
    } else {
        bytes = Array(spec.utf8)
    }
    guard (try? JSONSerialization.jsonObject(with: Data(bytes), options: [.fragmentsAllowed])) != nil else {
        throw ValidationError("--args is not valid JSON")
    }
    return bytes
}

func printJSON(_ object: Any) {
    if let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted]) {
        print(String(decoding: data, as: UTF8.self))
    }
}

func standardError(_ text: String) {
    FileHandle.standardError.write(Data((text + "\n").utf8))
}

/// Flushes `print` output now (a pipe buffers it otherwise).
func flushStandardOutput() {
    fflush(nil)
}
