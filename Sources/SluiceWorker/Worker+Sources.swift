import SluiceCore

extension Worker {
    /// One broker queue the worker consumes: a queue's level (or its
    /// isolation queue), what its deliveries are for, and the slot level it
    /// waits at.
    struct Source: Sendable, Hashable {
        /// The queue the tasks belong to (no level suffix).
        var queue: String
        /// The level consumed; nil for an isolation queue (every level).
        var priority: TaskPriority?
        /// What the broker calls it.
        var levelName: String
        var isolation: Bool
        /// The ``SlotPool`` level its deliveries wait at (0 without priorities).
        var slotLevel: Int
        /// The ordered partition consumed (``Topology/orderPartitionQueue(_:_:)``), if it is one.
        var orderPartition: Int? = nil

        func brokerQueue(_ topology: Topology) -> String {
            if let orderPartition { return topology.orderPartitionQueue(queue, orderPartition) }
            return isolation ? topology.isolationQueue(queue) : topology.workQueue(levelName)
        }
    }

    /// What a worker with `configuration` consumes, highest level first per queue.
    static func sources(_ configuration: Configuration) -> [Source] {
        if configuration.consumesIsolationQueues {
            return baseQueues(configuration).map { Source(queue: $0, priority: nil, levelName: $0, isolation: true, slotLevel: 0) }
        }
        var sources: [Source] = []
        var seen: Set<String> = []
        for name in configuration.queues {
            let (queue, level) = Topology.splitLevel(name)
            let levels: [TaskPriority] = if level == .normal && name == queue && configuration.priorities != nil {
                TaskPriority.highestFirst
            } else {
                [level ?? .normal]
            }
            for priority in levels {
                let levelName = Topology.levelName(queue, priority)
                guard seen.insert(levelName).inserted else { continue }
                sources.append(Source(queue: queue, priority: priority, levelName: levelName, isolation: false,
                                      slotLevel: configuration.priorities == nil ? 0 : priority.rank))
            }
        }
        if configuration.ordered {
            let slotLevel = configuration.priorities == nil ? 0 : TaskPriority.normal.rank
            for queue in baseQueues(configuration) {
                for index in 0..<Topology.orderPartitionCount {
                    sources.append(Source(queue: queue, priority: .normal, levelName: queue, isolation: false, slotLevel: slotLevel,
                                          orderPartition: index))
                }
            }
        }
        return sources
    }

    /// The level names the worker declares and consumes.
    static func levelNames(_ configuration: Configuration) -> [String] {
        sources(configuration).filter { !$0.isolation && $0.orderPartition == nil }.map(\.levelName)
            + (configuration.consumesIsolationQueues ? baseQueues(configuration) : [])
    }

    /// The configured queues without level suffixes, each once, in order.
    static func baseQueues(_ configuration: Configuration) -> [String] {
        var seen: Set<String> = []
        return configuration.queues.map { Topology.splitLevel($0).queue }.filter { seen.insert($0).inserted }
    }
}
