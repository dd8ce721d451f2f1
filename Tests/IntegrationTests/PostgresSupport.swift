import Foundation
import SluiceTesting

/// The PostgreSQL cluster the store tests share (each test creates a database of its own).
///
/// `scripts/test` starts it and sets SLUICE_TEST_POSTGRES_URL; run directly with
/// `swift test`, the tests start the same cluster themselves.
enum SharedPostgres {
    static let cluster = PrivatePostgres(name: "test", port: 27290)

    private static let ready = Task<String, any Error> {
        if let url = ProcessInfo.processInfo.environment["SLUICE_TEST_POSTGRES_URL"], !url.isEmpty { return url }
        try await cluster.start()
        return cluster.url
    }

    /// A new, empty database on the shared cluster.
    static func createDatabase() async throws -> String {
        try await PrivatePostgres.createDatabase(adminURL: try await ready.value)
    }
}
