#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Synchronization

/// Per consumed queue, the newest AMQP `timestamp` (seconds) among the
/// deliveries received, for heartbeats: monitors bound a backlog's age by it.
/// Each consumer loop keeps its own newest value and comes here only when it
/// grows, which with one-second timestamps is at most once a second.
final class NewestTaken: Sendable {
    private let seconds = Mutex<[String: UInt64]>([:])

    /// A timestamp more than a minute ahead of this clock (a producer's
    /// clock ahead, or milliseconds where seconds belong) is ignored: kept as
    /// the newest, it would hide the backlog's age for good.
    func record(_ timestamp: UInt64, queue: String) {
        guard timestamp <= UInt64(max(0, Date().timeIntervalSince1970 + 60)) else { return }
        seconds.withLock { if timestamp > $0[queue, default: 0] { $0[queue] = timestamp } }
    }

    /// Nil until a delivery with a timestamp arrived.
    var dates: [String: Date]? {
        let all = seconds.withLock { $0 }
        return all.isEmpty ? nil : all.mapValues { Date(timeIntervalSince1970: TimeInterval($0)) }
    }
}
