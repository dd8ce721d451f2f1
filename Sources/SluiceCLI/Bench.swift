import ArgumentParser
import Foundation
import SluiceAMQP
import SluiceBenchmarks

struct Bench: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure throughput and latency against a broker (see docs/performance.md).",
        subcommands: [AMQP.self, Tasks.self])

    struct AMQP: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "The raw AMQP ceiling: confirmed publishes/s and consume+ack/s.",
            discussion: """
            Publishes --count persistent messages of --size bytes to a fresh queue on a confirm \
            channel, --in-flight at a time, and waits for every broker ack; then consumes them \
            all with prefetch --prefetch, acking each one (or every --ack-every). Then measures \
            --round-trips sequential publish-to-consumer round trips.
            """)
        @Option(help: "Messages per queue type.") var count = 100_000
        @Option(help: "Body size in bytes.") var size = 100
        @Option(help: "Unconfirmed publishes allowed at once.") var inFlight = 1024
        @Option(help: "Consumer prefetch.") var prefetch: UInt16 = 1000
        @Option(help: "Ack with multiple=true every N deliveries (1 = each).") var ackEvery = 1
        @Option(help: "Queue types, comma-separated.") var queueTypes = "quorum,classic"
        @Option(help: "Sequential round trips for latency (0 skips).") var roundTrips = 2000
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var connection: ConnectionOptions

        func validate() throws {
            guard count > 0, size >= 0, inFlight > 0, ackEvery > 0, roundTrips >= 0 else {
                throw ValidationError("--count, --in-flight and --ack-every must be positive")
            }
        }

        func run() async throws {
            let url = try connection.resolvedURL()
            let bench = RawAMQPBenchmark(url: url, count: count, size: size, inFlight: inFlight, prefetch: prefetch, ackEvery: ackEvery)
            var output: [[String: Any]] = []
            if !json { print("broker \(url): \(count) persistent messages of \(size) B, \(inFlight) in flight, prefetch \(prefetch), ack every \(ackEvery)") }
            for type in queueTypes.split(separator: ",").map(String.init) {
                guard type == "quorum" || type == "classic" else { throw ValidationError("unknown queue type \(type)") }
                let r = try await bench.run(queueType: type)
                output.append(["queue_type": type, "confirmed_publishes_per_s": r.confirmedPublishesPerSecond.rounded(),
                               "consume_ack_per_s": r.consumeAckPerSecond.rounded()])
                if !json { print("\(type): confirmed publish \(Int(r.confirmedPublishesPerSecond))/s, consume+ack \(Int(r.consumeAckPerSecond))/s") }
            }
            if roundTrips > 0 {
                let micros = try await bench.roundTrips(roundTrips)
                output.append(["round_trip_us": ["p50": percentile(micros, 0.5), "p99": percentile(micros, 0.99), "max": micros.last ?? 0]])
                if !json { print("round trip (\(roundTrips)×, idle): p50 \(percentile(micros, 0.5)) µs, p99 \(percentile(micros, 0.99)) µs, max \(micros.last ?? 0) µs") }
            }
            if json { printJSON(output) }
        }
    }

    struct Tasks: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Confirmed enqueue tasks/s, end-to-end no-op tasks/s through one worker, enqueue-to-start latency.",
            discussion: "The raw AMQP ceiling is measured in the same run and printed beside each rate as a ratio.")
        @Option(help: "Tasks for the throughput runs.") var count = 20_000
        @Option(help: "Worker concurrency.") var concurrency = 100
        @Option(help: "Tasks for the latency run.") var latencyTasks = 2000
        @Option(help: "Offered rate for the latency run, tasks/s.") var rate = 500
        @Flag(inversion: .prefixedNo, help: "Publish `started` events (as workers do by default).") var startedEvents = true
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var connection: ConnectionOptions

        func validate() throws {
            guard count > 0, concurrency > 0, latencyTasks > 0, rate > 0 else { throw ValidationError("all counts must be positive") }
        }

        func run() async throws {
            let url = try connection.resolvedURL()
            let quiet = json
            let r = try await TaskBenchmark(url: url, count: count, concurrency: concurrency, latencyTasks: latencyTasks, offeredRate: rate, startedEvents: startedEvents)
                .run { if !quiet { standardError($0) } }
            let l = r.startLatencies
            let ratioEnqueue = r.enqueuePerSecond / r.rawConfirmedPublishesPerSecond
            let ratioE2E = r.endToEndPerSecond / r.rawConfirmedPublishesPerSecond
            if json {
                printJSON(["raw_confirmed_publishes_per_s": r.rawConfirmedPublishesPerSecond.rounded(),
                           "enqueue_per_s": r.enqueuePerSecond.rounded(), "enqueue_ratio": ratioEnqueue,
                           "end_to_end_per_s": r.endToEndPerSecond.rounded(), "end_to_end_ratio": ratioE2E,
                           "start_latency_us": ["p50": percentile(l, 0.5), "p99": percentile(l, 0.99), "max": l.last ?? 0],
                           "offered_rate": r.offeredRate, "count": count, "concurrency": concurrency])
            } else {
                print("raw AMQP ceiling (quorum, confirmed): \(Int(r.rawConfirmedPublishesPerSecond))/s")
                print("confirmed enqueue:                    \(Int(r.enqueuePerSecond)) tasks/s (\(Int(ratioEnqueue * 100))% of raw)")
                print("end to end, 1 worker, concurrency \(concurrency): \(Int(r.endToEndPerSecond)) tasks/s (\(Int(ratioE2E * 100))% of raw)")
                print("enqueue-to-start at \(r.offeredRate)/s: p50 \(percentile(l, 0.5)) µs, p99 \(percentile(l, 0.99)) µs, max \(l.last ?? 0) µs")
            }
        }
    }
}
