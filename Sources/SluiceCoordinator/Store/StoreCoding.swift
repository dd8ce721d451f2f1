import SluiceCore
import Foundation
import SluiceWorkflow

/// How stores turn values into text columns and back: JSON with sorted keys
/// and times in milliseconds, the same in SQLite and PostgreSQL.
enum StoreCoding {
    static func encode<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .millisecondsSince1970
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    static func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .millisecondsSince1970
        do {
            return try decoder.decode(type, from: Data(text.utf8))
        } catch {
            throw StoreError(.database, "a stored \(type) could not be read: \(error)")
        }
    }

    static func definition(_ text: String) throws -> WorkflowDefinition {
        do {
            return try JSONDecoder().decode(WorkflowDefinition.self, from: Data(text.utf8))
        } catch {
            throw StoreError(.database, "a stored workflow definition could not be read: \(error)")
        }
    }

    static func definitionText(_ d: WorkflowDefinition) throws -> String {
        String(decoding: try d.jsonBytes(), as: UTF8.self)
    }

    /// Changes with their state and outbox payloads encoded, before a
    /// transaction begins (so it stays short). The input, written once, only for new runs.
    typealias PreparedChanges = [(change: RunChange, state: String, input: String?, payloads: [String])]

    static func prepare(_ changes: [RunChange]) throws -> PreparedChanges {
        try changes.map { change in
            (change, String(decoding: change.run.storedJSON(elementsAsRows: true, inputApart: true), as: UTF8.self),
             change.isNew ? change.run.input.jsonText : nil, try change.publish.map(taskText))
        }
    }

    /// A commit's outbox rows, in the order their ids are returned: the
    /// changes' tasks, then the messages. Each with its run and that run's bucket.
    static func outboxRows(_ prepared: PreparedChanges, _ messages: [RunMessage]) throws -> [(runID: String, bucket: Int, payload: String)] {
        var rows: [(runID: String, bucket: Int, payload: String)] = []
        for item in prepared {
            let runID = item.change.run.runID
            let bucket = Topology.stepEventBucket(runID: runID)
            for payload in item.payloads { rows.append((runID, bucket, payload)) }
        }
        for message in messages { rows.append((message.runID, Topology.stepEventBucket(runID: message.runID), try message.payload())) }
        return rows
    }

    /// An outbox row's payload.
    static func taskText(_ task: StepTask) throws -> String {
        String(decoding: try task.storedJSON(), as: UTF8.self)
    }

    /// A map element row's columns, as both stores write them.
    struct ElementColumns {
        var runID: String
        var step: String
        var index: Int
        var status: String
        var attempts: Int
        var output: String?
        var error: String?
    }

    /// Every element row to write in a commit, and the map steps whose rows are replaced first.
    static func elementRows(_ prepared: PreparedChanges) -> (replaced: [(runID: String, step: String)], rows: [ElementColumns]) {
        var replaced: [(String, String)] = []
        var rows: [ElementColumns] = []
        for (change, _, _, _) in prepared {
            let id = change.run.runID
            for step in change.elements.replaced { replaced.append((id, step)) }
            for row in change.elements.elements {
                rows.append(ElementColumns(runID: id, step: row.step, index: row.index, status: row.element.status.rawValue,
                                           attempts: row.element.attempts, output: row.element.output?.jsonText, error: row.element.error))
            }
        }
        return (replaced, rows)
    }

    /// Runs stored before migration 2 hold their map elements in their
    /// document: the document rewritten without them, and their rows.
    static func elementsToRows(runID: String, document: String) throws -> (document: String, rows: [ElementColumns]) {
        var run = try decode(RunState.self, document)
        var changes = ElementChanges()
        for (id, step) in run.steps.sorted(by: { $0.key < $1.key }) {
            guard let elements = step.elements else { continue }
            changes.replaced.append(id)
            for (i, element) in elements.enumerated() where element.status != .waiting {
                changes.elements.append(ElementRow(step: id, index: i, element: element))
            }
        }
        run.runID = runID
        let change = RunChange(run: run, elements: changes)
        // Its input was copied to its column by the migration's statements.
        let prepared: PreparedChanges = [(change, String(decoding: run.storedJSON(elementsAsRows: true, inputApart: true), as: UTF8.self), nil, [])]
        return (prepared[0].state, elementRows(prepared).rows)
    }

    /// Selects runs' documents with their inputs (kept in a table of their
    /// own, see migration 4); a caller adds the condition.
    static let selectRuns = "SELECT state, input FROM workflow_runs LEFT JOIN workflow_inputs ON workflow_inputs.run_id = workflow_runs.id"

    /// A run as stored: its document, and for maps whose elements are rows,
    /// how many elements each has (`nil` if none: nothing more to read).
    /// `input`: the input column (runs written before migration 2 have theirs in the document).
    static func runDocument(_ text: String, input: String?) throws -> (run: RunState, elementCounts: [String: Int]?) {
        var run = try decode(RunState.self, text)
        if let input {
            do {
                run.input = try JSONValue.parse(input)
            } catch {
                throw StoreError(.database, "the stored input of run \(run.runID) could not be read: \(error)")
            }
        }
        guard text.contains("\"elementCount\"") else { return (run, nil) }
        let counts = try decode(StoredElementCounts.self, text)
        return (run, counts.steps.compactMapValues(\.elementCount))
    }

    private struct StoredElementCounts: Decodable {
        struct Step: Decodable { var elementCount: Int? }
        var steps: [String: Step]
    }

    /// Puts a run's map elements back from their rows (elements without a row are waiting),
    /// and each settled map's output, gathered from them.
    static func attach(_ rows: [ElementColumns], counts: [String: Int], to run: inout RunState) throws {
        for (step, count) in counts where run.steps[step] != nil {
            run.steps[step]!.elements = Array(repeating: ElementState(), count: count)
        }
        for row in rows {
            guard run.steps[row.step]?.elements?.indices.contains(row.index) == true,
                  let status = StepState.Status(rawValue: row.status) else { continue }
            var element = ElementState()
            element.status = status
            element.attempts = row.attempts
            element.output = try row.output.map { try JSONValue.parse($0) }
            element.error = row.error
            run.steps[row.step]!.elements![row.index] = element
        }
        for step in counts.keys {
            guard let state = run.steps[step], state.status.isSettled, let elements = state.elements else { continue }
            run.steps[step]!.output = StepState.mapOutput(elements)
        }
    }
}

/// Serialises async work: one holder at a time, first come first served.
/// (An actor alone does not: it interleaves calls at every `await`.)
actor AsyncGate {
    private var busy = false
    private var waiters: [CheckedContinuation<Void, Never>] = []

    func acquire() async {
        if !busy {
            busy = true
            return
        }
        await withCheckedContinuation { waiters.append($0) }
    }

    func release() {
        if waiters.isEmpty { busy = false } else { waiters.removeFirst().resume() }
    }

    func run<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        await acquire()
        do {
            let result = try await body()
            release()
            return result
        } catch {
            release()
            throw error
        }
    }
}

extension StoreCoding {
    /// A commit's run-concurrency work (``RunChange/SlotChange``), as both stores do it.
    struct SlotWork {
        struct Row {
            var runID: String
            var workflow: String
            var key: String
            var limit: Int
        }

        /// New runs, in line.
        var waits: [Row] = []
        /// Runs that hold a slot at once.
        var holds: [Row] = []
        /// Runs that give theirs back.
        var releases: [String] = []
        /// Every (workflow, key) touched, sorted (the order PostgreSQL takes their locks in).
        var keys: [(workflow: String, key: String)] = []

        var isEmpty: Bool { waits.isEmpty && holds.isEmpty && releases.isEmpty }
    }

    static func slotWork(_ prepared: PreparedChanges) -> SlotWork {
        var work = SlotWork()
        var keys: Set<[String]> = []
        for item in prepared {
            guard let change = item.change.slot, let slot = item.change.run.slot else { continue }
            let run = item.change.run
            let row = SlotWork.Row(runID: run.runID, workflow: run.workflow, key: slot.key, limit: slot.limit)
            switch change {
            case .wait: work.waits.append(row)
            case .hold: work.holds.append(row)
            case .release: work.releases.append(run.runID)
            }
            keys.insert([run.workflow, slot.key])
        }
        work.keys = keys.sorted { $0.lexicographicallyPrecedes($1) }.map { ($0[0], $0[1]) }
        return work
    }

    /// Which runs of a line get a slot: in arrival order, each with its own
    /// definition's limit, while `holding` (slots taken) allows; the first
    /// that does not fit stops the line.
    static func admitted(holding: Int, line: [(runID: String, limit: Int)]) -> [String] {
        var holding = holding
        var given: [String] = []
        for (runID, limit) in line {
            guard holding < limit else { break }
            holding += 1
            given.append(runID)
        }
        return given
    }

    /// The message that starts a run given a slot.
    static func slotStart(_ runID: String, at: Date) -> RunMessage {
        RunMessage(runID: runID, event: .start(at: at))
    }
}
