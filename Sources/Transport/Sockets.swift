import CZeroMQ

/// The coordinator's ROUTER socket: receives from and sends to many dealers, addressed by identity.
///
/// Not thread-safe and not `Sendable`: owned by one thread. Created with linger 0,
/// `ZMQ_ROUTER_MANDATORY` (sending to an unknown peer throws `TransportError.peerUnreachable`
/// instead of dropping silently) and `ZMQ_ROUTER_HANDOVER` (a restarted worker that reconnects
/// with the same identity takes over its old route).
public final class RouterSocket {
    let socket: ZMQSocket
    let context: ZMQContext
    /// Reports closed connections once `enableDisconnectEvents()` was called.
    var monitor: DisconnectMonitor?
    /// Answers the authentication requests of a CURVE router; nil for a plaintext one.
    private let zapHandler: ZAPHandler?

    /// Told (on the owning thread, from ``receiveEvent(timeout:wakeSignal:)`` once
    /// ``enableDisconnectEvents()`` was called) when a peer fails the handshake.
    public var onHandshakeFailure: ((HandshakeFailure) -> Void)?

    /// The allow-list name of the CURVE key that sent the message received last; nil on a plaintext router.
    public var lastSenderKeyName: String? { socket.lastUserID }

    /// Whether ``lastSenderAddress`` is read (a string per message received; off by default).
    public var recordsSenderAddress: Bool {
        get { socket.recordsPeerAddress }
        set { socket.recordsPeerAddress = newValue }
    }

    /// The network address the message received last came from (e.g. `127.0.0.1`); nil unless
    /// ``recordsSenderAddress`` is on, or when libzmq does not know it.
    public var lastSenderAddress: String? { socket.lastPeerAddress }

    /// The endpoint actually bound, with wildcard port and host resolved, e.g. `tcp://127.0.0.1:49731`.
    public var boundEndpoint: String { socket.endpoint }

    /// Creates a router bound to `endpoint` (`tcp://127.0.0.1:0` picks a free port).
    ///
    /// With `.curve` security the router is a CURVE server and starts a ZAP handler in `context`
    /// (one per context) before it binds, so that no peer is ever let in unauthenticated.
    /// - Throws: `TransportError.zmq` naming the endpoint when the socket cannot be created or bound.
    public init(
        context: ZMQContext, bind endpoint: String, options: SocketOptions = SocketOptions(),
        security: RouterSecurity = .plaintext
    ) throws(TransportError) {
        self.context = context
        socket = try ZMQSocket(context: context, type: ZMQ_ROUTER, options: options, endpoint: endpoint)
        try socket.setOption(ZMQ_ROUTER_MANDATORY, Int32(1), name: "ZMQ_ROUTER_MANDATORY")
        try socket.setOption(ZMQ_ROUTER_HANDOVER, Int32(1), name: "ZMQ_ROUTER_HANDOVER")
        switch security {
        case .plaintext:
            zapHandler = nil
        case .curve(let server, let allowed, let onAuthentication):
            zapHandler = try ZAPHandler(context: context, allowed: allowed, onAuthentication: onAuthentication)
            try socket.setOption(ZMQ_CURVE_SERVER, Int32(1), name: "ZMQ_CURVE_SERVER")
            try socket.setOption(ZMQ_CURVE_SECRETKEY, bytes: server.secretKey.bytes, name: "ZMQ_CURVE_SECRETKEY")
            try socket.setOption(ZMQ_ZAP_DOMAIN, bytes: Array("switchyard".utf8), name: "ZMQ_ZAP_DOMAIN")
        }
        // On failure the deinit (this object is whole by now) stops the ZAP handler.
        try socket.bind(endpoint)
    }

    deinit { zapHandler?.stop() }

    /// Sends `frames` (at least one) as one message to `peer`.
    /// - Throws: `.peerUnreachable` when `peer` is not connected, `.sendTimedOut`, or `.zmq`.
    public func send(to peer: PeerIdentity, frames: [[UInt8]]) throws(TransportError) {
        try socket.send(prefix: peer, frames: frames)
    }

    /// Receives the next message and its sender, or nil when `timeout` passes first (nil waits forever).
    /// - Returns: the sender's identity and the message's frames (at least one).
    public func receive(timeout: Duration?) throws(TransportError) -> (peer: PeerIdentity, frames: [[UInt8]])? {
        while true {
            guard var frames = try socket.receive(timeout: timeout) else { return nil }
            // A router always prepends the identity; a message with nothing after it is ignored.
            guard frames.count >= 2 else { continue }
            let peer = PeerIdentity(frames.removeFirst())
            return (peer, frames)
        }
    }

    /// Waits until a message can be received, up to `timeout` (nil waits forever).
    /// - Returns: true when readable, false when the timeout passed.
    public func poll(timeout: Duration?) throws(TransportError) -> Bool {
        try socket.poll(timeout: timeout)
    }
}

/// A worker's (or client's) DEALER socket, connected to a router under a chosen identity.
///
/// Not thread-safe and not `Sendable`: owned by one thread. libzmq reconnects it automatically
/// when the connection drops (after 100 ms, backing off to 5 s); messages are queued until then
/// (up to the high-water mark).
public final class DealerSocket {
    let socket: ZMQSocket

    /// The identity the router sees for this socket.
    public let identity: PeerIdentity

    /// The endpoint this socket connects to.
    public var endpoint: String { socket.endpoint }

    /// Creates a dealer with `identity` (1–255 bytes, not starting with a zero byte) connecting to
    /// `endpoint`. Connecting is asynchronous: this returns before the router is reached.
    /// - Throws: `.invalidIdentity`, or `.zmq` naming the endpoint.
    public init(
        context: ZMQContext, connect endpoint: String, identity: PeerIdentity, options: SocketOptions = SocketOptions(),
        security: DealerSecurity = .plaintext
    ) throws(TransportError) {
        guard (1...255).contains(identity.bytes.count) else {
            throw .invalidIdentity(identity, reason: "it is \(identity.bytes.count) bytes, but must be 1 to 255")
        }
        guard identity.bytes[0] != 0 else {
            throw .invalidIdentity(identity, reason: "it starts with a zero byte, which libzmq reserves for generated ids")
        }
        self.identity = identity
        socket = try ZMQSocket(context: context, type: ZMQ_DEALER, options: options, endpoint: endpoint)
        try socket.setOption(ZMQ_ROUTING_ID, bytes: identity.bytes, name: "ZMQ_ROUTING_ID")
        // Reconnect after 100 ms, backing off to 5 s while the router stays away (a coordinator
        // that restarts is reached again without a storm of attempts).
        try socket.setOption(ZMQ_RECONNECT_IVL, Int32(100), name: "ZMQ_RECONNECT_IVL")
        try socket.setOption(ZMQ_RECONNECT_IVL_MAX, Int32(5000), name: "ZMQ_RECONNECT_IVL_MAX")
        if case .curve(let client, let serverKey) = security {
            try socket.setOption(ZMQ_CURVE_SERVERKEY, bytes: serverKey.bytes, name: "ZMQ_CURVE_SERVERKEY")
            try socket.setOption(ZMQ_CURVE_PUBLICKEY, bytes: client.publicKey.bytes, name: "ZMQ_CURVE_PUBLICKEY")
            try socket.setOption(ZMQ_CURVE_SECRETKEY, bytes: client.secretKey.bytes, name: "ZMQ_CURVE_SECRETKEY")
        }
        // Watched before connecting, so that not even the first handshake goes unseen.
        handshakeMonitor = try HandshakeMonitor(socket: socket, context: context)
        try socket.connect(endpoint)
    }

    private let handshakeMonitor: HandshakeMonitor

    /// The handshakes with the router that finished (or failed) since the last call, oldest first,
    /// without waiting. A worker or client that sees only failures should stop and say why: libzmq
    /// itself retries for ever.
    public func handshakeEvents() throws(TransportError) -> [HandshakeEvent] {
        try handshakeMonitor.takeEvents()
    }

    /// Sends `frames` (at least one) as one message to the router.
    /// - Throws: `.sendTimedOut` when the queue stays full past the send timeout, or `.zmq`.
    public func send(frames: [[UInt8]]) throws(TransportError) {
        try socket.send(prefix: nil, frames: frames)
    }

    /// Receives the next message's frames, or nil when `timeout` passes first (nil waits forever).
    ///
    /// For the first `spin` of the wait it polls without blocking, yielding the core between polls,
    /// and only then sleeps: a message expected within about a millisecond (a worker's next
    /// dispatch while the coordinator generates) is then taken without waking a sleeping thread,
    /// which on a virtual machine with idle (halted) CPUs costs tens of microseconds a message.
    public func receive(timeout: Duration?, spin: Duration = .zero) throws(TransportError) -> [[UInt8]]? {
        try socket.receive(timeout: timeout, spin: spin)
    }

    /// Waits until a message can be received, up to `timeout` (nil waits forever).
    /// - Returns: true when readable, false when the timeout passed.
    public func poll(timeout: Duration?) throws(TransportError) -> Bool {
        try socket.poll(timeout: timeout)
    }
}
