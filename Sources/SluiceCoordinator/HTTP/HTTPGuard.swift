import HTTPTypes
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import SluiceCore

/// Answers what goes wrong below the router with the API's JSON error shape,
/// and closes the connection: a request the HTTP parser cannot read (a URL or
/// header over the limits, a bad `Content-Length`, an unknown method, a
/// malformed chunked body) and `CONNECT`, which the parser treats as a tunnel
/// and after which it reads nothing more.
///
/// It sits between the HTTP codec and Hummingbird's connection handling, one
/// per connection. Hummingbird's own answer to a parser error is a 400 with
/// an empty body, and its answer to `CONNECT` (whose response body HTTP/1.1
/// encoders drop) left the connection open. The rejection is written as raw
/// bytes for that reason, then the connection is closed once it is sent.
final class HTTPGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    /// Requests read whose response has not ended.
    private var awaiting = 0
    /// A request's body is being read.
    private var bodyOpen = false
    /// The response in progress must close the connection (its request was broken mid-body).
    private var closeAfterResponse = false
    /// A rejection to send once the responses in progress have ended.
    private var pendingReject: String?
    /// Rejected or closing: everything else is dropped.
    private var closing = false

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if closing { return }
        let part = unwrapInboundIn(data)
        switch part {
        case .head(let head):
            if head.method == .connect {
                // After any answer still on its way to an earlier request.
                if awaiting == 0 { reject(context, "CONNECT is not supported") } else { pendingReject = "CONNECT is not supported" }
                return
            }
            awaiting += 1
            bodyOpen = true
        case .body:
            break
        case .end:
            bodyOpen = false
        }
        context.fireChannelRead(data)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        // The decoder repeats itself once it has failed; a request already
        // broken mid-body is answered by its route and then closed.
        if closing || closeAfterResponse || pendingReject != nil { return }
        let reason = Self.describe(error)
        if bodyOpen {
            // The route is reading this body: let it fail (the API answers 400), then close.
            bodyOpen = false
            closeAfterResponse = true
            if awaiting > 0 {
                context.fireErrorCaught(error)
            } else {
                closing = true
                context.close(promise: nil)
            }
            return
        }
        if awaiting == 0 {
            reject(context, reason)
        } else {
            // An answer is still on its way for an earlier request: this one follows it.
            pendingReject = reason
        }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if closing {
            promise?.fail(ChannelError.ioOnClosedChannel)
            return
        }
        switch unwrapOutboundIn(data) {
        case .head(var head) where closeAfterResponse || pendingReject != nil:
            head.headerFields[.connection] = "close"
            context.write(wrapOutboundOut(.head(head)), promise: promise)
        case .end:
            awaiting = max(0, awaiting - 1)
            guard awaiting == 0, closeAfterResponse || pendingReject != nil else {
                context.write(data, promise: promise)
                return
            }
            context.write(data, promise: promise)
            if let reason = pendingReject {
                reject(context, reason)
            } else {
                closing = true
                context.flush()
                context.close(promise: nil)
            }
        default:
            context.write(data, promise: promise)
        }
    }

    /// Sends a 400 with the JSON error body, then closes.
    private func reject(_ context: ChannelHandlerContext, _ message: String) {
        closing = true
        pendingReject = nil
        var body = Array(#"{"error":{"code":"bad_request","message":"#.utf8)
        JSONText.appendString(message, to: &body)
        body += Array("}}".utf8)
        var bytes = context.channel.allocator.buffer(string: "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
            + "Content-Length: \(body.count)\r\nConnection: close\r\n\r\n")
        bytes.writeBytes(body)
        // Past the HTTP encoder, which would drop the body of a response to CONNECT.
        guard let encoder = try? context.pipeline.syncOperations.context(handlerType: HTTPResponseEncoder.self) else {
            context.close(promise: nil)
            return
        }
        let written = encoder.writeAndFlush(NIOAny(IOData.byteBuffer(bytes)))
        written.assumeIsolated().whenComplete { _ in context.close(promise: nil) }
    }

    /// What to tell the client about a parse error.
    static func describe(_ error: any Error) -> String {
        if let parser = error as? HTTPParserError {
            switch parser {
            case .headerOverflow: return "the request line and headers are too large"
            case .invalidMethod: return "the request method is not valid"
            case .invalidContentLength, .unexpectedContentLength: return "the Content-Length header is not valid"
            case .invalidChunkSize, .invalidEOFState: return "the chunked body is malformed"
            default: return "the request is malformed (\(parser))"
            }
        }
        return "the request is malformed"
    }
}
