public import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
public import SluiceWorkflow

/// A typed client of the coordinator's HTTP API: one method per route
/// (``APIRoute``), request and answer bodies as this module's types, encoded
/// as the server encodes them (``APICoding``). The `sluice` CLI and the
/// tests use it; other languages generate theirs from the OpenAPI document
/// (``OpenAPIDocument``, `docs/openapi.json`).
///
/// ```swift
/// let api = CoordinatorClient(base: URL(string: "http://127.0.0.1:27200")!)
/// let run = try await api.startRun(StartRunRequest(workflow: "orders", input: ["id": 42]))
/// let now = try await api.run(run.runID)
/// ```
public struct CoordinatorClient: Sendable {
    public var base: URL
    /// Sent as `Authorization: Bearer <token>` when set.
    public var token: String?
    /// How long one request may take.
    public var timeout: TimeInterval

    public init(base: URL, token: String? = nil, timeout: TimeInterval = 30) {
        self.base = base
        self.token = token
        self.timeout = timeout
    }

    /// Why a call failed.
    public struct Failure: Error, CustomStringConvertible, Sendable {
        public enum Kind: Sendable, Equatable {
            /// No answer: the coordinator is not there, or the network failed.
            case unreachable
            /// The coordinator answered with an error status (`code`: the API's error code, when it sent one).
            case refused(status: Int, code: String?)
            /// The answer was not what this client expects (another version of the API?).
            case unexpectedAnswer
        }

        public var kind: Kind
        public var message: String

        public var description: String {
            switch kind {
            case .unreachable: "cannot reach the coordinator at \(message). Is `sluice coordinator` running there?"
            case .refused(let status, _): "the coordinator said \(status): \(message)"
            case .unexpectedAnswer: message
            }
        }
    }

    // MARK: Health and metrics

    public func health() async throws -> HealthStatus { try await call(.getHealth) }
    public func stats() async throws -> CoordinatorStats { try await call(.getStats) }
    /// Prometheus text.
    public func metrics() async throws -> String { String(decoding: try await send(.getMetrics).body, as: UTF8.self) }
    /// The API's OpenAPI 3.1 document, as served.
    public func openAPIDocument() async throws -> [UInt8] { Array(try await send(.getOpenAPIDocument).body) }

    // MARK: Definitions

    public func registerWorkflow(_ definition: WorkflowDefinition) async throws -> RegisteredWorkflow {
        try await call(.registerWorkflow, body: try definition.jsonBytes())
    }

    /// Registers a definition given as YAML (or JSON) text, checked by the server.
    public func registerWorkflow(yaml: String) async throws -> RegisteredWorkflow {
        try await call(.registerWorkflow, body: Array(yaml.utf8), contentType: "application/yaml")
    }

    /// Names and versions, a page at a time (`cursor`: the previous page's ``DefinitionPage/nextCursor``).
    public func workflows(after cursor: String? = nil, limit: Int = 100) async throws -> DefinitionPage {
        try await call(.listWorkflows, query: [("limit", "\(limit)")] + (cursor.map { [("cursor", $0)] } ?? []))
    }

    public func workflow(name: String, version: Int) async throws -> WorkflowDefinition {
        try await call(.getWorkflow, ["name": name, "version": "\(version)"])
    }

    public func deleteWorkflow(name: String, version: Int) async throws -> DeletedWorkflow {
        try await call(.deleteWorkflow, ["name": name, "version": "\(version)"])
    }

    // MARK: Runs

    public func startRun(_ request: StartRunRequest) async throws -> RunState {
        try await call(.startRun, body: try encode(request))
    }

    public func run(_ id: String) async throws -> RunState { try await call(.getRun, ["id": id]) }

    public func runs(_ query: RunQuery) async throws -> RunPage {
        var items = [("limit", "\(query.limit)")]
        if let workflow = query.workflow { items.append(("workflow", workflow)) }
        if let status = query.status { items.append(("status", status.rawValue)) }
        if let after = query.createdAfter { items.append(("after", APICoding.formatDate(after))) }
        if let before = query.createdBefore { items.append(("before", APICoding.formatDate(before))) }
        if let cursor = query.cursor { items.append(("cursor", cursor)) }
        if let key = query.idempotencyKey { items.append(("idempotencyKey", key)) }
        return try await call(.listRuns, query: items)
    }

    /// The run after the command (as it stood, if the command was forwarded to the coordinator that leads it).
    public func pause(run id: String) async throws -> RunState { try await call(.pauseRun, ["id": id]) }
    public func resume(run id: String) async throws -> RunState { try await call(.resumeRun, ["id": id]) }
    public func cancel(run id: String, reason: String? = nil) async throws -> RunState {
        try await call(.cancelRun, ["id": id], body: try encode(RunCommandRequest(reason: reason)))
    }

    public func retry(run id: String, step: String, rerun: Bool = false) async throws -> RunState {
        try await call(.retryRunStep, ["id": id], body: try encode(RetryStepRequest(step: step, rerun: rerun)))
    }

    public func signal(run id: String, name: String, data: JSONValue? = nil, signalID: String? = nil) async throws -> SignalResponse {
        try await call(.signalRun, ["id": id, "name": name], body: try encode(SignalRequest(data: data, id: signalID)))
    }

    // MARK: Schedules

    public func putSchedule(_ spec: ScheduleSpec) async throws -> ScheduleView { try await call(.putSchedule, body: try encode(spec)) }
    public func schedules() async throws -> [ScheduleView] { try await call(.listSchedules) }
    public func deleteSchedule(_ id: String) async throws -> RemovedSchedule { try await call(.deleteSchedule, ["id": id]) }
    public func pauseSchedule(_ id: String) async throws -> ScheduleView { try await call(.pauseSchedule, ["id": id], body: []) }
    public func resumeSchedule(_ id: String) async throws -> ScheduleView { try await call(.resumeSchedule, ["id": id], body: []) }

    // MARK: Tasks

    public func enqueue(_ request: EnqueueTaskRequest) async throws -> EnqueuedTask { try await call(.enqueueTask, body: try encode(request)) }
    public func task(_ id: String) async throws -> TrackedTask { try await call(.getTask, ["id": id]) }
    public func revoke(task id: String, terminate: Bool? = nil, reason: String? = nil) async throws -> RevokedTask {
        try await call(.revokeTask, ["id": id], body: try encode(RevokeTaskRequest(terminate: terminate, reason: reason)))
    }

    // MARK: Queues, workers, dead tasks

    public func queues() async throws -> QueueList { try await call(.listQueues) }
    public func workers() async throws -> WorkerList { try await call(.listWorkers) }

    /// Up to `limit` of `queue`'s dead tasks, oldest first.
    public func deadTasks(queue: String, limit: Int = 100) async throws -> DeadTaskPage {
        try await call(.listDeadTasks, ["queue": queue], query: [("limit", "\(limit)")])
    }

    public func replayDeadTasks(queue: String, _ request: ReplayDeadRequest) async throws -> ReplayedDead {
        try await call(.replayDeadTasks, ["queue": queue], body: try encode(request))
    }

    public func purgeDeadTasks(queue: String) async throws -> PurgedDead {
        try await call(.purgeDeadTasks, ["queue": queue], body: [])
    }

    // MARK: Transport

    private func encode<T: Encodable>(_ value: T) throws -> [UInt8] { Array(try APICoding.encoder().encode(value)) }

    private func call<T: Decodable>(_ route: APIRoute, _ parameters: [String: String] = [:], query: [(String, String)] = [],
                                    body: [UInt8]? = nil, contentType: String = "application/json") async throws -> T {
        let answer = try await send(route, parameters, query: query, body: body, contentType: contentType)
        do {
            return try APICoding.decoder().decode(T.self, from: answer.body)
        } catch {
            throw Failure(kind: .unexpectedAnswer, message: "the coordinator's answer to \(route.method) \(answer.path) is not what this client expects (\(error)); are both the same version?")
        }
    }

    /// The URL of `route` with its path parameters filled in (each one path segment, percent-encoded).
    public func url(_ route: APIRoute, _ parameters: [String: String] = [:], query: [(String, String)] = []) -> URL {
        var path = route.path
        for (name, value) in parameters {
            let segment = value.addingPercentEncoding(withAllowedCharacters: Self.segmentCharacters) ?? value
            path = path.replacingOccurrences(of: "{\(name)}", with: segment)
        }
        var text = base.absoluteString
        while text.hasSuffix("/") { text.removeLast() }
        guard var components = URLComponents(string: text + path) else { return base }
        if !query.isEmpty {
            components.queryItems = query.map { URLQueryItem(name: $0.0, value: $0.1) }
            // '+' means a space to many servers: encode it too.
            let encoded = components.percentEncodedQuery?.replacingOccurrences(of: "+", with: "%2B")
            components.percentEncodedQuery = encoded
        }
        return components.url ?? base
    }

    private static let segmentCharacters: CharacterSet = {
        var allowed = CharacterSet.urlPathAllowed
        allowed.remove(charactersIn: "/?#")
        return allowed
    }()

    private func send(_ route: APIRoute, _ parameters: [String: String] = [:], query: [(String, String)] = [], body: [UInt8]? = nil,
                      contentType: String = "application/json") async throws -> (path: String, body: Data) {
        let url = url(route, parameters, query: query)
        var request = URLRequest(url: url)
        request.httpMethod = route.method
        request.timeoutInterval = timeout
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        if let body {
            request.httpBody = Data(body)
            request.setValue(contentType, forHTTPHeaderField: "Content-Type")
        }
        let data: Data, response: URLResponse
        do {
            (data, response) = try await URLSession.shared.data(for: request)
        } catch {
            throw Failure(kind: .unreachable, message: "\(base): \(error.localizedDescription)")
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard (200..<300).contains(status) else {
            let detail = (try? JSONDecoder().decode(APIErrorBody.self, from: data))?.error
            throw Failure(kind: .refused(status: status, code: detail?.code),
                          message: detail?.message ?? String(decoding: data.prefix(2000), as: UTF8.self))
        }
        return (url.path, data)
    }
}
