@testable import SluiceCoordinator
import Testing

@Suite("FairBatch: a huge run's events do not hold other runs' back")
struct FairBatchTests {
    @Test("a batch without a heavy run is one commit, in order")
    func noHeavyRun() {
        let ids: [String?] = (0..<40).map { "run-\($0 % 5)" } + [nil]
        #expect(FairBatch.parts(runIDs: ids) == [Array(0..<41)])
        #expect(FairBatch.parts(runIDs: []) == [])
        #expect(FairBatch.parts(runIDs: ["a", "a"]) == [[0, 1]])
    }

    @Test("other runs' events go first; the heavy run's follow in bounded parts, each run's in order")
    func heavyRunLast() {
        // 150 events of a map, with two events of another run and an invalid item among them.
        var ids: [String?] = Array(repeating: "map", count: 150)
        ids[10] = "small"
        ids[140] = "small"
        ids[70] = nil
        let parts = FairBatch.parts(runIDs: ids, lightLimit: 16, heavyChunk: 64)
        #expect(parts.first == [10, 70, 140])
        let heavy = Array(parts.dropFirst())
        #expect(heavy.map(\.count) == [64, 64, 19])
        #expect(heavy.flatMap { $0 } == (0..<150).filter { ![10, 70, 140].contains($0) })
        #expect(Set(parts.flatMap { $0 }).count == ids.count)
    }

    @Test("two heavy runs: each keeps its order across parts")
    func twoHeavyRuns() {
        let ids: [String?] = (0..<100).map { $0 % 2 == 0 ? "a" : "b" }
        let parts = FairBatch.parts(runIDs: ids, lightLimit: 16, heavyChunk: 30)
        #expect(parts.allSatisfy { $0.count <= 30 })
        let flat = parts.flatMap { $0 }
        #expect(flat == Array(0..<100))
    }

    @Test("no part holds more than the most per commit, heavy run or not; order is kept")
    func bounded() {
        let light: [String?] = (0..<5000).map { "run-\($0)" }
        let parts = FairBatch.parts(runIDs: light, lightLimit: 16, heavyChunk: 256, maxPart: 2048)
        #expect(parts.map(\.count) == [2048, 2048, 904])
        #expect(parts.flatMap { $0 } == Array(0..<5000))

        let mixed: [String?] = light + Array(repeating: "map", count: 600)
        let mixedParts = FairBatch.parts(runIDs: mixed, lightLimit: 16, heavyChunk: 256, maxPart: 2048)
        #expect(mixedParts.map(\.count) == [2048, 2048, 904, 256, 256, 88])
        #expect(mixedParts.flatMap { $0 } == Array(0..<5600))
    }
}
