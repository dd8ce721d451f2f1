#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif

/// Tasks that must not run: an entry of the revocation stream
/// (``Topology/revocationStream``), which every worker reads from its first
/// retained entry and then follows.
///
/// A worker that meets a revoked task before its handler starts dead-letters
/// it with reason ``DeadReason/revoked``; with ``terminate``, a handler that
/// already runs is cancelled (as the time limit cancels: a handler that
/// ignores cancellation runs on). An entry with a ``marker`` and no task ids
/// is a worker's own: it publishes one at start and reads until it sees it,
/// so it knows every earlier revocation before it takes a task.
public struct Revocation: Sendable, Hashable, Codable {
    /// The revoked tasks' ids.
    public var taskIDs: [String]
    /// Also cancel handlers that already run.
    public var terminate: Bool
    /// When it was revoked (workers forget it a retention period later).
    public var at: Date
    /// Why, for the dead letter's message.
    public var reason: String?
    /// A worker's catch-up marker (no task ids).
    public var marker: String?

    /// Task ids in one entry at most: ``TaskClient`` splits longer lists.
    public static let maxTaskIDs = 1000

    public init(taskIDs: [String], terminate: Bool = false, at: Date = Date(), reason: String? = nil) {
        self.taskIDs = taskIDs
        self.terminate = terminate
        self.at = at
        self.reason = reason
        self.marker = nil
    }

    /// A worker's catch-up marker.
    public init(marker: String, at: Date = Date()) {
        self.taskIDs = []
        self.terminate = false
        self.at = at
        self.reason = nil
        self.marker = marker
    }

    /// JSON for the wire, `at` in milliseconds since the epoch.
    public func jsonBytes() -> [UInt8] {
        // Encoding these plain fields cannot fail.
        Array((try? Self.encoder.encode(self)) ?? Data("{}".utf8))
    }

    /// Reads an entry; throws on anything that is not one (entries come
    /// from anybody allowed to publish to the stream).
    public static func decode(_ bytes: [UInt8]) throws -> Revocation {
        try decoder.decode(Revocation.self, from: Data(bytes))
    }

    private enum CodingKeys: String, CodingKey {
        case taskIDs, terminate, at, reason, marker
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        taskIDs = try c.decodeIfPresent([String].self, forKey: .taskIDs) ?? []
        terminate = try c.decodeIfPresent(Bool.self, forKey: .terminate) ?? false
        at = Date(epochMilliseconds: try c.decode(Int64.self, forKey: .at))
        reason = try c.decodeIfPresent(String.self, forKey: .reason)
        marker = try c.decodeIfPresent(String.self, forKey: .marker)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        if !taskIDs.isEmpty { try c.encode(taskIDs, forKey: .taskIDs) }
        if terminate { try c.encode(true, forKey: .terminate) }
        try c.encode(at.epochMilliseconds, forKey: .at)
        try c.encodeIfPresent(reason, forKey: .reason)
        try c.encodeIfPresent(marker, forKey: .marker)
    }

    private static let encoder: JSONEncoder = {
        let e = JSONEncoder()
        e.outputFormatting = .sortedKeys
        return e
    }()
    private static let decoder = JSONDecoder()
}
