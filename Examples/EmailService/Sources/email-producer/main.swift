import EmailTasks
import Foundation
import SluiceAMQP
import SluiceClient
import SluiceCore
import SluiceRabbitMQ

// Enqueues one welcome email per argument: email-producer ada@example.com bob@example.com
let url = try AMQPURL(ProcessInfo.processInfo.environment["SLUICE_URL"] ?? "amqp://guest:guest@127.0.0.1:27170/%2f")
let broker = try await RabbitMQBroker.connect(url: url, topology: Topology(), connectionName: "email-producer")
let client = TaskClient(broker: broker)
for address in CommandLine.arguments.dropFirst() {
    let name = String(address.prefix { $0 != "@" })
    // Returns once RabbitMQ has confirmed the persistent message.
    let id = try await client.enqueue(SendWelcomeEmail.self, .init(to: address, name: name),
                                      options: .init(idempotencyKey: "welcome-\(address)"))
    print("enqueued \(id) for \(address)")
}
await broker.close()
