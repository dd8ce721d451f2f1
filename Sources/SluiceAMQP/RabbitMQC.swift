import CRabbitMQ
import SluiceWire

/// Every rabbitmq-c method call the connection thread makes, each written
/// once: normal operation and recovery both go through here (compare
/// swift-nio's one file of checked syscall wrappers).
///
/// A synchronous method (`*.declare`, `basic.consume`...) is sent, its reply
/// read and checked through ``AMQPCheck``. When the broker answers with a
/// `channel.close` or `connection.close` instead, the `close-ok` it expects is
/// sent here, and the error is thrown: what that means for the channel's
/// state (end its consumers, or keep them for a retry) is the caller's call.
/// C strings and tables live in a ``CArena`` for the length of one call
/// (``withArena(_:)``).
struct RabbitMQC {
    let state: amqp_connection_state_t

    // MARK: Synchronous methods

    func channelOpen(_ channel: amqp_channel_t, _ operation: @autoclosure () -> String) throws(AMQPError) {
        _ = amqp_channel_open(state, channel)
        try checkReply(channel, operation())
    }

    /// `channel.close`. When the broker's own close crosses ours, it is
    /// answered: the channel is closed either way.
    func channelClose(_ channel: amqp_channel_t, _ operation: @autoclosure () -> String) throws(AMQPError) {
        let reply = amqp_channel_close(state, channel, Int32(AMQP_REPLY_SUCCESS))
        defer { releaseBuffers(channel) }
        if reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION && reply.reply.id == SLUICE_CHANNEL_CLOSE {
            return try sendChannelCloseOk(channel)
        }
        try AMQPCheck.reply(reply, operation())
    }

    func confirmSelect(_ channel: amqp_channel_t, _ operation: @autoclosure () -> String) throws(AMQPError) {
        _ = amqp_confirm_select(state, channel)
        try checkReply(channel, operation())
    }

    func basicQos(_ channel: amqp_channel_t, prefetchCount: UInt16, global: Bool, _ operation: @autoclosure () -> String) throws(AMQPError) {
        _ = amqp_basic_qos(state, channel, 0, prefetchCount, global ? 1 : 0)
        try checkReply(channel, operation())
    }

    func exchangeDeclare(_ channel: amqp_channel_t, _ d: ExchangeDeclaration, passive: Bool,
                         _ operation: @autoclosure () -> String) throws(AMQPError) {
        withArena { arena in
            _ = amqp_exchange_declare(state, channel, arena.bytes(d.name), arena.bytes(d.type), passive ? 1 : 0,
                                      d.durable ? 1 : 0, d.autoDelete ? 1 : 0, d.internal ? 1 : 0, d.arguments.cTable(in: arena))
        }
        try checkReply(channel, operation())
    }

    func exchangeDelete(_ channel: amqp_channel_t, _ name: String, ifUnused: Bool, _ operation: @autoclosure () -> String) throws(AMQPError) {
        withArena { arena in
            _ = amqp_exchange_delete(state, channel, arena.bytes(name), ifUnused ? 1 : 0)
        }
        try checkReply(channel, operation())
    }

    func queueDeclare(_ channel: amqp_channel_t, _ d: QueueDeclaration, passive: Bool,
                      _ operation: @autoclosure () -> String) throws(AMQPError) -> QueueState {
        let ok = withArena { arena in
            amqp_queue_declare(state, channel, arena.bytes(d.name), passive ? 1 : 0, d.durable ? 1 : 0,
                               d.exclusive ? 1 : 0, d.autoDelete ? 1 : 0, d.arguments.cTable(in: arena))
        }
        try checkReply(channel, operation())
        guard let ok else { throw AMQPError(.protocolError, operation: operation(), message: "no declare-ok") }
        return QueueState(name: ok.pointee.queue.string, messageCount: ok.pointee.message_count,
                          consumerCount: ok.pointee.consumer_count)
    }

    func queueBind(_ channel: amqp_channel_t, _ b: TopologyRecorder.Binding, _ operation: @autoclosure () -> String) throws(AMQPError) {
        withArena { arena in
            _ = amqp_queue_bind(state, channel, arena.bytes(b.queue), arena.bytes(b.exchange), arena.bytes(b.routingKey),
                                b.arguments.cTable(in: arena))
        }
        try checkReply(channel, operation())
    }

    func queueUnbind(_ channel: amqp_channel_t, _ b: TopologyRecorder.Binding, _ operation: @autoclosure () -> String) throws(AMQPError) {
        withArena { arena in
            _ = amqp_queue_unbind(state, channel, arena.bytes(b.queue), arena.bytes(b.exchange), arena.bytes(b.routingKey),
                                  b.arguments.cTable(in: arena))
        }
        try checkReply(channel, operation())
    }

    /// `queue.purge`; returns how many messages it removed.
    func queuePurge(_ channel: amqp_channel_t, _ name: String, _ operation: @autoclosure () -> String) throws(AMQPError) -> UInt32 {
        let ok = withArena { arena in
            amqp_queue_purge(state, channel, arena.bytes(name))
        }
        try checkReply(channel, operation())
        return ok?.pointee.message_count ?? 0
    }

    /// `queue.delete`; returns how many messages went with it.
    func queueDelete(_ channel: amqp_channel_t, _ name: String, ifUnused: Bool, ifEmpty: Bool,
                     _ operation: @autoclosure () -> String) throws(AMQPError) -> UInt32 {
        let ok = withArena { arena in
            amqp_queue_delete(state, channel, arena.bytes(name), ifUnused ? 1 : 0, ifEmpty ? 1 : 0)
        }
        try checkReply(channel, operation())
        return ok?.pointee.message_count ?? 0
    }

    func basicConsume(_ channel: amqp_channel_t, queue: String, tag: String, noAck: Bool, exclusive: Bool, arguments: FieldTable,
                      _ operation: @autoclosure () -> String) throws(AMQPError) {
        withArena { arena in
            _ = amqp_basic_consume(state, channel, arena.bytes(queue), arena.bytes(tag), 0, noAck ? 1 : 0, exclusive ? 1 : 0,
                                   arguments.cTable(in: arena))
        }
        try checkReply(channel, operation())
    }

    func basicCancel(_ channel: amqp_channel_t, tag: String, _ operation: @autoclosure () -> String) throws(AMQPError) {
        withArena { arena in
            _ = amqp_basic_cancel(state, channel, arena.bytes(tag))
        }
        try checkReply(channel, operation())
    }

    /// `basic.get`: the raw reply (`get-ok` or `get-empty`), for the caller
    /// to read the message that follows through the frame path.
    func basicGet(_ channel: amqp_channel_t, queue: String, noAck: Bool, _ operation: @autoclosure () -> String) throws(AMQPError) -> amqp_method_t {
        let reply = withArena { arena in
            amqp_basic_get(state, channel, arena.bytes(queue), noAck ? 1 : 0)
        }
        if reply.reply_type != AMQP_RESPONSE_NORMAL { answerClose(reply, channel) }
        try AMQPCheck.reply(reply, operation())
        return reply.reply
    }

    // MARK: Asynchronous methods (no reply)

    /// `basic.publish`: method, header and body frames, written at once.
    /// The message must have passed `MessageLimits.check` (rabbitmq-c writes
    /// the method frame before it encodes the properties). `arena` holds the
    /// C copies until the caller resets it.
    func basicPublish(_ channel: amqp_channel_t, _ m: OutboundMessage, arena: CArena) -> Int32 {
        var properties = m.properties.cProperties(in: arena)
        return m.body.withUnsafeBytes { body -> Int32 in
            let bytes = amqp_bytes_t(len: body.count, bytes: body.count == 0 ? nil : UnsafeMutableRawPointer(mutating: body.baseAddress))
            return amqp_basic_publish(state, channel, arena.bytes(m.exchange), arena.bytes(m.routingKey),
                                      m.mandatory ? 1 : 0, 0, &properties, bytes)
        }
    }

    func basicAck(_ channel: amqp_channel_t, _ tag: UInt64, multiple: Bool) -> Int32 {
        amqp_basic_ack(state, channel, tag, multiple ? 1 : 0)
    }

    func basicNack(_ channel: amqp_channel_t, _ tag: UInt64, multiple: Bool, requeue: Bool) -> Int32 {
        amqp_basic_nack(state, channel, tag, multiple ? 1 : 0, requeue ? 1 : 0)
    }

    func basicReject(_ channel: amqp_channel_t, _ tag: UInt64, requeue: Bool) -> Int32 {
        amqp_basic_reject(state, channel, tag, requeue ? 1 : 0)
    }

    func sendChannelCloseOk(_ channel: amqp_channel_t) throws(AMQPError) {
        var ok = amqp_channel_close_ok_t(dummy: 0)
        try AMQPCheck.status(amqp_send_method(state, channel, SLUICE_CHANNEL_CLOSE_OK, &ok), "channel.close-ok")
    }

    func sendConnectionCloseOk() throws(AMQPError) {
        var ok = amqp_connection_close_ok_t(dummy: 0)
        try AMQPCheck.status(amqp_send_method(state, 0, SLUICE_CONNECTION_CLOSE_OK, &ok), "connection.close-ok")
    }

    func sendCancelOk(_ channel: amqp_channel_t, consumerTag: amqp_bytes_t) throws(AMQPError) {
        var ok = amqp_basic_cancel_ok_t(consumer_tag: consumerTag)
        try AMQPCheck.status(amqp_send_method(state, channel, SLUICE_BASIC_CANCEL_OK, &ok), "basic.cancel-ok")
    }

    func sendFlowOk(_ channel: amqp_channel_t, active: amqp_boolean_t) throws(AMQPError) {
        var ok = amqp_channel_flow_ok_t(active: active)
        try AMQPCheck.status(amqp_send_method(state, channel, SLUICE_CHANNEL_FLOW_OK, &ok), "channel.flow-ok")
    }

    // MARK: Frames

    /// Reads the next frame, waiting at most `timeout` for the socket.
    func nextFrame(_ frame: inout amqp_frame_t, timeout: inout timeval) -> Int32 {
        amqp_simple_wait_frame_noblock(state, &frame, &timeout)
    }

    /// Whether an RPC set frames aside (they came before its reply).
    var hasQueuedFrames: Bool { amqp_frames_enqueued(state) != 0 }

    /// Whether a frame can be read without waiting for the socket.
    var hasBufferedInput: Bool {
        amqp_frames_enqueued(state) != 0 || amqp_data_in_buffer(state) != 0
    }

    /// Lets rabbitmq-c reuse the memory of replies read on `channel`.
    func releaseBuffers(_ channel: amqp_channel_t) {
        amqp_maybe_release_buffers_on_channel(state, channel)
    }

    // MARK: The connection

    /// Frees the connection and closes its socket, without a close handshake.
    func destroy() {
        amqp_destroy_connection(state)
    }

    /// `connection.close` (best effort, for a clean goodbye), then ``destroy()``.
    func closeAndDestroy() {
        _ = amqp_connection_close(state, Int32(AMQP_REPLY_SUCCESS))
        amqp_destroy_connection(state)
    }

    // MARK: Replies

    /// Runs `call` with an arena for the C copies of its arguments, kept alive
    /// until the call returns: Swift may otherwise free an object after its
    /// last Swift use, before C has read what it points to.
    private func withArena<T>(_ call: (CArena) -> T) -> T {
        let arena = CArena()
        return withExtendedLifetime(arena) { call(arena) }
    }

    /// Reads the reply of the method just sent on `channel`.
    private func checkReply(_ channel: amqp_channel_t, _ operation: @autoclosure () -> String) throws(AMQPError) {
        let reply = amqp_get_rpc_reply(state)
        if reply.reply_type != AMQP_RESPONSE_NORMAL { answerClose(reply, channel) }
        try AMQPCheck.reply(reply, operation())
    }

    /// Answers a broker's `channel.close` or `connection.close` received in
    /// place of a reply: until it has its `close-ok`, the broker keeps the
    /// channel id (or the connection) unusable.
    private func answerClose(_ reply: amqp_rpc_reply_t, _ channel: amqp_channel_t) {
        guard reply.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION else { return }
        if reply.reply.id == SLUICE_CHANNEL_CLOSE {
            try? sendChannelCloseOk(channel)
        } else if reply.reply.id == SLUICE_CONNECTION_CLOSE {
            try? sendConnectionCloseOk()
        }
    }
}
