import Foundation
import HTTPTypes
import Hummingbird
public import Logging
import NIOCore
import NIOHTTP1
import SluiceClient
import SluiceCore
public import ServiceLifecycle
import SluiceWorkflow
public import SluiceAPI
import SluiceDashboard

/// The coordinator's HTTP API (Hummingbird), for the CLI and for services
/// that do not speak AMQP. JSON in and out; errors are
/// `{"error": {"code": "...", "message": "..."}}` with a stable code.
///
/// ```
/// GET  /healthz                       liveness, and whether this coordinator is active
/// GET  /v1/stats                      runs by status, outbox backlog (counts, no run state)
/// GET  /metrics                       Prometheus text: runs by status, outbox backlog
/// GET  /v1/openapi.json               this API as an OpenAPI 3.1 document (docs/openapi.json)
/// POST /v1/workflows                  register a definition (JSON, or YAML with content-type application/yaml)
/// GET  /v1/workflows                  registered definitions, names and versions only: ?limit=&cursor=
/// GET  /v1/workflows/{name}/{version} one definition
/// DELETE /v1/workflows/{name}/{version} (refused with 409 while runs that may need it exist)
/// POST /v1/runs                       start: {"workflow", "version"?, "input"?, "idempotencyKey"?, "traceparent"?}
/// GET  /v1/runs                       list: ?workflow=&status=&after=&before=&idempotencyKey=&limit=&cursor=
/// GET  /v1/runs/{id}                  a run with every step
/// POST /v1/runs/{id}/pause           (no body)
/// POST /v1/runs/{id}/resume          (no body)
/// POST /v1/runs/{id}/cancel          {"reason"?}
/// POST /v1/runs/{id}/retry            {"step", "rerun"?}
/// POST /v1/runs/{id}/signals/{name}   {"data"?, "id"?}: a signal step waiting for it (now or later) takes it
/// POST /v1/schedules                 add or replace a cron schedule (a ScheduleSpec)
/// GET  /v1/schedules                 schedules with their next fire time
/// DELETE /v1/schedules/{id}
/// POST /v1/schedules/{id}/pause      it fires no more until resumed
/// POST /v1/schedules/{id}/resume     it fires next at its first time after now
/// POST /v1/tasks                      enqueue a standalone task: {"name", "queue"?, "arguments"?, "delaySeconds"?,
///                                     "maxAttempts"?, "idempotencyKey"?, "track"?, "unique"?, "orderKey"?}
/// GET  /v1/tasks/{id}                 a tracked task's status, attempts, times, last error, result, progress
/// POST /v1/tasks/{id}/revoke          {"terminate"?, "reason"?}: workers dead-letter it (reason revoked) instead of running it
/// GET  /v1/queues                     every task queue: ready, unacked, consumers, rates, dead, oldest age, recent samples
/// GET  /v1/workers                    live workers, from their heartbeats
/// GET  /v1/queues/{queue}/dead        dead tasks with reason, error, arguments, headers: ?limit=
/// POST /v1/queues/{queue}/dead/replay {"ids"? | "reason"? | "all"?, "resetAttempts"?}: back to the work queue
/// POST /v1/queues/{queue}/dead/purge  delete every dead task of the queue
/// GET  /ui                            the web dashboard (SluiceDashboard)
/// ```
///
/// Listening on anything but loopback requires a bearer token
/// (`Authorization: Bearer <token>`), checked on every route but `/healthz`.
public struct CoordinatorAPI: Sendable {
    /// Where the API listens, its token, its limits.
    public struct Configuration: Sendable {
        public var host: String
        public var port: Int
        /// Required unless `host` is a loopback address.
        public var token: String?
        /// Larger request bodies are refused with 413.
        public var maxBodyBytes: Int
        /// A connection that sends no part of a request for this long (a
        /// half-sent header included) is closed.
        public var idleTimeout: Duration
        /// Connections served at once; more wait to be accepted, so that
        /// slow clients cannot use up the process's file descriptors.
        public var maxConnections: Int
        /// The Prometheus text `/metrics` serves (the process's metrics
        /// registry); nil for a built-in summary of runs and the outbox.
        public var metricsText: (@Sendable () async -> [UInt8])?
        /// Serve the web dashboard under `/ui` (``SluiceDashboard/Dashboard``).
        public var dashboard: Bool
        /// The dashboard links trace ids here (`{traceId}` replaced).
        public var traceURL: String?
        /// What `GET /v1/queues` and `GET /v1/workers` answer: the process
        /// samples queues and hears worker heartbeats (nil: those routes
        /// answer 503).
        public var operations: Operations?

        public init(host: String = "127.0.0.1", port: Int = 27200, token: String? = nil, maxBodyBytes: Int = 1 << 20,
                    idleTimeout: Duration = .seconds(30), maxConnections: Int = 200,
                    metricsText: (@Sendable () async -> [UInt8])? = nil, dashboard: Bool = true) {
            self.dashboard = dashboard
            self.idleTimeout = idleTimeout
            self.maxConnections = max(1, maxConnections)
            self.host = host
            self.port = port
            self.token = token
            self.maxBodyBytes = maxBodyBytes
            self.metricsText = metricsText
        }

        /// Decided from what the host resolves to: `127.evil.example` is not loopback.
        var isLoopback: Bool { LoopbackAddress.isLoopback(host) }

        /// Sources of the queue and worker views.
        public struct Operations: Sendable {
            public var queues: @Sendable () async throws -> QueueList
            public var workers: @Sendable () async throws -> WorkerList

            public init(queues: @escaping @Sendable () async throws -> QueueList,
                        workers: @escaping @Sendable () async throws -> WorkerList) {
                self.queues = queues
                self.workers = workers
            }
        }

        /// Where this process reaches its own API: a wildcard address through loopback.
        var selfURL: URL {
            let host: String
            switch self.host {
            case "0.0.0.0", "": host = "127.0.0.1"
            case "::", "[::]": host = "[::1]"
            default: host = self.host.contains(":") && !self.host.hasPrefix("[") ? "[\(self.host)]" : self.host
            }
            return URL(string: "http://\(host):\(port)")!
        }

        /// Loopback, or a token is set.
        public var isAcceptable: Bool { isLoopback || !(token ?? "").isEmpty }
    }

    public let coordinator: Coordinator
    public let configuration: Configuration

    public init(coordinator: Coordinator, configuration: Configuration) throws {
        if !configuration.isAcceptable {
            throw APIError(.unauthorized, "listening on \(configuration.host) needs a token (--http-token or SLUICE_API_TOKEN)")
        }
        self.coordinator = coordinator
        self.configuration = configuration
    }

    /// The HTTP server, a Service to run beside the coordinator.
    public func application(logger: Logger) -> some Service {
        // The idle timeout also bounds a request's headers: a connection that
        // sends no complete request part within it is closed.
        Application(router: router(),
                    server: .http1(configuration: .init(additionalChannelHandlers: [HTTPGuard()],
                                                        idleTimeout: .nanoseconds(Int64(configuration.idleTimeout.timeInterval * 1e9)))),
                    configuration: .init(address: .hostname(configuration.host, port: configuration.port),
                                         serverName: "sluice-coordinator",
                                         availableConnectionsDelegate: .maximum(configuration.maxConnections, logger: logger)),
                    logger: logger)
    }

    func router() -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: ErrorMiddleware())
        if let token = configuration.token, !token.isEmpty {
            router.add(middleware: TokenMiddleware(token: token))
        } else {
            router.add(middleware: LoopbackGuardMiddleware())
        }
        if configuration.dashboard {
            // A client of this same API: the pages show what it answers, nothing else.
            // Reading a dead queue may wait up to 60 s for an earlier reader to hand its tasks back.
            let api = CoordinatorClient(base: configuration.selfURL, token: configuration.token, timeout: 75)
            Dashboard(client: api, token: configuration.token, traceURL: configuration.traceURL).register(on: router)
        }
        let engine = coordinator.engine
        let coordinator = self.coordinator
        let limit = configuration.maxBodyBytes
        // One client for every POST /v1/tasks: it declares each queue (and the tracking queue) once.
        let client = TaskClient(broker: coordinator.broker, defaultQueue: coordinator.configuration.defaultQueue)

        router.on(.getHealth) { _, _ in
            try encoded(HealthStatus(status: "ok", active: coordinator.isActive ? "true" : "false",
                                     partitions: coordinator.ledPartitions.partitions, partitionCount: coordinator.ledPartitions.of))
        }
        router.on(.getOpenAPIDocument) { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"],
                     body: .init(byteBuffer: ByteBuffer(bytes: OpenAPIDocument.json.utf8)))
        }
        router.on(.getStats) { _, _ in
            let stats = try await engine.store.statistics()
            var runs: [String: Int] = [:]
            for status in RunState.Status.allCases { runs[status.rawValue] = stats.runsByStatus[status.rawValue] ?? 0 }
            return try encoded(CoordinatorStats(runs: runs, outboxUnsent: stats.unsentOutbox, active: coordinator.isActive))
        }
        let metricsText = configuration.metricsText
        router.on(.getMetrics) { _, _ in
            if let metricsText {
                try? await CoordinatorMetrics.sample(coordinator)
                return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"],
                                body: .init(byteBuffer: ByteBuffer(bytes: await metricsText())))
            }
            return try await metrics(engine.store)
        }
        router.on(.registerWorkflow) { request, _ in
            var request = request
            let body = try await bodyBytes(&request, limit: limit)
            let yaml = request.headers[.contentType]?.contains("yaml") == true
            let definition = yaml ? try WorkflowDefinition.decode(yaml: String(decoding: body, as: UTF8.self))
                                  : try WorkflowDefinition.decode(json: body)
            try requireActive(coordinator)
            try await engine.register(definition)
            return try encoded(RegisteredWorkflow(name: definition.name, version: definition.version), status: .created)
        }
        router.on(.listWorkflows) { request, _ in
            // Names and versions only, a page at a time: a definition can be large.
            let limit = min(max(request.uri.queryParameters["limit"].flatMap { Int(String($0)) } ?? 100, 1), 1000)
            let cursor = request.uri.queryParameters["cursor"].map(String.init)
            let page = try await engine.store.definitionSummaries(after: cursor, limit: limit + 1)
            return try encoded(DefinitionPage(workflows: Array(page.prefix(limit)),
                                              nextCursor: page.count > limit ? page[limit - 1].cursor : nil))
        }
        router.on(.getWorkflow) { _, context in
            let (name, version) = try definitionKey(context)
            guard let definition = try await engine.store.definition(name: name, version: version) else {
                throw APIError(.notFound, "no workflow \(name) version \(version)")
            }
            return try encoded(definition)
        }
        router.on(.deleteWorkflow) { _, context in
            let (name, version) = try definitionKey(context)
            try requireActive(coordinator)
            switch try await engine.deleteDefinition(name: name, version: version) {
            case .deleted: return try encoded(DeletedWorkflow(deleted: name, version: version))
            case .notFound: throw APIError(.notFound, "no workflow \(name) version \(version)")
            case .inUse(let runs):
                throw APIError(.conflict, "\(runs) run\(runs == 1 ? "" : "s") of \(name) version \(version) may still need it "
                               + "(pending, running, paused, failed or compensating); cancel them or wait until they finish")
            }
        }
        router.on(.startRun) { request, _ in
            var request = request
            let start = try decode(StartRunRequest.self, try await bodyBytes(&request, limit: limit))
            try requireActive(coordinator)
            // The body field (refused if invalid), else the W3C header (ignored
            // if invalid, as the specification asks): step tasks join that trace.
            if let body = start.traceparent, TraceParent(body) == nil {
                throw APIError(.badRequest, "traceparent '\(body.prefix(100))' is not a W3C trace context (00-<32 hex>-<16 hex>-<2 hex>)")
            }
            let trace = start.traceparent ?? request.headers[HTTPField.Name("traceparent")!].flatMap { TraceParent($0)?.description }
            let run = try await RunStartSpan.around(workflow: start.workflow, traceparent: trace) { traceparent in
                let run = try await engine.start(workflow: start.workflow, version: start.version, input: start.input ?? [:],
                                                 idempotencyKey: start.idempotencyKey, traceparent: traceparent)
                return (run, run.runID)
            }
            return try encoded(run, status: .created)
        }
        router.on(.listRuns) { request, _ in
            let q = request.uri.queryParameters
            var query = RunQuery()
            if let w = q["workflow"] { query.workflow = String(w) }
            if let s = q["status"] {
                guard let status = RunState.Status(rawValue: String(s)) else {
                    throw APIError(.badRequest, "status must be one of \(RunState.Status.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                query.status = status
            }
            if let a = q["after"] { query.createdAfter = try date(String(a)) }
            if let b = q["before"] { query.createdBefore = try date(String(b)) }
            if let l = q["limit"] {
                guard let n = Int(l), n > 0 else { throw APIError(.badRequest, "limit must be a positive number") }
                query.limit = min(n, 1000)
            }
            if let c = q["cursor"] { query.cursor = String(c) }
            if let k = q["idempotencyKey"] { query.idempotencyKey = String(k) }
            let page = try await engine.store.runs(query)
            return try encoded(page)
        }
        router.on(.getRun) { _, context in
            let id = try pathParameter(context, "id")
            guard let run = try await engine.run(id) else { throw APIError(.notFound, "no run \(id)") }
            return try encoded(run)
        }
        let commands: [(APIRoute, @Sendable (RunCommandRequest) -> WorkflowEvent)] = [
            (.pauseRun, { _ in .pause(at: Date()) }),
            (.resumeRun, { _ in .resume(at: Date()) }),
            (.cancelRun, { c in .cancel(reason: c.reason ?? "cancelled", at: Date()) }),
        ]
        for (route, makeEvent) in commands {
            router.on(route) { request, context in
                var request = request
                let id = try pathParameter(context, "id")
                let body = try await bodyBytes(&request, limit: limit)
                let command = body.isEmpty ? RunCommandRequest() : try decode(RunCommandRequest.self, body)
                try requireActive(coordinator)
                let outcome = try await engine.apply(makeEvent(command), to: id)
                guard let run = try await engine.run(id) else { throw APIError(.notFound, "no run \(id)") }
                // Forwarded to the coordinator that leads the run's partition: applied there shortly.
                return try encoded(run, status: outcome == .forwarded ? .accepted : .ok)
            }
        }
        router.on(.retryRunStep) { request, context in
            var request = request
            let id = try pathParameter(context, "id")
            let retry = try decode(RetryStepRequest.self, try await bodyBytes(&request, limit: limit))
            try requireActive(coordinator)
            let outcome = try await engine.apply(.retryStep(stepID: retry.step, rerun: retry.rerun ?? false, at: Date()), to: id)
            guard let run = try await engine.run(id) else { throw APIError(.notFound, "no run \(id)") }
            return try encoded(run, status: outcome == .forwarded ? .accepted : .ok)
        }
        router.on(.signalRun) { request, context in
            var request = request
            let runID = try pathParameter(context, "id")
            let name = try pathParameter(context, "name")
            guard WorkflowDefinition.isValidSignalName(name) else {
                throw APIError(.badRequest, "a signal name is 1 to 128 of letters, digits, '_', '-' and '.'")
            }
            let body = try await bodyBytes(&request, limit: limit)
            let signal = body.isEmpty ? SignalRequest() : try decode(SignalRequest.self, body)
            let id = signal.id ?? UUID().uuidString
            guard !id.isEmpty, id.utf8.count <= 200 else { throw APIError(.badRequest, "a signal id is 1 to 200 bytes") }
            let data = signal.data ?? .null
            guard data.jsonBytes.count <= RunState.maxSignalBytes else {
                throw APIError(.tooLarge, "a signal's data is at most \(RunState.maxSignalBytes) bytes of JSON")
            }
            try requireActive(coordinator)
            guard let before = try await engine.run(runID) else { throw APIError(.notFound, "no run \(runID)") }
            if before.hasSignal(id: id) {
                // Sent before: applied once, answered again.
                return try encoded(SignalResponse(runID: runID, name: name, id: id, status: before.status, kept: nil))
            }
            guard !before.status.isFinal, before.status != .compensating else {
                throw APIError(.conflict, "run \(runID) has ended (\(before.status.rawValue)); a signal cannot reach it")
            }
            // Only names a step of the run's definition waits for: others would only pile up.
            guard let definition = try await engine.store.definition(name: before.workflow, version: before.version),
                  definition.steps.contains(where: { if case .signal(let spec) = $0.kind { spec.name == name } else { false } }) else {
                throw APIError(.badRequest, "no step of workflow \(before.workflow) version \(before.version) waits for a signal '\(name)'")
            }
            let outcome = try await engine.apply(.signal(name: name, id: id, data: data, at: Date()), to: runID)
            guard let run = try await engine.run(runID) else { throw APIError(.notFound, "no run \(runID)") }
            if outcome != .forwarded, !run.hasSignal(id: id) {
                // Dropped: the run ended meanwhile, or keeps as many signals as it may.
                throw APIError(.conflict, run.status.isFinal || run.status == .compensating ? "run \(runID) has ended (\(run.status.rawValue)); a signal cannot reach it"
                                : "run \(runID) already keeps \(RunState.keptSignalsLimit) signals no step has taken; this one was not kept")
            }
            let kept = outcome == .forwarded ? nil : run.signals?.contains { $0.id == id } == true
            return try encoded(SignalResponse(runID: runID, name: name, id: id, status: run.status, kept: kept),
                               status: outcome == .forwarded ? .accepted : .ok)
        }
        router.on(.putSchedule) { request, _ in
            var request = request
            let spec = try decode(ScheduleSpec.self, try await bodyBytes(&request, limit: limit))
            do { try spec.validate() } catch let error as WorkflowError { throw APIError(.badRequest, error.message) }
            if case .workflow(let name, let version, _) = spec.action, try await engine.store.definition(name: name, version: version) == nil {
                throw APIError(.unknownWorkflow, "no workflow \(name)\(version.map { " version \($0)" } ?? "") is registered")
            }
            let next = try spec.storedFireTime(after: Date())
            try await engine.store.saveSchedule(ScheduleRecord(id: spec.id, spec: try StoreCoding.encode(spec), nextFireAt: next))
            return try encoded(ScheduleView(spec: spec, nextFireAt: next), status: .created)
        }
        router.on(.listSchedules) { _, _ in
            let all = try await engine.store.schedules().map { record in
                ScheduleView(spec: try StoreCoding.decode(ScheduleSpec.self, record.spec), nextFireAt: record.nextFireAt)
            }
            return try encoded(all)
        }
        for (route, pause) in [(APIRoute.pauseSchedule, true), (.resumeSchedule, false)] {
            router.on(route) { _, context in
                let id = try pathParameter(context, "id")
                guard let record = try await engine.store.schedules().first(where: { $0.id == id }) else {
                    throw APIError(.notFound, "no schedule \(id)")
                }
                var spec = try StoreCoding.decode(ScheduleSpec.self, record.spec)
                // Again: nothing changes (a resumed schedule keeps its next time).
                guard spec.paused != pause else { return try encoded(ScheduleView(spec: spec, nextFireAt: record.nextFireAt)) }
                spec.paused = pause
                let next = try spec.storedFireTime(after: Date())
                // Over the definition read only: a replace or removal meanwhile is not undone.
                guard try await engine.store.replaceSchedule(ScheduleRecord(id: spec.id, spec: try StoreCoding.encode(spec), nextFireAt: next),
                                                             ifSpec: record.spec) else {
                    throw APIError(.conflict, "schedule \(id) was changed or removed meanwhile; read it again and retry")
                }
                return try encoded(ScheduleView(spec: spec, nextFireAt: next))
            }
        }
        router.on(.deleteSchedule) { _, context in
            let id = try pathParameter(context, "id")
            guard try await engine.store.removeSchedule(id: id) else { throw APIError(.notFound, "no schedule \(id)") }
            return try encoded(RemovedSchedule(removed: id))
        }
        router.on(.enqueueTask) { request, _ in
            var request = request
            let task = try decode(EnqueueTaskRequest.self, try await bodyBytes(&request, limit: limit))
            var options = EnqueueOptions(queue: task.queue ?? coordinator.configuration.defaultQueue)
            if let s = task.delaySeconds {
                guard s >= 0, s < 366 * 86400 else { throw APIError(.badRequest, "delaySeconds must be from 0 to a year") }
                options.delay = .milliseconds(Int64(s * 1000))
            }
            options.maxAttempts = task.maxAttempts
            options.idempotencyKey = task.idempotencyKey
            options.track = task.track
            if let orderKey = task.orderKey {
                do throws(SluiceError) { try Topology.validateOrderKey(orderKey) } catch { throw APIError(.badRequest, "orderKey: \(error.message)") }
                guard (options.delay ?? .zero) <= .zero else { throw APIError(.badRequest, "an ordered task (orderKey) cannot be delayed") }
                options.orderKey = orderKey
            }
            if let unique = task.unique {
                // Only what would not convert; the range is the key's own check, below.
                guard unique.forSeconds.isFinite, abs(unique.forSeconds) < 1e12 else {
                    throw APIError(.badRequest, "unique.forSeconds must be a number of seconds")
                }
                guard let policy = UniqueKey.Policy(rawValue: unique.policy ?? UniqueKey.Policy.untilFinished.rawValue) else {
                    throw APIError(.badRequest, "unique.policy must be one of: \(UniqueKey.Policy.allCases.map(\.rawValue).joined(separator: ", "))")
                }
                let key = UniqueKey(unique.key, for: .milliseconds(Int64(unique.forSeconds * 1000)), policy: policy)
                do throws(SluiceError) { try key.validate() } catch { throw APIError(.badRequest, "unique: \(error.message)") }
                options.unique = key
                let outcome = try await client.enqueueUnique(name: task.name, json: (task.arguments ?? [:]).jsonBytes, options: options)
                return try encoded(EnqueuedTask(id: outcome.id, enqueued: outcome.enqueued), status: outcome.enqueued ? .created : .ok)
            }
            let id = try await client.enqueue(name: task.name, json: (task.arguments ?? [:]).jsonBytes, options: options)
            return try encoded(EnqueuedTask(id: id), status: .created)
        }
        router.on(.revokeTask) { request, context in
            let id = try pathParameter(context, "id")
            guard id.utf8.count <= 255 else { throw APIError(.badRequest, "a task id has at most 255 bytes") }
            var request = request
            let bytes = try await bodyBytes(&request, limit: limit)
            let body = bytes.isEmpty ? RevokeTaskRequest() : try decode(RevokeTaskRequest.self, bytes)
            if let reason = body.reason, reason.utf8.count > 1000 { throw APIError(.badRequest, "reason has at most 1000 bytes") }
            let terminate = body.terminate ?? false
            try await coordinator.broker.revoke([id], terminate: terminate, reason: body.reason)
            return try encoded(RevokedTask(id: id, terminate: terminate), status: .accepted)
        }
        let operations = configuration.operations
        router.on(.listQueues) { _, _ in
            guard let operations else { throw APIError(.unavailable, "this coordinator samples no queues (started with --queue-metrics-interval off)") }
            return try encoded(try await operations.queues())
        }
        router.on(.listWorkers) { _, _ in
            guard let operations else { throw APIError(.unavailable, "this coordinator hears no worker heartbeats (started with --queue-metrics-interval off)") }
            return try encoded(try await operations.workers())
        }
        let deadLetters = DeadLetters(broker: coordinator.broker)
        router.on(.listDeadTasks) { request, context in
            let queue = try deadQueueParameter(context)
            var limit = 100
            if let l = request.uri.queryParameters["limit"] {
                guard let n = Int(l), n > 0 else { throw APIError(.badRequest, "limit must be a positive number") }
                limit = min(n, 1000)
            }
            let listed = try await deadLetters.list(queue: queue, limit: limit)
            return try encoded(DeadTaskPage(queue: queue, total: listed.total, tasks: listed.tasks))
        }
        router.on(.replayDeadTasks) { request, context in
            var request = request
            let queue = try deadQueueParameter(context)
            let replay = try decode(ReplayDeadRequest.self, try await bodyBytes(&request, limit: limit))
            let ids = replay.ids ?? []
            guard [replay.all == true, !ids.isEmpty, replay.reason != nil].filter({ $0 }).count == 1 else {
                throw APIError(.badRequest, "give exactly one of ids (a non-empty list), reason or all: true")
            }
            guard ids.count <= 1000, ids.allSatisfy({ !$0.isEmpty && $0.utf8.count <= 255 }) else {
                throw APIError(.badRequest, "ids: at most 1000, each 1 to 255 bytes")
            }
            let selection: DeadLetters.Selection = replay.all == true ? .all : replay.reason.map { .reason($0) } ?? .ids(Set(ids))
            let replayed = try await deadLetters.replay(queue: queue, selection, resetAttempts: replay.resetAttempts ?? false)
            let missing = Set(ids).subtracting(replayed).sorted()
            return try encoded(ReplayedDead(queue: queue, replayed: replayed, notFound: missing))
        }
        router.on(.purgeDeadTasks) { _, context in
            let queue = try deadQueueParameter(context)
            return try encoded(PurgedDead(queue: queue, purged: try await deadLetters.purge(queue: queue)))
        }
        router.on(.getTask) { _, context in
            let id = try pathParameter(context, "id")
            guard let task = try await engine.store.trackedTask(id: id) else {
                throw APIError(.notFound, "no tracked task \(id) (enqueued without tracking, or past its retention)")
            }
            return try encoded(task)
        }
        return router
    }
}

// MARK: Helpers

private func requireActive(_ coordinator: Coordinator) throws {
    guard coordinator.isActive else {
        throw APIError(.standby, "this coordinator is standing by; send commands to the active one")
    }
}

private func bodyBytes(_ request: inout Request, limit: Int) async throws -> [UInt8] {
    let buffer = try await request.collectBody(upTo: limit)
    return Array(buffer.readableBytesView)
}

private func decode<T: Decodable>(_ type: T.Type, _ bytes: [UInt8]) throws -> T {
    guard !bytes.isEmpty else { throw APIError(.badRequest, "the request needs a JSON body") }
    do {
        return try JSONDecoder().decode(type, from: Data(bytes))
    } catch let error as DecodingError {
        throw APIError(.badRequest, "the body is not a valid request: \(WorkflowDefinition.describe(error))")
    } catch {
        throw APIError(.badRequest, "the body is not valid JSON")
    }
}

private func date(_ text: String) throws -> Date {
    if let seconds = Double(text) {
        // Finite and within ±3000 years: stores keep milliseconds in 64 bits.
        guard seconds.isFinite, abs(seconds) < 1e11 else { throw APIError(.badRequest, "'\(text)' is not a usable time") }
        return Date(timeIntervalSince1970: seconds)
    }
    // As the API writes times (with milliseconds), or without fractions.
    guard let d = APICoding.parseDate(text) else {
        throw APIError(.badRequest, "'\(text)' is not a time (ISO 8601 or seconds since the epoch)")
    }
    return d
}

/// A queue whose dead tasks a route reads: a base queue (not a priority level).
private func deadQueueParameter(_ context: BasicRequestContext) throws -> String {
    let queue = try pathParameter(context, "queue")
    do throws(SluiceError) { try DeadLetters.validate(queue: queue) } catch { throw APIError(.badRequest, error.message) }
    return queue
}

/// `{name}/{version}` from the path.
private func definitionKey(_ context: BasicRequestContext) throws -> (String, Int) {
    let name = try pathParameter(context, "name")
    guard let version = Int(try pathParameter(context, "version")), version >= 1 else {
        throw APIError(.badRequest, "the version must be a positive integer")
    }
    return (name, version)
}

func encoded<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
    let data = try APICoding.encoder().encode(value)
    return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

private func metrics(_ store: any WorkflowStore) async throws -> Response {
    let stats = try await store.statistics()
    var text = "# HELP sluice_workflow_runs Workflow runs by status.\n# TYPE sluice_workflow_runs gauge\n"
    for status in RunState.Status.allCases {
        text += "sluice_workflow_runs{status=\"\(status.rawValue)\"} \(stats.runsByStatus[status.rawValue] ?? 0)\n"
    }
    text += "# HELP sluice_coordinator_outbox_unsent Step tasks waiting to be published.\n# TYPE sluice_coordinator_outbox_unsent gauge\n"
    text += "sluice_coordinator_outbox_unsent \(stats.unsentOutbox)\n"
    return Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(string: text)))
}

/// A path parameter, percent-decoded: clients encode a task id's `/` (and
/// any other reserved character) as `%2F` to keep it one path segment.
func pathParameter(_ context: BasicRequestContext, _ name: String) throws -> String {
    let raw = try context.parameters.require(name)
    return raw.removingPercentEncoding ?? raw
}
