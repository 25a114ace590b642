import CZeroMQ

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// What a router's owner waits for: a message, a peer's connection closing, or a wake-up.
public enum RouterEvent {
    /// A message from `peer` (at least one frame after the identity).
    case message(peer: PeerIdentity, frames: [[UInt8]])
    /// Some peer's connection closed (libzmq's socket monitor does not say which): probe the
    /// peers you care about with a send, which throws `.peerUnreachable` for one that is gone.
    case peerDisconnected
    /// `WakeSignal.wake()` was called.
    case woken
}

/// A monitor of a router's connections: libzmq reports each closed connection on an inproc PAIR
/// socket, which the router's owner polls together with the router.
final class DisconnectMonitor {
    let socket: ZMQSocket

    init(router: ZMQSocket, context: ZMQContext) throws(TransportError) {
        // Unique per router in the process (several coordinators run in one test process).
        let address = "inproc://switchyard-monitor-\(UInt64.random(in: 1...UInt64.max))"
        let events = ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL
        if zmq_socket_monitor(router.rawHandle, address, events) != 0 {
            throw .lastZMQError(operation: "monitor", endpoint: router.endpoint)
        }
        socket = try ZMQSocket(context: context, type: ZMQ_PAIR, options: SocketOptions(), endpoint: address)
        try socket.connect(address)
    }
}

/// libzmq's socket monitor messages (zmq_socket_monitor(3), 4.x): frame 0 is the event number
/// (16 bits) and its value (32 bits), in native byte order; frame 1 the endpoint.
enum MonitorEvent {
    static func parse(_ frames: [[UInt8]]) -> (event: Int32, value: UInt32)? {
        guard let first = frames.first, first.count >= 6 else { return nil }
        let event = first.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 0, as: UInt16.self) }
        let value = first.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 2, as: UInt32.self) }
        return (Int32(event), value)
    }
}

/// Watches a dealer's handshakes: an inproc PAIR socket that libzmq reports them on.
final class HandshakeMonitor {
    let socket: ZMQSocket
    /// True from a connection's start until its handshake finished or it closed.
    private var handshaking = false

    init(socket dealer: ZMQSocket, context: ZMQContext) throws(TransportError) {
        let address = "inproc://switchyard-handshake-\(UInt64.random(in: 1...UInt64.max))"
        let events =
            ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED
            | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH
        if zmq_socket_monitor(dealer.rawHandle, address, events) != 0 {
            throw .lastZMQError(operation: "monitor", endpoint: dealer.endpoint)
        }
        socket = try ZMQSocket(context: context, type: ZMQ_PAIR, options: SocketOptions(), endpoint: address)
        try socket.connect(address)
    }

    func takeEvents() throws(TransportError) -> [HandshakeEvent] {
        var events: [HandshakeEvent] = []
        while let frames = try socket.receiveAvailable() {
            guard let (event, value) = MonitorEvent.parse(frames) else { continue }
            switch event {
            case ZMQ_EVENT_CONNECTED:
                handshaking = true
            case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
                handshaking = false
                events.append(.succeeded)
            case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
                handshaking = false
                events.append(.refused(status: value))
            case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
                handshaking = false
                events.append(.protocolError(code: value))
            case ZMQ_EVENT_DISCONNECTED:
                // Closed by the router in the middle of the handshake: the one sign of a wrong server key.
                if handshaking { events.append(.closedDuringHandshake) }
                handshaking = false
            default:
                continue
            }
        }
        return events
    }
}

extension RouterSocket {
    /// Starts reporting closed connections as `.peerDisconnected` from ``receiveEvent(timeout:wakeSignal:)``.
    /// - Throws: `TransportError.zmq` when libzmq cannot monitor the socket.
    public func enableDisconnectEvents() throws(TransportError) {
        guard monitor == nil else { return }
        monitor = try DisconnectMonitor(router: socket, context: context)
    }

    /// Waits up to `timeout` (nil: forever) for a message, a closed connection (once
    /// ``enableDisconnectEvents()`` was called) or a wake-up, whichever comes first; a message
    /// already queued is returned without waiting. (A step's wait for replies uses
    /// ``receive(timeout:)``, which reads messages only.)
    /// - Returns: nil when the timeout passed with nothing to report.
    public func receiveEvent(timeout: Duration?, wakeSignal: WakeSignal? = nil) throws(TransportError) -> RouterEvent? {
        let deadline = timeout.map { ContinuousClock.now + $0 }
        if let event = try takeAvailable() { return event }
        if timeout == .zero { return nil }
        while true {
            if let event = try takeAvailable() { return event }
            var items = [zmq_pollitem_t(socket: socket.rawHandle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0)]
            if let monitor {
                items.append(zmq_pollitem_t(socket: monitor.socket.rawHandle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0))
            }
            if let wakeSignal {
                items.append(zmq_pollitem_t(socket: nil, fd: wakeSignal.pollDescriptor, events: Int16(ZMQ_POLLIN), revents: 0))
            }
            let milliseconds = deadline.map { ZMQSocket.milliseconds(max(.zero, $0 - ContinuousClock.now)) } ?? -1
            let rc = zmq_poll(&items, Int32(items.count), milliseconds)
            if rc < 0 {
                let code = zmq_errno()
                if code == EINTR { continue }
                throw .lastZMQError(operation: "poll", endpoint: socket.endpoint, errno: code)
            }
            if rc == 0 { return nil }
            if let event = try takeAvailable() { return event }
            if let wakeSignal, items.last!.revents & Int16(ZMQ_POLLIN) != 0 {
                wakeSignal.drain()
                return .woken
            }
            if let deadline, ContinuousClock.now >= deadline { return nil }
        }
    }

    /// A queued monitor event or message, without waiting (non-blocking reads, no poll).
    private func takeAvailable() throws(TransportError) -> RouterEvent? {
        if let monitor {
            var disconnected = false
            // Drain every queued event: one probe covers every closed connection.
            while let frames = try monitor.socket.receiveAvailable() {
                guard let (event, value) = MonitorEvent.parse(frames) else { continue }
                if event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL {
                    onHandshakeFailure?(HandshakeFailure(protocolError: value))
                } else if event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL {
                    // Which side saw the failure first is a race: when the peer hung up first, this
                    // is all the router learns.
                    onHandshakeFailure?(.closedDuringHandshake(errno: value))
                } else {
                    disconnected = true
                }
            }
            if disconnected { return .peerDisconnected }
        }
        while let frames = try socket.receiveAvailable() {
            // A router always prepends the identity; a message with nothing after it is ignored.
            guard frames.count >= 2 else { continue }
            return .message(peer: PeerIdentity(frames[0]), frames: Array(frames.dropFirst()))
        }
        return nil
    }
}

extension WakeSignal {
    /// Sleeps until woken or until `timeout` passes (nil: forever); consumes pending wake-ups.
    /// - Returns: true when woken.
    @discardableResult
    public func wait(timeout: Duration?) -> Bool {
        var item = pollfd(fd: pollDescriptor, events: Int16(POLLIN), revents: 0)
        let milliseconds = timeout.map { Int32(clamping: ZMQSocket.milliseconds($0)) } ?? -1
        while true {
            let rc = poll(&item, 1, milliseconds)
            if rc < 0, errno == EINTR { continue }
            if rc > 0 {
                drain()
                return true
            }
            return false
        }
    }
}
