import ArgumentParser
import Foundation

/// `sluice check-args ARGS...`: parses a sluice command line without running
/// it. The deploy files' test uses it so that their commands match the CLI.
struct CheckArgsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-args", abstract: "Check that a sluice command line parses (for deploy files' tests).", shouldDisplay: false)

    @Argument(parsing: .captureForPassthrough) var arguments: [String] = []

    /// Environment variables sluice reads.
    static let environment = ["SLUICE_URL", "SLUICE_STORE", "SLUICE_API", "SLUICE_API_TOKEN", "SLUICE_MANAGEMENT_URL", "SLUICE_EVENT_KEY"]

    func run() throws {
        if arguments == ["--environment"] {
            print(Self.environment.joined(separator: "\n"))
            return
        }
        do {
            _ = try Sluice.parseAsRoot(arguments)
            print("ok")
        } catch {
            print(Sluice.fullMessage(for: error))
            throw ExitCode(1)
        }
    }
}
