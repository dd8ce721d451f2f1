import Foundation
import SluiceAMQP
import SluiceLocalBroker
import SluiceTesting
import SluiceWire
import Testing

@Suite("TLS (own node with a TLS listener)")
struct TLSTests {
    /// Makes a CA, a server certificate for `serverNames` (subjectAltName
    /// entries) signed by it, and an unrelated CA, with openssl.
    static func makeCertificates(serverNames: String = "DNS:localhost,IP:127.0.0.1") throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let script = """
        set -e
        cd '\(dir.path)'
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=Sluice Test CA' -keyout ca-key.pem -out ca.pem 2>/dev/null
        openssl req -newkey rsa:2048 -nodes -subj '/CN=localhost' -keyout server-key.pem -out server.csr 2>/dev/null
        printf 'subjectAltName=\(serverNames)\\nextendedKeyUsage=serverAuth\\n' > ext.cnf
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 -extfile ext.cnf -out server.pem 2>/dev/null
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=Some Other CA' -keyout other-ca-key.pem -out other-ca.pem 2>/dev/null
        chmod 644 *.pem
        """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-c", script]
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "openssl failed to make test certificates")
        return dir
    }

    @Test("connects with a trusted CA or without verification; a wrong CA is refused")
    func tls() async throws {
        let certificates = try Self.makeCertificates()
        defer { try? FileManager.default.removeItem(at: certificates) }
        let node = PrivateBroker.unique("tls", tlsDirectory: certificates.path)
        try await node.start()
        defer { Task { try? await node.destroy() } }

        let base = "amqps://guest:guest@localhost:\(node.amqpsPort)/%2f"
        // Verified against the right CA, hostname (IP SAN) checked.
        let verified = try await AMQPConnection.connect(.init(
            url: try AMQPURL("\(base)?cacertfile=\(certificates.path)/ca.pem"), recovery: nil))
        let channel = try await verified.openChannel(confirms: true)
        let queue = uniqueName("tls")
        try await channel.queueDeclare(QueueDeclaration(name: queue, durable: false, autoDelete: true))
        let consumer = try await channel.consume(queue: queue)
        try await channel.publish(routingKey: queue, body: "over tls".bytes)
        #expect(try await take(1, from: consumer).first?.body == "over tls".bytes)
        await verified.close()

        // Verification off: any certificate is accepted.
        let unverified = try await AMQPConnection.connect(.init(url: try AMQPURL("\(base)?verify=verify_none"), recovery: nil))
        _ = try await unverified.openChannel()
        await unverified.close()

        // A CA that did not sign the server's certificate: refused.
        let error = await #expect(throws: AMQPError.self) {
            _ = try await AMQPConnection.connect(.init(
                url: try AMQPURL("\(base)?cacertfile=\(certificates.path)/other-ca.pem"), recovery: nil))
        }
        #expect(error?.code == .tlsFailed)

        // Verification is on by default: no CA file means the test CA is not trusted.
        let byDefault = await #expect(throws: AMQPError.self) {
            _ = try await AMQPConnection.connect(.init(url: try AMQPURL(base), recovery: nil))
        }
        #expect(byDefault?.code == .tlsFailed)
        try await node.destroy()
    }
}
