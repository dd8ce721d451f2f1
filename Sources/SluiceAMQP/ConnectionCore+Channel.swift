import CRabbitMQ
import SluiceWire

/// Channel operations, run on the connection thread.
extension ConnectionCore {
    // MARK: Synchronous methods

    /// Checks the reply of the RPC just made on `channel`. A channel error
    /// closes that channel (answering the broker's close); a connection error
    /// is rethrown for recovery.
    func checkReply(_ channel: ChannelState, _ operation: @autoclosure () -> String) throws(AMQPError) {
        let connection = try requireConnection(operation())
        let reply = amqp_get_rpc_reply(connection)
        do {
            try AMQPCheck.reply(reply, operation())
            lastInbound = .now
        } catch {
            if reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && reply.reply.id == SLUICE_CHANNEL_CLOSE {
                var ok = amqp_channel_close_ok_t(dummy: 0)
                _ = amqp_send_method(connection, channel.id, SLUICE_CHANNEL_CLOSE_OK, &ok)
                channels.removeValue(forKey: channel.id)
                closeChannelState(channel, error: error)
            } else if reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && reply.reply.id == SLUICE_CONNECTION_CLOSE {
                var ok = amqp_connection_close_ok_t(dummy: 0)
                _ = amqp_send_method(connection, 0, SLUICE_CONNECTION_CLOSE_OK, &ok)
            }
            throw error
        }
    }

    func requireOpen(_ channel: ChannelState, _ operation: @autoclosure () -> String) throws(AMQPError) -> amqp_connection_state_t {
        guard channel.isOpen, channels[channel.id] === channel else {
            throw channel.closeError.map { var e = $0; e.operation = operation(); return e }
                ?? AMQPError(.channelClosed, operation: operation(), message: "the channel is closed")
        }
        return try requireConnection(operation())
    }

    private func releaseBuffers(_ channel: ChannelState) {
        if let connection { amqp_maybe_release_buffers_on_channel(connection, channel.id) }
    }

    func openChannel(confirms: Bool) throws(AMQPError) -> ChannelState {
        let connection = try requireConnection("channel.open")
        guard let id = (1...UInt16(min(channelMax, 65535))).first(where: { channels[$0] == nil }) else {
            throw AMQPError(.invalidArgument, operation: "channel.open", message: "all \(channelMax) channels are in use")
        }
        let channel = ChannelState(id: id, confirms: confirms)
        channels[id] = channel
        do {
            try reopen(channel, on: connection)
        } catch {
            channels.removeValue(forKey: id)
            throw error
        }
        return channel
    }

    /// channel.open (+ confirm.select and basic.qos when set) for `channel`'s id.
    func reopen(_ channel: ChannelState, on connection: amqp_connection_state_t) throws(AMQPError) {
        _ = amqp_channel_open(connection, channel.id)
        try checkReply(channel, "channel.open \(channel.id)")
        channel.isOpen = true
        channel.closeError = nil
        if channel.confirms {
            _ = amqp_confirm_select(connection, channel.id)
            try checkReply(channel, "confirm.select on channel \(channel.id)")
        }
        if let prefetch = channel.prefetch {
            _ = amqp_basic_qos(connection, channel.id, 0, prefetch.count, prefetch.global ? 1 : 0)
            try checkReply(channel, "basic.qos on channel \(channel.id)")
        }
        releaseBuffers(channel)
    }

    func closeChannel(_ channel: ChannelState) throws(AMQPError) {
        guard channel.isOpen, channels[channel.id] === channel else { return }
        let error = AMQPError(.channelClosed, operation: "channel \(channel.id)", message: "the channel was closed")
        channels.removeValue(forKey: channel.id)
        closeChannelState(channel, error: error, endConsumersCleanly: true)
        guard let connection else { return }
        let reply = amqp_channel_close(connection, channel.id, Int32(AMQP_REPLY_SUCCESS))
        if reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && reply.reply.id == SLUICE_CHANNEL_CLOSE {
            // The broker's close crossed ours: answer it, or the channel id stays unusable.
            var ok = amqp_channel_close_ok_t(dummy: 0)
            try AMQPCheck.status(amqp_send_method(connection, channel.id, SLUICE_CHANNEL_CLOSE_OK, &ok), "channel.close-ok")
            amqp_maybe_release_buffers_on_channel(connection, channel.id)
            return
        }
        try AMQPCheck.reply(reply, "channel.close \(channel.id)")
        amqp_maybe_release_buffers_on_channel(connection, channel.id)
    }

    func exchangeDeclare(_ channel: ChannelState, _ d: ExchangeDeclaration, passive: Bool) throws(AMQPError) {
        let operation = passive ? "exchange.declare passive \(d.name)" : "exchange.declare \(d.name)"
        let connection = try requireOpen(channel, operation)
        let arena = CArena()
        _ = amqp_exchange_declare(connection, channel.id, arena.bytes(d.name), arena.bytes(d.type), passive ? 1 : 0,
                                  d.durable ? 1 : 0, d.autoDelete ? 1 : 0, d.internal ? 1 : 0, d.arguments.cTable(in: arena))
        try checkReply(channel, operation)
        releaseBuffers(channel)
        if !passive { topology.record(.exchange(d)) }
    }

    func exchangeDelete(_ channel: ChannelState, _ name: String, ifUnused: Bool) throws(AMQPError) {
        let connection = try requireOpen(channel, "exchange.delete \(name)")
        let arena = CArena()
        _ = amqp_exchange_delete(connection, channel.id, arena.bytes(name), ifUnused ? 1 : 0)
        try checkReply(channel, "exchange.delete \(name)")
        releaseBuffers(channel)
        topology.deleteExchange(name)
    }

    func queueDeclare(_ channel: ChannelState, _ d: QueueDeclaration, passive: Bool) throws(AMQPError) -> QueueState {
        let operation = passive ? "queue.declare passive \(d.name)" : "queue.declare \(d.name)"
        let connection = try requireOpen(channel, operation)
        if d.name.isEmpty && !passive {
            throw AMQPError(.invalidArgument, operation: operation,
                            message: "name the queue: server-named queues cannot be restored after a reconnect")
        }
        let arena = CArena()
        let ok = amqp_queue_declare(connection, channel.id, arena.bytes(d.name), passive ? 1 : 0, d.durable ? 1 : 0,
                                    d.exclusive ? 1 : 0, d.autoDelete ? 1 : 0, d.arguments.cTable(in: arena))
        try checkReply(channel, operation)
        guard let ok else { throw AMQPError(.protocolError, operation: operation, message: "no declare-ok") }
        let state = QueueState(name: ok.pointee.queue.string, messageCount: ok.pointee.message_count,
                               consumerCount: ok.pointee.consumer_count)
        releaseBuffers(channel)
        if !passive { topology.record(.queue(d)) }
        return state
    }

    func queueBind(_ channel: ChannelState, _ b: TopologyRecorder.Binding, unbind: Bool) throws(AMQPError) {
        let operation = "\(unbind ? "queue.unbind" : "queue.bind") \(b.queue) to \(b.exchange) key '\(b.routingKey)'"
        let connection = try requireOpen(channel, operation)
        let arena = CArena()
        if unbind {
            _ = amqp_queue_unbind(connection, channel.id, arena.bytes(b.queue), arena.bytes(b.exchange),
                                  arena.bytes(b.routingKey), b.arguments.cTable(in: arena))
        } else {
            _ = amqp_queue_bind(connection, channel.id, arena.bytes(b.queue), arena.bytes(b.exchange),
                                arena.bytes(b.routingKey), b.arguments.cTable(in: arena))
        }
        try checkReply(channel, operation)
        releaseBuffers(channel)
        if unbind { topology.unbind(b) } else { topology.record(.binding(b)) }
    }

    func queuePurge(_ channel: ChannelState, _ name: String) throws(AMQPError) -> UInt32 {
        let connection = try requireOpen(channel, "queue.purge \(name)")
        let arena = CArena()
        let ok = amqp_queue_purge(connection, channel.id, arena.bytes(name))
        try checkReply(channel, "queue.purge \(name)")
        let count = ok?.pointee.message_count ?? 0
        releaseBuffers(channel)
        return count
    }

    func queueDelete(_ channel: ChannelState, _ name: String, ifUnused: Bool, ifEmpty: Bool) throws(AMQPError) -> UInt32 {
        let connection = try requireOpen(channel, "queue.delete \(name)")
        let arena = CArena()
        let ok = amqp_queue_delete(connection, channel.id, arena.bytes(name), ifUnused ? 1 : 0, ifEmpty ? 1 : 0)
        try checkReply(channel, "queue.delete \(name)")
        let count = ok?.pointee.message_count ?? 0
        releaseBuffers(channel)
        topology.deleteQueue(name)
        return count
    }

    func qos(_ channel: ChannelState, prefetchCount: UInt16, global: Bool) throws(AMQPError) {
        let connection = try requireOpen(channel, "basic.qos")
        _ = amqp_basic_qos(connection, channel.id, 0, prefetchCount, global ? 1 : 0)
        try checkReply(channel, "basic.qos \(prefetchCount)")
        releaseBuffers(channel)
        channel.prefetch = (prefetchCount, global)
    }

    // MARK: Consumers

    func consume(_ channel: ChannelState, _ consumer: ConsumerState) throws(AMQPError) {
        let operation = "basic.consume \(consumer.queue)"
        let connection = try requireOpen(channel, operation)
        if channel.consumers[consumer.tag] != nil {
            throw AMQPError(.invalidArgument, operation: operation, message: "consumer tag \(consumer.tag) is in use on this channel")
        }
        let arena = CArena()
        _ = amqp_basic_consume(connection, channel.id, arena.bytes(consumer.queue), arena.bytes(consumer.tag), 0,
                               consumer.noAck ? 1 : 0, consumer.exclusive ? 1 : 0, consumer.arguments.cTable(in: arena))
        try checkReply(channel, operation)
        releaseBuffers(channel)
        channel.consumers[consumer.tag] = consumer
    }

    func cancel(_ channel: ChannelState, tag: String) throws(AMQPError) {
        guard let consumer = channel.consumers[tag] else { return }
        let connection = try requireOpen(channel, "basic.cancel \(tag)")
        let arena = CArena()
        _ = amqp_basic_cancel(connection, channel.id, arena.bytes(tag))
        try checkReply(channel, "basic.cancel \(tag)")
        releaseBuffers(channel)
        // Deliveries that arrived before cancel-ok are already queued for the
        // consumer; after removal any straggler is rejected back to the queue.
        channel.consumers.removeValue(forKey: tag)
        if consumer.noAck { channel.cancelledNoAckTags.insert(tag) }
        consumer.continuation.finish()
    }

    // MARK: Acknowledgements

    func acknowledge(_ channel: ChannelState, _ delivery: AMQPDelivery, kind: AckKind) throws(AMQPError) {
        let operation = "\(kind.name) delivery \(delivery.deliveryTag)"
        if delivery.generation != generation {
            throw AMQPError(.staleDelivery, operation: operation,
                            message: "the delivery came on a connection that was lost; the broker redelivers it")
        }
        let connection = try requireOpen(channel, operation)
        let status: Int32 = switch kind {
        case .ack(let multiple): amqp_basic_ack(connection, channel.id, delivery.deliveryTag, multiple ? 1 : 0)
        case .nack(let multiple, let requeue):
            amqp_basic_nack(connection, channel.id, delivery.deliveryTag, multiple ? 1 : 0, requeue ? 1 : 0)
        case .reject(let requeue): amqp_basic_reject(connection, channel.id, delivery.deliveryTag, requeue ? 1 : 0)
        }
        try AMQPCheck.status(status, operation)
        channel.settleDeliveries(upTo: delivery.deliveryTag, multiple: kind.multiple)
    }

    /// Sends a batch of single acks. Where the batch acknowledges every
    /// outstanding delivery of a channel up to its highest tag, one
    /// `basic.ack` with `multiple` replaces them all (one write instead of
    /// many); otherwise each is sent alone. Acks of deliveries from a lost
    /// connection are dropped: the broker redelivers those messages.
    func sendAcks(_ acks: [PendingAck]) {
        guard let connection else { return }
        var byChannel: [ObjectIdentifier: (channel: ChannelState, tags: [UInt64])] = [:]
        for ack in acks where ack.generation == generation {
            byChannel[ObjectIdentifier(ack.channel), default: (ack.channel, [])].tags.append(ack.deliveryTag)
        }
        for (channel, tags) in byChannel.values {
            guard channel.isOpen, channels[channel.id] === channel else { continue }
            let sorted = tags.sorted()
            let highest = sorted[sorted.count - 1]
            let acked = Set(sorted)
            let coversAll = sorted.count > 1 && channel.unacked.keys.allSatisfy { $0 > highest || acked.contains($0) }
            var status: Int32 = 0
            if coversAll {
                status = amqp_basic_ack(connection, channel.id, highest, 1)
                if status >= 0 { channel.settleDeliveries(upTo: highest, multiple: true) }
            } else {
                for tag in sorted where status >= 0 {
                    status = amqp_basic_ack(connection, channel.id, tag, 0)
                    if status >= 0 { channel.settleDeliveries(upTo: tag, multiple: false) }
                }
            }
            if status < 0 {
                connectionLost(AMQPCheck.libraryError(status, operation: "basic.ack"))
                return
            }
        }
    }

    enum AckKind: Sendable {
        case ack(multiple: Bool)
        case nack(multiple: Bool, requeue: Bool)
        case reject(requeue: Bool)

        var name: String {
            switch self {
            case .ack: "basic.ack"
            case .nack: "basic.nack"
            case .reject: "basic.reject"
            }
        }

        var multiple: Bool {
            switch self {
            case .ack(let m), .nack(let m, _): m
            case .reject: false
            }
        }
    }

    func get(_ channel: ChannelState, queue: String, noAck: Bool) throws(AMQPError) -> AMQPDelivery? {
        let operation = "basic.get \(queue)"
        let connection = try requireOpen(channel, operation)
        guard channel.handle != nil else { throw AMQPError(.channelClosed, operation: operation, message: "channel released") }
        let arena = CArena()
        let reply = amqp_basic_get(connection, channel.id, arena.bytes(queue), noAck ? 1 : 0)
        guard reply.reply_type == AMQP_RESPONSE_NORMAL else {
            try checkReply(channel, operation)
            return nil
        }
        lastInbound = .now
        if reply.reply.id == SLUICE_BASIC_GET_EMPTY {
            releaseBuffers(channel)
            return nil
        }
        guard reply.reply.id == SLUICE_BASIC_GET_OK, let decoded = reply.reply.decoded else {
            throw AMQPError(.protocolError, operation: operation, message: "unexpected reply to basic.get")
        }
        let ok = decoded.assumingMemoryBound(to: amqp_basic_get_ok_t.self).pointee
        channel.content = IncomingContent(kind: .got(
            deliveryTag: ok.delivery_tag, redelivered: ok.redelivered != 0, exchange: ok.exchange.string,
            routingKey: ok.routing_key.string, messageCount: ok.message_count, noAck: noAck))
        releaseBuffers(channel)
        // The header and body follow; read them through the normal frame path
        // (rabbitmq-c's amqp_read_message would drop frames queued for other channels).
        var frame = amqp_frame_t()
        var timeout = timeval(duration: configuration.rpcTimeout)
        while channel.gotDelivery == nil {
            let status = amqp_simple_wait_frame_noblock(connection, &frame, &timeout)
            try AMQPCheck.status(status, "\(operation): read message")
            try handle(frame)
            amqp_maybe_release_buffers_on_channel(connection, frame.channel)
            guard channel.isOpen else { throw channel.closeError ?? AMQPError(.channelClosed, operation: operation, message: "channel closed") }
        }
        defer { channel.gotDelivery = nil }
        return channel.gotDelivery
    }

    // MARK: Publishing

    /// Sends a publish now, or holds it while the confirm window is full or
    /// the broker has blocked the connection.
    func publish(_ channel: ChannelState, _ request: PublishRequest) {
        do {
            _ = try requireOpen(channel, "publish")
        } catch {
            request.waiter?.settle(.failure(error))
            return
        }
        if request.message.mandatory && !channel.confirms {
            request.waiter?.settle(.failure(AMQPError(.invalidArgument, operation: "publish",
                                                      message: "mandatory publishes need a confirm channel to report returns")))
            return
        }
        if blocked || !channel.held.isEmpty || (channel.confirms && channel.tracker.outstanding >= configuration.confirmWindow) {
            channel.held.append(request)
            return
        }
        send(channel, request)
    }

    /// Sends held publishes while the window has room.
    func flushHeld(on channel: ChannelState) {
        while connection != nil, !blocked, channel.isOpen, let next = channel.held.first,
              !channel.confirms || channel.tracker.outstanding < configuration.confirmWindow {
            channel.held.removeFirst()
            send(channel, next)
            if connection == nil { return }
        }
    }

    private func send(_ channel: ChannelState, _ request: PublishRequest) {
        guard let connection else {
            request.waiter?.settle(.failure(AMQPError(.connectionLost, operation: "publish", message: "not connected")))
            return
        }
        let m = request.message
        do {
            // Checked first: rabbitmq-c writes the method frame before it
            // encodes the properties, so a failure there would leave the
            // connection mid-message.
            try MessageLimits.check(m, frameMax: frameMax, maxMessageBytes: configuration.maxMessageBytes)
        } catch {
            request.waiter?.settle(.failure(error))
            return
        }
        if channel.confirms, let waiter = request.waiter {
            _ = channel.tracker.register(waiter, mandatory: m.mandatory, exchange: m.exchange, routingKey: m.routingKey)
        }
        let arena = publishArena.arena
        var properties = m.properties.cProperties(in: arena)
        let status = m.body.withUnsafeBytes { body -> Int32 in
            let bytes = amqp_bytes_t(len: body.count, bytes: body.count == 0 ? nil : UnsafeMutableRawPointer(mutating: body.baseAddress))
            return amqp_basic_publish(connection, channel.id, arena.bytes(m.exchange), arena.bytes(m.routingKey),
                                      m.mandatory ? 1 : 0, 0, &properties, bytes)
        }
        publishArena.reset()
        if status < 0 {
            let error = AMQPCheck.libraryError(status, operation: "publish to \(m.exchange.isEmpty ? "(default)" : m.exchange) key \(m.routingKey)")
            if !channel.confirms { request.waiter?.settle(.failure(error)) }
            // The confirm waiter (if any) is failed with the rest of the tracker.
            failIfConnectionLevel(error.isConnectionLevel ? error : AMQPError(.connectionLost, operation: error.operation, message: error.message))
            return
        }
        if !channel.confirms { request.waiter?.settle(.success(())) }
    }
}
