import EmailTasks
import Foundation
import Logging
import ServiceLifecycle
import SluiceAMQP
import SluiceCore
import SluiceRabbitMQ
import SluiceWorker

// Runs welcome emails until SIGTERM or Ctrl-C.
let logger = Logger(label: "email-worker")
let url = try AMQPURL(ProcessInfo.processInfo.environment["SLUICE_URL"] ?? "amqp://guest:guest@127.0.0.1:27170/%2f")
let broker = try await RabbitMQBroker.connect(url: url, topology: Topology(), connectionName: "email-worker")

var handlers = HandlerRegistry()
handlers.register(SendWelcomeEmail.self) { email, context in
    // Execution is at-least-once: a real sender would pass context.idempotencyKey
    // to its mail provider so a redelivered task does not send twice.
    context.logger.info("sending welcome email", metadata: ["to": "\(email.to)", "attempt": "\(context.attempt)"])
    if email.to.hasSuffix(".invalid") {
        throw TaskFailure.permanent("cannot deliver to \(email.to)", kind: "bad_address")
    }
    return SendWelcomeEmail.Receipt(messageID: "msg-\(context.idempotencyKey)")
}

let worker = Worker(broker: broker, registry: handlers,
                    configuration: .init(queues: [SendWelcomeEmail.queue], concurrency: 8,
                                         retryPolicy: RetryPolicy(maxAttempts: 5, baseMilliseconds: 2_000)),
                    logger: logger)
let group = ServiceGroup(services: [worker], gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
try await group.run()
await broker.close()
