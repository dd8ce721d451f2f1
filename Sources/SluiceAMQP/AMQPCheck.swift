import CRabbitMQ
import SluiceWire

/// The one place where rabbitmq-c results become Swift errors.
///
/// Every `amqp_*` call's status code or RPC reply goes through here, so each
/// failure carries the operation, a code, and the broker's reply when there is
/// one (compare swift-nio's single checked syscall wrapper).
enum AMQPCheck {
    /// Throws unless `status` is `AMQP_STATUS_OK` (or positive, which some calls return on success).
    static func status(_ status: Int32, _ operation: @autoclosure () -> String) throws(AMQPError) {
        if status >= 0 { return }
        throw libraryError(status, operation: operation())
    }

    /// Throws unless the RPC reply is normal. `connectionCode` is the code to
    /// use for a library error (for example `.connectionFailed` during login).
    static func reply(_ reply: amqp_rpc_reply_t, _ operation: @autoclosure () -> String) throws(AMQPError) {
        switch reply.reply_type {
        case AMQP_RESPONSE_NORMAL:
            return
        case AMQP_RESPONSE_LIBRARY_EXCEPTION:
            throw libraryError(reply.library_error, operation: operation())
        case AMQP_RESPONSE_SERVER_EXCEPTION:
            throw serverError(reply.reply, operation: operation())
        default:
            throw AMQPError(.protocolError, operation: operation(), message: "the broker sent no reply")
        }
    }

    /// The error for a `connection.close` or `channel.close` method from the broker.
    static func serverError(_ method: amqp_method_t, operation: String) -> AMQPError {
        if method.id == SLUICE_CONNECTION_CLOSE, let decoded = method.decoded {
            let close = decoded.assumingMemoryBound(to: amqp_connection_close_t.self).pointee
            let code: AMQPError.Code = switch close.reply_code {
            case 403 where close.reply_text.string.contains("ACCESS_REFUSED - Login"): .authenticationFailed
            case 403, 530: .accessRefused
            default: .connectionClosedByBroker
            }
            return AMQPError(code, operation: operation, message: "the broker closed the connection",
                             replyCode: close.reply_code, replyText: close.reply_text.string)
        }
        if method.id == SLUICE_CHANNEL_CLOSE, let decoded = method.decoded {
            let close = decoded.assumingMemoryBound(to: amqp_channel_close_t.self).pointee
            return AMQPError(.channelClosedByBroker, operation: operation, message: "the broker closed the channel",
                             replyCode: close.reply_code, replyText: close.reply_text.string)
        }
        return AMQPError(.protocolError, operation: operation,
                         message: "unexpected method 0x\(String(method.id, radix: 16)) from the broker")
    }

    /// The error for a negative rabbitmq-c status code.
    static func libraryError(_ status: Int32, operation: String) -> AMQPError {
        let text = String(cString: amqp_error_string2(status))
        let code: AMQPError.Code = switch status {
        case AMQP_STATUS_CONNECTION_CLOSED.rawValue, AMQP_STATUS_SOCKET_ERROR.rawValue,
             AMQP_STATUS_SOCKET_CLOSED.rawValue, AMQP_STATUS_TCP_ERROR.rawValue:
            .connectionLost
        case AMQP_STATUS_HOSTNAME_RESOLUTION_FAILED.rawValue: .connectionFailed
        case AMQP_STATUS_HEARTBEAT_TIMEOUT.rawValue: .heartbeatTimeout
        case AMQP_STATUS_TIMEOUT.rawValue: .timeout
        case AMQP_STATUS_SSL_ERROR.rawValue, AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED.rawValue,
             AMQP_STATUS_SSL_PEER_VERIFY_FAILED.rawValue, AMQP_STATUS_SSL_CONNECTION_FAILED.rawValue,
             AMQP_STATUS_SSL_SET_ENGINE_FAILED.rawValue:
            .tlsFailed
        case AMQP_STATUS_INVALID_PARAMETER.rawValue, AMQP_STATUS_TABLE_TOO_BIG.rawValue: .invalidArgument
        default: .library
        }
        return AMQPError(code, operation: operation, message: text)
    }
}
