import ArgumentParser
import Foundation
import SluiceMonitor
import SluiceWorkerProcess

/// Where the management API is, for the monitoring commands.
struct ManagementOptions: ParsableArguments {
    @Option(help: ArgumentHelp("RabbitMQ's management API (default: $SLUICE_MANAGEMENT_URL, else the broker's host on 15672, or on its AMQP port + 2 for Sluice's private nodes).",
                               discussion: "Credentials come from --url unless given in this URL."))
    var management: String?
    @Flag(help: "Do not use the management API (counts from passive declares; no rates, no unacknowledged counts).")
    var noManagement = false

    func client(_ connection: ConnectionOptions) throws -> ManagementClient? {
        if noManagement { return nil }
        let explicit = management ?? ProcessInfo.processInfo.environment["SLUICE_MANAGEMENT_URL"]
        do { return try ManagementClient.forBroker(try connection.resolvedURL(), explicit: explicit) } catch let e as ManagementError {
            throw ValidationError("--management: \(e.description)")
        }
    }
}
