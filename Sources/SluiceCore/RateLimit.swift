/// Starts allowed per second for one task name or one queue, held across
/// every worker of a prefix that sets the same limit: each live worker
/// starts its share (the limit divided by the live workers that set it,
/// as their heartbeats tell), and tasks over the limit stay in the queue.
public struct RateLimit: Sendable, Hashable, Codable {
    /// What the limit counts.
    public enum Scope: Sendable, Hashable, Codable {
        /// Starts of tasks with this name, whatever their queue.
        case task(String)
        /// Starts of tasks from this queue (all its priority levels).
        case queue(String)
    }

    public var scope: Scope
    /// Starts per second across all workers; more than 0.
    public var perSecond: Double

    public init(_ scope: Scope, perSecond: Double) {
        self.scope = scope
        self.perSecond = perSecond
    }

    /// The key heartbeats list this limit under: `task:<name>` or `queue:<name>`.
    public var key: String {
        switch scope {
        case .task(let name): "task:\(name)"
        case .queue(let name): "queue:\(name)"
        }
    }

    /// Checks the rate and the name; throws a clear error otherwise.
    public func validate() throws(SluiceError) {
        guard perSecond.isFinite, perSecond >= 1.0 / 86_400, perSecond <= 1_000_000 else {
            throw SluiceError(.invalidArgument, "a rate limit must be from 1 a day to 1000000 a second (got \(perSecond)/s)")
        }
        switch scope {
        case .task(let name):
            guard !name.isEmpty, name.utf8.count <= 255 else {
                throw SluiceError(.invalidArgument, "a rate-limited task name must be 1-255 bytes")
            }
        case .queue(let name):
            do { try Topology.validateBaseQueue(name) } catch let error as SluiceError { throw error } catch {
                throw SluiceError(.invalidArgument, "\(error)")
            }
        }
    }

    /// Parses `NAME=RATE`, the rate as `100/s`, `600/m` or `10/h` (a bare
    /// number is per second); the name is the task's or, with `queue`, the queue's.
    public static func parse(_ text: String, queue: Bool = false) throws(SluiceError) -> RateLimit {
        guard let equals = text.lastIndex(of: "="), equals != text.startIndex else {
            throw SluiceError(.invalidArgument, "rate limit '\(text)' must be NAME=RATE, e.g. emails.send=100/s")
        }
        let name = String(text[..<equals])
        let rate = try parseRate(String(text[text.index(after: equals)...]))
        let limit = RateLimit(queue ? .queue(name) : .task(name), perSecond: rate)
        try limit.validate()
        return limit
    }

    /// `100/s`, `1.5/s`, `600/m`, `10/h` or `100` (per second), in starts per second.
    public static func parseRate(_ text: String) throws(SluiceError) -> Double {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        let seconds: Double
        switch parts.count == 2 ? parts[1] : "s" {
        case "s", "sec", "second": seconds = 1
        case "m", "min", "minute": seconds = 60
        case "h", "hour": seconds = 3600
        default: throw SluiceError(.invalidArgument, "rate '\(text)' must be a number per s, m or h, e.g. 100/s or 600/m")
        }
        guard parts.count <= 2, let count = Double(parts[0]), count.isFinite, count > 0 else {
            throw SluiceError(.invalidArgument, "rate '\(text)' must be a number more than 0 per s, m or h, e.g. 100/s or 600/m")
        }
        return count / seconds
    }

    /// `100/s`, or per minute or hour when that reads better (`30/m`, `1/h`).
    public var rateDescription: String {
        func whole(_ value: Double) -> Bool { abs(value - value.rounded()) < 1e-9 * max(1, value) }
        func number(_ value: Double) -> String { whole(value) && value < 1e15 ? String(Int64(value.rounded())) : String(value) }
        if perSecond >= 1 || whole(perSecond) { return "\(number(perSecond))/s" }
        if whole(perSecond * 60) { return "\(number(perSecond * 60))/m" }
        if whole(perSecond * 3600) { return "\(number(perSecond * 3600))/h" }
        return "\(number(perSecond))/s"
    }
}
