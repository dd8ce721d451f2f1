public import Logging
import Metrics
import Prometheus
public import ServiceLifecycle
public import SluiceAMQP
import Synchronization

/// The process's Prometheus registry: `--metrics` bootstraps swift-metrics
/// with it, and `/metrics` prints it.
public enum PrometheusMetrics {
    static let registry = PrometheusCollectorRegistry()

    /// Sends every swift-metrics metric of this process to the registry.
    public static func bootstrap() {
        var factory = PrometheusMetricsFactory(registry: registry)
        // Task runs from 1 ms to 10 min; the default buckets stop at 10 s.
        factory.defaultDurationHistogramBuckets = [
            .milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
            .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
            .seconds(30), .seconds(60), .seconds(300), .seconds(600),
        ]
        MetricsSystem.bootstrap(factory)
    }

    /// The connection whose broker node `sluice_broker_node` reports, and
    /// the node last reported.
    private static let watched = Mutex<(connection: AMQPConnection?, node: String?)>((nil, nil))

    /// Reports, at each scrape, which broker node `connection` is on:
    /// `sluice_broker_node{node="host:port"} 1` (0 for a node it left).
    public static func reportNode(of connection: AMQPConnection) {
        watched.withLock { $0.connection = connection }
    }

    private static func refreshBrokerNode() {
        let (old, new) = watched.withLock { state -> (String?, String?) in
            let node = state.connection?.node?.description
            defer { state.node = node ?? state.node }
            return (state.node, node)
        }
        guard let new, new != old else { return }
        if let old { Gauge(label: "sluice_broker_node", dimensions: [("node", old)]).record(0) }
        Gauge(label: "sluice_broker_node", dimensions: [("node", new)]).record(1)
    }

    /// The registry as Prometheus text.
    public static func text() -> [UInt8] {
        refreshBrokerNode()
        var buffer: [UInt8] = []
        buffer.reserveCapacity(8192)
        registry.emit(into: &buffer)
        return buffer
    }

    /// An HTTP server for `GET /metrics` (and `/healthz`) on HOST:PORT.
    public static func server(_ hostPort: String, logger: Logger) throws -> some Service {
        let (host, port) = try parseHostPort(hostPort)
        return MetricsServer(host: host, port: port, logger: logger) { text() }
    }
}
