import Foundation
import SluiceLocalBroker
import SluiceTesting
import Testing

extension ClusterTests {
    @Test("sluice dev --cluster: three nodes start, the coordinator and worker get every address, the demo completes, and the cluster stops at the end")
    func devCluster() async throws {
        let ports = PrivateCluster.unique("dev")
        // The name `sluice dev` gives a cluster on a port other than its default.
        let cluster = PrivateCluster(name: "dev-\(ports.basePort)", basePort: ports.basePort, plugins: "rabbitmq_management")
        // The worker's metrics listen on the API port + 210.
        let http = CoordinatorProcess.freePort(alsoFree: 210)
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-dev-cluster-\(UUID().uuidString)").path
        defer {
            try? FileManager.default.removeItem(atPath: dir)
        }
        let process = try SluiceBinary.start(["dev", "--cluster", "--cluster-port", "\(ports.basePort)", "--http", "127.0.0.1:\(http)",
                                              "--data-dir", dir, "--exit-when-done"])
        let status: Int32
        do {
            status = try await within(480, "sluice dev --cluster to finish its demo") { try await SluiceBinary.exitStatus(of: process) }
        } catch {
            SluiceBinary.stopIfRunning(process)
            try? await cluster.destroy()
            throw error
        }
        let output = SluiceBinary.log(of: process) ?? ""
        let coordinatorLog = (try? String(contentsOfFile: dir + "/coordinator.log", encoding: .utf8)) ?? ""
        let stillRunning = try? await cluster.run(["status"])
        try? await cluster.destroy()

        #expect(status == 0, "\(output)")
        #expect(output.contains("starting a private three-node RabbitMQ cluster"), "\(output)")
        let nodes = (1...3).map { "127.0.0.1:\(cluster.amqpPort($0))" }.joined(separator: ",")
        #expect(output.contains("amqp://guest:***@\(nodes)/%2f"), "\(output)")
        #expect(output.contains("demo run completed."), "\(output)")
        #expect(output.contains("saga demo run compensated: the charge failed, so 'hotel' then 'flight' were undone"), "\(output)")
        #expect(output.contains("stopping the private RabbitMQ cluster"), "\(output)")
        // The coordinator was connected to one of the three nodes.
        #expect((1...3).contains { coordinatorLog.contains("127.0.0.1:\(cluster.amqpPort($0))") }, "\(coordinatorLog)")
        #expect(stillRunning == nil, "no node of the cluster it started is left running: \(stillRunning ?? "")")
    }
}
