import Logging
import SluiceCore

extension Worker {
    /// Every second, gives up the ordered partitions this worker does not
    /// own and is active on (``PartitionControl``), each at most every 5 s:
    /// at once when it runs nothing from them, else right after the task
    /// it runs. A partition passes down the line of waiting workers to its
    /// owner within seconds of a worker joining or leaving.
    /// Logs (info) who joins or leaves the roster it shares out by and each
    /// partition it gives up: what an operator needs when one worker seems
    /// to keep every partition.
    func shareOutPartitions(_ partitions: PartitionControl, gate: RateGate, queues: [String]) async {
        let me = gate.myID
        var rosters: [String: [String]] = [:]
        while (try? await Task.sleep(for: .seconds(1))) != nil {
            for queue in queues {
                let members = gate.orderedMembers(queue)
                // Alone at first: a worker that hears nobody logs nothing.
                let before = rosters[queue] ?? [me]
                if before != members {
                    let joined = members.filter { !before.contains($0) }, left = before.filter { !members.contains($0) }
                    logger.info("ordered workers of the queue changed", metadata: [
                        "queue": "\(queue)", "workers": "\(members.count)", "me": "\(me)",
                        "joined": "\(joined.joined(separator: ", "))", "left": "\(left.joined(separator: ", "))"])
                    logger.debug("ordered workers of the queue", metadata: ["queue": "\(queue)", "workers": "\(members.joined(separator: ", "))"])
                }
                rosters[queue] = members
                for partition in 0..<Topology.orderPartitionCount {
                    let key = PartitionControl.key(queue, partition)
                    guard members.count > 1, let owner = PartitionControl.owner(queue: queue, partition: partition, members: members),
                          owner != me else {
                        partitions.keep(key)
                        continue
                    }
                    if let consumer = partitions.giveUp(key, every: .seconds(5), to: owner) {
                        logger.info("giving an ordered partition up to its owner", metadata: [
                            "queue": "\(queue)", "partition": "\(partition)", "owner": "\(owner)"])
                        await consumer.close()
                    }
                }
            }
        }
    }
}
