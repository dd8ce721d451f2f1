import ArgumentParser
import Foundation
import SluiceAPI

/// Where the coordinator's API is, for every `sluice workflow` command.
struct APIOptions: ParsableArguments {
    @Option(help: "The coordinator's API (default: $SLUICE_API, else http://127.0.0.1:27200).")
    var api: String?
    @Option(help: "Bearer token for the API (default: $SLUICE_API_TOKEN).")
    var token: String?

    /// The typed client of the coordinator's API (SluiceAPI's ``CoordinatorClient``).
    func client() throws -> CoordinatorClient {
        let text = api ?? ProcessInfo.processInfo.environment["SLUICE_API"] ?? "http://127.0.0.1:27200"
        guard let url = URL(string: text), url.scheme == "http" || url.scheme == "https", url.host != nil else {
            throw ValidationError("--api must be an http:// or https:// URL, got '\(text)'")
        }
        return CoordinatorClient(base: url, token: token ?? ProcessInfo.processInfo.environment["SLUICE_API_TOKEN"])
    }
}

/// Prints an API value as the API writes it (compact JSON, sorted keys).
func printAPIJSON<T: Encodable>(_ value: T) throws {
    print(String(decoding: try APICoding.encoder().encode(value), as: UTF8.self))
}
