import CRabbitMQ
import Logging
import SluiceWire

/// Losing a connection and getting it back, on the connection thread.
extension ConnectionCore {
    /// The socket is gone (or unusable). Fails what waited on it and either
    /// starts recovery or ends the connection.
    func connectionLost(_ error: AMQPError) {
        guard let connection else { return }
        // The socket is dead or in an unknown state: no close handshake.
        connectedFlag.store(false)
        amqp_destroy_connection(connection)
        self.connection = nil
        socketFD = -1
        blocked = false
        blockedFlag.store(false)

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

        guard configuration.recovery != nil else {
            logger.error("connection lost", metadata: ["error": "\(error)"])
            finish(error: error)
            return
        }
        logger.warning("connection lost; reconnecting", metadata: ["error": "\(error)"])
        recovering = true
        failedAttempts = 0
        backoff.reset()
    }

    /// One reconnection attempt after a backoff delay.
    func recoverStep() {
        let delay = backoff.nextDelay()
        let milliseconds = Int32(clamping: delay.components.seconds * 1000 + delay.components.attoseconds / 1_000_000_000_000_000)
        _ = waitForWork(timeoutMilliseconds: milliseconds, includeSocket: false)
        if closeRequested() {
            recovering = false
            finish(error: nil)
            return
        }
        do {
            try connect()
            try restore()
        } catch {
            if let connection {
                amqp_destroy_connection(connection)
                self.connection = nil
                socketFD = -1
            }
            failedAttempts += 1
            logger.info("reconnect attempt failed", metadata: ["attempt": "\(failedAttempts)", "error": "\(error)"])
            if let max = configuration.recovery?.maxAttempts, failedAttempts >= max {
                recovering = false
                finish(error: error)
            }
            return
        }
        recovering = false
        failedAttempts = 0
        backoff.reset()
        let lost = pendingLostDeliveries
        pendingLostDeliveries.removeAll()
        logger.info("connection recovered", metadata: ["generation": "\(generation)", "lostDeliveries": "\(lost.count)"])
        events.emit(.recovered(lostDeliveries: lost))
        for channel in channels.values { flushHeld(on: channel) }
    }

    /// Declares the recorded topology again and reopens channels and consumers.
    private func restore() throws(AMQPError) {
        let connection = try requireConnection("restore")
        // Topology first, on a scratch channel, so consumers find their queues.
        if !topology.declarations.isEmpty {
            let scratchID = (1...UInt16(min(channelMax, 65535))).first(where: { channels[$0] == nil }) ?? 1
            let scratch = ChannelState(id: scratchID, confirms: false)
            var restored = TopologyRecorder()
            defer { if channels[scratch.id] === scratch { channels.removeValue(forKey: scratch.id) } }
            try openScratch(scratch, on: connection)
            for declaration in topology.declarations {
                let arena = CArena()
                switch declaration {
                case .exchange(let d):
                    _ = amqp_exchange_declare(connection, scratch.id, arena.bytes(d.name), arena.bytes(d.type), 0,
                                              d.durable ? 1 : 0, d.autoDelete ? 1 : 0, d.internal ? 1 : 0, d.arguments.cTable(in: arena))
                case .queue(let d):
                    _ = amqp_queue_declare(connection, scratch.id, arena.bytes(d.name), 0, d.durable ? 1 : 0,
                                           d.exclusive ? 1 : 0, d.autoDelete ? 1 : 0, d.arguments.cTable(in: arena))
                case .binding(let b):
                    _ = amqp_queue_bind(connection, scratch.id, arena.bytes(b.queue), arena.bytes(b.exchange),
                                        arena.bytes(b.routingKey), b.arguments.cTable(in: arena))
                }
                let reply = amqp_get_rpc_reply(connection)
                defer { amqp_maybe_release_buffers_on_channel(connection, scratch.id) }
                do {
                    try AMQPCheck.reply(reply, "restore \(declaration)")
                    restored.record(declaration)
                } catch {
                    guard reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION, reply.reply.id == SLUICE_CHANNEL_CLOSE else { throw error }
                    // The broker refused this one (it changed meanwhile): forget it, carry on.
                    logger.error("could not restore a declaration", metadata: ["error": "\(error)"])
                    var ok = amqp_channel_close_ok_t(dummy: 0)
                    _ = amqp_send_method(connection, scratch.id, SLUICE_CHANNEL_CLOSE_OK, &ok)
                    try openScratch(scratch, on: connection)
                }
            }
            topology = restored
            channels.removeValue(forKey: scratch.id)
            try AMQPCheck.reply(amqp_channel_close(connection, scratch.id, Int32(AMQP_REPLY_SUCCESS)), "close restore channel")
        }
        for channel in channels.values.sorted(by: { $0.id < $1.id }) {
            try reopen(channel, on: connection)
            try restoreConsumers(of: channel, on: connection)
        }
    }

    /// Starts every consumer of `channel` again, keeping its tag and stream.
    /// A consumer the broker refuses (its queue is gone...) ends with that
    /// error; since the refusal closes the channel, the channel is reopened
    /// and the others are started again. Consumers stay registered throughout,
    /// so a failed attempt leaves them for the next one.
    private func restoreConsumers(of channel: ChannelState, on connection: amqp_connection_state_t) throws(AMQPError) {
        var pending = channel.consumers.values.sorted { $0.tag < $1.tag }
        var index = 0
        while index < pending.count {
            let consumer = pending[index]
            let arena = CArena()
            _ = amqp_basic_consume(connection, channel.id, arena.bytes(consumer.queue), arena.bytes(consumer.tag), 0,
                                   consumer.noAck ? 1 : 0, consumer.exclusive ? 1 : 0, consumer.arguments.cTable(in: arena))
            let reply = amqp_get_rpc_reply(connection)
            do {
                try AMQPCheck.reply(reply, "restore consumer \(consumer.tag) on \(consumer.queue)")
                amqp_maybe_release_buffers_on_channel(connection, channel.id)
                index += 1
            } catch {
                guard reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION, reply.reply.id == SLUICE_CHANNEL_CLOSE else { throw error }
                amqp_maybe_release_buffers_on_channel(connection, channel.id)
                logger.error("could not restore a consumer", metadata: ["error": "\(error)"])
                var ok = amqp_channel_close_ok_t(dummy: 0)
                try AMQPCheck.status(amqp_send_method(connection, channel.id, SLUICE_CHANNEL_CLOSE_OK, &ok), "channel.close-ok")
                channel.consumers.removeValue(forKey: consumer.tag)
                consumer.continuation.finish(throwing: error)
                pending.remove(at: index)
                // The close ended the consumers already restored here: start over on a fresh channel.
                try reopen(channel, on: connection)
                index = 0
            }
        }
    }

    private func openScratch(_ scratch: ChannelState, on connection: amqp_connection_state_t) throws(AMQPError) {
        channels[scratch.id] = scratch
        _ = amqp_channel_open(connection, scratch.id)
        try AMQPCheck.reply(amqp_get_rpc_reply(connection), "open restore channel")
        amqp_maybe_release_buffers_on_channel(connection, scratch.id)
    }
}
