@testable import SluiceCoordinator
import Testing

/// The coordinator lease's decisions, without a store or a clock: instants
/// are made from a fixed origin.
@Suite("Lease state machine (no server)")
struct LeaseStateMachineTests {
    let t0 = ContinuousClock.now
    func at(_ seconds: Double) -> ContinuousClock.Instant { t0 + .milliseconds(Int64(seconds * 1000)) }

    @Test("standing by: refusals are announced once; the lease taken means leading under the term's holder")
    func acquire() {
        var lease = LeaseStateMachine(holder: "h", ttl: .seconds(10))
        #expect(lease.holder == "h")
        #expect(lease.attemptInterval == .seconds(2))
        #expect(lease.acquireAnswered(false, now: at(0)) == .init(lead: false, announce: true))
        #expect(lease.acquireAnswered(false, now: at(2)) == .init(lead: false, announce: false))
        #expect(lease.acquireAnswered(true, now: at(4)) == .init(lead: true, announce: false))
        #expect(lease.state == .leading(lastRenewed: at(4)))
    }

    @Test("a store that is away: the first failure and every 50th are reported, and its return is said once")
    func storeAway() {
        var lease = LeaseStateMachine(holder: "h", ttl: .seconds(10))
        var reported: [Int] = []
        for _ in 0..<101 { if let n = lease.acquireFailed() { reported.append(n) } }
        #expect(reported == [1, 51, 101])
        #expect(lease.acquireAnswered(false, now: at(0)).storeIsBackAfter == 101)
        #expect(lease.acquireAnswered(false, now: at(2)).storeIsBackAfter == nil)
    }

    @Test("leading: failed renewals are retried within a TTL; past it the term ends unconfirmed, and the next term has a new holder")
    func renewal() {
        var lease = LeaseStateMachine(holder: "h", ttl: .seconds(9))
        _ = lease.acquireAnswered(true, now: at(0))
        #expect(lease.renewInterval == .seconds(3))
        #expect(lease.renewBound(now: at(1)) == .seconds(8), "what is left of the TTL")
        #expect(lease.renewBound(now: at(8)) == .seconds(3), "never less than a renewal interval")
        lease.renewed(now: at(3))
        #expect(lease.renewFailed(now: at(6)) == .retry)
        #expect(lease.renewFailed(now: at(11.9)) == .retry)
        #expect(lease.renewFailed(now: at(12)) == .standBy(unconfirmed: true))
        #expect(lease.term == 2)
        #expect(lease.holder == "h/2")
        #expect(lease.unconfirmedHolder == "h", "the old term is released once the store answers")
        #expect(lease.state == .standingBy(failedAttempts: 0, announced: false))
        lease.staleReleased()
        #expect(lease.unconfirmedHolder == nil)
    }

    @Test("a refused renewal ends the term confirmed: nothing to release")
    func refused() {
        var lease = LeaseStateMachine(holder: "h", ttl: .seconds(10))
        _ = lease.acquireAnswered(true, now: at(0))
        #expect(lease.renewRefused() == .standBy(unconfirmed: false))
        #expect(lease.unconfirmedHolder == nil)
        #expect(lease.holder == "h/2")
        // A lease lost as the loops saw it (a fenced write refused) ends the term the same way.
        _ = lease.acquireAnswered(true, now: at(5))
        lease.standBy(unconfirmed: false)
        #expect(lease.holder == "h/3")
    }
}
