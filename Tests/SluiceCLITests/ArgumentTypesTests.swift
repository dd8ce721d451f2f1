import ArgumentParser
@testable import SluiceCLI
import Testing
import SluiceWorkerProcess

@Suite("Command-line values and shared options (in process)")
struct ArgumentTypesTests {
    @Test("durations parse as workflow files write them, from 0 to a year; anything else is refused")
    func durations() {
        #expect(DurationArgument(argument: "500ms")?.duration == .milliseconds(500))
        #expect(DurationArgument(argument: "1h30m")?.duration == .seconds(5400))
        #expect(DurationArgument(argument: "2")?.duration == .seconds(2))
        #expect(DurationArgument(argument: "30s")?.description == "30s")
        for bad in ["", "5x", "-1s", "400d", "1e9"] { #expect(DurationArgument(argument: bad) == nil, "\(bad)") }
    }

    @Test("sizes take binary suffixes and refuse overflow")
    func sizes() {
        #expect(ByteSize(argument: "1048576")?.bytes == 1 << 20)
        #expect(ByteSize(argument: "64KiB")?.bytes == 64 << 10)
        #expect(ByteSize(argument: "2m")?.bytes == 2 << 20)
        #expect(ByteSize(argument: "1GiB")?.bytes == 1 << 30)
        #expect(ByteSize(bytes: 1 << 20).description == "1MiB")
        #expect(ByteSize(bytes: 1000).description == "1000")
        for bad in ["", "MiB", "-1", "1.5MiB", "99999999999999999999", "9999999999999GiB"] { #expect(ByteSize(argument: bad) == nil, "\(bad)") }
    }

    @Test("retention is a duration of at least a second, or forever")
    func retention() {
        #expect(RetentionArgument(argument: "forever")?.period == nil)
        #expect(RetentionArgument(argument: "30d")?.period == .seconds(30 * 86_400))
        #expect(RetentionArgument(argument: "500ms") == nil)
    }

    @Test("worker and coordinator share their service options; a bad value is a usage error, not a crash")
    func serviceOptions() throws {
        let worker = try WorkerCommand.parseAsRoot(["--queue", "q", "--log-level", "debug", "--metrics", "127.0.0.1:9410",
                                                    "--shutdown-grace", "5s", "--max-body-bytes", "2MiB"]) as? WorkerCommand
        #expect(worker?.service.logLevel == .debug)
        #expect(worker?.service.metrics == "127.0.0.1:9410")
        #expect(worker?.worker.shutdownGrace.duration == .seconds(5))
        #expect(worker?.worker.maxBodyBytes.bytes == 2 << 20)
        let coordinator = try CoordinatorCommand.parseAsRoot(["--log-level", "warning", "--retention", "forever", "--lease-ttl", "3s"])
            as? CoordinatorCommand
        #expect(coordinator?.service.logLevel == .warning)
        #expect(coordinator?.retention.period == nil)
        #expect(throws: (any Error).self) { _ = try WorkerCommand.parseAsRoot(["--shutdown-grace", "soon"]) }
        #expect(throws: (any Error).self) { _ = try WorkerCommand.parseAsRoot(["--log-level", "loud"]) }
        #expect(throws: (any Error).self) { _ = try CoordinatorCommand.parseAsRoot(["--lease-ttl", "10ms"]) }
        #expect(WorkerCommand.exitCode(for: ValidationError("x")) == .validationFailure)
    }
}
