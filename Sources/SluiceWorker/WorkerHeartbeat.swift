import Foundation
import SluiceCore

/// A worker's periodic "I am alive" message on the events exchange.
public struct WorkerHeartbeat: Sendable, Codable, Hashable {
    public var worker: String
    public var host: String
    public var pid: Int
    public var queues: [String]
    public var concurrency: Int
    public var inFlight: Int
    public var processed: Int
    public var succeeded: Int
    public var retried: Int
    public var dead: Int
    public var startedAt: Date
    public var at: Date

    public func jsonBytes() -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .millisecondsSince1970
        encoder.outputFormatting = [.sortedKeys]
        return (try? Array(encoder.encode(self))) ?? []
    }
}
