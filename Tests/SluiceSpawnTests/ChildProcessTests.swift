import Foundation
import SluiceSpawn
import Testing

@Suite("Child processes started with posix_spawn")
struct ChildProcessTests {
    func run(_ script: String, input: String = "", environment: [String: String] = [:]) async throws -> (ChildProcess.Termination, String) {
        let child = try ChildProcess(executable: "/bin/sh", arguments: ["-c", script], environment: environment,
                                     standardInput: .pipe, standardOutput: .pipe)
        try child.standardInput?.write(Array(input.utf8))
        child.standardInput?.close()
        let output = try child.standardOutput?.readToEnd() ?? []
        return (await child.wait(), String(decoding: output, as: UTF8.self))
    }

    @Test("exit status, output, input and exactly the environment given")
    func basics() async throws {
        let (ok, echoed) = try await run("cat; echo \" $GREETING\"", input: "hello", environment: ["GREETING": "hi"])
        #expect(ok == .exited(0))
        #expect(echoed == "hello hi\n")
        let (failed, _) = try await run("exit 75")
        #expect(failed == .exited(75))
        let (empty, output) = try await run("echo \"[$HOME]\"")
        #expect(empty == .exited(0))
        #expect(output == "[]\n", "nothing of the parent's environment unless given")
    }

    @Test("a signal ends it, and is reported as a signal")
    func signals() async throws {
        let child = try ChildProcess(executable: "/bin/sleep", arguments: ["30"], environment: [:])
        #expect(child.isRunning)
        child.signal(SIGTERM)
        #expect(await child.wait() == .signaled(SIGTERM))
        #expect(!child.isRunning)
        child.signal(SIGTERM)  // after the end: nothing is sent
    }

    @Test("the child gets default signal dispositions and none of our descriptors beyond 0-2")
    func cleanStart() async throws {
        let previous = Glibc.signal(SIGPIPE, SIG_IGN)  // as a worker does
        defer { Glibc.signal(SIGPIPE, previous) }
        let open = FileHandle(forReadingAtPath: "/dev/null")  // a descriptor without close-on-exec
        defer { try? open?.close() }
        let (status, output) = try await run("grep SigIgn /proc/self/status; ls /proc/self/fd | sort -n | tr '\\n' ' '")
        #expect(status == .exited(0))
        let ignored = output.split(separator: "\n").first.map { $0.split(separator: "\t").last.map(String.init) ?? "" } ?? ""
        // No standard signal (1-31) ignored; glibc's own realtime ones (32, 33) may be.
        #expect(UInt64(ignored, radix: 16).map { $0 & 0x7fff_ffff } == 0, "ignored signals in the child: \(output)")
        // 0-2, and the descriptor `ls` opens for /proc/self/fd itself.
        #expect(output.hasSuffix("0 1 2 3 "), "\(output)")
    }

    @Test("hundreds started at once all end with their own status")
    func many() async throws {
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for i in 0..<200 {
                group.addTask {
                    let child = try ChildProcess(executable: "/bin/sh", arguments: ["-c", "exit \(i % 7)"], environment: [:])
                    return await child.wait() == .exited(Int32(i % 7))
                }
            }
            var right = 0
            for try await ok in group where ok { right += 1 }
            #expect(right == 200)
        }
    }

    @Test("a missing executable is an error, not a crash")
    func missing() {
        #expect(throws: ChildProcess.SpawnError.self) {
            _ = try ChildProcess(executable: "/nonexistent/tool", arguments: [], environment: [:])
        }
    }
}
