import Foundation
import SluiceWorkflow
import Testing

@Suite("A run's command history")
struct CommandHistoryTests {
    @Test("commands that change the run are recorded in order with their details; those that change nothing are not")
    func recorded() throws {
        var r = try Drive(SignalStepTests.approval())
        r.send(.pause(at: r.now))
        r.send(.pause(at: r.now))  // already paused: nothing changes
        r.now += 1
        r.send(.resume(at: r.now))
        r.send(.signal(name: "approved", id: "s1", data: ["by": "ana"], at: r.now))
        r.send(.signal(name: "approved", id: "s1", data: ["by": "ana"], at: r.now))  // a duplicate applies once
        r.send(.cancel(reason: "customer asked", at: r.now))
        r.send(.cancel(reason: "again", at: r.now))  // already cancelled
        let history = r.state.history ?? []
        #expect(history.map(\.command) == ["pause", "resume", "signal", "cancel"])
        #expect(history.map(\.detail) == [nil, nil, "approved (id s1)", "customer asked"])
        #expect(history[1].at == history[0].at.addingTimeInterval(1))
    }

    @Test("a retried step is recorded with its id; the history keeps the last 50 commands")
    func retryAndBound() throws {
        var r = try Drive(SignalStepTests.approval())
        r.dead("reserve")
        r.send(.retryStep(stepID: "reserve", rerun: false, at: r.now))
        #expect(r.state.history?.last == RunState.CommandRecord(command: "retry", at: r.now, detail: "reserve"))
        for i in 0..<60 {
            r.now += 1
            r.send(i.isMultiple(of: 2) ? .pause(at: r.now) : .resume(at: r.now))
        }
        #expect(r.state.history?.count == RunState.historyKept)
        #expect(r.state.history?.last?.command == "resume", "the newest kept, the oldest dropped")
    }

    @Test("the history survives the stored form")
    func stored() throws {
        var r = try Drive(SignalStepTests.approval())
        r.send(.pause(at: r.now))
        r.send(.cancel(reason: "why not", at: r.now))
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .millisecondsSince1970
        let back = try decoder.decode(RunState.self, from: Data(r.state.storedJSON()))
        #expect(back.history == r.state.history)
        #expect(back.history?.count == 2)
    }
}
