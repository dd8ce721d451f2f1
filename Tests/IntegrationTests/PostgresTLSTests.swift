import Foundation
import SluiceCoordinator
import SluiceTesting
import SluiceWorkflow
import Testing

@Suite("PostgreSQL over TLS (own cluster with a TLS listener)")
struct PostgresTLSTests {
    @Test("sslmode: verify-full with the CA connects, a wrong CA is refused, require refuses a server without TLS")
    func sslModes() async throws {
        let dir = try TLSTests.makeCertificates()
        defer { try? FileManager.default.removeItem(at: dir) }
        // A cluster of its own (port 27291, next to the shared one), destroyed afterwards.
        let cluster = PrivatePostgres(name: "tls-test", port: 27291, tlsDirectory: dir.path)
        try? await cluster.destroy()
        try await cluster.start()
        do {
            let base = "postgres://postgres@127.0.0.1:27291/postgres"
            let ca = dir.appendingPathComponent("ca.pem").path
            let otherCA = dir.appendingPathComponent("other-ca.pem").path

            // Verified against the right CA (the certificate names 127.0.0.1): works, migrations and all.
            for mode in ["verify-full", "verify-ca"] {
                let store = try await PostgresWorkflowStore.connect(url: "\(base)?sslmode=\(mode)&sslrootcert=\(ca)")
                #expect(store.url.sslMode.rawValue == mode)
                let run = RunState(runID: "tls-\(mode)", workflow: "w", version: 1, input: [:], steps: ["a": StepState()], createdAt: Date())
                try await store.commit([RunChange(run: run, isNew: true)])
                #expect(try await store.run(id: "tls-\(mode)") != nil)
                try await store.close()
            }
            // Encryption without verification, and plain, also work on this server.
            for mode in ["require", "prefer", "disable"] {
                let store = try await PostgresWorkflowStore.connect(url: "\(base)?sslmode=\(mode)")
                #expect(try await store.run(id: "tls-verify-full") != nil)
                try await store.close()
            }

            // A CA that did not sign the server's certificate: refused, with an error, not a hang.
            let refused = try await failure(of: "\(base)?sslmode=verify-full&sslrootcert=\(otherCA)")
            #expect(refused.lowercased().contains("certificate") || refused.contains("SSL") || refused.contains("TLS"), "\(refused)")
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
        #expect(message("mysql://db/x").contains("expected postgres://"))
    }
}
