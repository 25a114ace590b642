import CZeroMQ

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Wakes the thread that owns a socket out of `poll(timeout:wakeSignal:)`, from any thread.
///
/// The socket-owner pattern: other threads put messages in an outbox and call `wake()`; the owner
/// polls its socket and this signal together, so it sleeps until either a message arrives or there
/// is something to send, without busy-polling. Wakes coalesce: several `wake()`s before the owner
/// polls produce one wake-up.
///
/// `@unchecked Sendable`: the two pipe descriptors are immutable after init and closed only in
/// `deinit`; `wake()` is a non-blocking write(2), which is safe from any thread. Only the owner
/// polls (and so drains) the signal.
public final class WakeSignal: @unchecked Sendable {
    private let readEnd: Int32
    private let writeEnd: Int32

    /// Creates a signal (a non-blocking pipe).
    /// - Throws: `TransportError.zmq` with the system's reason when no pipe can be created.
    public init() throws(TransportError) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else {
            throw .lastZMQError(operation: "create wake-up pipe", endpoint: "", errno: errno)
        }
        for fd in fds {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        }
        readEnd = fds[0]
        writeEnd = fds[1]
    }

    deinit {
        close(readEnd)
        close(writeEnd)
    }

    /// Wakes the owner's next or current `poll`. Never blocks; callable from any thread.
    public func wake() {
        var byte: UInt8 = 1
        // EAGAIN means the pipe is full of pending wake-ups already: one is enough.
        while write(writeEnd, &byte, 1) < 0, errno == EINTR {}
    }

    /// The descriptor `zmq_poll` watches.
    var pollDescriptor: Int32 { readEnd }

    /// Consumes all pending wake-ups.
    func drain() {
        var buffer = [UInt8](repeating: 0, count: 64)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(readEnd, $0.baseAddress, $0.count) }
            if count > 0 { continue }
            if count < 0, errno == EINTR { continue }
            return  // 0 (cannot happen while writeEnd is open) or EAGAIN: drained.
        }
    }
}

/// What ended a `poll(timeout:wakeSignal:)`: empty when the timeout passed.
public struct PollEvents: OptionSet, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// A message can be received from the socket.
    public static let readable = PollEvents(rawValue: 1 << 0)
    /// `WakeSignal.wake()` was called (pending wake-ups have been consumed).
    public static let woken = PollEvents(rawValue: 1 << 1)
}

extension ZMQSocket {
    /// Waits until the socket is readable or `signal` is woken, up to `timeout` (nil waits forever).
    func poll(timeout: Duration?, wakeSignal signal: WakeSignal) throws(TransportError) -> PollEvents {
        let deadline = timeout.map { ContinuousClock.now + $0 }
        while true {
            var items = [
                zmq_pollitem_t(socket: rawHandle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0),
                zmq_pollitem_t(socket: nil, fd: signal.pollDescriptor, events: Int16(ZMQ_POLLIN), revents: 0),
            ]
            let milliseconds = deadline.map { Self.milliseconds(max(.zero, $0 - ContinuousClock.now)) } ?? -1
            let rc = zmq_poll(&items, 2, milliseconds)
            if rc < 0 {
                let code = zmq_errno()
                if code == EINTR { continue }
                throw .lastZMQError(operation: "poll", endpoint: endpoint, errno: code)
            }
            var events: PollEvents = []
            if items[0].revents & Int16(ZMQ_POLLIN) != 0 { events.insert(.readable) }
            if items[1].revents & Int16(ZMQ_POLLIN) != 0 {
                signal.drain()
                events.insert(.woken)
            }
            return events
        }
    }
}

extension RouterSocket {
    /// Waits until a message can be received or `wakeSignal` is woken, up to `timeout` (nil waits
    /// forever). Call only from the socket's owning thread.
    /// - Returns: what happened; empty when the timeout passed.
    public func poll(timeout: Duration?, wakeSignal: WakeSignal) throws(TransportError) -> PollEvents {
        try socket.poll(timeout: timeout, wakeSignal: wakeSignal)
    }
}

extension DealerSocket {
    /// Waits until a message can be received or `wakeSignal` is woken, up to `timeout` (nil waits
    /// forever). Call only from the socket's owning thread.
    /// - Returns: what happened; empty when the timeout passed.
    public func poll(timeout: Duration?, wakeSignal: WakeSignal) throws(TransportError) -> PollEvents {
        try socket.poll(timeout: timeout, wakeSignal: wakeSignal)
    }
}
