// A worker as a Swift service builds it from the library (SluiceWorker and
// SluiceRabbitMQ, nothing of the `sluice` CLI), for measuring what such a
// process costs in memory. It runs `sluice.echo` tasks and reports its own
// resident memory: once its consumers are up, at every 100,000 tasks, after
// --exit-after tasks, and again 6 s later; then it stops.
//
//   swift build -c release --product sluice-library-worker --static-swift-stdlib
//   Benchmarks/library-worker-memory.sh
//
// Settings (environment): SLUICE_URL, SLUICE_PREFIX (default sluice), QUEUE
// (default default), CONCURRENCY (default 300), EXIT_AFTER (tasks; 0: stop
// once idle and measured).
#if canImport(Glibc)
import Glibc
#endif
import Logging
import ServiceLifecycle
import SluiceAMQP
import SluiceCore
import SluiceRabbitMQ
import SluiceWorker
import UnixSignals

/// VmRSS and RssAnon of this process, in KiB, from /proc/self/status.
func memory() -> (rss: Int, anonymous: Int) {
    guard let file = fopen("/proc/self/status", "r") else { return (0, 0) }
    defer { fclose(file) }
    var rss = 0, anonymous = 0
    var line = [CChar](repeating: 0, count: 256)
    while fgets(&line, Int32(line.count), file) != nil {
        let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let value = Int(text.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0
        if text.hasPrefix("VmRSS:") { rss = value } else if text.hasPrefix("RssAnon:") { anonymous = value }
    }
    return (rss, anonymous)
}

func report(_ phase: String, tasks: Int) {
    let (rss, anonymous) = memory()
    // One line, written at once (no buffered stdout to flush).
    let line = #"{"phase":"\#(phase)","tasks":\#(tasks),"rss_kib":\#(rss),"anonymous_kib":\#(anonymous)}"# + "\n"
    _ = line.utf8CString.withUnsafeBufferPointer { write(1, $0.baseAddress, $0.count - 1) }
}

func setting(_ name: String) -> String? {
    getenv(name).map { String(cString: $0) }
}

var logger = Logger(label: "library-worker")
logger.logLevel = .error
let url = try AMQPURL(setting("SLUICE_URL") ?? "amqp://guest:guest@127.0.0.1:27270/%2f")
let queue = setting("QUEUE") ?? "default"
let concurrency = Int(setting("CONCURRENCY") ?? "") ?? 300
let exitAfter = Int(setting("EXIT_AFTER") ?? "") ?? 0
let broker = try await RabbitMQBroker.connect(url: url, topology: Topology(prefix: setting("SLUICE_PREFIX") ?? "sluice"),
                                              connectionName: "library-worker")
var handlers = HandlerRegistry()
handlers.register("sluice.echo") { context in context.arguments }
let worker = Worker(broker: broker, registry: handlers, configuration: .init(queues: [queue], concurrency: concurrency), logger: logger)
let group = ServiceGroup(services: [worker], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
let running = Task { try await group.run() }

// Up and consuming (or, with tasks waiting, draining): idle is measured on an empty queue.
try await Task.sleep(for: .seconds(1))
if exitAfter == 0 {
    report("idle", tasks: worker.stats.processed)
} else {
    var next = 100_000
    while worker.stats.processed < exitAfter {
        if worker.stats.processed >= next {
            report("running", tasks: next)
            next += 100_000
        }
        try await Task.sleep(for: .milliseconds(20))
    }
    report("drained", tasks: worker.stats.processed)
    try await Task.sleep(for: .seconds(6))
    report("settled", tasks: worker.stats.processed)
}
await group.triggerGracefulShutdown()
try await running.value
await broker.close()
