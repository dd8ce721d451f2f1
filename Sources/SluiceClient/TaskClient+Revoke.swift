import SluiceCore

extension TaskClient {
    /// Revokes tasks by id: a worker that meets one before its handler
    /// starts dead-letters it with reason `revoked`; with `terminate`, a
    /// handler already running is cancelled (a handler that ignores
    /// cancellation runs on; one that finishes anyway counts as succeeded).
    /// Returns once the broker has confirmed the revocation, which every
    /// worker of the prefix reads (also workers started later, for
    /// ``SluiceCore/Topology/revocationRetention``). Revoking an id that
    /// never existed, or a task that already ended, changes nothing.
    public func revoke(_ taskIDs: [String], terminate: Bool = false, reason: String? = nil) async throws {
        try await broker.revoke(taskIDs, terminate: terminate, reason: reason)
    }
}
