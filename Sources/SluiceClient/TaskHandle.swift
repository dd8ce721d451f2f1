/// A task enqueued with a reply address (``TaskClient/enqueueForResult(name:json:options:)``):
/// its id, and a way to wait for its final outcome.
public struct TaskHandle: Sendable {
    /// The task id.
    public let id: String
    let client: TaskClient

    /// Waits for the task's final outcome: its result, or ``TaskFailed`` when
    /// it ended in its dead queue. Retries do not answer; only the last
    /// attempt does. Throws `SluiceError` with code `timed_out` when no
    /// outcome came within `timeout` (the task may still run later).
    public func result(timeout: Duration = .seconds(60)) async throws -> TaskResult {
        try await client.result(of: id, timeout: timeout)
    }

    /// The result decoded as `R`.
    public func result<R: Decodable>(as type: R.Type, timeout: Duration = .seconds(60)) async throws -> R {
        try await result(timeout: timeout).decode(R.self)
    }
}
