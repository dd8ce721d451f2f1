import Logging
import ServiceLifecycle
import SluiceCore
import SluiceWorker

/// Runs `body` with a worker of `configuration` running on the in-memory
/// broker, then stops it (also when `body` throws).
func withInMemoryWorker(_ broker: InMemoryBroker, _ registry: HandlerRegistry, _ configuration: Worker.Configuration,
                        _ body: () async throws -> Void) async throws {
    var logger = Logger(label: "test")
    logger.logLevel = .critical
    let worker = Worker(broker: broker, registry: registry, configuration: configuration, logger: logger)
    let group = ServiceGroup(configuration: .init(services: [worker], logger: logger))
    let running = Task { try await group.run() }
    do {
        try await body()
    } catch {
        await group.triggerGracefulShutdown()
        _ = try? await running.value
        throw error
    }
    await group.triggerGracefulShutdown()
    try await running.value
}
