#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A task's priority level.
///
/// RabbitMQ 3.10's quorum queues have no priorities, so each level of a
/// queue is a quorum queue of its own: `<queue>` is the normal level,
/// `<queue>~high` and `<queue>~low` the others (``Topology/levelName(_:_:)``).
/// A worker started with priorities takes from every level of its queues by
/// weight (``PriorityWeights``); retries and delays come back to the level
/// they left, and dead letters keep it in the `sluice-priority` header.
public enum TaskPriority: String, Sendable, Hashable, CaseIterable {
    case high, normal, low

    /// Highest first: the order a worker lists and weighs its levels in.
    public static let highestFirst: [TaskPriority] = [.high, .normal, .low]

    /// 0 for high, 1 for normal, 2 for low.
    public var rank: Int {
        switch self {
        case .high: 0
        case .normal: 1
        case .low: 2
        }
    }
}

/// How a worker shares its slots among the levels of a queue when more than
/// one has work waiting: in proportion to these weights (default 6:3:1, so
/// under a backlog at every level high gets 60% of the starts, normal 30%,
/// low 10%; low is never starved). A level alone with work gets every slot.
public struct PriorityWeights: Sendable, Hashable {
    public var high: Int
    public var normal: Int
    public var low: Int

    /// Each weight from 1 to 1,000.
    public init(high: Int = 6, normal: Int = 3, low: Int = 1) throws {
        guard [high, normal, low].allSatisfy({ (1...1000).contains($0) }) else {
            throw SluiceError(.invalidArgument, "priority weights must be from 1 to 1000 (got high \(high), normal \(normal), low \(low))")
        }
        self.high = high
        self.normal = normal
        self.low = low
    }

    /// The default 6:3:1.
    public static let standard = try! PriorityWeights()

    /// Parses `HIGH,NORMAL,LOW`, e.g. `6,3,1`.
    public init(parsing text: String) throws {
        let parts = text.split(separator: ",", omittingEmptySubsequences: false).map { part -> Int? in
            let start = part.drop { $0.isWhitespace }
            return start.lastIndex { !$0.isWhitespace }.flatMap { Int(start[...$0]) }
        }
        guard parts.count == 3, let high = parts[0], let normal = parts[1], let low = parts[2] else {
            throw SluiceError(.invalidArgument, "priority weights '\(text)' must be three whole numbers HIGH,NORMAL,LOW, e.g. 6,3,1")
        }
        try self.init(high: high, normal: normal, low: low)
    }

    /// The weight of `priority`.
    public func weight(of priority: TaskPriority) -> Int {
        switch priority {
        case .high: high
        case .normal: normal
        case .low: low
        }
    }
}
