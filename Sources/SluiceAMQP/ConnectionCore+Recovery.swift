import CRabbitMQ
import Logging
import SluiceWire

/// Losing a connection and getting it back, on the connection thread.
extension ConnectionCore {
    /// The socket is gone (or unusable): the lifecycle decides what follows.
    func connectionLost(_ error: AMQPError) {
        execute(lifecycle.lost(error))
    }

    /// Fails what waited on the lost socket, keeps the unacknowledged
    /// deliveries to report, and ends the connection unless it recovers.
    func tearDown(_ error: AMQPError) {
        guard let connection else { return }
        // The socket is dead or in an unknown state: no close handshake.
        connectedFlag.store(false)
        RabbitMQC(state: connection).destroy()
        self.connection = nil
        socketFD = -1
        blockedFlag.store(false)
        // Reconnect to the next node first: this one may be down.
        nodeIndex = (nodeIndex + 1) % configuration.url.nodes.count

        var lost: [LostDelivery] = []
        for channel in channels.values {
            for (tag, consumerTag) in channel.unacked {
                lost.append(LostDelivery(channel: channel.id, deliveryTag: tag, consumerTag: consumerTag))
            }
            channel.unacked.removeAll()
            channel.content = nil
            let lostError = AMQPError(.connectionLost, operation: "publish", message: "the connection was lost before the broker confirmed the message: \(error.message)")
            for waiter in channel.tracker.reset() { waiter.settle(.failure(lostError)) }
        }
        pendingLostDeliveries.append(contentsOf: lost.sorted { ($0.channel, $0.deliveryTag) < ($1.channel, $1.deliveryTag) })
        events.emit(.disconnected(error))

        guard lifecycle.isRecovering else {
            logger.error("connection lost", metadata: ["error": "\(error)"])
            finish(error: error)
            return
        }
        logger.warning("connection lost; reconnecting", metadata: ["error": "\(error)"])
    }

    /// One reconnection attempt after the lifecycle's backoff delay.
    func recoverStep() {
        guard case .reconnect(let delay) = lifecycle.nextStep() else { return }
        _ = waitForWork(timeoutMilliseconds: Int32(pollMilliseconds: delay), includeSocket: false)
        if closeRequested() {
            execute(lifecycle.closeRequested())
            return
        }
        let heartbeat: Int
        do {
            heartbeat = try connect()
            try restore()
        } catch {
            if let connection {
                // Connected, but restoring failed: try the next node first.
                nodeIndex = (nodeIndex + 1) % configuration.url.nodes.count
                RabbitMQC(state: connection).destroy()
                self.connection = nil
                socketFD = -1
            }
            logger.info("reconnect attempt failed", metadata: ["attempt": "\(lifecycle.failedAttempts + 1)", "error": "\(error)"])
            execute(lifecycle.reconnectFailed(error))
            return
        }
        execute(lifecycle.reconnected(heartbeatSeconds: heartbeat, at: .now))
    }

    /// The connection is back: users hear of it, held publishes go out.
    func announceRecovered() {
        publishGeneration()
        let lost = pendingLostDeliveries
        pendingLostDeliveries.removeAll()
        logger.info("connection recovered", metadata: ["generation": "\(generation)", "lostDeliveries": "\(lost.count)"])
        events.emit(.recovered(lostDeliveries: lost))
        for channel in channels.values { flushHeld(on: channel) }
    }

    /// Declares the recorded topology again and reopens channels and consumers.
    private func restore() throws(AMQPError) {
        let c = RabbitMQC(state: try requireConnection("restore"))
        // Topology first, on a scratch channel, so consumers find their queues.
        if !topology.declarations.isEmpty {
            let scratch = (1...UInt16(min(channelMax, 65535))).first(where: { channels[$0] == nil }) ?? 1
            var restored = TopologyRecorder()
            try c.channelOpen(scratch, "open restore channel")
            for declaration in topology.declarations {
                defer { c.releaseBuffers(scratch) }
                let operation = "restore \(declaration)"
                do {
                    switch declaration {
                    case .exchange(let d): try c.exchangeDeclare(scratch, d, passive: false, operation)
                    case .queue(let d): _ = try c.queueDeclare(scratch, d, passive: false, operation)
                    case .binding(let b): try c.queueBind(scratch, b, operation)
                    }
                    restored.record(declaration)
                } catch where error.code == .channelClosedByBroker {
                    // The broker refused this one (it changed meanwhile; its close
                    // was answered): forget it, carry on on a fresh channel.
                    logger.error("could not restore a declaration", metadata: ["error": "\(error)"])
                    try c.channelOpen(scratch, "open restore channel")
                }
            }
            topology = restored
            try c.channelClose(scratch, "close restore channel")
        }
        for channel in channels.values.sorted(by: { $0.id < $1.id }) {
            try reopen(channel)
            try restoreConsumers(of: channel, c)
        }
    }

    /// Starts every consumer of `channel` again, keeping its tag and stream.
    /// A consumer the broker refuses (its queue is gone...) ends with that
    /// error; since the refusal closes the channel, the channel is reopened
    /// and the others are started again. Consumers stay registered throughout,
    /// so a failed attempt leaves them for the next one.
    private func restoreConsumers(of channel: ChannelState, _ c: RabbitMQC) throws(AMQPError) {
        var pending = channel.consumers.values.sorted { $0.tag < $1.tag }
        var index = 0
        while index < pending.count {
            let consumer = pending[index]
            defer { c.releaseBuffers(channel.id) }
            do {
                try startConsumer(consumer, on: channel.id, c, "restore consumer \(consumer.tag) on \(consumer.queue)")
                index += 1
            } catch where error.code == .channelClosedByBroker {
                logger.error("could not restore a consumer", metadata: ["error": "\(error)"])
                channel.consumers.removeValue(forKey: consumer.tag)
                consumer.deliveries.finish(throwing: error)
                pending.remove(at: index)
                // The close ended the consumers already restored here: start over on a fresh channel.
                try reopen(channel)
                index = 0
            }
        }
    }
}
