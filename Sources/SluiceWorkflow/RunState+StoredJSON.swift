import Foundation
import SluiceCore

extension RunState {
    /// The run as stores keep it: the JSON of its `Codable` form, with times
    /// as milliseconds since 1970 (what `JSONDecoder` reads back with
    /// `.millisecondsSince1970`). Written by hand because the coordinator
    /// writes every changed run on every commit, and Foundation's encoder
    /// took most of a commit's time.
    ///
    /// `elementsAsRows`: map elements are kept as rows of their own (see
    /// ``ElementChanges``): a map step then has `elementCount` instead of
    /// `elements`, and a settled map's output (gathered from its elements)
    /// is left out, so the document stays small however large the map.
    /// `inputApart`: the input is stored on its own, once (written as null).
    public func storedJSON(elementsAsRows: Bool = false, inputApart: Bool = false) -> [UInt8] {
        var out = StoredJSONWriter()
        out.object { o in
            o.field("runID", runID)
            o.field("workflow", workflow)
            o.field("version", version)
            o.field("input", inputApart ? .null : input)
            o.field("status", status.rawValue)
            o.key("steps")
            o.out.object { s in
                for id in steps.keys.sorted() {
                    s.key(id)
                    steps[id]!.write(to: &s.out, elementsAsRows: elementsAsRows)
                }
            }
            if let output { o.field("output", output) }
            if let error { o.field("error", error) }
            if let failedStep { o.field("failedStep", failedStep) }
            o.field("createdAt", createdAt)
            if let startedAt { o.field("startedAt", startedAt) }
            if let finishedAt { o.field("finishedAt", finishedAt) }
            if let parent {
                o.key("parent")
                o.out.object { p in
                    p.field("runID", parent.runID)
                    p.field("childKey", parent.childKey)
                }
            }
            if let traceparent { o.field("traceparent", traceparent) }
            if let appliedMessages { o.field("appliedMessages", appliedMessages) }
            if let signals {
                o.key("signals")
                o.out.array(signals) { out, signal in
                    out.object { s in
                        s.field("name", signal.name)
                        s.field("id", signal.id)
                        s.field("data", signal.data)
                        s.field("at", signal.at)
                    }
                }
            }
            if let signalIDs { o.field("signalIDs", signalIDs) }
            if let slot {
                o.key("slot")
                o.out.object { c in
                    c.field("key", slot.key)
                    c.field("limit", slot.limit)
                }
            }
            if let completedWork { o.field("completedWork", completedWork) }
            if let compensation {
                o.key("compensation")
                o.out.object { c in
                    c.field("cause", compensation.cause.rawValue)
                    if let order = compensation.order { c.field("order", order) }
                    c.field("done", compensation.done)
                    if let error = compensation.error { c.field("error", error) }
                }
            }
            if let history {
                o.key("history")
                o.out.array(history) { out, record in
                    out.object { r in
                        r.field("command", record.command)
                        r.field("at", record.at)
                        if let detail = record.detail { r.field("detail", detail) }
                    }
                }
            }
        }
        return out.bytes
    }
}

extension StepState {
    /// A map step's output: its elements' outputs in order, null for those that did not succeed.
    public static func mapOutput(_ elements: [ElementState]) -> JSONValue {
        .array(elements.map { $0.status == .succeeded ? ($0.output ?? .null) : .null })
    }

    func write(to out: inout StoredJSONWriter, elementsAsRows: Bool) {
        out.object { o in
            o.field("status", status.rawValue)
            o.field("generation", generation)
            o.field("attempts", attempts)
            if let output, !(elementsAsRows && elements != nil && status.isSettled) { o.field("output", output) }
            if let error { o.field("error", error) }
            if let startedAt { o.field("startedAt", startedAt) }
            if let finishedAt { o.field("finishedAt", finishedAt) }
            if let progress { o.field("progress", .number(progress)) }
            if let progressMessage { o.field("progressMessage", progressMessage) }
            if let compensation {
                o.key("compensation")
                compensation.write(to: &o.out)
            }
            if let elements {
                if elementsAsRows {
                    o.field("elementCount", elements.count)
                } else {
                    o.key("elements")
                    o.out.array(elements) { out, element in element.write(to: &out) }
                }
            }
        }
    }
}

extension StepCompensation {
    func write(to out: inout StoredJSONWriter) {
        out.object { o in
            o.field("status", status.rawValue)
            o.field("attempts", attempts)
            if let error { o.field("error", error) }
            if let startedAt { o.field("startedAt", startedAt) }
            if let finishedAt { o.field("finishedAt", finishedAt) }
            if let running {
                o.key("running")
                o.out.array(running) { out, i in out.bytes.append(contentsOf: String(i).utf8) }
            }
            if let next { o.field("next", next) }
            if let done { o.field("done", done) }
        }
    }
}

extension ElementState {
    func write(to out: inout StoredJSONWriter) {
        out.object { o in
            o.field("status", status.rawValue)
            o.field("attempts", attempts)
            if let output { o.field("output", output) }
            if let error { o.field("error", error) }
        }
    }
}

extension StepTask {
    /// The task as the outbox stores it: the JSON of its `Codable` form,
    /// written by hand (one per step task published) except for a retry
    /// policy, which is rare and left to `JSONEncoder`.
    public func storedJSON() throws -> [UInt8] {
        let retryJSON = try retry.map { try JSONEncoder().encode($0) }
        var out = StoredJSONWriter()
        out.object { o in
            o.field("taskID", taskID)
            o.field("name", name)
            if let queue { o.field("queue", queue) }
            o.field("arguments", arguments)
            if let maxAttempts { o.field("maxAttempts", maxAttempts) }
            if let retryJSON {
                o.key("retry")
                o.out.bytes.append(contentsOf: retryJSON)
            }
            o.field("runID", runID)
            o.field("stepID", stepID)
            if let index { o.field("index", index) }
            if let traceparent { o.field("traceparent", traceparent) }
        }
        return out.bytes
    }
}
