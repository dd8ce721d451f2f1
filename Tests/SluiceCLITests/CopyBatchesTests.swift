@testable import SluiceCLI
import Synchronization
import Testing

@Suite("sluice enqueue --count: batches of copies (in process)")
struct CopyBatchesTests {
    struct BrokerGone: Error {}

    /// What the fake sender saw: batch sizes in call order, and every start and end.
    final class Calls: Sendable {
        let state = Mutex<(sizes: [Int], events: [String], running: Int, mostRunning: Int)>(([], [], 0, 0))

        func start(_ n: Int) -> Int {
            state.withLock {
                $0.sizes.append(n)
                $0.events.append("start")
                $0.running += 1
                $0.mostRunning = max($0.mostRunning, $0.running)
                return $0.sizes.count
            }
        }

        func end() {
            state.withLock {
                $0.events.append("end")
                $0.running -= 1
            }
        }
    }

    @Test("every copy is sent once, the first batch alone, never more batches at a time than asked")
    func allSent() async {
        let calls = Calls()
        let summary = await CopyBatches(count: 2345, batch: 500, inFlight: 3).run(send: { n in
            _ = calls.start(n)
            for _ in 0..<5 { await Task.yield() }
            calls.end()
            return .init(enqueued: n, failed: 0)
        })
        let seen = calls.state.withLock { $0 }
        #expect(summary.enqueued == 2345)
        #expect(summary.failed == 0)
        #expect(summary.stoppedBy == nil)
        #expect(seen.sizes.sorted() == [345, 500, 500, 500, 500])
        #expect(Array(seen.events.prefix(2)) == ["start", "end"], "the first batch ran alone")
        #expect(seen.mostRunning <= 3)
    }

    @Test("copies the broker refused count as failed, and sending goes on")
    func refusedCopies() async {
        let summary = await CopyBatches(count: 1200, batch: 100, inFlight: 2).run(send: { n in .init(enqueued: n - 1, failed: 1) })
        #expect(summary.enqueued == 1188)
        #expect(summary.failed == 12)
        #expect(summary.stoppedBy == nil)
    }

    @Test("a batch that throws stops the sending: its copies and every unsent one count as failed, and the error is kept")
    func batchThrows() async {
        let calls = Calls()
        var settled: [Int] = []
        let summary = await CopyBatches(count: 10_000, batch: 500, inFlight: 2).run(send: { n in
            let call = calls.start(n)
            defer { calls.end() }
            if call == 3 { throw BrokerGone() }
            for _ in 0..<5 { await Task.yield() }
            return .init(enqueued: n, failed: 0)
        }, progress: { settled.append($0) })
        let made = calls.state.withLock { $0.sizes.count }
        #expect(summary.stoppedBy is BrokerGone)
        // Of 20 batches, only those started before the error was seen.
        #expect(made >= 3 && made < 20, "\(made) batches sent")
        #expect(summary.enqueued == 500 * (made - 1))
        #expect(summary.failed == 10_000 - summary.enqueued)
        #expect(settled == settled.sorted() && settled.last == 500 * made, "progress counts settled copies: \(settled)")
    }
}
