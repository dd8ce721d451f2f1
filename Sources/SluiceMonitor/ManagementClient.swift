public import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
public import SluiceAMQP
import Synchronization

/// Reads queue counts and rates from RabbitMQ's management HTTP API. Only
/// GET requests: monitoring never changes a queue.
public struct ManagementClient: Sendable {
    /// The API's base URL, e.g. `http://127.0.0.1:15672/`.
    public var base: URL
    /// The same API on the cluster's other nodes, tried in turn when the
    /// one in use does not answer (a node down must not blind the monitor).
    public var alternatives: [URL]
    public var user: String
    public var password: String
    public var vhost: String
    /// Which of `[base] + alternatives` answered last.
    private let inUse = NodeChoice()

    public init(base: URL, alternatives: [URL] = [], user: String, password: String, vhost: String) {
        self.base = base
        self.alternatives = alternatives
        self.user = user
        self.password = password
        self.vhost = vhost
    }

    /// The management API for a broker: `explicit` if given (credentials in
    /// it win), else the same host on 15672 for a broker on 5672, else the
    /// AMQP port + 2 (the layout of Sluice's private nodes, scripts/broker).
    public static func forBroker(_ amqp: AMQPURL, explicit: String?) throws -> ManagementClient {
        var user = amqp.user, password = amqp.password
        let base: URL
        if let explicit {
            guard var parts = URLComponents(string: explicit), let scheme = parts.scheme, scheme == "http" || scheme == "https",
                  parts.host != nil else {
                throw ManagementError("the management URL must be http:// or https://, got '\(explicit)'")
            }
            if let u = parts.user { user = u.removingPercentEncoding ?? u }
            if let p = parts.password { password = p.removingPercentEncoding ?? p }
            parts.user = nil
            parts.password = nil
            if !parts.path.hasSuffix("/") { parts.path += "/" }
            base = parts.url!
        } else {
            // One per node of the URL: the first answers unless it is down.
            let scheme = amqp.scheme == "amqps" ? "https" : "http"
            let all = amqp.nodes.map { node -> URL in
                let port = node.port == 5672 ? 15672 : node.port == 5671 ? 15671 : node.port + 2
                let host = node.host.contains(":") ? "[\(node.host)]" : node.host
                return URL(string: "\(scheme)://\(host):\(port)/")!
            }
            return ManagementClient(base: all[0], alternatives: Array(all.dropFirst()), user: user, password: password, vhost: amqp.vhost)
        }
        return ManagementClient(base: base, user: user, password: password, vhost: amqp.vhost)
    }

    /// The address in use, without credentials, for messages.
    public var address: String { current.absoluteString }

    private var candidates: [URL] { [base] + alternatives }
    private var current: URL { let all = candidates; return all[inUse.index.load(ordering: .relaxed) % all.count] }

    /// Every queue of the vhost, with counts and rates.
    public func queues() async throws -> [ManagedQueue] {
        let vhost = self.vhost.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? self.vhost
        let value = try await get("api/queues/\(vhost)?columns=name,type,messages_ready,messages_unacknowledged,consumers,message_stats,arguments,leader,members,online,head_message_timestamp")
        guard let list = value as? [[String: Any]] else { throw ManagementError("unexpected answer from \(address)api/queues") }
        return list.compactMap(ManagedQueue.init)
    }

    private func get(_ path: String) async throws -> Any {
        let all = candidates
        let first = inUse.index.load(ordering: .relaxed) % all.count
        var data = Data(), response: URLResponse?
        var unreachable: [String] = []
        // The node that answered last first, then the others in order.
        for offset in 0..<all.count {
            let index = (first + offset) % all.count
            guard let url = URL(string: path, relativeTo: all[index]) else { throw ManagementError("bad path \(path)") }
            var request = URLRequest(url: url)
            request.timeoutInterval = 3
            let credentials = Data("\(user):\(password)".utf8).base64EncodedString()
            request.setValue("Basic \(credentials)", forHTTPHeaderField: "Authorization")
            do {
                (data, response) = try await URLSession.shared.data(for: request)
                inUse.index.store(index, ordering: .relaxed)
                break
            } catch {
                unreachable.append("\(all[index].absoluteString) (\(error.localizedDescription))")
            }
        }
        guard let response else {
            throw ManagementError("the management API is not reachable at " + unreachable.joined(separator: ", "))
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        guard status == 200 else {
            throw ManagementError("the management API at \(address) answered \(status)\(status == 401 ? " (wrong user or password)" : "")")
        }
        do { return try JSONSerialization.jsonObject(with: data) } catch {
            throw ManagementError("the management API at \(address) sent something that is not JSON")
        }
    }
}

/// One queue as the management API reports it.
public struct ManagedQueue: Sendable, Hashable {
    public var name: String
    public var type: String
    public var ready: Int
    public var unacknowledged: Int
    public var consumers: Int
    /// Messages per second, averaged by the broker over its sample window.
    public var publishRate: Double?
    public var deliverRate: Double?
    public var ackRate: Double?
    /// Quorum queues: the node of the leader, and the nodes of every member
    /// and of those online (nil for other queue types).
    public var leader: String?
    public var members: [String]?
    public var online: [String]?
    /// The `timestamp` of the message at the head, when the broker reports
    /// it: classic queues do, quorum queues of RabbitMQ 3.10 do not.
    public var headMessageTimestamp: Date?

    public init(name: String, type: String = "quorum", ready: Int, unacknowledged: Int, consumers: Int,
                publishRate: Double? = nil, deliverRate: Double? = nil, ackRate: Double? = nil,
                leader: String? = nil, members: [String]? = nil, online: [String]? = nil, headMessageTimestamp: Date? = nil) {
        self.name = name
        self.type = type
        self.ready = ready
        self.unacknowledged = unacknowledged
        self.consumers = consumers
        self.publishRate = publishRate
        self.deliverRate = deliverRate
        self.ackRate = ackRate
        self.leader = leader
        self.members = members
        self.online = online
        self.headMessageTimestamp = headMessageTimestamp
    }

    init?(_ json: [String: Any]) {
        guard let name = json["name"] as? String else { return nil }
        func int(_ key: String) -> Int { (json[key] as? NSNumber)?.intValue ?? 0 }
        let stats = json["message_stats"] as? [String: Any]
        func rate(_ key: String) -> Double? { ((stats?[key] as? [String: Any])?["rate"] as? NSNumber)?.doubleValue }
        self.init(name: name, type: json["type"] as? String ?? "classic", ready: int("messages_ready"),
                  unacknowledged: int("messages_unacknowledged"), consumers: int("consumers"),
                  // With no traffic yet the broker omits the stats: that is a rate of 0.
                  publishRate: stats == nil ? 0 : rate("publish_details") ?? 0,
                  deliverRate: stats == nil ? 0 : rate("deliver_get_details") ?? 0,
                  ackRate: stats == nil ? 0 : rate("ack_details") ?? 0,
                  leader: json["leader"] as? String, members: json["members"] as? [String], online: json["online"] as? [String],
                  headMessageTimestamp: (json["head_message_timestamp"] as? NSNumber).map { Date(timeIntervalSince1970: $0.doubleValue) })
    }
}

/// A failed call to RabbitMQ's management API, with what it answered.
public struct ManagementError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// The index of the management endpoint in use, shared by a client's copies.
private final class NodeChoice: Sendable {
    let index = Atomic<Int>(0)
}
