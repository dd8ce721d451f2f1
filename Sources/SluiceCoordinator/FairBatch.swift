/// How a batch of events taken from a coordinator queue is cut into commits
/// so that one run with many events in it (a map of a million elements
/// reporting) cannot hold the other runs' events back for long: the events
/// of runs with few events in the batch go first, together; the events of
/// each run with many follow in parts of at most `heavyChunk`. A run's
/// events keep their order. With no heavy run, the batch is one part.
enum FairBatch {
    /// A run with more events than this in one batch is heavy.
    static let lightLimit = 16
    /// At most this many events of a heavy run per commit: each such commit
    /// is the most another run's event waits behind (tens of milliseconds;
    /// 64 made a 10,000-element map about 9 % slower, 256 cost nothing measurable).
    static let heavyChunk = 256
    /// At most this many events per commit at all: a batch of packs
    /// (``EventPack``, up to 256 events a delivery) can hold tens of
    /// thousands of light runs' events.
    static let maxPart = 2048

    /// The batch's indices, in parts to commit one after the other.
    /// `runIDs[i]` is the run of item i (nil for an item that applies to no
    /// run; such an item goes with the light runs' events).
    static func parts(runIDs: [String?], lightLimit: Int = lightLimit, heavyChunk: Int = heavyChunk, maxPart: Int = maxPart) -> [[Int]] {
        guard runIDs.count > lightLimit else { return runIDs.isEmpty ? [] : [Array(runIDs.indices)] }
        var counts: [String: Int] = [:]
        for case let id? in runIDs { counts[id, default: 0] += 1 }
        guard counts.values.contains(where: { $0 > lightLimit }) else { return chunks(Array(runIDs.indices), of: maxPart) }
        var light: [Int] = []
        var heavy: [Int] = []
        for (i, id) in runIDs.enumerated() {
            if let id, counts[id]! > lightLimit { heavy.append(i) } else { light.append(i) }
        }
        return chunks(light, of: maxPart) + chunks(heavy, of: min(heavyChunk, maxPart))
    }

    /// `items` cut in order into parts of at most `size`.
    private static func chunks(_ items: [Int], of size: Int) -> [[Int]] {
        stride(from: 0, to: items.count, by: size).map { Array(items[$0..<min($0 + size, items.count)]) }
    }
}
