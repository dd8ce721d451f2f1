import Foundation
import SluiceCoordinator
import SluiceSpawn
import SluiceTesting
import SluiceWorkflow
import Testing

@Suite("PostgreSQL over TLS (own cluster with a TLS listener)")
struct PostgresTLSTests {
    @Test("sslmode: verify-full checks the CA and the name, verify-ca and require+sslrootcert the CA only; require refuses a server without TLS")
    func sslModes() async throws {
        // The server's certificate names localhost only, not 127.0.0.1.
        let dir = try TLSTests.makeCertificates(serverNames: "DNS:localhost")
        defer { try? FileManager.default.removeItem(at: dir) }
        // A cluster of its own (destroyed afterwards; scripts/test removes any a crash left).
        let pid = Int(ProcessInfo.processInfo.processIdentifier)
        let port = 27_300 + pid % 600
        let cluster = PrivatePostgres(name: "tls-\(pid)", port: port, tlsDirectory: dir.path)
        try? await cluster.destroy()
        try await cluster.start()
        do {
            let byIP = "postgres://postgres@127.0.0.1:\(port)/postgres"
            let byName = "postgres://postgres@localhost:\(port)/postgres"
            let ca = "sslrootcert=" + dir.appendingPathComponent("ca.pem").path
            let otherCA = "sslrootcert=" + dir.appendingPathComponent("other-ca.pem").path

            // The right CA, and a name the certificate has: works, migrations and all.
            let store = try await PostgresWorkflowStore.connect(url: "\(byName)?sslmode=verify-full&\(ca)")
            #expect(store.url.sslMode == .verifyFull)
            let run = RunState(runID: "over-tls", workflow: "w", version: 1, input: [:], steps: ["a": StepState()], createdAt: Date())
            try await store.commit([RunChange(run: run, isNew: true)])
            #expect(try await store.run(id: "over-tls") != nil)
            try await store.close()
            // The chain alone: the name does not matter.
            for url in ["\(byIP)?sslmode=verify-ca&\(ca)", "\(byIP)?sslmode=require&\(ca)",
                        "\(byIP)?sslmode=require", "\(byIP)?sslmode=prefer", "\(byIP)?sslmode=disable"] {
                let store = try await PostgresWorkflowStore.connect(url: url)
                #expect(try await store.run(id: "over-tls") != nil, "\(url)")
                try await store.close()
            }

            // Refused, each with an error rather than a hang: an address the
            // certificate does not name, and a CA that did not sign it.
            for url in ["\(byIP)?sslmode=verify-full&\(ca)", "\(byName)?sslmode=verify-full&\(otherCA)",
                        "\(byIP)?sslmode=verify-ca&\(otherCA)", "\(byIP)?sslmode=require&\(otherCA)"] {
                let refused = try await failure(of: url)
                #expect(refused.contains("cannot connect"), "\(url): \(refused)")
            }
        } catch {
            try? await cluster.destroy()
            throw error
        }
        try await cluster.destroy()

        // The shared cluster speaks no TLS: require is refused; the default (prefer) falls back.
        let plain = try await SharedPostgres.createDatabase()
        let noTLS = try await failure(of: plain + "?sslmode=require")
        #expect(noTLS.contains("does not offer TLS"), "\(noTLS)")
        let store = try await PostgresWorkflowStore.connect(url: plain)
        #expect(store.url.sslMode == .prefer)
        try await store.close()
    }

    /// Connecting must fail within a bound; returns the error's text.
    private func failure(of url: String) async throws -> String {
        try await within(30, "a refused TLS connection to fail") { () -> String in
            do {
                let store = try await PostgresWorkflowStore.connect(url: url)
                try? await store.close()
                return ""
            } catch {
                return "\(error)"
            }
        }
    }
}

@Suite("PostgreSQL URLs (no server)")
struct PostgresURLTests {
    @Test("defaults, sslmode and certificate files, and clear errors for bad parameters")
    func parsing() throws {
        let plain = try PostgresURL("postgres://app:s3cret@db.internal/orders")
        #expect(plain.port == 5432 && plain.username == "app" && plain.database == "orders")
        #expect(plain.sslMode == .prefer, "libpq's default")
        #expect(!plain.description.contains("s3cret"))
        #expect(try PostgresURL("postgresql://db").database == "postgres")

        let file = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(UUID().uuidString).pem").path
        try "x".write(toFile: file, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: file) }
        let full = try PostgresURL("postgres://db:6432/x?sslmode=verify-full&sslrootcert=\(file)&sslcert=\(file)&sslkey=\(file)")
        #expect(full.sslMode == .verifyFull && full.sslRootCertificate == file && full.sslCertificate == file && full.sslKey == file)
        #expect(full.port == 6432)

        func message(_ text: String) -> String {
            do {
                _ = try PostgresURL(text)
                return ""
            } catch {
                return "\(error)"
            }
        }
        #expect(message("postgres://db/x?sslmode=allow").contains("not one of"))
        #expect(message("postgres://db/x?ssl=true").contains("unknown parameter 'ssl'"))
        #expect(message("postgres://db/x?sslmode=").contains("has no value"))
        #expect(message("postgres://db/x?sslmode=require&sslmode=disable").contains("twice"))
        #expect(message("postgres://db/x?sslcert=\(file)").contains("go together"))
        #expect(message("postgres://db/x?sslmode=disable&sslrootcert=\(file)").contains("choose a TLS mode"))
        #expect(message("postgres://db/x?sslmode=verify-ca&sslrootcert=/no/such.pem").contains("cannot read /no/such.pem"))
        #expect(message("postgres://db/x?sslmode=verify-ca").contains("needs sslrootcert"))
        #expect(message("mysql://db/x").contains("postgres://user:password@host"))
        let unparsable = message("postgres://app:p%zz@db:5432/x?sslrootcert=/c/a@b.pem")
        #expect(!unparsable.isEmpty && !unparsable.contains("p%zz"), "a URL that does not parse is not echoed: \(unparsable)")
    }
}
