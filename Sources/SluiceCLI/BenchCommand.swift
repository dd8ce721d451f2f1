import ArgumentParser
import Foundation
import SluiceAMQP
import SluiceBenchmarks
import SluiceCoordinator
import SluiceCore
import SluiceWire
import SluiceWorkerProcess

struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure throughput and latency against a broker (see docs/performance.md).",
        subcommands: [AMQP.self, Tasks.self, Workflows.self, Ordered.self, Poison.self, Priorities.self, RateLimit.self, Tracking.self, Unique.self, Validation.self])

    /// Starts `sluice worker <arguments>` (this binary), quiet, against `url`
    /// (given in the environment: it may hold a password).
    static func startWorker(_ arguments: [String], url: String) throws -> BenchWorkerProcess {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = ["worker"] + arguments + ["--log-level", "error"]
        process.environment = ProcessInfo.processInfo.environment.merging(["SLUICE_URL": url]) { $1 }
        try process.run()
        let ended: @Sendable () async -> Void = { while process.isRunning { try? await Task.sleep(for: .milliseconds(50)) } }
        return BenchWorkerProcess(pid: process.processIdentifier, stop: { process.terminate(); await ended() },
                                  kill: { kill(process.processIdentifier, SIGKILL); await ended() })
    }

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
            discussion: """
            Each round measures the raw AMQP ceiling (confirmed publishes of 100-byte persistent \
            messages to a quorum queue), confirmed enqueue of --count tasks, and one in-process \
            worker running them, and prints each rate beside the ceiling as a ratio. Rounds \
            alternate which of the first two goes first; the summary gives the medians. Then \
            SluiceAMQP's own publish-to-consume round trip is measured (--latency-tasks times, one \
            after another), and then, at each rate of --rate, --latency-tasks persistent messages \
            go raw through a new quorum queue at that pace, and --latency-tasks tasks are enqueued \
            at that pace (each on its own, by a client on one connection, to a new queue) and \
            their enqueue-to-start latency is reported (HdrHistogram), as a multiple of the raw \
            quorum path's and of the raw round trip.

            With --versus URL, every measurement also runs against a second broker (say one \
            node, against a cluster given by --url), round by round in turns, and the summary \
            gives each figure of the first as a ratio of the second's: a comparison made in one \
            run, on a machine whose speed drifts between runs.
            """)
        @Option(help: "Tasks per round for the throughput runs.") var count = 50_000
        @Option(help: "Worker concurrency (tasks in flight; a no-op task needs a deep pipeline).") var concurrency = 300
        @Option(help: "Rounds of raw ceiling, enqueue and end to end.") var rounds = 5
        @Option(help: "Tasks for the latency run.") var latencyTasks = 2000
        @Option(help: "Offered rates for the latency runs, tasks/s, comma-separated.") var rate = "200,5000"
        @Flag(help: "The worker also publishes `started` events (workers do not by default).") var startedEvents = false
        @Flag(help: "Run the worker as `sluice worker --metrics` does: default middleware (logging, metrics, tracing), Prometheus metrics.")
        var observed = false
        @Flag(help: "Publish every outcome event although nobody listens, as when a coordinator or monitor is bound (by default the worker holds back events nobody listens to).")
        var eventsAlways = false
        @Flag(help: "Bind a listener to the tasks' succeeded events while the worker drains (as `sluice top` or a result waiter does): every event is published, routed to a queue and read.")
        var listener = false
        @Flag(help: "Bind that listener to the packs of the succeeded events (~pack.succeeded.<queue>.~) instead: the worker sends them several to a message.")
        var packListener = false
        @Flag(help: "Also publish the enqueue's own task messages raw (one channel, no TaskClient) in each round, and give enqueue as a ratio of that: what the message shape costs the broker, apart from the client.")
        var taskMessagesRaw = false
        @Option(help: "Also measure confirmed enqueue through producers of these shapes, each in every round: CONNECTIONSxCHANNELS (connections that publish, the broker's own counted, × publisher channels on each), comma-separated, e.g. 1x2,2x1. The bench's own producer is 2x2, as `sluice enqueue --count` connects; RabbitMQBroker.connect's default is 1x2.")
        var enqueueProducers: String?
        @Option(help: "A second broker to measure in the same run, for ratios (e.g. one node, against a cluster in --url).")
        var versus: String?
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var connection: ConnectionOptions

        func validate() throws {
            if let versus { _ = try parseURL(versus, option: "--versus") }
            guard count > 0, concurrency > 0, rounds > 0, latencyTasks > 0 else {
                throw ValidationError("--count, --concurrency, --rounds and --latency-tasks must be positive")
            }
            _ = try rates()
            _ = try producerVariants()
        }

        /// `--enqueue-producers` as shapes.
        func producerVariants() throws -> [ProducerShape] {
            guard let enqueueProducers else { return [] }
            let parts = enqueueProducers.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            let shapes = parts.compactMap { ProducerShape($0) }
            guard !parts.isEmpty, shapes.count == parts.count, Set(shapes).count == shapes.count else {
                throw ValidationError("--enqueue-producers: give distinct shapes CONNECTIONSxCHANNELS (each 1 to 16), comma-separated, "
                    + "e.g. 1x2,2x1; got '\(enqueueProducers)'")
            }
            return shapes
        }

        /// `--rate` as numbers.
        func rates() throws -> [Int] {
            let parts = rate.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            let values = parts.compactMap { Int($0) }.filter { $0 > 0 && $0 <= 1_000_000 }
            guard !parts.isEmpty, values.count == parts.count else {
                throw ValidationError("--rate: give tasks per second (1 to 1000000), comma-separated, e.g. 200,5000; got '\(rate)'")
            }
            return values
        }

        func run() async throws {
            let url = try connection.resolvedURL()
            if let versus { return try await compare(url, try parseURL(versus, option: "--versus")) }
            let quiet = json
            var benchmark = TaskBenchmark(url: url, count: count, concurrency: concurrency, rounds: rounds,
                                          latencyTasks: latencyTasks, offeredRates: try rates(), startedEvents: startedEvents)
            benchmark.eventsAlways = eventsAlways
            benchmark.listener = listener
            benchmark.packListener = packListener
            benchmark.taskMessagesRaw = taskMessagesRaw
            benchmark.producerVariants = try producerVariants()
            if observed {
                PrometheusMetrics.bootstrap()
                benchmark.defaultMiddleware = true
            }
            let r = try await benchmark.run { if !quiet { standardError($0) } }
            let rawTrip = ["p50": r.rawRoundTrip(percentile: 50), "p99": r.rawRoundTrip(percentile: 99)]
            func times(_ value: Int, _ raw: Int) -> Double { raw > 0 ? (Double(value) / Double(raw) * 10).rounded() / 10 : 0 }
            if json {
                printJSON([
                    "rounds": r.rounds.map { ["raw_confirmed_publishes_per_s": $0.rawConfirmedPublishesPerSecond.rounded(),
                                              "raw_consume_ack_per_s": $0.rawConsumeAckPerSecond.rounded(),
                                              "enqueue_per_s": $0.enqueuePerSecond.rounded(), "enqueue_ratio": $0.enqueueRatio,
                                              "end_to_end_per_s": $0.endToEndPerSecond.rounded(), "end_to_end_ratio": $0.endToEndRatio,
                                              "end_to_end_consume_ratio": $0.endToEndConsumeRatio,
                                              "raw_task_messages_per_s": $0.rawTaskMessagesPerSecond.map { $0.rounded() } ?? NSNull(),
                                              "enqueue_ratio_task_messages": $0.enqueueTaskMessagesRatio ?? NSNull(),
                                              "enqueue_per_s_by_producer": Dictionary(uniqueKeysWithValues: $0.enqueueByProducer.map { ($0.key.name, $0.value.rounded()) })] as [String: Any] },
                    "median": ["raw_confirmed_publishes_per_s": r.medianRaw.rounded(), "raw_consume_ack_per_s": r.medianRawConsumeAck.rounded(),
                               "enqueue_per_s": r.medianEnqueue.rounded(), "enqueue_ratio": r.medianEnqueueRatio,
                               "end_to_end_per_s": r.medianEndToEnd.rounded(), "end_to_end_ratio": r.medianEndToEndRatio,
                               "end_to_end_consume_ratio": r.medianEndToEndConsumeRatio],
                    "raw_round_trip_us": rawTrip,
                    "start_latency_us": r.latencies.map { l -> [String: Any] in
                        ["rate": l.rate, "p50": l.percentile(50), "p99": l.percentile(99), "max": l.max,
                         "p50_times_raw": times(l.percentile(50), rawTrip["p50"]!), "p99_times_raw": times(l.percentile(99), rawTrip["p99"]!),
                         "raw_quorum_us": ["p50": l.rawQuorum(percentile: 50), "p99": l.rawQuorum(percentile: 99)],
                         "p50_times_raw_quorum": times(l.percentile(50), l.rawQuorum(percentile: 50)),
                         "p99_times_raw_quorum": times(l.percentile(99), l.rawQuorum(percentile: 99))]
                    },
                    "count": count, "concurrency": concurrency, "started_events": startedEvents, "events_always": eventsAlways, "listener": listener, "pack_listener": packListener,
                ])
                return
            }
            func pct(_ x: Double) -> String { "\(Int((x * 100).rounded()))%" }
            print("round  raw publish/s  raw consume+ack/s  enqueue/s (ratio)   end to end/s (of publish, of consume+ack)")
            for (i, round) in r.rounds.enumerated() {
                print(String(format: "%5d  %13.0f  %17.0f  %9.0f (%@)   %12.0f (%@, %@)", i + 1, round.rawConfirmedPublishesPerSecond,
                             round.rawConsumeAckPerSecond, round.enqueuePerSecond, pct(round.enqueueRatio), round.endToEndPerSecond,
                             pct(round.endToEndRatio), pct(round.endToEndConsumeRatio)))
                if let shaped = round.rawTaskMessagesPerSecond, let ratio = round.enqueueTaskMessagesRatio {
                    print(String(format: "       raw publish of the task messages themselves: %.0f/s (%@ of raw publish); enqueue %@ of it",
                                 shaped, pct(shaped / round.rawConfirmedPublishesPerSecond), pct(ratio)))
                }
                for (shape, rate) in round.enqueueByProducer.sorted(by: { $0.key < $1.key }) {
                    print(String(format: "       confirmed enqueue, %@: %.0f/s (%@ of raw publish)",
                                 shape.description, rate, pct(rate / round.rawConfirmedPublishesPerSecond)))
                }
            }
            print("median: raw \(Int(r.medianRaw))/s publish, \(Int(r.medianRawConsumeAck))/s consume+ack; confirmed enqueue "
                + "\(Int(r.medianEnqueue)) tasks/s (\(pct(r.medianEnqueueRatio)) of raw publish); end to end, 1 worker, concurrency "
                + "\(concurrency): \(Int(r.medianEndToEnd)) tasks/s (\(pct(r.medianEndToEndRatio)) of raw publish, "
                + "\(pct(r.medianEndToEndConsumeRatio)) of raw consume+ack)")
            for shape in try producerVariants() {
                let ratios = r.rounds.compactMap { round in round.enqueueByProducer[shape].map { $0 / round.rawConfirmedPublishesPerSecond } }
                print("median: confirmed enqueue, \(shape), \(pct(median(ratios))) of raw publish")
            }
            print("raw round trip (SluiceAMQP, transient message, classic queue, one at a time): p50 \(rawTrip["p50"]!) µs, p99 \(rawTrip["p99"]!) µs")
            for l in r.latencies {
                let q50 = l.rawQuorum(percentile: 50), q99 = l.rawQuorum(percentile: 99)
                print("at \(l.rate)/s: raw through a quorum queue p50 \(q50) µs, p99 \(q99) µs; enqueue-to-start p50 \(l.percentile(50)) µs "
                    + "(\(times(l.percentile(50), q50))× raw quorum, \(times(l.percentile(50), rawTrip["p50"]!))× raw round trip), "
                    + "p99 \(l.percentile(99)) µs (\(times(l.percentile(99), q99))× raw quorum, \(times(l.percentile(99), rawTrip["p99"]!))× raw round trip), "
                    + "max \(l.max) µs")
            }
        }

        private func parseURL(_ text: String, option: String) throws -> AMQPURL {
            do { return try ConnectionOptions.brokerURL(text) } catch let error as AMQPError { throw ValidationError("\(option): \(error.message)") }
        }

        /// `--versus`: the rounds against the two brokers in turns (which goes
        /// first alternates), then each one's latency run; ratios are first/second.
        private func compare(_ first: AMQPURL, _ second: AMQPURL) async throws {
            let quiet = json
            // One latency run per broker, at the first rate of --rate.
            let latencyRate = try rates()[0]
            func benchmark(_ url: AMQPURL, rounds: Int, latencyTasks: Int) -> TaskBenchmark {
                var b = TaskBenchmark(url: url, count: count, concurrency: concurrency, rounds: rounds, latencyTasks: latencyTasks,
                                      offeredRates: [latencyRate], startedEvents: startedEvents)
                b.defaultMiddleware = observed
                b.eventsAlways = eventsAlways
                b.listener = listener
                b.packListener = packListener
                return b
            }
            if observed { PrometheusMetrics.bootstrap() }
            var results: [[TaskBenchmark.Round]] = [[], []]
            let urls = [first, second]
            for round in 0..<rounds {
                for side in round % 2 == 0 ? [0, 1] : [1, 0] {
                    let name = side == 0 ? "--url" : "--versus"
                    let r = try await benchmark(urls[side], rounds: 1, latencyTasks: 0).run {
                        if !quiet { standardError("\(name), round \(round + 1)/\(rounds): \($0)") }
                    }
                    results[side] += r.rounds
                }
            }
            var latency: [TaskBenchmark.Result] = []
            for (side, url) in urls.enumerated() {
                let name = side == 0 ? "--url" : "--versus"
                latency.append(try await benchmark(url, rounds: 0, latencyTasks: latencyTasks).run {
                    if !quiet { standardError("\(name): \($0)") }
                })
            }
            let medians = results.map { rounds -> [String: Double] in
                ["raw": median(rounds.map(\.rawConfirmedPublishesPerSecond)), "enqueue": median(rounds.map(\.enqueuePerSecond)),
                 "end_to_end": median(rounds.map(\.endToEndPerSecond))]
            }
            let p = latency.map { ["p50": Double($0.latencies.first?.percentile(50) ?? 0), "p99": Double($0.latencies.first?.percentile(99) ?? 0)] }
            func ratio(_ a: Double?, _ b: Double?) -> Double { (a ?? 0) / max(b ?? 0, 1e-9) }
            if json {
                func side(_ i: Int) -> [String: Any] {
                    ["url": "\(urls[i])", "median_raw_confirmed_publishes_per_s": medians[i]["raw"]!.rounded(),
                     "median_enqueue_per_s": medians[i]["enqueue"]!.rounded(), "median_end_to_end_per_s": medians[i]["end_to_end"]!.rounded(),
                     "start_latency_us": ["p50": p[i]["p50"]!, "p99": p[i]["p99"]!]]
                }
                printJSON([
                    "url": side(0), "versus": side(1), "rounds": rounds, "count": count, "concurrency": concurrency, "offered_rate": latencyRate,
                    "ratio": ["raw": ratio(medians[0]["raw"], medians[1]["raw"]), "enqueue": ratio(medians[0]["enqueue"], medians[1]["enqueue"]),
                              "end_to_end": ratio(medians[0]["end_to_end"], medians[1]["end_to_end"]),
                              "start_latency_p50": ratio(p[0]["p50"], p[1]["p50"]), "start_latency_p99": ratio(p[0]["p99"], p[1]["p99"])],
                ])
                return
            }
            func row(_ label: String, _ i: Int) -> String {
                label.padding(toLength: 9, withPad: " ", startingAt: 0)
                    + String(format: " %13.0f  %9.0f  %12.0f  %8.0f / %.0f µs", medians[i]["raw"]!, medians[i]["enqueue"]!,
                             medians[i]["end_to_end"]!, p[i]["p50"]!, p[i]["p99"]!)
            }
            print("medians of \(rounds) rounds each; latency at \(latencyRate)/s")
            print("broker    raw publish/s  enqueue/s  end to end/s  start p50 / p99")
            print(row("--url", 0))
            print(row("--versus", 1))
            print(String(format: "ratio     %13.2f  %9.2f  %12.2f  %8.2f / %.2f", ratio(medians[0]["raw"], medians[1]["raw"]),
                         ratio(medians[0]["enqueue"], medians[1]["enqueue"]), ratio(medians[0]["end_to_end"], medians[1]["end_to_end"]),
                         ratio(p[0]["p50"], p[1]["p50"]), ratio(p[0]["p99"], p[1]["p99"])))
        }
    }

    struct Workflows: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Step transitions/s through the coordinator, and the time of a large map + join, on SQLite and PostgreSQL.",
            discussion: """
            Runs an in-process coordinator and worker (no-op steps) against the broker: first --runs runs of \
            --steps sequential steps (transitions/s = steps completed per second), then one map over --map \
            elements with a join, while a run of --steps steps is started every quarter second (their \
            p50/p99 time to complete shows whether one big map holds other runs back) and the process's \
            peak resident memory is sampled. On a temporary SQLite file, and on PostgreSQL when --postgres is given.

            First it measures the end-to-end rate of --plain-tasks plain no-op tasks through one worker (as \
            `sluice bench tasks` does), then again with a listener bound to their outcome events (as every \
            step's outcome is heard by the coordinator; a plain task's that nobody hears is not published), \
            and prints each store's transitions/s as a share of both: they come from one run on one \
            machine, so the ratios compare across days where raw rates do not.
            """)
        @Option(help: "Runs for the transitions measurement.") var runs = 2000
        @Option(help: ArgumentHelp("Run starts in progress at once while those runs are started.",
                                   discussion: "Each start returns once its commit is done; as few as 64 at a time make the starts, not the steps, what limits the transitions measured."))
        var startsInFlight = 512
        @Option(help: "Steps per run.") var steps = 3
        @Option(help: "Elements of the map.") var map = 10_000
        @Option(help: "Worker concurrency.") var concurrency = 200
        @Option(help: "A queue of its own for the map's tasks, as one would route a big fan-out, so that other runs' steps do not wait behind its elements in one queue (default: the same queue).")
        var mapQueue: String?
        @Option(help: "A PostgreSQL database URL to measure too (its tables are created; use a scratch database).") var postgres: String?
        @Option(help: "Plain tasks for the end-to-end rate the transitions are compared with (0 skips it).") var plainTasks = 20_000
        @Option(help: "Coordinators sharing the PostgreSQL store (in this process, each with its own connection); more than one needs a new database, created with --partitions.")
        var coordinators = 1
        @Option(help: "Partitions of a new PostgreSQL database (with one coordinator too).") var partitions = 1
        @Flag(inversion: .prefixedNo, help: "Step outcomes in packs (as `sluice coordinator` asks by default); --no-event-packs measures one message per outcome.")
        var eventPacks = true
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var connection: ConnectionOptions

        func validate() throws {
            guard runs > 0, steps > 0, map > 0, concurrency > 0, startsInFlight > 0 else {
                throw ValidationError("--runs, --steps, --map, --concurrency and --starts-in-flight must be positive")
            }
            guard plainTasks >= 0 else { throw ValidationError("--plain-tasks must be 0 or more") }
            guard coordinators >= 1 else { throw ValidationError("--coordinators must be 1 or more") }
            guard Topology.isValidPartitionCount(partitions) else { throw ValidationError("--partitions must divide 64") }
            if (coordinators > 1 || partitions > 1) && postgres == nil { throw ValidationError("--coordinators and --partitions need --postgres") }
        }

        func run() async throws {
            let url = try connection.resolvedURL()
            var bench = WorkflowBenchmark(url: url, runs: runs, stepsPerRun: steps, mapSize: map, concurrency: concurrency, mapQueue: mapQueue)
            bench.eventPacks = eventPacks
            bench.startsInFlight = startsInFlight
            let quiet = json
            var plainRate: Double?
            // Also with a listener bound to their outcome events: a step's
            // outcome is always published and heard (by the coordinator); a
            // plain task's nobody listens to is not published at all.
            var plainHeardRate: Double?
            if plainTasks > 0 {
                let plain = TaskBenchmark(url: url, count: plainTasks, concurrency: 300, rounds: 1, latencyTasks: 0)
                plainRate = try await plain.run { if !quiet { standardError("plain tasks: \($0)") } }.medianEndToEnd
                var heard = plain
                heard.listener = true
                plainHeardRate = try await heard.run { if !quiet { standardError("plain tasks, outcome events heard: \($0)") } }.medianEndToEnd
            }
            /// Measures one store and closes it, whatever happens.
            func measure(_ store: any WorkflowStore, _ label: String) async throws -> WorkflowBenchmark.Result {
                do {
                    let result = try await bench.run(store: store, label: label) { if !quiet { standardError($0) } }
                    try await store.close()
                    return result
                } catch {
                    try? await store.close()
                    throw error
                }
            }
            var results: [WorkflowBenchmark.Result] = []
            let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-bench-\(UUID().uuidString).sqlite").path
            defer { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } }
            results.append(try await measure(try await SQLiteWorkflowStore.open(path: path), "sqlite"))
            if let postgres {
                var stores: [any WorkflowStore] = []
                do {
                    for _ in 0..<coordinators { stores.append(try await PostgresWorkflowStore.connect(url: postgres)) }
                    let label = coordinators == 1 ? "postgres" : "postgres, \(coordinators) coordinators"
                    results.append(try await bench.run(stores: stores, partitions: partitions, label: label) { if !quiet { standardError($0) } })
                } catch {
                    for store in stores { try? await store.close() }
                    throw error
                }
                for store in stores { try? await store.close() }
            }
            if json {
                printJSON(results.map { r -> [String: Any] in
                    var row: [String: Any] = ["store": r.store, "transitions_per_s": r.transitionsPerSecond.rounded(), "runs": r.runs,
                                              "steps_per_run": r.stepsPerRun, "map_size": r.mapSize, "map_seconds": r.mapSeconds,
                                              "peak_resident_bytes": r.peakResidentBytes, "coordinators": r.coordinators,
                                              "partitions": r.partitions]
                    // Absent when no other run finished during the map.
                    if let p50 = r.otherRunsP50, let p99 = r.otherRunsP99 {
                        row["other_runs_p50_s"] = p50
                        row["other_runs_p99_s"] = p99
                    }
                    if let plainRate {
                        row["plain_tasks_per_s"] = plainRate.rounded()
                        row["transitions_share_of_plain"] = r.transitionsPerSecond / plainRate
                    }
                    if let plainHeardRate {
                        row["plain_tasks_heard_per_s"] = plainHeardRate.rounded()
                        row["transitions_share_of_plain_heard"] = r.transitionsPerSecond / plainHeardRate
                    }
                    return row
                })
                return
            }
            if let plainRate { print("plain tasks end to end: \(Int(plainRate)) tasks/s (\(plainTasks) tasks, one worker, concurrency 300)") }
            if let plainHeardRate { print("plain tasks end to end, their outcome events heard by a listener: \(Int(plainHeardRate)) tasks/s") }
            for r in results {
                let share = plainRate.map { plain in
                    String(format: " (%.0f%% of the plain-task rate", 100 * r.transitionsPerSecond / plain)
                        + (plainHeardRate.map { String(format: ", %.0f%% of it with outcome events heard", 100 * r.transitionsPerSecond / $0) } ?? "")
                        + ")"
                } ?? ""
                print("\(r.store): \(Int(r.transitionsPerSecond)) step transitions/s\(share) (\(r.runs) runs × \(r.stepsPerRun) steps); "
                      + "map over \(r.mapSize) + join: \(String(format: "%.1f", r.mapSeconds)) s; "
                      + (r.otherRunsP50.flatMap { p50 in r.otherRunsP99.map { String(format: "meanwhile \(r.stepsPerRun)-step runs took %.2f s p50, %.2f s p99", p50, $0) } }
                         ?? "no other run finished during the map")
                      + "; peak RSS \(r.peakResidentBytes / 1_048_576) MB")
            }
        }
    }

    struct Ordered: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "What strict order per key costs, against the same tasks without keys.",
            discussion: """
            On a prefix of its own: starts --workers `sluice worker --ordered` processes (each \
            --concurrency), waits --settle seconds (they hear each other and share the ordered \
            partitions out), enqueues --tasks sluice.echo tasks spread over --keys order keys and \
            times their drain; then the same without keys. Reports both rates (first task finished \
            to last), their ratio, and how many tasks ran out of their key's order (0, or the \
            bench failed). Removes its queues at the end.
            """)
        @Option(help: "Tasks per drain.") var tasks = 20_000
        @Option(help: "Order keys the tasks are spread over.") var keys = 100
        @Option(help: "Worker processes.") var workers = 4
        @Option(help: "Each worker's --concurrency.") var concurrency = 16
        @Option(help: "Seconds between the workers' start and the enqueue.") var settle = 8
        @Flag(name: .customLong("kill"), help: "SIGKILL the worker that ran the most ordered tasks once half of them are done (its partitions go on elsewhere).")
        var killBusiest = false
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var connection: ConnectionOptions

        func validate() throws {
            guard tasks >= 1, keys >= 1, (1...64).contains(workers), concurrency >= 1 else {
                throw ValidationError("--tasks, --keys and --concurrency must be 1 or more, --workers from 1 to 64")
            }
        }

        func run() async throws {
            let urlText = connection.urlText
            let concurrency = self.concurrency, quiet = json
            let r = try await OrderedBenchmark(url: try connection.resolvedURL(), tasks: tasks, keys: keys, workers: workers, settle: settle,
                                               killMidway: killBusiest)
                .run(startWorker: { prefix, queue in
                    try BenchCommand.startWorker(["--prefix", prefix, "--queue", queue, "--ordered", "--concurrency", "\(concurrency)"],
                                                 url: urlText)
                }, progress: { if !quiet { standardError($0) } })
            if json {
                printJSON(["killed_midway": r.killed, "tasks": r.tasks, "keys": r.keys, "workers": r.workers, "concurrency": concurrency,
                           "ordered": r.ordered.rounded(), "plain": r.plain.rounded(), "ratio": (r.ratio * 1000).rounded() / 1000,
                           "out_of_order": r.outOfOrder, "ordered_per_worker": r.orderedPerWorker])
                if r.outOfOrder > 0 { throw ExitCode(1) }
                return
            }
            print("\(r.tasks) tasks, \(r.keys) keys, \(r.workers) workers × --concurrency \(concurrency)"
                  + (r.killed ? ", the busiest killed halfway through the ordered drain" : ""))
            print(String(format: "ordered: %.0f/s; without keys: %.0f/s; ratio %.2f", r.ordered, r.plain, r.ratio))
            print("ordered tasks run per worker: " + r.orderedPerWorker.map(String.init).joined(separator: ", "))
            print("out of their key's order: \(r.outOfOrder)")
            if r.outOfOrder > 0 { throw ExitCode(1) }
        }
    }

    struct Poison: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "What crashing tasks cost ordinary ones under a supervised worker.",
            discussion: """
            Starts `sluice worker --processes --processes` on a prefix of its own, enqueues ordinary \
            tasks (sluice.sleep --task-seconds) at --rate per second for --seconds, with --poisons \
            sluice.crash tasks spread among them, and reports the ordinary tasks' enqueue-to-start \
            wait (p50, p99, max), how many of them did not succeed, and how long each poison took \
            to be dead-lettered and why.
            """)
        @Option(help: "Ordinary tasks per second.") var rate = 20
        @Option(help: "How long to enqueue.") var seconds = 30
        @Option(help: "sluice.crash tasks among them.") var poisons = 5
        @Option(help: "Worker processes.") var processes = 2
        @Option(help: "How long each ordinary task sleeps.") var taskSeconds = 0.2
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var connection: ConnectionOptions

        func validate() throws {
            guard rate > 0, seconds > 0, poisons >= 0, (1...64).contains(processes), taskSeconds >= 0 else {
                throw ValidationError("--rate and --seconds must be positive, --processes from 1 to 64")
            }
        }

        func run() async throws {
            let url = try connection.resolvedURL()
            // The URL as given (its description hides the password).
            let urlText = connection.urlText
            let processes = self.processes
            let quiet = json
            let bench = PoisonBenchmark(url: url, rate: rate, seconds: seconds, poisons: poisons, taskSeconds: taskSeconds)
            let r = try await bench.run(startWorker: { prefix, queue in
                try BenchCommand.startWorker(["--processes", "\(processes)", "--prefix", prefix, "--queue", queue], url: urlText).stop
            }, progress: { if !quiet { standardError($0) } })
            let poisonSeconds = r.poisonSeconds.map { $0.map { ($0 * 10).rounded() / 10 } }
            if json {
                printJSON(["ordinary": r.ordinary, "poisons": r.poisons, "rate": rate, "processes": processes,
                           "wait_ms": ["p50": r.wait(percentile: 50).rounded(), "p99": r.wait(percentile: 99).rounded(),
                                       "max": (r.waits.last ?? 0).rounded()],
                           "innocents_lost": r.innocentsLost, "poison_dead_seconds": poisonSeconds.map { $0 ?? -1 },
                           "poison_reasons": r.poisonReasons])
                return
            }
            print("\(r.ordinary) ordinary tasks at \(rate)/s, \(r.poisons) sluice.crash among them, --processes \(processes)")
            print(String(format: "ordinary enqueue-to-start: p50 %.0f ms, p99 %.0f ms, max %.0f ms", r.wait(percentile: 50),
                         r.wait(percentile: 99), r.waits.last ?? 0))
            print("ordinary tasks that did not succeed: \(r.innocentsLost)")
            print("poisons dead after: " + poisonSeconds.map { $0.map { "\($0) s" } ?? "never" }.joined(separator: ", ")
                  + " (reasons: \(r.poisonReasons.joined(separator: ", ")))")
        }
    }

    struct Priorities: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "How soon high tasks start behind a low backlog, and what priority levels cost.",
            discussion: """
            On a prefix of its own: enqueues --backlog low tasks, starts a worker with priorities \
            (weights 6:3:1, --concurrency slots) in this process, and once it is draining them \
            enqueues --highs high tasks; reports their enqueue-to-start time (p50, p99, max) and \
            low's share of the starts until the last high one started, beside the share its weight \
            promises. Then, in --rounds alternating pairs, drains --tasks normal tasks with a worker \
            without priorities and one with them (both with a prefetch of twice --concurrency, as \
            priorities set), and reports the ratio of their rates.
            """)
        @Option(help: "Low tasks waiting before the high ones come.") var backlog = 50_000
        @Option(help: "High tasks enqueued behind them.") var highs = 500
        @Option(help: "The worker's slots.") var concurrency = 100
        @Option(help: "Tasks per single-level throughput measurement.") var tasks = 20_000
        @Option(help: "Pairs of single-level measurements.") var rounds = 2
        @Option(help: "How long each low and high task takes, in milliseconds (0: no work).") var taskMs = 0
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var connection: ConnectionOptions

        func validate() throws {
            guard backlog >= 1, highs >= 1, concurrency >= 1, tasks >= 1, rounds >= 1 else {
                throw ValidationError("--backlog, --highs, --concurrency, --tasks and --rounds must be 1 or more")
            }
            guard (0...60_000).contains(taskMs) else { throw ValidationError("--task-ms must be from 0 to 60000") }
        }

        func run() async throws {
            let quiet = json
            let r = try await PriorityBenchmark(url: try connection.resolvedURL(), backlog: backlog, highs: highs,
                                                concurrency: concurrency, tasks: tasks, rounds: rounds, taskMilliseconds: taskMs)
                .run(progress: { if !quiet { standardError($0) } })
            let rounded = { (x: Double) in (x * 1000).rounded() / 1000 }
            if json {
                printJSON(["backlog": r.backlog, "highs": r.highs, "concurrency": r.concurrency,
                           "high_start_ms": ["p50": rounded(r.highStart(percentile: 50)), "p99": rounded(r.highStart(percentile: 99)),
                                             "max": rounded(r.highStartMilliseconds.last ?? 0)],
                           "low_starts_meanwhile": r.lowStartsMeanwhile, "high_starts_meanwhile": r.highStartsMeanwhile,
                           "low_share": rounded(r.lowShare), "low_weight_share": rounded(r.lowWeightShare),
                           "single_level_per_second": r.singleLevel.map { ["plain": $0.plain.rounded(), "levels": $0.levels.rounded()] },
                           "single_level_ratio": rounded(r.singleLevelRatio)])
                return
            }
            print("\(r.highs) high tasks behind \(r.backlog) low ones, one worker, --concurrency \(r.concurrency), weights 6:3:1"
                  + (taskMs > 0 ? ", \(taskMs) ms per task" : ""))
            print(String(format: "high enqueue-to-start: p50 %.1f ms, p99 %.1f ms, max %.1f ms", r.highStart(percentile: 50),
                         r.highStart(percentile: 99), r.highStartMilliseconds.last ?? 0))
            print(String(format: "meanwhile low started %d, high %d: low's share %.1f%% (its weight promises %.1f%% while both wait)",
                         r.lowStartsMeanwhile, r.highStartsMeanwhile, r.lowShare * 100, r.lowWeightShare * 100))
            for (i, round) in r.singleLevel.enumerated() {
                print(String(format: "round %d: all-normal work, without priorities %.0f tasks/s, with %.0f tasks/s (%.2f)",
                             i + 1, round.plain, round.levels, round.levels / round.plain))
            }
            print(String(format: "single-level throughput with priorities: %.2f of without (median)", r.singleLevelRatio))
        }
    }

    struct RateLimit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rate-limit",
            abstract: "Whether a fleet-wide rate limit holds while workers join and die.",
            discussion: """
            On a prefix of its own: enqueues --backlog sluice.echo tasks, starts --workers \
            `sluice worker --rate-limit sluice.echo=<--limit>/s` processes, and counts the tasks \
            finished per second for --seconds from --warmup seconds after the first; a third of the way in one more \
            worker joins, two thirds in one is killed (SIGKILL). Reports the rate over the window, \
            its distance from the limit, and each second's count. Removes its queues at the end.
            """)
        @Option(help: "Starts per second allowed across all workers.") var limit: Double = 200
        @Option(help: "Tasks enqueued before the workers start.") var backlog = 20_000
        @Option(help: "Worker processes at the start.") var workers = 4
        @Option(help: "Length of the measured window.") var seconds = 30
        @Option(help: "Seconds from the first task finished to the window's start (the workers start one by one).") var warmup = 2
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var connection: ConnectionOptions

        func validate() throws {
            guard limit > 0, limit.isFinite, backlog >= 1, (2...64).contains(workers), seconds >= 3, warmup >= 0 else {
                throw ValidationError("--limit and --backlog must be positive, --workers from 2 to 64, --seconds 3 or more, --warmup 0 or more")
            }
        }

        func run() async throws {
            let url = try connection.resolvedURL()
            let urlText = connection.urlText
            let limit = self.limit, quiet = json
            let bench = RateLimitBenchmark(url: url, limit: limit, backlog: backlog, workers: workers, seconds: seconds, warmup: warmup)
            let r = try await bench.run(startWorker: { prefix, queue in
                try BenchCommand.startWorker(["--prefix", prefix, "--queue", queue, "--rate-limit", "\(RateLimitBenchmark.taskName)=\(limit)/s"],
                                             url: urlText)
            }, progress: { if !quiet { standardError($0) } })
            let rounded = { (x: Double) in (x * 1000).rounded() / 1000 }
            if json {
                printJSON(["limit": limit, "seconds": r.seconds, "rate": rounded(r.rate), "deviation": rounded(r.deviation),
                           "per_second": r.perSecond, "joined_at": r.joinedAt, "killed_at": r.killedAt, "warmup": r.warmup])
                return
            }
            print(String(format: "limit %g/s, %d workers (one more at %d s, one killed at %d s; window from %d s after the first finished)",
                         limit, workers, r.joinedAt, r.killedAt, r.warmup))
            print("finished per second: " + r.perSecond.map(String.init).joined(separator: " "))
            print(String(format: "rate over %d s: %.1f/s (%.1f%% from the limit)", r.seconds, r.rate, r.deviation * 100))
        }
    }

    struct Tracking: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "What task tracking costs the producer and the worker, and how fast a coordinator records it.",
            discussion: """
            On a prefix of its own, with a coordinator's task tracker (SQLite, in a temporary file) \
            running in this process: in --rounds, enqueues --tasks no-op tasks untracked and then \
            tracked (the order alternates), each drained by a worker with --concurrency slots; \
            reports confirmed enqueues per second and tasks settled per second of both, their \
            ratios (median over the rounds), and tracked tasks per second from the worker's start \
            until the tracker has stored all their events.
            """)
        @Option(help: "Tasks per measurement.") var tasks = 20_000
        @Option(help: "The worker's slots.") var concurrency = 100
        @Option(help: "Pairs of measurements.") var rounds = 3
        @Flag(help: "Do not run the tracker: tracked tasks' events wait in its queue (the producer's and the worker's own cost alone).")
        var noTracker = false
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var connection: ConnectionOptions

        func validate() throws {
            guard tasks >= 1, concurrency >= 1, rounds >= 1 else { throw ValidationError("--tasks, --concurrency and --rounds must be 1 or more") }
        }

        func run() async throws {
            let quiet = json
            let r = try await TrackingBenchmark(url: try connection.resolvedURL(), tasks: tasks, concurrency: concurrency, rounds: rounds,
                                                record: !noTracker)
                .run(progress: { if !quiet { standardError($0) } })
            let rounded = { (x: Double) in (x * 1000).rounded() / 1000 }
            if json {
                printJSON(["tasks": r.tasks, "concurrency": r.concurrency,
                           "rounds": r.rounds.map { ["enqueue_per_second": ["untracked": $0.plainEnqueue.rounded(), "tracked": $0.trackedEnqueue.rounded()],
                                                     "drain_per_second": ["untracked": $0.plainDrain.rounded(), "tracked": $0.trackedDrain.rounded()],
                                                     "recorded_per_second": $0.recorded.rounded()] },
                           "enqueue_ratio": rounded(r.enqueueRatio), "drain_ratio": rounded(r.drainRatio), "recorded_per_second": r.recorded.rounded()])
                return
            }
            print("\(r.tasks) no-op tasks per measurement, one worker, --concurrency \(r.concurrency)")
            for (i, round) in r.rounds.enumerated() {
                print(String(format: "round %d: enqueue %.0f/s untracked, %.0f/s tracked; drain %.0f/s untracked, %.0f/s tracked; recorded %.0f tasks/s",
                             i + 1, round.plainEnqueue, round.trackedEnqueue, round.plainDrain, round.trackedDrain, round.recorded))
            }
            print(String(format: "tracked ÷ untracked (median): enqueue %.2f, drain %.2f", r.enqueueRatio, r.drainRatio)
                  + (r.record ? String(format: "; the tracker recorded %.0f tasks/s", r.recorded) : " (no tracker running)"))
        }
    }

    struct Unique: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "What a unique key costs a producer.",
            discussion: """
            On a prefix of its own: in --rounds, --callers concurrent callers make --tasks enqueues \
            between them, each awaited, without a key, with a new key each (the first use of a key \
            declares its lock queues), and with a key already held (nothing is enqueued); the \
            order alternates. Reports enqueues per second of each and their ratios to the plain \
            rate (median over the rounds). Removes its queues at the end.
            """)
        @Option(help: "Enqueues per measurement.") var tasks = 5_000
        @Option(help: "Concurrent callers.") var callers = 32
        @Option(help: "Rounds of the three measurements.") var rounds = 3
        @Flag(help: "Print JSON.") var json = false
        @OptionGroup var connection: ConnectionOptions

        func validate() throws {
            guard tasks >= 1, callers >= 1, rounds >= 1 else { throw ValidationError("--tasks, --callers and --rounds must be 1 or more") }
        }

        func run() async throws {
            let quiet = json
            let r = try await UniqueBenchmark(url: try connection.resolvedURL(), tasks: tasks, callers: callers, rounds: rounds)
                .run(progress: { if !quiet { standardError($0) } })
            let rounded = { (x: Double) in (x * 1000).rounded() / 1000 }
            if json {
                printJSON(["tasks": r.tasks, "callers": r.callers,
                           "rounds": r.rounds.map { ["plain": $0.plain.rounded(), "unique_new": $0.uniqueNew.rounded(), "unique_held": $0.uniqueHeld.rounded()] },
                           "new_key_ratio": rounded(r.newRatio), "held_key_ratio": rounded(r.heldRatio)])
                return
            }
            print("\(r.tasks) enqueues per measurement, \(r.callers) concurrent callers")
            for (i, round) in r.rounds.enumerated() {
                print(String(format: "round %d: %.0f/s without a key, %.0f/s with a new key each, %.0f/s with a held key",
                             i + 1, round.plain, round.uniqueNew, round.uniqueHeld))
            }
            print(String(format: "÷ without a key (median): new key %.2f, held key %.2f", r.newRatio, r.heldRatio))
        }
    }

    struct Validation: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "How long definition checks take on hostile sizes (no broker).",
            discussion: "Validates a chain of --steps steps (each after the one before, referring to earlier outputs) --repeat times, builds a run's state machine for it, and refuses a YAML alias bomb.")
        @Option(help: "Steps in the chain.") var steps = 10_000
        @Option(name: .customLong("repeat"), help: "Validations to time.") var repetitions = 3
        @Flag(help: "Print JSON.") var json = false

        func run() throws {
            let r = try ValidationBenchmark(steps: steps, repetitions: repetitions).run()
            let best = r.validateSeconds.min() ?? 0, worst = r.validateSeconds.max() ?? 0
            if json {
                printJSON(["steps": r.steps, "validate_seconds": r.validateSeconds, "machine_seconds": r.machineSeconds,
                           "alias_bomb_seconds": r.bombSeconds, "alias_bomb_bytes": r.bombBytes])
                return
            }
            print(String(format: "validate a %d-step chain: %.3f-%.3f s (%d runs); its run state machine: %.3f s", r.steps, best, worst,
                         r.validateSeconds.count, r.machineSeconds))
            print(String(format: "refuse a %d-byte YAML alias bomb (10 million nodes): %.4f s", r.bombBytes, r.bombSeconds))
        }
    }
}
