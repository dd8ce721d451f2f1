import DequeModule

/// Publisher-confirm bookkeeping for one channel, without I/O.
///
/// Each publish on a confirm channel gets the next sequence number; the broker
/// later answers with `basic.ack` or `basic.nack` for that number, or for every
/// number up to it (`multiple`). A `mandatory` publish that cannot be routed
/// is answered with `basic.return` first and then an ack; the return carries
/// no sequence number, so it is matched to the oldest unsettled mandatory
/// publish with the same exchange and routing key (returns come in publish
/// order, and two publishes to the same destination route alike).
struct ConfirmTracker<Waiter> {
    /// How a publish ended.
    enum Outcome: Equatable {
        case acked
        case nacked
        case returned(replyCode: UInt16, replyText: String)
    }

    struct Entry {
        var sequence: UInt64
        var waiter: Waiter?
        var mandatory: Bool
        var exchange: String
        var routingKey: String
        var returned: (replyCode: UInt16, replyText: String)?
    }

    private(set) var nextSequence: UInt64 = 1
    private var entries = Deque<Entry>()
    /// Settled entries still sitting behind an unsettled one at the front.
    private var settledCount = 0

    /// Publishes sent and not yet settled.
    var outstanding: Int { entries.count - settledCount }

    /// Records a publish about to be sent; returns its sequence number.
    mutating func register(_ waiter: Waiter, mandatory: Bool, exchange: String, routingKey: String) -> UInt64 {
        let sequence = nextSequence
        nextSequence += 1
        entries.append(Entry(sequence: sequence, waiter: waiter, mandatory: mandatory, exchange: exchange, routingKey: routingKey))
        return sequence
    }

    /// A `basic.return` arrived for a publish to `exchange`/`routingKey`.
    /// Returns false when no unsettled mandatory publish matches.
    mutating func returned(exchange: String, routingKey: String, replyCode: UInt16, replyText: String) -> Bool {
        guard let i = entries.firstIndex(where: {
            $0.waiter != nil && $0.mandatory && $0.returned == nil && $0.exchange == exchange && $0.routingKey == routingKey
        }) else { return false }
        entries[i].returned = (replyCode, replyText)
        return true
    }

    /// A `basic.ack` (`nack` false) or `basic.nack` arrived; returns the settled waiters.
    mutating func confirm(upTo tag: UInt64, multiple: Bool, nack: Bool) -> [(Waiter, Outcome)] {
        var settled: [(Waiter, Outcome)] = []
        func outcome(_ e: Entry) -> Outcome {
            if nack { return .nacked }
            if let r = e.returned { return .returned(replyCode: r.replyCode, replyText: r.replyText) }
            return .acked
        }
        if multiple {
            while let first = entries.first, first.sequence <= tag {
                entries.removeFirst()
                if let w = first.waiter { settled.append((w, outcome(first))) } else { settledCount -= 1 }
            }
        } else if let first = entries.first, first.sequence == tag {
            entries.removeFirst()
            if let w = first.waiter { settled.append((w, outcome(first))) } else { settledCount -= 1 }
        } else if let base = entries.first?.sequence, tag > base, tag - base < UInt64(entries.count) {
            // Sequence numbers are consecutive, so the entry's index is its offset.
            let i = Int(tag - base)
            if let w = entries[i].waiter {
                settled.append((w, outcome(entries[i])))
                entries[i].waiter = nil
                settledCount += 1
            }
        }
        // Drop settled entries that are now at the front.
        while let first = entries.first, first.waiter == nil {
            entries.removeFirst()
            settledCount -= 1
        }
        return settled
    }

    /// Ends every unsettled publish (connection or channel lost); returns their waiters.
    mutating func failAll() -> [Waiter] {
        let waiters = entries.compactMap(\.waiter)
        entries.removeAll()
        settledCount = 0
        return waiters
    }

    /// Starts numbering again at 1, as a fresh `confirm.select` does.
    mutating func reset() -> [Waiter] {
        let waiters = failAll()
        nextSequence = 1
        return waiters
    }
}
