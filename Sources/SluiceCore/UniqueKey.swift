#if canImport(FoundationEssentials)
public import FoundationEssentials
#else
public import Foundation
#endif

/// At most one task per key at a time: an enqueue with a key whose lock is
/// held returns the holder's task id and publishes nothing.
///
/// The lock lives on the broker (see ``Topology/uniqueLockQueue(_:)`` and
/// docs/operations.md, "Unique tasks"), so it holds across producers on any
/// machine and across broker restarts. It is held from the enqueue until the
/// task's final outcome (``Policy/untilFinished``), or for the whole window
/// (``Policy/forWindow``); never longer than the window.
public struct UniqueKey: Sendable, Hashable {
    /// When the lock is given back.
    public enum Policy: String, Sendable, Hashable, CaseIterable {
        /// When the task succeeds or is dead (not while it waits for a
        /// retry), or when the window ends, whichever comes first.
        case untilFinished = "until-finished"
        /// When the window ends, whatever became of the task.
        case forWindow = "window"
    }

    /// What makes two tasks the same (the caller's choice: a name and its
    /// arguments, a customer id...). At most ``maxKeyBytes`` bytes. A key
    /// is unique per window: the same key with another window is another lock.
    public var key: String
    /// The longest the lock is held.
    public var window: Duration
    public var policy: Policy

    public init(_ key: String, for window: Duration, policy: Policy = .untilFinished) {
        self.key = key
        self.window = window
        self.policy = policy
    }

    public static let maxKeyBytes = 1000
    /// One second to 24 days: the lock queue expires after twice the
    /// window unused, and RabbitMQ takes no `x-expires` over 2³² - 1 ms.
    public static let allowedWindows: ClosedRange<Duration> = .seconds(1) ... .seconds(24 * 86_400)

    /// The window in whole milliseconds.
    public var windowMilliseconds: Int64 {
        window.components.seconds * 1000 + window.components.attoseconds / 1_000_000_000_000_000
    }

    public func validate() throws(SluiceError) {
        guard !key.isEmpty else { throw SluiceError(.invalidArgument, "a unique key cannot be empty") }
        guard key.utf8.count <= Self.maxKeyBytes else {
            throw SluiceError(.invalidArgument, "a unique key is at most \(Self.maxKeyBytes) bytes; this one has \(key.utf8.count)")
        }
        guard Self.allowedWindows.contains(window) else {
            throw SluiceError(.invalidArgument, "a unique window is from 1 s to 24 days, not \(window)")
        }
    }
}

/// What a task carries so that the worker that finishes it gives its lock
/// back (the `sluice-unique` header, ``UniqueKey/Policy/untilFinished`` only):
/// the lock's queue and when the lock expires by itself.
public struct UniqueLockTicket: Sendable, Hashable {
    /// The lock's queue (``Topology/uniqueLockQueue(_:)``).
    public var queue: String
    /// When the lock expires (the producer's clock): after it, or close to
    /// it, the lock may be someone else's and is left alone.
    public var expiresAt: Date

    public init(queue: String, expiresAt: Date) {
        self.queue = queue
        self.expiresAt = expiresAt
    }

    /// `<queue> <expiry ms since the epoch>`.
    public var headerValue: String { "\(queue) \(expiresAt.epochMilliseconds)" }

    public init?(headerValue: String) {
        let parts = headerValue.split(separator: " ")
        guard parts.count == 2, let ms = Int64(parts[1]) else { return nil }
        self.queue = String(parts[0])
        self.expiresAt = Date(epochMilliseconds: ms)
    }

    /// Whether the lock is still surely this task's at `now`: not within
    /// `margin` of its expiry (clocks of producers and workers differ a little).
    public func isHeld(at now: Date, margin: TimeInterval = UniqueLockTicket.clockMargin) -> Bool {
        now.addingTimeInterval(margin) < expiresAt
    }

    /// How far producers' and workers' clocks may disagree.
    public static let clockMargin: TimeInterval = 2
}
