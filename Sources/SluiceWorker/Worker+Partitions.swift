import SluiceCore

extension Worker {
    /// Every second, gives up the ordered partitions this worker does not
    /// own and is active on (``PartitionControl``), each at most every 5 s:
    /// at once when it runs nothing from them, else right after the task
    /// it runs. A partition passes down the line of waiting workers to its
    /// owner within seconds of a worker joining or leaving.
    func shareOutPartitions(_ partitions: PartitionControl, gate: RateGate, queues: [String]) async {
        let me = gate.myID
        while (try? await Task.sleep(for: .seconds(1))) != nil {
            for queue in queues {
                let members = gate.orderedMembers(queue)
                for partition in 0..<Topology.orderPartitionCount {
                    let key = PartitionControl.key(queue, partition)
                    guard members.count > 1, PartitionControl.owner(queue: queue, partition: partition, members: members) != me else {
                        partitions.keep(key)
                        continue
                    }
                    if let consumer = partitions.giveUp(key, every: .seconds(5)) { await consumer.close() }
                }
            }
        }
    }
}
