#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

extension Broker {
    /// Publishes revocations of `taskIDs` to the revocation stream (see
    /// ``Revocation``), declaring it first if it is missing; returns once the
    /// broker has confirmed them. ``TaskClient`` and the coordinator use it.
    public func revoke(_ taskIDs: [String], terminate: Bool = false, reason: String? = nil) async throws {
        let ids = Array(Set(taskIDs.filter { !$0.isEmpty })).sorted()
        guard !ids.isEmpty else { throw SluiceError(.invalidArgument, "no task id to revoke") }
        for id in ids where id.utf8.count > WireLimits.shortStringBytes {
            throw SluiceError(.invalidArgument, "a task id is at most \(WireLimits.shortStringBytes) bytes; \(id.prefix(40))... is not a task's id")
        }
        if let reason, reason.utf8.count > 1000 { throw SluiceError(.invalidArgument, "the reason is at most 1000 bytes") }
        // Declared if missing (an account that may not relies on a worker or
        // `sluice topology export` having done so: the publish then says).
        try? await prepareRevocations()
        let now = Date()
        let messages = stride(from: 0, to: ids.count, by: Revocation.maxTaskIDs).map { start in
            topology.revocationMessage(Revocation(taskIDs: Array(ids[start..<min(ids.count, start + Revocation.maxTaskIDs)]),
                                                 terminate: terminate, at: now, reason: reason))
        }
        for result in try await publish(messages) {
            do {
                try result.get()
            } catch where PublishFailure.isUnroutable(error) {
                throw SluiceError(.enqueueFailed, "no revocation stream \(topology.revocationStream): start a worker, or declare it with `sluice topology export`")
            } catch {
                throw SluiceError(.enqueueFailed, "the broker did not take the revocation: \(error)")
            }
        }
    }
}
