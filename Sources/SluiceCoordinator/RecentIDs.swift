/// The last `capacity` ids seen, for a membership test.
struct RecentIDs {
    private var members: Set<Int64> = []
    private var ring: [Int64] = []
    private var next = 0
    let capacity: Int

    init(capacity: Int) { self.capacity = capacity }

    func contains(_ id: Int64) -> Bool { members.contains(id) }

    mutating func insert(_ id: Int64) {
        guard members.insert(id).inserted else { return }
        if ring.count < capacity {
            ring.append(id)
        } else {
            members.remove(ring[next])
            ring[next] = id
            next = (next + 1) % capacity
        }
    }
}
