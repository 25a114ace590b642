import CZeroMQ

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One libzmq socket: options, multipart send/receive, poll. Owned by one thread (not Sendable).
final class ZMQSocket {
    /// Retained so the context outlives the socket (zmq_ctx_term waits for open sockets).
    private let context: ZMQContext
    private let handle: UnsafeMutableRawPointer
    /// The libzmq socket, for polling it together with other descriptors.
    var rawHandle: UnsafeMutableRawPointer { handle }
    /// Reused for every received frame, so receiving allocates only the frames' arrays.
    private let message: UnsafeMutablePointer<zmq_msg_t>
    private let sendTimeout: Duration?
    /// The endpoint for error messages: the bound or connected address.
    var endpoint: String
    /// The ZAP user id of the last message received: the allow-list name of its sender's CURVE key
    /// (nil on a plaintext socket).
    private(set) var lastUserID: String?
    /// Whether to read each message's `Peer-Address` (off by default: a string per message).
    var recordsPeerAddress = false
    /// The address of the connection the last message came from (`Peer-Address`, e.g.
    /// `127.0.0.1`), when `recordsPeerAddress` is on.
    private(set) var lastPeerAddress: String?

    init(context: ZMQContext, type: Int32, options: SocketOptions, endpoint: String) throws(TransportError) {
        guard let handle = zmq_socket(context.handle, type) else {
            throw .lastZMQError(operation: "create socket", endpoint: endpoint)
        }
        self.context = context
        self.handle = handle
        self.endpoint = endpoint
        self.sendTimeout = options.sendTimeout
        message = .allocate(capacity: 1)
        // Close must never block on unsent messages: a peer that is gone stays gone.
        try setOption(ZMQ_LINGER, Int32(0), name: "ZMQ_LINGER")
        try setOption(ZMQ_MAXMSGSIZE, Int64(options.maxMessageBytes), name: "ZMQ_MAXMSGSIZE")
        try setOption(
            ZMQ_SNDTIMEO, options.sendTimeout.map { Int32(clamping: Self.milliseconds($0)) } ?? -1, name: "ZMQ_SNDTIMEO")
        if let hwm = options.sendHighWaterMark { try setOption(ZMQ_SNDHWM, Int32(clamping: hwm), name: "ZMQ_SNDHWM") }
        if let hwm = options.receiveHighWaterMark { try setOption(ZMQ_RCVHWM, Int32(clamping: hwm), name: "ZMQ_RCVHWM") }
    }

    deinit {
        zmq_close(handle)
        message.deallocate()
    }

    func setOption<T: FixedWidthInteger>(_ option: Int32, _ value: T, name: String) throws(TransportError) {
        let rc = withUnsafeBytes(of: value) { zmq_setsockopt(handle, option, $0.baseAddress, $0.count) }
        if rc != 0 {
            throw .lastZMQError(operation: "set \(name)", endpoint: endpoint)
        }
    }

    func setOption(_ option: Int32, bytes: [UInt8], name: String) throws(TransportError) {
        let rc = bytes.withUnsafeBytes { zmq_setsockopt(handle, option, $0.baseAddress, $0.count) }
        if rc != 0 { throw .lastZMQError(operation: "set \(name)", endpoint: endpoint) }
    }

    func bind(_ address: String) throws(TransportError) {
        if zmq_bind(handle, address) != 0 { throw .lastZMQError(operation: "bind", endpoint: address) }
        // Resolve wildcard ports and hosts (`tcp://127.0.0.1:0`, `tcp://*:*`) to the real endpoint.
        var buffer = [CChar](repeating: 0, count: 1024)
        var size = buffer.count
        if zmq_getsockopt(handle, ZMQ_LAST_ENDPOINT, &buffer, &size) != 0 {
            throw .lastZMQError(operation: "get ZMQ_LAST_ENDPOINT", endpoint: address)
        }
        endpoint = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func connect(_ address: String) throws(TransportError) {
        endpoint = address
        if zmq_connect(handle, address) != 0 { throw .lastZMQError(operation: "connect", endpoint: address) }
    }

    /// Sends `prefix` (if any) then `frames` as one multipart message.
    /// - Throws: `.peerUnreachable` when a router's first frame names no connected peer,
    ///   `.sendTimedOut` when the send timeout expires, `.zmq` otherwise.
    func send(prefix: PeerIdentity?, frames: [[UInt8]]) throws(TransportError) {
        precondition(!frames.isEmpty, "send: a message needs at least one frame")
        if let prefix {
            try sendFrame(prefix.bytes, more: true, peer: prefix)
        }
        for (index, frame) in frames.enumerated() {
            try sendFrame(frame, more: index < frames.count - 1, peer: prefix)
        }
    }

    private func sendFrame(_ frame: [UInt8], more: Bool, peer: PeerIdentity?) throws(TransportError) {
        let flags = more ? ZMQ_SNDMORE : 0
        while true {
            let rc = frame.withUnsafeBytes { zmq_send(handle, $0.baseAddress, $0.count, flags) }
            if rc >= 0 { return }
            let code = zmq_errno()
            if code == EINTR { continue }
            if code == EHOSTUNREACH, let peer { throw .peerUnreachable(peer: peer, endpoint: endpoint) }
            if code == EAGAIN { throw .sendTimedOut(endpoint: endpoint, timeout: sendTimeout ?? .zero) }
            throw .lastZMQError(operation: "send", endpoint: endpoint, errno: code)
        }
    }

    /// Receives one whole multipart message, or nil when `timeout` passes first (nil waits forever).
    /// For the first `spin` of the wait it polls without blocking, yielding the core between polls,
    /// before it sleeps in `zmq_poll` (see ``DealerSocket/receive(timeout:spin:)``).
    func receive(timeout: Duration?, spin: Duration = .zero) throws(TransportError) -> [[UInt8]]? {
        let started = ContinuousClock.now
        let deadline = timeout.map { started + $0 }
        if spin > .zero {
            let spinUntil = started + min(spin, timeout ?? spin)
            repeat {
                if let frames = try receiveAvailable() { return frames }
                sched_yield()
            } while ContinuousClock.now < spinUntil
        }
        while true {
            let remaining = deadline.map { max(.zero, $0 - ContinuousClock.now) }
            guard try poll(timeout: remaining) else { return nil }
            if let frames = try receiveAvailable() { return frames }
            // Readable but nothing to read (libzmq may report spurious readiness): wait again.
            if let deadline, ContinuousClock.now >= deadline { return nil }
        }
    }

    /// Reads the message that poll said is ready; nil if none is (EAGAIN on the first frame).
    func receiveAvailable() throws(TransportError) -> [[UInt8]]? {
        var frames: [[UInt8]] = []
        while true {
            zmq_msg_init(message)
            let rc = zmq_msg_recv(message, handle, ZMQ_DONTWAIT)
            if rc < 0 {
                let code = zmq_errno()
                zmq_msg_close(message)
                if code == EINTR { continue }
                // Parts of a multipart message arrive together, so EAGAIN is possible only before the first.
                if code == EAGAIN, frames.isEmpty { return nil }
                throw .lastZMQError(operation: "receive", endpoint: endpoint, errno: code)
            }
            // A router's identity frame is its own and carries no metadata: read the peer's frames.
            if frames.isEmpty {
                lastUserID = nil
                lastPeerAddress = nil
            }
            if lastUserID == nil, frames.count <= 1 {
                lastUserID = zmq_msg_gets(message, "User-Id").map { String(cString: $0) }
            }
            if recordsPeerAddress, lastPeerAddress == nil, frames.count <= 1 {
                lastPeerAddress = zmq_msg_gets(message, "Peer-Address").map { String(cString: $0) }
            }
            let size = zmq_msg_size(message)
            let frame: [UInt8] =
                size == 0 ? [] : Array(UnsafeRawBufferPointer(start: zmq_msg_data(message), count: size))
            let more = zmq_msg_more(message) != 0
            zmq_msg_close(message)
            frames.append(frame)
            if !more { return frames }
        }
    }

    /// Waits until a message can be received, up to `timeout` (nil waits forever).
    /// - Returns: true when readable, false when the timeout passed.
    func poll(timeout: Duration?) throws(TransportError) -> Bool {
        let deadline = timeout.map { ContinuousClock.now + $0 }
        while true {
            var item = zmq_pollitem_t(socket: handle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)
            let milliseconds: Int
            if let deadline {
                milliseconds = Self.milliseconds(max(.zero, deadline - ContinuousClock.now))
            } else {
                milliseconds = -1
            }
            let rc = zmq_poll(&item, 1, milliseconds)
            if rc > 0 { return item.revents & Int16(ZMQ_POLLIN) != 0 }
            if rc == 0 { return false }
            let code = zmq_errno()
            if code == EINTR { continue }
            throw .lastZMQError(operation: "poll", endpoint: endpoint, errno: code)
        }
    }

    /// `duration` in whole milliseconds, rounded up so a short positive wait still waits.
    static func milliseconds(_ duration: Duration) -> Int {
        let (seconds, attoseconds) = duration.components
        if seconds >= Int64(Int32.max) / 1000 { return Int(Int32.max) }
        if seconds < 0 { return 0 }
        let perMillisecond: Int64 = 1_000_000_000_000_000
        return Int(seconds * 1000 + (attoseconds + perMillisecond - 1) / perMillisecond)
    }
}
