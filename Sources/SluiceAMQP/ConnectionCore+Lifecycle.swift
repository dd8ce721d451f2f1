import CRabbitMQ
import DequeModule
import Logging
import SluiceWire
import Synchronization

/// Logging in, and ending, on the connection thread. What happens between
/// (recovery) is in ConnectionCore+Recovery; when each happens is the
/// ``ConnectionStateMachine``'s decision.
extension ConnectionCore {
    // MARK: Connecting

    /// Connects to the first node of the URL's list that answers, starting
    /// at ``nodeIndex``; returns the negotiated heartbeat. Throws the last
    /// node's error if none answers.
    func connect() throws(AMQPError) -> Int {
        let nodes = configuration.url.nodes
        var lastError: AMQPError?
        for offset in 0..<nodes.count {
            let index = (nodeIndex + offset) % nodes.count
            do {
                let heartbeat = try connect(to: nodes[index])
                nodeIndex = index
                connectedNode.withLock { $0 = nodes[index] }
                logger.info("connected to the broker", metadata: ["node": "\(nodes[index])"])
                return heartbeat
            } catch {
                if nodes.count > 1 {
                    logger.info("a broker node did not answer; trying the next", metadata: ["node": "\(nodes[index])", "error": "\(error.message)"])
                }
                lastError = error
            }
        }
        var error = lastError!
        if nodes.count > 1 { error.message += " (no node of \(nodes.count) accepted the connection)" }
        throw error
    }

    /// Opens the socket to one node and logs in; returns the negotiated
    /// heartbeat. Throws with the C state cleaned up.
    func connect(to node: AMQPURL.Node) throws(AMQPError) -> Int {
        let url = configuration.url.only(node)
        let operation = "connect \(url)"
        guard let state = amqp_new_connection() else {
            throw AMQPError(.library, operation: operation, message: "out of memory")
        }
        var ok = false
        defer { if !ok { RabbitMQC(state: state).destroy() } }

        let socket: OpaquePointer?
        if let tls = url.tls {
            socket = amqp_ssl_socket_new(state)
            guard let socket else { throw AMQPError(.tlsFailed, operation: operation, message: "could not create a TLS socket") }
            if let ca = tls.caCertificateFile {
                try AMQPCheck.status(amqp_ssl_socket_set_cacert(socket, ca), "\(operation): load CA file \(ca)")
            }
            if let cert = tls.certificateFile, let key = tls.keyFile {
                try AMQPCheck.status(amqp_ssl_socket_set_key(socket, cert, key), "\(operation): load client certificate \(cert)")
            } else if tls.certificateFile != nil || tls.keyFile != nil {
                throw AMQPError(.invalidURL, operation: operation, message: "certfile and keyfile go together")
            }
            amqp_ssl_socket_set_verify_peer(socket, tls.verifyPeer ? 1 : 0)
            // An IP address is checked by OpenSSL against the certificate's IP
            // entries (rabbitmq-c's own check only knows names); that check
            // runs as part of peer verification, so it needs verify_peer.
            let ipChecked = tls.verifyHostname && tls.verifyPeer && sluice_ssl_expect_ip(socket, url.host) == 1
            amqp_ssl_socket_set_verify_hostname(socket, tls.verifyHostname && !ipChecked ? 1 : 0)
        } else {
            socket = amqp_tcp_socket_new(state)
            guard socket != nil else { throw AMQPError(.library, operation: operation, message: "could not create a socket") }
        }
        var timeout = timeval(milliseconds: url.connectionTimeoutMilliseconds)
        do {
            try AMQPCheck.status(amqp_socket_open_noblock(socket, url.host, Int32(url.port), &timeout), operation)
        } catch {
            var e = error
            if e.code == .connectionLost || e.code == .library || e.code == .timeout { e.code = .connectionFailed }
            throw e
        }
        _ = amqp_set_handshake_timeout(state, &timeout)
        var rpc = timeval(duration: configuration.rpcTimeout)
        _ = amqp_set_rpc_timeout(state, &rpc)

        let arena = CArena()
        // Alive until the C call has read what it points to (Swift may end a
        // lifetime at the last Swift use).
        defer { withExtendedLifetime(arena) {} }
        var clientProperties = FieldTable()
        clientProperties["product"] = "Sluice"
        clientProperties["platform"] = "Swift"
        if let name = configuration.connectionName { clientProperties["connection_name"] = .string(name) }
        clientProperties["capabilities"] = [
            "publisher_confirms": true,
            "consumer_cancel_notify": true,
            "connection.blocked": true,
            "basic.nack": true,
            "authentication_failure_close": true,
        ]
        var cProperties = clientProperties.cTable(in: arena)
        let reply = sluice_amqp_login_plain(state, url.vhost, Int32(url.channelMax), Int32(url.frameMax),
                                            Int32(url.heartbeatSeconds), &cProperties, url.user, url.password)
        do {
            try AMQPCheck.reply(reply, "login to \(url)")
        } catch {
            var e = error
            if e.code == .connectionLost && e.replyCode == nil {
                // Brokers without authentication_failure_close just drop the socket.
                e.message += "; check the user name, password and vhost"
            }
            if e.code == .timeout { e.code = .connectionFailed }
            throw e
        }
        ok = true
        connection = state
        socketFD = amqp_get_sockfd(state)
        channelMax = Int(amqp_get_channel_max(state))
        if channelMax == 0 { channelMax = 65535 }
        frameMax = Int(amqp_get_frame_max(state))
        blockedFlag.store(false)
        return Int(amqp_get_heartbeat(state))
    }

    /// Tells other threads which connection is up now (after the lifecycle counted it).
    func publishGeneration() {
        generationFlag.store(lifecycle.generation)
        connectedFlag.store(true)
    }

    func requireConnection(_ operation: @autoclosure () -> String) throws(AMQPError) -> amqp_connection_state_t {
        guard let connection else {
            if lifecycle.isClosed {
                throw AMQPError(.connectionClosed, operation: operation(), message: "the connection is closed")
            }
            throw AMQPError(.connectionLost, operation: operation(), message: "not connected")
        }
        return connection
    }

    // MARK: Ending

    func closeGracefully() {
        connectedFlag.store(false)
        if let connection {
            RabbitMQC(state: connection).closeAndDestroy()
            self.connection = nil
            socketFD = -1
        }
        finish(error: nil)
    }

    /// Fails everything still waiting, ends consumers, and stops the thread.
    func finish(error: AMQPError?) {
        guard !finished else { return }
        finished = true
        connectedFlag.store(false)
        let failure = error ?? AMQPError(.connectionClosed, operation: "connection", message: "the connection is closed")
        for channel in channels.values {
            closeChannelState(channel, error: failure, endConsumersCleanly: error == nil)
        }
        channels.removeAll()
        for waiter in channelWaiters { waiter.pending.fail(failure) }
        channelWaiters.removeAll()
        let (commands, waiters) = inbox.withLock { inbox -> ([Command], [PendingResult<Void>]) in
            inbox.finished = true
            let c = inbox.commands
            let w = inbox.closeWaiters
            inbox.commands.removeAll()
            inbox.closeWaiters.removeAll()
            return (c, w)
        }
        // Queued commands run against a closed connection and so fail their callers.
        for command in commands { command(self) }
        events.emit(.closed(error))
        events.finish()
        for w in waiters { w.succeed(()) }
    }

    /// Marks a channel closed and tells everyone waiting on it.
    func closeChannelState(_ channel: ChannelState, error: AMQPError, endConsumersCleanly: Bool = false) {
        channel.isOpen = false
        channel.closeError = error
        for waiter in channel.tracker.failAll() { waiter.settle(.failure(error)) }
        while let request = channel.held.popFirst() { request.waiter?.settle(.failure(error)) }
        for consumer in channel.consumers.values {
            if endConsumersCleanly { consumer.deliveries.finish() } else { consumer.deliveries.finish(throwing: error) }
        }
        channel.consumers.removeAll()
        channel.content = nil
        channel.unacked.removeAll()
    }
}
