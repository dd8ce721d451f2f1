import Foundation
import SluiceAMQP
import SluiceCore
import SluiceLocalBroker
import SluiceRabbitMQ
import SluiceTesting
import SluiceWire
import Testing

@Suite("Outcomes of deliveries from a lost connection")
struct StaleOutcomeTests {
    @Test("the outcome of a delivery whose connection was lost is refused (staleDelivery), never sent late on the new connection; a fresh delivery's goes out")
    func staleOutcome() async throws {
        let name = "stale-outcome-\(UInt32.random(in: 0...UInt32.max))"
        let h = try await TaskHarness.make(connectionName: name)
        let events = h.broker.connection.events()
        try await h.broker.prepare(queues: ["stale-out"])
        let (task, consumer, stale) = try await h.deliveryInHand(queue: "stale")
        let (properties, body) = task.encode()

        // The broker closes the connection (a network cut or a node restart would too).
        #expect(try await SharedBroker.closeConnection(named: name, why: "stale outcome", awaiting: events))
        #expect(stale.isStale)

        // Its outcome (here: a copy to another queue, as a retry copy would be) must not go out now.
        let outcome = OutboundMessage(exchange: h.topology.tasksExchange, routingKey: "stale-out", body: body, properties: properties)
        do {
            let results = try await h.broker.publish([outcome], settling: stale)
            guard case .failure(let error as AMQPError) = results[0] else { Issue.record("published: \(results)"); return }
            #expect(error.code == .staleDelivery)
        } catch let error as AMQPError {
            #expect(error.code == .staleDelivery)
        }
        // The broker delivers it again; that delivery's outcome goes out.
        let again = try await within(60, "the redelivery") { () -> BrokerDelivery? in
            for try await delivery in consumer { return delivery }
            return nil
        }
        let fresh = try #require(again)
        #expect(!fresh.isStale)
        #expect(fresh.properties.messageId == task.id)
        let results = try await h.broker.publish([outcome], settling: fresh)
        #expect((try? results[0].get()) != nil, "\(results)")
        try await fresh.ack()
        let ready = try await within(60, "the fresh outcome to be counted") { () -> UInt32 in
            while true {
                let count = try await h.broker.queueState(h.topology.workQueue("stale-out")).messageCount
                if count > 0 { return count }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        #expect(ready == 1, "only the fresh delivery's outcome")
        await consumer.close()
        await h.broker.close()
    }
}
