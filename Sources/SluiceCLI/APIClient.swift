import ArgumentParser
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
import SluiceCoordinator
#endif

/// Where the coordinator's API is, for every `sluice workflow` command.
struct APIOptions: ParsableArguments {
    @Option(help: "The coordinator's API (default: $SLUICE_API, else http://127.0.0.1:27200).")
    var api: String?
    @Option(help: "Bearer token for the API (default: $SLUICE_API_TOKEN).")
    var token: String?

    func client() throws -> APIClient {
        let text = api ?? ProcessInfo.processInfo.environment["SLUICE_API"] ?? "http://127.0.0.1:27200"
        guard let url = URL(string: text), url.scheme == "http" || url.scheme == "https", url.host != nil else {
            throw ValidationError("--api must be an http:// or https:// URL, got '\(text)'")
        }
        return APIClient(base: url, token: token ?? ProcessInfo.processInfo.environment["SLUICE_API_TOKEN"])
    }
}

/// A small client for the coordinator's HTTP API: request and response
/// bodies are SluiceCoordinator's API types, encoded as the server does.
struct APIClient {
    var base: URL
    var token: String?

    /// Sends a request and decodes the answer as `T`, or throws the API's error message.
    func call<T: Decodable>(_ method: String, _ path: String, query: [(String, String)] = [], raw: [UInt8]? = nil,
                            contentType: String = "application/json", as type: T.Type) async throws -> T {
        let data = try await send(method, path, query: query, body: raw, contentType: contentType)
        do {
            return try APICoding.decoder().decode(T.self, from: data)
        } catch {
            throw CLIError("the coordinator's answer to \(method) /\(path) is not what this sluice expects (\(error)); are both the same version?")
        }
    }

    /// The same, with a JSON request body.
    func call<B: Encodable, T: Decodable>(_ method: String, _ path: String, json body: B, as type: T.Type) async throws -> T {
        try await call(method, path, raw: Array(try APICoding.encoder().encode(body)), as: type)
    }

    private func send(_ method: String, _ path: String, query: [(String, String)], body: [UInt8]?,
                      contentType: String) async throws -> Data {
        var url = base.appendingPathComponent(path)
        if !query.isEmpty, var components = URLComponents(url: url, resolvingAgainstBaseURL: false) {
            components.queryItems = query.map { URLQueryItem(name: $0.0, value: $0.1) }
            // '+' means a space to many servers: encode it too.
            components.percentEncodedQuery = components.percentEncodedQuery?.replacingOccurrences(of: "+", with: "%2B")
            url = components.url ?? url
        }
        var request = URLRequest(url: url)
        request.httpMethod = method
        request.timeoutInterval = 30
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let body {
            request.httpBody = Data(body)
            request.setValue(contentType, forHTTPHeaderField: "Content-Type")
        }
        let data: Data, response: URLResponse
        do {
            (data, response) = try await URLSession.shared.data(for: request)
        } catch {
            throw CLIError("cannot reach the coordinator at \(base): \(error.localizedDescription). Is `sluice coordinator` running? (--api)")
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard (200..<300).contains(status) else {
            let message = (try? JSONDecoder().decode(APIErrorBody.self, from: data))?.error.message
            throw CLIError("the coordinator said \(status): \(message ?? String(decoding: data, as: UTF8.self))")
        }
        return data
    }
}

/// Prints an API value as the API writes it (compact JSON, sorted keys).
func printAPIJSON<T: Encodable>(_ value: T) throws {
    print(String(decoding: try APICoding.encoder().encode(value), as: UTF8.self))
}
