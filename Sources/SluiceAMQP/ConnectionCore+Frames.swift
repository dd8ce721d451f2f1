import CRabbitMQ
import Logging
import SluiceWire

/// Routing of incoming frames: deliveries to consumers, confirms to
/// publishers, closes and cancels to whoever waits on them.
extension ConnectionCore {
    func handle(_ frame: amqp_frame_t) throws(AMQPError) {
        switch frame.frame_type {
        case SLUICE_FRAME_METHOD:
            try handleMethod(frame.payload.method, channel: frame.channel)
        case SLUICE_FRAME_HEADER:
            guard let channel = channels[frame.channel], var content = channel.content else { return }
            let header = frame.payload.properties
            if let decoded = header.decoded {
                content.properties = BasicProperties(decoded.assumingMemoryBound(to: amqp_basic_properties_t.self).pointee)
            } else {
                content.properties = BasicProperties()
            }
            content.bodySize = Int(header.body_size)
            content.body.reserveCapacity(content.bodySize)
            channel.content = content
            if content.isComplete { completeContent(on: channel) }
        case SLUICE_FRAME_BODY:
            guard let channel = channels[frame.channel], channel.content != nil else { return }
            let fragment = frame.payload.body_fragment
            if fragment.len > 0, let bytes = fragment.bytes {
                channel.content!.body.append(contentsOf: UnsafeRawBufferPointer(start: bytes, count: fragment.len))
            }
            if channel.content!.isComplete { completeContent(on: channel) }
        default:
            break
        }
    }

    private func handleMethod(_ method: amqp_method_t, channel id: UInt16) throws(AMQPError) {
        let decoded = method.decoded
        switch method.id {
        case SLUICE_BASIC_DELIVER:
            guard let channel = channels[id], let decoded else { return }
            let m = decoded.assumingMemoryBound(to: amqp_basic_deliver_t.self).pointee
            channel.content = IncomingContent(kind: .deliver(
                consumerTag: m.consumer_tag.string, deliveryTag: m.delivery_tag, redelivered: m.redelivered != 0,
                exchange: m.exchange.string, routingKey: m.routing_key.string))
        case SLUICE_BASIC_ACK:
            guard let channel = channels[id], let decoded else { return }
            let m = decoded.assumingMemoryBound(to: amqp_basic_ack_t.self).pointee
            settleConfirms(on: channel, tag: m.delivery_tag, multiple: m.multiple != 0, nack: false)
        case SLUICE_BASIC_NACK:
            guard let channel = channels[id], let decoded else { return }
            let m = decoded.assumingMemoryBound(to: amqp_basic_nack_t.self).pointee
            settleConfirms(on: channel, tag: m.delivery_tag, multiple: m.multiple != 0, nack: true)
        case SLUICE_BASIC_RETURN:
            guard let channel = channels[id], let decoded else { return }
            let m = decoded.assumingMemoryBound(to: amqp_basic_return_t.self).pointee
            channel.content = IncomingContent(kind: .returned(
                replyCode: m.reply_code, replyText: m.reply_text.string,
                exchange: m.exchange.string, routingKey: m.routing_key.string))
        case SLUICE_BASIC_CANCEL:
            // The broker cancelled a consumer (queue deleted, node down...).
            guard let channel = channels[id], let decoded else { return }
            let m = decoded.assumingMemoryBound(to: amqp_basic_cancel_t.self).pointee
            let tag = m.consumer_tag.string
            if let consumer = channel.consumers.removeValue(forKey: tag) {
                consumer.deliveries.finish(throwing: AMQPError(
                    .consumerCancelled, operation: "consume \(consumer.queue)",
                    message: "the broker cancelled consumer \(tag) (was its queue deleted?)"))
            }
            if m.nowait == 0, let connection {
                try RabbitMQC(state: connection).sendCancelOk(id, consumerTag: m.consumer_tag)
            }
        case SLUICE_CHANNEL_CLOSE:
            let error = AMQPCheck.serverError(method, operation: "channel \(id)")
            if let connection { try RabbitMQC(state: connection).sendChannelCloseOk(id) }
            if let channel = channels.removeValue(forKey: id) {
                logger.warning("broker closed channel", metadata: ["channel": "\(id)", "error": "\(error)"])
                closeChannelState(channel, error: error)
            }
        case SLUICE_CHANNEL_FLOW:
            if let connection, let decoded {
                try RabbitMQC(state: connection).sendFlowOk(id, active: decoded.assumingMemoryBound(to: amqp_channel_flow_t.self).pointee.active)
            }
        case SLUICE_CONNECTION_CLOSE:
            let error = AMQPCheck.serverError(method, operation: "connection")
            if let connection { try? RabbitMQC(state: connection).sendConnectionCloseOk() }
            throw error
        case SLUICE_CONNECTION_BLOCKED:
            var reason = ""
            if let decoded { reason = decoded.assumingMemoryBound(to: amqp_connection_blocked_t.self).pointee.reason.string }
            _ = lifecycle.blocked()
            blockedFlag.store(true)
            logger.warning("broker blocked the connection", metadata: ["reason": "\(reason)"])
            events.emit(.blocked(reason: reason))
        case SLUICE_CONNECTION_UNBLOCKED:
            _ = lifecycle.unblocked()
            blockedFlag.store(false)
            events.emit(.unblocked)
            for channel in channels.values { flushHeld(on: channel) }
        default:
            break  // replies to our own async methods, which we do not use
        }
    }

    private func completeContent(on channel: ChannelState) {
        guard let content = channel.content else { return }
        channel.content = nil
        let properties = content.properties ?? BasicProperties()
        switch content.kind {
        case .deliver(let consumerTag, let deliveryTag, let redelivered, let exchange, let routingKey):
            guard let consumer = channel.consumers[consumerTag], let handle = channel.handle else {
                // No one to give it to (consumer gone): hand it back to the queue,
                // unless it was auto-acked (rejecting it would be a protocol error).
                if !channel.cancelledNoAckTags.contains(consumerTag) { rejectQuietly(channel, deliveryTag) }
                return
            }
            if !consumer.noAck { channel.unacked[deliveryTag] = consumerTag }
            let delivery = AMQPDelivery(
                body: content.body, properties: properties, deliveryTag: deliveryTag, redelivered: redelivered,
                exchange: exchange, routingKey: routingKey, consumerTag: consumerTag, messageCount: nil,
                channel: handle, generation: generation)
            if case .terminated = consumer.deliveries.yield(delivery) {
                // Nobody iterates any more (the stream's termination handler is
                // cancelling the consumer): give the message back rather than hold it.
                if !consumer.noAck {
                    channel.unacked.removeValue(forKey: deliveryTag)
                    rejectQuietly(channel, deliveryTag)
                }
            }
        case .got(let deliveryTag, let redelivered, let exchange, let routingKey, let messageCount, let noAck):
            guard let handle = channel.handle else { return }
            if !noAck { channel.unacked[deliveryTag] = .some(nil) }
            channel.gotDelivery = AMQPDelivery(
                body: content.body, properties: properties, deliveryTag: deliveryTag, redelivered: redelivered,
                exchange: exchange, routingKey: routingKey, consumerTag: nil, messageCount: messageCount,
                channel: handle, generation: generation)
        case .returned(let replyCode, let replyText, let exchange, let routingKey):
            if !channel.tracker.returned(exchange: exchange, routingKey: routingKey, replyCode: replyCode, replyText: replyText) {
                logger.warning("returned message matched no publish", metadata: [
                    "exchange": "\(exchange)", "routingKey": "\(routingKey)", "reply": "\(replyCode) \(replyText)",
                ])
            }
        }
    }

    private func rejectQuietly(_ channel: ChannelState, _ deliveryTag: UInt64) {
        guard let connection else { return }
        let status = RabbitMQC(state: connection).basicReject(channel.id, deliveryTag, requeue: true)
        if status < 0 { logger.debug("reject failed", metadata: ["error": "\(AMQPCheck.libraryError(status, operation: "basic.reject"))"]) }
    }

    private func settleConfirms(on channel: ChannelState, tag: UInt64, multiple: Bool, nack: Bool) {
        for (waiter, outcome) in channel.tracker.confirm(upTo: tag, multiple: multiple, nack: nack) {
            switch outcome {
            case .acked:
                waiter.settle(.success(()))
            case .nacked:
                waiter.settle(.failure(AMQPError(.publishNacked, operation: "publish",
                                                 message: "the broker refused the message (basic.nack), for example a full queue with x-overflow reject-publish")))
            case .returned(let code, let text):
                waiter.settle(.failure(AMQPError(.unroutable, operation: "publish",
                                                 message: "no queue is bound for this routing key (basic.return)",
                                                 replyCode: code, replyText: text)))
            }
        }
        flushHeld(on: channel)
    }
}
