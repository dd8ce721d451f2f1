import Foundation
@testable import SluiceCoordinator
import SluiceWorkflow
import Testing

@Suite("The outbox feed and the relay's recent ids")
struct OutboxFeedTests {
    func entry(_ id: Int64) -> OutboxEntry {
        OutboxEntry(id: id, task: StepTask(taskID: "r/a/\(id)", name: "t", queue: nil, arguments: [:], maxAttempts: nil, retry: nil,
                                           runID: "r", stepID: "a", index: nil), createdAt: Date(timeIntervalSince1970: 0))
    }

    @Test("rows come out oldest first, a batch at a time; a drop is reported at the next take, not only once the feed is empty")
    func feed() {
        let feed = OutboxFeed()
        feed.append((1...3).map(entry))
        #expect(feed.take(max: 2).entries.map(\.id) == [1, 2])
        feed.append((4...5).map(entry))
        // Too many to keep: dropped, left to the store.
        feed.append((6...(6 + Int64(OutboxFeed.capacity))).map(entry))
        let next = feed.take(max: 10)
        #expect(next.entries.map(\.id) == [3, 4, 5])
        #expect(next.overflowed, "the relay must read the store now")
        #expect(!feed.take(max: 10).overflowed, "reported once")
        #expect(feed.isEmpty)
    }

    @Test("a schedule's rows (written outside the engine) are flagged for the relay once")
    func storeChanged() {
        let feed = OutboxFeed()
        #expect(!feed.takeStoreChanged())
        feed.storeChanged()
        #expect(feed.takeStoreChanged())
        #expect(!feed.takeStoreChanged())
    }

    @Test("task ids to revoke survive a relay (re)start that clears the rows: the store does not hold them")
    func revokedSurviveClear() {
        let feed = OutboxFeed()
        feed.append([entry(1)])
        feed.revoke(["r/a/0", "r/b/0"])
        feed.clear()
        #expect(feed.isEmpty, "rows are left to the store")
        #expect(feed.takeRevoked() == ["r/a/0", "r/b/0"])
        #expect(feed.takeRevoked().isEmpty, "taken once")
    }

    @Test("recent ids remember the last `capacity` inserted")
    func recent() {
        var recent = RecentIDs(capacity: 3)
        for id in 1...5 as ClosedRange<Int64> { recent.insert(id) }
        #expect(!recent.contains(1) && !recent.contains(2))
        #expect(recent.contains(3) && recent.contains(4) && recent.contains(5))
        recent.insert(5)  // again: changes nothing
        #expect(recent.contains(3))
    }
}
