import SluiceTesting
import Testing

@Suite("Bad command lines")
struct CommandLineTests {
    @Test("bad host names on the command line are refused with a message, never a crash")
    func badHosts() async throws {
        for arguments in [["dev", "--http", "a b:28388"], ["coordinator", "--http", "a b:28388"], ["worker", "--queue", "q", "--metrics", "a/b:9"]] {
            let result = try await SluiceBinary.run(arguments)
            #expect(result.status == 64, "\(arguments): status \(result.status), \(result.output)")
            #expect(result.output.contains("host must be a name or an IP address"), "\(result.output)")
        }
    }
}
