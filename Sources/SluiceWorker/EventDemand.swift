import SluiceCore

/// Whether anybody listens to a plain task's events, learnt from the broker.
///
/// Outcome events go to a topic exchange with `mandatory` set. One that comes
/// back unroutable had no queue bound for its routing key (`<queue>.<kind>`):
/// no coordinator, monitor or other listener wants it. Events with that key
/// are then not published for ``hold``; the first one after it goes out again
/// and asks anew. A listener that binds meanwhile misses at most ``hold`` of
/// events. Workflow steps' events (`~wf.…`) and tracked tasks' (`~track.…`)
/// are never held back: the coordinator must see every one (its queue may be
/// declared a moment after a worker found the key unheard).
///
/// A pure value, without I/O or clock of its own: the worker passes `now`.
public struct EventDemand: Sendable {
    /// How long events of a key nobody listens to are held back.
    public var hold: Duration
    /// Routing key → until when its events are not published.
    private var unheardUntil: [String: ContinuousClock.Instant] = [:]

    public init(hold: Duration) { self.hold = hold }

    /// Whether an event with `routingKey` should be published now.
    public func wanted(_ routingKey: String, now: ContinuousClock.Instant) -> Bool {
        guard hold > .zero, !unheardUntil.isEmpty, !Self.alwaysWanted(routingKey) else { return true }
        guard let until = unheardUntil[routingKey] else { return true }
        return now >= until
    }

    /// The broker returned an event with `routingKey` as unroutable.
    public mutating func unroutable(_ routingKey: String, now: ContinuousClock.Instant) {
        guard hold > .zero, !Self.alwaysWanted(routingKey) else { return }
        // Keys are `<queue>.<kind>`: a handful per worker. Forget stale ones
        // if a worker saw many queues (names are bounded, their count is not).
        if unheardUntil.count >= 1024 { unheardUntil = unheardUntil.filter { $0.value > now } }
        unheardUntil[routingKey] = now + hold
    }

    /// An event with `routingKey` reached a queue: somebody listens again.
    public mutating func routed(_ routingKey: String) {
        // Asked after every published event: no hashing while nothing is held back.
        guard !unheardUntil.isEmpty else { return }
        unheardUntil[routingKey] = nil
    }

    private static func alwaysWanted(_ routingKey: String) -> Bool {
        Topology.isStepEventKey(routingKey) || Topology.isTrackEventKey(routingKey)
    }
}
