import CRabbitMQ
import SluiceWire

extension BasicProperties {
    /// Copies rabbitmq-c's decoded properties into Swift values.
    init(_ p: amqp_basic_properties_t) {
        self.init()
        let flags = p._flags
        func has(_ flag: Int) -> Bool { flags & amqp_flags_t(flag) != 0 }
        if has(SLUICE_BASIC_CONTENT_TYPE_FLAG) { contentType = p.content_type.string }
        if has(SLUICE_BASIC_CONTENT_ENCODING_FLAG) { contentEncoding = p.content_encoding.string }
        if has(SLUICE_BASIC_HEADERS_FLAG) { headers = FieldTable(p.headers) }
        if has(SLUICE_BASIC_DELIVERY_MODE_FLAG) { deliveryMode = p.delivery_mode }
        if has(SLUICE_BASIC_PRIORITY_FLAG) { priority = p.priority }
        if has(SLUICE_BASIC_CORRELATION_ID_FLAG) { correlationId = p.correlation_id.string }
        if has(SLUICE_BASIC_REPLY_TO_FLAG) { replyTo = p.reply_to.string }
        if has(SLUICE_BASIC_EXPIRATION_FLAG) { expiration = p.expiration.string }
        if has(SLUICE_BASIC_MESSAGE_ID_FLAG) { messageId = p.message_id.string }
        if has(SLUICE_BASIC_TIMESTAMP_FLAG) { timestamp = p.timestamp }
        if has(SLUICE_BASIC_TYPE_FLAG) { type = p.type.string }
        if has(SLUICE_BASIC_USER_ID_FLAG) { userId = p.user_id.string }
        if has(SLUICE_BASIC_APP_ID_FLAG) { appId = p.app_id.string }
    }

    /// Builds rabbitmq-c's form of these properties in `arena`.
    func cProperties(in arena: CArena) -> amqp_basic_properties_t {
        var p = amqp_basic_properties_t()
        var flags = 0
        if let contentType { p.content_type = arena.bytes(contentType); flags |= SLUICE_BASIC_CONTENT_TYPE_FLAG }
        if let contentEncoding { p.content_encoding = arena.bytes(contentEncoding); flags |= SLUICE_BASIC_CONTENT_ENCODING_FLAG }
        if let headers { p.headers = headers.cTable(in: arena); flags |= SLUICE_BASIC_HEADERS_FLAG }
        if let deliveryMode { p.delivery_mode = deliveryMode; flags |= SLUICE_BASIC_DELIVERY_MODE_FLAG }
        if let priority { p.priority = priority; flags |= SLUICE_BASIC_PRIORITY_FLAG }
        if let correlationId { p.correlation_id = arena.bytes(correlationId); flags |= SLUICE_BASIC_CORRELATION_ID_FLAG }
        if let replyTo { p.reply_to = arena.bytes(replyTo); flags |= SLUICE_BASIC_REPLY_TO_FLAG }
        if let expiration { p.expiration = arena.bytes(expiration); flags |= SLUICE_BASIC_EXPIRATION_FLAG }
        if let messageId { p.message_id = arena.bytes(messageId); flags |= SLUICE_BASIC_MESSAGE_ID_FLAG }
        if let timestamp { p.timestamp = timestamp; flags |= SLUICE_BASIC_TIMESTAMP_FLAG }
        if let type { p.type = arena.bytes(type); flags |= SLUICE_BASIC_TYPE_FLAG }
        if let userId { p.user_id = arena.bytes(userId); flags |= SLUICE_BASIC_USER_ID_FLAG }
        if let appId { p.app_id = arena.bytes(appId); flags |= SLUICE_BASIC_APP_ID_FLAG }
        p._flags = amqp_flags_t(flags)
        return p
    }
}
