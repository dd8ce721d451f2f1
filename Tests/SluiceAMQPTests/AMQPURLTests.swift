@testable import SluiceAMQP
import SluiceWire
import Testing

@Suite("AMQPURL")
struct AMQPURLTests {
    @Test("defaults follow RabbitMQ's URI spec")
    func defaults() throws {
        let url = try AMQPURL("amqp://localhost")
        #expect(url.user == "guest")
        #expect(url.password == "guest")
        #expect(url.host == "localhost")
        #expect(url.port == 5672)
        #expect(url.vhost == "/")
        #expect(url.tls == nil)
        #expect(url.heartbeatSeconds == 60)
        #expect(try AMQPURL("amqps://h").port == 5671)
        #expect(try AMQPURL("amqps://h").tls?.verifyPeer == true)
        #expect(try AMQPURL("amqp://").host == "localhost")
        #expect(try AMQPURL("amqp://host/").vhost == "")
    }

    @Test("every component, percent-decoded")
    func components() throws {
        let url = try AMQPURL("amqp://us%40er:p%3Ass%2Fw@broker.example:5999/my%2fvhost?heartbeat=10&connection_timeout=2500&channel_max=100&frame_max=8192")
        #expect(url.user == "us@er")
        #expect(url.password == "p:ss/w")
        #expect(url.host == "broker.example")
        #expect(url.port == 5999)
        #expect(url.vhost == "my/vhost")
        #expect(url.heartbeatSeconds == 10)
        #expect(url.connectionTimeoutMilliseconds == 2500)
        #expect(url.channelMax == 100)
        #expect(url.frameMax == 8192)
        #expect(try AMQPURL("amqp://h/%2f").vhost == "/")
        #expect(try AMQPURL("amqp://[::1]:5673/v").host == "::1")
        #expect(try AMQPURL("amqp://[::1]:5673/v").port == 5673)
        #expect(try AMQPURL("amqp://onlyuser@h").user == "onlyuser")
    }

    @Test("TLS options")
    func tlsOptions() throws {
        let url = try AMQPURL("amqps://h?cacertfile=/ca.pem&certfile=/c.pem&keyfile=/k.pem")
        #expect(url.tls == AMQPURL.TLS(caCertificateFile: "/ca.pem", certificateFile: "/c.pem", keyFile: "/k.pem"))
        let none = try AMQPURL("amqps://h?verify=verify_none")
        #expect(none.tls?.verifyPeer == false)
        #expect(none.tls?.verifyHostname == false)
        #expect(try AMQPURL("amqps://h?server_name_indication=disable").tls?.verifyHostname == false)
    }

    @Test("bad URLs give clear errors", arguments: [
        ("http://h", "unsupported scheme"),
        ("localhost:5672", "expected amqp://"),
        ("amqp://h:99999", "port"),
        ("amqp://h:abc", "port"),
        ("amqp://h/a/b", "one path segment"),
        ("amqp://h?heartbeat=-1", "heartbeat"),
        ("amqp://h?hearbeat=5", "unknown option 'hearbeat'"),
        ("amqp://h?cacertfile=/x", "needs an amqps://"),
        ("amqp://h/%zz", "percent-encoding"),
        ("amqps://h?verify=maybe", "verify_peer or verify_none"),
    ])
    func badURLs(input: String, expected: String) {
        let error = #expect(throws: AMQPError.self) { try AMQPURL(input) }
        #expect(error?.code == .invalidURL)
        #expect(error?.message.contains(expected) == true, "\(error?.message ?? "") should mention \(expected)")
    }

    @Test("the password never appears in descriptions or errors")
    func passwordHidden() throws {
        let url = try AMQPURL("amqp://admin:s3cret-pw@h:5672/prod")
        #expect(!url.description.contains("s3cret-pw"))
        #expect(url.description == "amqp://admin:***@h:5672/prod")
        #expect(!"\(url)".contains("s3cret-pw"))
        let error = #expect(throws: AMQPError.self) { try AMQPURL("amqp://admin:s3cret-pw@h:notaport/") }
        #expect(error.map { "\($0)".contains("s3cret-pw") } == false)
        #expect(try AMQPURL("amqp://h/%2f").description.hasSuffix("/%2f"))
    }
}
