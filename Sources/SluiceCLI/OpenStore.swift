import ArgumentParser
import Foundation
import Logging
import SluiceCoordinator
import SluiceWorkerProcess

/// Opens `sqlite:PATH` or `postgres://...`.
func openStore(_ spec: String, logger: Logger) async throws -> any WorkflowStore {
    do {
        if spec.hasPrefix("sqlite:") {
            let path = String(spec.dropFirst("sqlite:".count))
            guard !path.isEmpty else { throw ValidationError("--store sqlite: needs a file path (sqlite:PATH)") }
            return try await SQLiteWorkflowStore.open(path: path, logger: logger)
        }
        if spec.hasPrefix("postgres://") || spec.hasPrefix("postgresql://") {
            return try await PostgresWorkflowStore.connect(url: spec, logger: logger)
        }
    } catch let error as StoreError {
        throw CLIError("cannot open the store: \(error.message)")
    }
    throw ValidationError("--store must be sqlite:PATH or postgres://user:password@host:port/database")
}
