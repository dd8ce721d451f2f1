import CRabbitMQ
import SluiceWire

/// Channel operations, run on the connection thread.
extension ConnectionCore {
    // MARK: Synchronous methods

    /// Runs synchronous methods on `channel` through ``RabbitMQC``. When the
    /// broker closes the channel instead of answering, the channel ends
    /// (its consumers and waiters fail with the broker's reason); a
    /// connection error is rethrown for recovery.
    func onChannel<T>(_ channel: ChannelState, _ operation: @autoclosure () -> String, mustBeOpen: Bool = true,
                      _ body: (RabbitMQC) throws(AMQPError) -> T) throws(AMQPError) -> T {
        let c = RabbitMQC(state: mustBeOpen ? try requireOpen(channel, operation()) : try requireConnection(operation()))
        do {
            let value = try body(c)
            lifecycle.inbound(at: .now)
            c.releaseBuffers(channel.id)
            return value
        } catch {
            if error.code == .channelClosedByBroker {
                channels.removeValue(forKey: channel.id)
                closeChannelState(channel, error: error)
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

    /// A caller of channel.open waiting for a channel number.
    struct ChannelWaiter {
        let confirms: Bool
        let pending: PendingResult<ChannelState>
        /// Past it, the caller fails as it would have without waiting.
        let deadline: ContinuousClock.Instant
    }

    /// Channel numbers this connection may use (1 through this).
    var channelLimit: Int { min(channelMax, 65535) }

    /// channel.open for `pending`'s caller: now, if a number is free and
    /// nobody waits for one already; else once a channel closes, first come
    /// first served, for up to the RPC timeout. So a burst of callers that
    /// each hold a channel briefly (declarations, look-ups: thousands of
    /// first enqueues or unique locks at once) queues instead of failing
    /// with "all channels are in use".
    func openChannel(confirms: Bool, for pending: PendingResult<ChannelState>) {
        channelWaiters.append(ChannelWaiter(confirms: confirms, pending: pending, deadline: .now + configuration.rpcTimeout))
        serveChannelWaiters()
    }

    /// Opens channels for the callers waiting, while numbers are free;
    /// fails those whose wait is over. Run by the connection thread between
    /// commands (a channel being closed has its close-ok by then).
    func serveChannelWaiters() {
        let now = ContinuousClock.now
        while let waiter = channelWaiters.first {
            if waiter.pending.isSettled {  // cancelled while it waited
                channelWaiters.removeFirst()
                continue
            }
            guard let id = freeChannelNumber() else {
                // Every waiter has the same bound, so the first is the oldest.
                guard waiter.deadline <= now else { return }
                channelWaiters.removeFirst()
                waiter.pending.fail(AMQPError(.invalidArgument, operation: "channel.open",
                                              message: "all \(channelMax) channels are in use (waited \(configuration.rpcTimeout) for one to close)"))
                continue
            }
            channelWaiters.removeFirst()
            do throws(AMQPError) {
                let channel = try openChannel(id, confirms: waiter.confirms)
                if !waiter.pending.succeed(channel) { closeUnwanted(channel) }
            } catch {
                waiter.pending.fail(error)
                failIfConnectionLevel(error)
                if connection == nil { return }
            }
        }
    }

    /// Closes a channel opened for a caller that was cancelled meanwhile. A
    /// close that fails on the connection starts recovery: its number is
    /// already free here, and must not be reused while the broker may still
    /// hold the channel.
    private func closeUnwanted(_ channel: ChannelState) {
        do throws(AMQPError) {
            try closeChannel(channel)
        } catch {
            failIfConnectionLevel(error)
        }
    }

    /// The lowest channel number not in use; nil when all are.
    private func freeChannelNumber() -> UInt16? {
        guard channels.count < channelLimit else { return nil }
        // Frames rabbitmq-c set aside during earlier RPCs may be for a channel
        // closed since (deliveries or confirms sent before its close-ok): they
        // are handled (dropped) before its number can go to a new channel,
        // which would take them for its own. Handling frames only ever frees
        // numbers, so one is still free after.
        while drain(readSocket: false) {}
        return (1...UInt16(channelLimit)).first { channels[$0] == nil }
    }

    /// channel.open on number `id`, which is free.
    private func openChannel(_ id: UInt16, confirms: Bool) throws(AMQPError) -> ChannelState {
        let channel = ChannelState(id: id, confirms: confirms)
        channels[id] = channel
        do {
            try reopen(channel)
        } catch {
            channels.removeValue(forKey: id)
            throw error
        }
        return channel
    }

    /// channel.open (+ confirm.select and basic.qos when set) for `channel`'s
    /// id, which must be in ``channels``: for a new channel and on recovery.
    func reopen(_ channel: ChannelState) throws(AMQPError) {
        try onChannel(channel, "channel.open \(channel.id)", mustBeOpen: false) { c throws(AMQPError) in
            try c.channelOpen(channel.id, "channel.open \(channel.id)")
            channel.isOpen = true
            channel.closeError = nil
            if channel.confirms { try c.confirmSelect(channel.id, "confirm.select on channel \(channel.id)") }
            if let prefetch = channel.prefetch {
                try c.basicQos(channel.id, prefetchCount: prefetch.count, global: prefetch.global, "basic.qos on channel \(channel.id)")
            }
        }
    }

    func closeChannel(_ channel: ChannelState) throws(AMQPError) {
        guard channel.isOpen, channels[channel.id] === channel else { return }
        let error = AMQPError(.channelClosed, operation: "channel \(channel.id)", message: "the channel was closed")
        channels.removeValue(forKey: channel.id)
        closeChannelState(channel, error: error, endConsumersCleanly: true)
        guard let connection else { return }
        try RabbitMQC(state: connection).channelClose(channel.id, "channel.close \(channel.id)")
    }

    func exchangeDeclare(_ channel: ChannelState, _ d: ExchangeDeclaration, passive: Bool) throws(AMQPError) {
        let operation = passive ? "exchange.declare passive \(d.name)" : "exchange.declare \(d.name)"
        try onChannel(channel, operation) { c throws(AMQPError) in try c.exchangeDeclare(channel.id, d, passive: passive, operation) }
        if !passive { topology.record(.exchange(d)) }
    }

    func exchangeDelete(_ channel: ChannelState, _ name: String, ifUnused: Bool) throws(AMQPError) {
        let operation = "exchange.delete \(name)"
        try onChannel(channel, operation) { c throws(AMQPError) in try c.exchangeDelete(channel.id, name, ifUnused: ifUnused, operation) }
        topology.deleteExchange(name)
    }

    func queueDeclare(_ channel: ChannelState, _ d: QueueDeclaration, passive: Bool, record: Bool = true) throws(AMQPError) -> QueueState {
        let operation = passive ? "queue.declare passive \(d.name)" : "queue.declare \(d.name)"
        if d.name.isEmpty && !passive {
            _ = try requireOpen(channel, operation)
            throw AMQPError(.invalidArgument, operation: operation,
                            message: "name the queue: server-named queues cannot be restored after a reconnect")
        }
        let state = try onChannel(channel, operation) { c throws(AMQPError) in try c.queueDeclare(channel.id, d, passive: passive, operation) }
        if !passive && record { topology.record(.queue(d)) }
        return state
    }

    func queueBind(_ channel: ChannelState, _ b: TopologyRecorder.Binding, unbind: Bool, record: Bool = true) throws(AMQPError) {
        let operation = "\(unbind ? "queue.unbind" : "queue.bind") \(b.queue) to \(b.exchange) key '\(b.routingKey)'"
        try onChannel(channel, operation) { c throws(AMQPError) in
            if unbind { try c.queueUnbind(channel.id, b, operation) } else { try c.queueBind(channel.id, b, operation) }
        }
        if unbind { topology.unbind(b) } else if record { topology.record(.binding(b)) }
    }

    func queuePurge(_ channel: ChannelState, _ name: String) throws(AMQPError) -> UInt32 {
        try onChannel(channel, "queue.purge \(name)") { c throws(AMQPError) in try c.queuePurge(channel.id, name, "queue.purge \(name)") }
    }

    func queueDelete(_ channel: ChannelState, _ name: String, ifUnused: Bool, ifEmpty: Bool) throws(AMQPError) -> UInt32 {
        let count = try onChannel(channel, "queue.delete \(name)") { c throws(AMQPError) in
            try c.queueDelete(channel.id, name, ifUnused: ifUnused, ifEmpty: ifEmpty, "queue.delete \(name)")
        }
        topology.deleteQueue(name)
        return count
    }

    func qos(_ channel: ChannelState, prefetchCount: UInt16, global: Bool) throws(AMQPError) {
        try onChannel(channel, "basic.qos") { c throws(AMQPError) in
            try c.basicQos(channel.id, prefetchCount: prefetchCount, global: global, "basic.qos \(prefetchCount)")
        }
        channel.prefetch = (prefetchCount, global)
    }

    // MARK: Consumers

    func consume(_ channel: ChannelState, _ consumer: ConsumerState) throws(AMQPError) {
        let operation = "basic.consume \(consumer.queue)"
        if channel.consumers[consumer.tag] != nil {
            _ = try requireOpen(channel, operation)
            throw AMQPError(.invalidArgument, operation: operation, message: "consumer tag \(consumer.tag) is in use on this channel")
        }
        try onChannel(channel, operation) { c throws(AMQPError) in try startConsumer(consumer, on: channel.id, c, operation) }
        channel.consumers[consumer.tag] = consumer
    }

    /// `basic.consume` for a consumer, new or restored.
    func startConsumer(_ consumer: ConsumerState, on channel: amqp_channel_t, _ c: RabbitMQC,
                       _ operation: @autoclosure () -> String) throws(AMQPError) {
        try c.basicConsume(channel, queue: consumer.queue, tag: consumer.tag, noAck: consumer.noAck, exclusive: consumer.exclusive,
                           arguments: consumer.arguments, operation())
    }

    func cancel(_ channel: ChannelState, tag: String) throws(AMQPError) {
        guard let consumer = channel.consumers[tag] else { return }
        try onChannel(channel, "basic.cancel \(tag)") { c throws(AMQPError) in try c.basicCancel(channel.id, tag: tag, "basic.cancel \(tag)") }
        // Deliveries that arrived before cancel-ok are already queued for the
        // consumer; after removal any straggler is rejected back to the queue.
        channel.consumers.removeValue(forKey: tag)
        if consumer.noAck { channel.cancelledNoAckTags.insert(tag) }
        consumer.deliveries.finish()
    }

    // MARK: Acknowledgements

    func acknowledge(_ channel: ChannelState, _ delivery: AMQPDelivery.Receipt, kind: AckKind) throws(AMQPError) {
        let operation = "\(kind.name) delivery \(delivery.deliveryTag)"
        if delivery.generation != generation {
            throw AMQPError(.staleDelivery, operation: operation,
                            message: "the delivery came on a connection that was lost; the broker redelivers it")
        }
        let c = RabbitMQC(state: try requireOpen(channel, operation))
        let status: Int32 = switch kind {
        case .ack(let multiple): c.basicAck(channel.id, delivery.deliveryTag, multiple: multiple)
        case .nack(let multiple, let requeue): c.basicNack(channel.id, delivery.deliveryTag, multiple: multiple, requeue: requeue)
        case .reject(let requeue): c.basicReject(channel.id, delivery.deliveryTag, requeue: requeue)
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
        let c = RabbitMQC(state: connection)
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
                status = c.basicAck(channel.id, highest, multiple: true)
                if status >= 0 { channel.settleDeliveries(upTo: highest, multiple: true) }
            } else {
                for tag in sorted where status >= 0 {
                    status = c.basicAck(channel.id, tag, multiple: false)
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
        _ = try requireOpen(channel, operation)
        guard channel.handle != nil else { throw AMQPError(.channelClosed, operation: operation, message: "channel released") }
        let got: IncomingContent? = try onChannel(channel, operation) { c throws(AMQPError) in
            let method = try c.basicGet(channel.id, queue: queue, noAck: noAck, operation)
            if method.id == SLUICE_BASIC_GET_EMPTY { return nil }
            guard method.id == SLUICE_BASIC_GET_OK, let decoded = method.decoded else {
                throw AMQPError(.protocolError, operation: operation, message: "unexpected reply to basic.get")
            }
            // Read before onChannel releases the reply's buffers.
            let ok = decoded.assumingMemoryBound(to: amqp_basic_get_ok_t.self).pointee
            return IncomingContent(kind: .got(
                deliveryTag: ok.delivery_tag, redelivered: ok.redelivered != 0, exchange: ok.exchange.string,
                routingKey: ok.routing_key.string, messageCount: ok.message_count, noAck: noAck))
        }
        guard let got else { return nil }
        var frame = amqp_frame_t()
        var timeout = timeval(duration: configuration.rpcTimeout)
        /// Reads and handles the next frame. Handling one may tear the
        /// connection down (a confirm that flushes held publishes into a dead
        /// socket): the C state is looked up anew each time, never reused freed.
        func readFrame() throws(AMQPError) {
            guard let live = self.connection else {
                throw AMQPError(.connectionLost, operation: operation, message: "the connection was lost while reading the message")
            }
            let c = RabbitMQC(state: live)
            try AMQPCheck.status(c.nextFrame(&frame, timeout: &timeout), "\(operation): read message")
            try handle(frame)
            if let live = self.connection { RabbitMQC(state: live).releaseBuffers(frame.channel) }
            guard channel.isOpen else { throw channel.closeError ?? AMQPError(.channelClosed, operation: operation, message: "channel closed") }
        }
        // Frames rabbitmq-c set aside while it waited for get-ok came before
        // it, deliveries to a consumer on this same channel among them: handle
        // them first, or a delivery's method would take the place of this
        // message and its header and body would be dropped.
        while let live = self.connection, RabbitMQC(state: live).hasQueuedFrames { try readFrame() }
        channel.content = got
        // The header and body follow; read them through the normal frame path
        // (rabbitmq-c's amqp_read_message would drop frames queued for other channels).
        while channel.gotDelivery == nil { try readFrame() }
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
        // Checked here, on the connection thread, when it would go out: also
        // for a publish queued or held while the connection was lost and
        // restored. The delivery it settles comes again; its outcome must not
        // go out late beside the redelivery's.
        if let bound = request.generation, bound != generation {
            request.waiter?.settle(.failure(AMQPError(.staleDelivery, operation: "publish",
                                                      message: "the outcome of a delivery from a connection that was lost; the broker redelivers it")))
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
        let status = RabbitMQC(state: connection).basicPublish(channel.id, m, arena: publishArena.arena)
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
