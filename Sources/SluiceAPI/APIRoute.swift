/// Every route of the coordinator's API, named by its operation id in the
/// OpenAPI document (docs/openapi.json, served at `/v1/openapi.json`). The
/// server registers its handlers through these only, so the document and
/// the server can be checked against each other.
public enum APIRoute: String, CaseIterable, Sendable {
    case getHealth, getMetrics, getStats, getOpenAPIDocument
    case registerWorkflow, listWorkflows, getWorkflow, deleteWorkflow
    case startRun, listRuns, getRun, pauseRun, resumeRun, cancelRun, retryRunStep, signalRun
    case putSchedule, listSchedules, deleteSchedule, pauseSchedule, resumeSchedule
    case enqueueTask, getTask, revokeTask
    case listQueues, listWorkers, listDeadTasks, replayDeadTasks, purgeDeadTasks

    /// The operation id in the OpenAPI document.
    public var operationID: String { rawValue }

    public var method: String {
        switch self {
        case .getHealth, .getMetrics, .getStats, .getOpenAPIDocument, .listWorkflows, .getWorkflow, .listRuns, .getRun,
             .listSchedules, .getTask, .listQueues, .listWorkers, .listDeadTasks: "GET"
        case .deleteWorkflow, .deleteSchedule: "DELETE"
        case .registerWorkflow, .startRun, .pauseRun, .resumeRun, .cancelRun, .retryRunStep, .signalRun, .putSchedule,
             .enqueueTask, .revokeTask, .replayDeadTasks, .purgeDeadTasks, .pauseSchedule, .resumeSchedule: "POST"
        }
    }

    /// The path as the OpenAPI document writes it (`{id}` for a parameter).
    public var path: String {
        switch self {
        case .getHealth: "/healthz"
        case .getMetrics: "/metrics"
        case .getStats: "/v1/stats"
        case .getOpenAPIDocument: "/v1/openapi.json"
        case .registerWorkflow, .listWorkflows: "/v1/workflows"
        case .getWorkflow, .deleteWorkflow: "/v1/workflows/{name}/{version}"
        case .startRun, .listRuns: "/v1/runs"
        case .getRun: "/v1/runs/{id}"
        case .pauseRun: "/v1/runs/{id}/pause"
        case .resumeRun: "/v1/runs/{id}/resume"
        case .cancelRun: "/v1/runs/{id}/cancel"
        case .retryRunStep: "/v1/runs/{id}/retry"
        case .signalRun: "/v1/runs/{id}/signals/{name}"
        case .putSchedule, .listSchedules: "/v1/schedules"
        case .deleteSchedule: "/v1/schedules/{id}"
        case .pauseSchedule: "/v1/schedules/{id}/pause"
        case .resumeSchedule: "/v1/schedules/{id}/resume"
        case .enqueueTask: "/v1/tasks"
        case .getTask: "/v1/tasks/{id}"
        case .revokeTask: "/v1/tasks/{id}/revoke"
        case .listQueues: "/v1/queues"
        case .listWorkers: "/v1/workers"
        case .listDeadTasks: "/v1/queues/{queue}/dead"
        case .replayDeadTasks: "/v1/queues/{queue}/dead/replay"
        case .purgeDeadTasks: "/v1/queues/{queue}/dead/purge"
        }
    }
}
