import SluiceCore

extension Worker {
    /// Every second, gives up the ordered partitions this worker does not
    /// own while it runs nothing from them (``PartitionControl``): each at
    /// most every 5 s, so that a partition passes down the line of waiting
    /// workers to its owner within seconds of a worker joining or leaving.
    func shareOutPartitions(_ partitions: PartitionControl, gate: RateGate, queues: [String]) async {
        let me = gate.myID
        while (try? await Task.sleep(for: .seconds(1))) != nil {
            for queue in queues {
                let members = gate.orderedMembers(queue)
                guard members.count > 1 else { continue }
                for partition in 0..<Topology.orderPartitionCount
                where PartitionControl.owner(queue: queue, partition: partition, members: members) != me {
                    if let consumer = partitions.yieldIfIdle(PartitionControl.key(queue, partition), every: .seconds(5)) {
                        await consumer.close()
                    }
                }
            }
        }
    }
}
