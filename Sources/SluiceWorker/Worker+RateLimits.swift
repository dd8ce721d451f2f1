#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
public import SluiceCore

extension Worker {
    /// How often this worker beats: at least every second with rate
    /// limits, so that peers notice a killed one (silent for three beats)
    /// within seconds and take over its share.
    var heartbeatInterval: Duration {
        rateGate == nil ? configuration.heartbeatInterval : min(configuration.heartbeatInterval, .seconds(1))
    }

    /// Starts per second this worker takes under `limit` now (its share of
    /// the fleet's limit); nil if it holds no such limit.
    public func rateShare(of limit: RateLimit.Scope) -> Double? {
        rateGate?.share(of: RateLimit(limit, perSecond: 1).key)
    }

    /// Follows every worker's heartbeats into the rate schedule and asks
    /// the others to answer at once (a ping); returns once it has heard its
    /// own beat come back (or 3 s passed) and then 1.2 s, in which every
    /// live rate-limited peer beats at least once. The follower subscribes
    /// again (backing off up to 10 s) whenever its subscription ends.
    func joinRateLimitedFleet(_ gate: RateGate) async throws -> Task<Void, Never> {
        let beats: BrokerConsumer
        do {
            beats = try await broker.subscribeEvents(bindings: [broker.topology.workerHeartbeatRoutingKey])
        } catch {
            throw SluiceError(.broker, "rate limits and ordered partitions need the workers' heartbeats, and subscribing to them failed: \(error)")
        }
        // Without them peers look gone (after three beats' silence): this
        // worker would take whole rate limits and keep every ordered
        // partition it has. So the follower subscribes again if they stop.
        let follower = Task {
            await self.followEvents([broker.topology.workerHeartbeatRoutingKey], first: beats, what: "heartbeats", level: .warning) { delivery in
                if let beat = try? WorkerHeartbeat.decode(delivery.body) { gate.record(beat) }
            }
        }
        _ = try? await broker.publish([broker.topology.pingMessage()])
        let timer = Task {
            guard (try? await Task.sleep(for: .seconds(3))) != nil else { return }
            gate.heardSelf.fire()
        }
        await gate.heardSelf.wait()
        timer.cancel()
        // Peers answer the ping as soon as they read it, and a rate-limited
        // peer beats every second anyway: a beat's interval and a bit hears them all.
        try? await Task.sleep(for: .milliseconds(1200))
        for limit in configuration.rateLimits {
            let share = RateLimit(limit.scope, perSecond: gate.share(of: limit.key) ?? limit.perSecond)
            logger.info("rate limit", metadata: ["limit": "\(limit.key)", "fleet": "\(limit.rateDescription)",
                                                 "workers": "\(gate.workers(holding: limit.key))", "share": "\(share.rateDescription)"])
        }
        return follower
    }
}
