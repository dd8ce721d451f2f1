/// The coordinator lease's lifecycle as a value: standing by, leading, and
/// the decisions between them. It does no I/O; `Coordinator` asks the store
/// and reports what it answered, and carries out what this returns (in the
/// manner of postgres-nio's `ConnectionStateMachine`).
///
/// ```
/// standingBy(term 1) ──acquired──▶ leading(term 1) ──refused or a TTL without renewal──▶ standingBy(term 2) ...
/// ```
///
/// Each term has a holder name of its own (`holder`, then `holder/2`...), so
/// that nothing left of an earlier term passes the fence of a later one. A
/// term given up without hearing from the store (its last renewal may have
/// landed after all) is released as soon as the store answers again.
struct LeaseStateMachine: Sendable, Equatable {
    enum State: Sendable, Equatable {
        case standingBy(failedAttempts: Int, announced: Bool)
        case leading(lastRenewed: ContinuousClock.Instant)
    }

    let baseHolder: String
    let ttl: Duration
    private(set) var term = 1
    private(set) var state = State.standingBy(failedAttempts: 0, announced: false)
    /// A term given up unconfirmed: to release before asking again.
    private(set) var unconfirmedHolder: String?

    init(holder: String, ttl: Duration) {
        baseHolder = holder
        self.ttl = ttl
    }

    /// This term's holder name.
    var holder: String { term == 1 ? baseHolder : "\(baseHolder)/\(term)" }

    /// How long to wait between attempts to take the lease.
    var attemptInterval: Duration { ttl / 5 }

    /// How often a leader renews.
    var renewInterval: Duration { ttl / 3 }

    // MARK: Standing by

    /// What to do after asking for the lease.
    struct AcquireDecision: Sendable, Equatable {
        /// It is ours: fence the store with `holder` and lead. Otherwise wait
        /// `attemptInterval` and ask again.
        var lead: Bool
        /// Say "standing by" (the first refusal of a term).
        var announce: Bool
        /// The store answers again after this many failed attempts (to say so).
        var storeIsBackAfter: Int?
    }

    /// The store answered the request for the lease (`acquired`, or held by another).
    mutating func acquireAnswered(_ acquired: Bool, now: ContinuousClock.Instant) -> AcquireDecision {
        guard case .standingBy(let failed, let announced) = state else { return AcquireDecision(lead: true, announce: false) }
        let back = failed > 0 ? failed : nil
        if acquired {
            state = .leading(lastRenewed: now)
            return AcquireDecision(lead: true, announce: false, storeIsBackAfter: back)
        }
        state = .standingBy(failedAttempts: 0, announced: true)
        return AcquireDecision(lead: false, announce: !announced, storeIsBackAfter: back)
    }

    /// The store could not be asked: wait and try again. Returns the number
    /// of failed attempts when it is time to say so (the first, then every
    /// 50th: every 10 TTLs), else nil.
    mutating func acquireFailed() -> Int? {
        guard case .standingBy(let failed, let announced) = state else { return nil }
        state = .standingBy(failedAttempts: failed + 1, announced: announced)
        return failed % 50 == 0 ? failed + 1 : nil
    }

    /// The unconfirmed holder of an earlier term was released.
    mutating func staleReleased() { unconfirmedHolder = nil }

    // MARK: Leading

    /// The renewal was accepted.
    mutating func renewed(now: ContinuousClock.Instant) {
        if case .leading = state { state = .leading(lastRenewed: now) }
    }

    /// How long the next renewal may take: at least a third of the TTL, and
    /// no more than what is left of it (a dead database can make a call hang).
    func renewBound(now: ContinuousClock.Instant) -> Duration {
        guard case .leading(let last) = state else { return renewInterval }
        return max(renewInterval, ttl - (now - last))
    }

    /// What to do after a renewal that failed or was refused.
    enum RenewDecision: Sendable, Equatable {
        /// Try again at the next tick (and warn).
        case retry
        /// Stop leading: another coordinator has it (`unconfirmed` false), or
        /// a whole TTL passed without hearing from the store (true).
        case standBy(unconfirmed: Bool)
    }

    /// The store refused the renewal: another coordinator holds the lease.
    mutating func renewRefused() -> RenewDecision {
        standBy(unconfirmed: false)
        return .standBy(unconfirmed: false)
    }

    /// The store could not be asked to renew.
    mutating func renewFailed(now: ContinuousClock.Instant) -> RenewDecision {
        guard case .leading(let last) = state else { return .standBy(unconfirmed: true) }
        if now - last < ttl { return .retry }
        standBy(unconfirmed: true)
        return .standBy(unconfirmed: true)
    }

    /// The leading term ended (the lease was lost, or the loops saw it lost):
    /// the next term stands by under a new holder name.
    mutating func standBy(unconfirmed: Bool) {
        guard case .leading = state else { return }
        if unconfirmed { unconfirmedHolder = holder }
        term += 1
        state = .standingBy(failedAttempts: 0, announced: false)
    }
}
