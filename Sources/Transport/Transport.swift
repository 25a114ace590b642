// Transport: ZeroMQ sockets that move multipart messages of raw bytes.
//
// Vocabulary:
// - context: the libzmq context (I/O threads); one per process, thread-safe, `Sendable`.
// - router: the coordinator's bound socket; every message it receives starts with the sending
//   peer's identity, and every message it sends is addressed to one peer.
// - dealer: a worker's (or client's) connecting socket, with a chosen identity.
// - frame: one part of a multipart message, `[UInt8]`.
// - peer identity: the routing id a dealer set (1–255 bytes, not starting with a zero byte).
//
// Sockets are not thread-safe: `RouterSocket` and `DealerSocket` are not `Sendable`, so each is
// confined to the thread (or actor) that owns it; other code hands messages to that owner.
// Calls are synchronous; every wait takes a timeout. This target knows bytes only (no Wire types)
// and is the only importer of libzmq.
import CZeroMQ

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A libzmq context: owns the I/O threads that every socket of the process uses.
///
/// `@unchecked Sendable`: libzmq documents contexts as thread-safe (zmq_ctx_new(3)); the handle
/// is immutable after init and is terminated only in `deinit`, after every socket (each holds a
/// strong reference to its context) has been closed.
public final class ZMQContext: @unchecked Sendable {
    let handle: UnsafeMutableRawPointer

    /// Creates a context with `ioThreads` I/O threads (≥ 1).
    /// - Throws: `TransportError.zmq` when libzmq cannot create it.
    public init(ioThreads: Int = 1) throws(TransportError) {
        precondition(ioThreads >= 1, "ZMQContext: ioThreads is \(ioThreads), but must be at least 1")
        guard let handle = zmq_ctx_new() else {
            throw .lastZMQError(operation: "create context", endpoint: "")
        }
        self.handle = handle
        if zmq_ctx_set(handle, ZMQ_IO_THREADS, Int32(clamping: ioThreads)) != 0 {
            let error = TransportError.lastZMQError(operation: "set ZMQ_IO_THREADS", endpoint: "")
            zmq_ctx_term(handle)
            throw error
        }
    }

    deinit {
        // Blocks until all sockets are closed; they are (each retains this context), and they
        // use linger 0, so it returns promptly. Retry if a signal interrupts it.
        while zmq_ctx_term(handle) != 0, zmq_errno() == EINTR {}
    }

    /// The libzmq version linked at run time, e.g. `4.3.4`.
    public static var libraryVersion: String {
        var major: Int32 = 0
        var minor: Int32 = 0
        var patch: Int32 = 0
        zmq_version(&major, &minor, &patch)
        return "\(major).\(minor).\(patch)"
    }
}

/// The routing identity of a dealer, as a router sees it.
public struct PeerIdentity: Hashable, Sendable, CustomStringConvertible {
    /// The identity bytes (1–255 for an identity a dealer set; libzmq generates 5 bytes starting
    /// with 0 for peers that set none).
    public let bytes: [UInt8]

    /// An identity from raw bytes.
    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    /// An identity from the UTF-8 bytes of `string`.
    public init(_ string: String) { self.bytes = Array(string.utf8) }

    /// The identity as text when it is printable ASCII, else as `0x…` hex.
    public var description: String {
        if !bytes.isEmpty, bytes.allSatisfy({ (0x20...0x7E).contains($0) }) {
            return String(decoding: bytes, as: UTF8.self)
        }
        return "0x" + bytes.map { byte in
            let hex = String(byte, radix: 16)
            return byte < 16 ? "0" + hex : hex
        }.joined()
    }
}

/// Options applied to a socket when it is created.
public struct SocketOptions: Sendable {
    /// Largest incoming frame accepted, in bytes (`ZMQ_MAXMSGSIZE`); a peer that sends a larger
    /// one is disconnected and the message dropped. Default 256 MiB.
    public var maxMessageBytes: Int
    /// How long `send` may block when the peer's queue is full (`ZMQ_SNDTIMEO`); nil blocks
    /// forever. Default 10 s.
    public var sendTimeout: Duration?
    /// Queued outgoing messages per peer before `send` blocks (`ZMQ_SNDHWM`); nil keeps libzmq's 1000.
    public var sendHighWaterMark: Int?
    /// Queued incoming messages per peer before libzmq stops reading (`ZMQ_RCVHWM`); nil keeps 1000.
    public var receiveHighWaterMark: Int?

    /// Creates options; every parameter has the documented default.
    public init(
        maxMessageBytes: Int = 256 << 20, sendTimeout: Duration? = .seconds(10), sendHighWaterMark: Int? = nil,
        receiveHighWaterMark: Int? = nil
    ) {
        self.maxMessageBytes = maxMessageBytes
        self.sendTimeout = sendTimeout
        self.sendHighWaterMark = sendHighWaterMark
        self.receiveHighWaterMark = receiveHighWaterMark
    }
}

/// A transport failure, with the endpoint and the operating-system reason.
public enum TransportError: Error, Sendable, Equatable, CustomStringConvertible {
    /// A libzmq call failed: `operation` on `endpoint`, with `errno` and its text.
    case zmq(operation: String, endpoint: String, errno: Int32, message: String)
    /// A router send named a peer that is not (or no longer) connected (`ZMQ_ROUTER_MANDATORY`).
    case peerUnreachable(peer: PeerIdentity, endpoint: String)
    /// `send` blocked longer than `SocketOptions.sendTimeout` because the peer's queue was full.
    case sendTimedOut(endpoint: String, timeout: Duration)
    /// A dealer identity that libzmq would refuse.
    case invalidIdentity(PeerIdentity, reason: String)

    /// One line: what failed, where, and why.
    public var description: String {
        switch self {
        case .zmq(let operation, let endpoint, let errno, let message):
            let place = endpoint.isEmpty ? "" : " on \(endpoint)"
            return "ZeroMQ \(operation)\(place) failed: \(message) (errno \(errno))"
        case .peerUnreachable(let peer, let endpoint):
            return "peer \(peer) is not connected to \(endpoint), so the message cannot be routed to it"
        case .sendTimedOut(let endpoint, let timeout):
            return "send on \(endpoint) timed out after \(timeout): the peer is not reading"
        case .invalidIdentity(let identity, let reason):
            return "identity \(identity) is invalid: \(reason)"
        }
    }

    /// The error of the libzmq call that just failed.
    static func lastZMQError(operation: String, endpoint: String, errno code: Int32 = zmq_errno()) -> TransportError {
        .zmq(operation: operation, endpoint: endpoint, errno: code, message: String(cString: zmq_strerror(code)))
    }
}
