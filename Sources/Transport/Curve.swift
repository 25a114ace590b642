// CurveZMQ: encryption and authentication of the links between coordinator, workers and clients.
//
// Vocabulary:
// - key: a Curve25519 key, 32 bytes, written as 40 characters of Z85 (ZeroMQ's base-85 text).
// - key pair: a public key and its secret key. The coordinator has one (the server's); every
//   worker and client has one of its own, and knows the server's public key.
// - allow-list: the public keys the coordinator accepts, each with a name for the logs.
// - ZAP: the ZeroMQ Authentication Protocol (RFC 27): libzmq asks a handler bound to
//   `inproc://zeromq.zap.01` in the socket's context whether a peer that completed the CURVE
//   handshake may connect. Without a handler libzmq accepts every key, so the router starts one
//   before it binds, and a refused peer never gets a message through.
import CZeroMQ
import Dispatch
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A Curve25519 key (public or secret), 32 bytes.
public struct CurveKey: Hashable, Sendable {
    /// The key's 32 bytes.
    public let bytes: [UInt8]

    /// A key from its 32 bytes.
    public init(bytes: [UInt8]) {
        precondition(bytes.count == 32, "CurveKey: \(bytes.count) bytes, but a key is 32")
        self.bytes = bytes
    }

    /// A key from its 40-character Z85 text (surrounding whitespace ignored).
    /// - Throws: `CurveKeyError` saying what is wrong with the text.
    public init(z85 text: String) throws(CurveKeyError) {
        let trimmed = text.trimmingWhitespace
        guard trimmed.utf8.count == 40 else {
            throw CurveKeyError("a Z85 key is 40 characters, but this one has \(trimmed.utf8.count)")
        }
        var bytes = [UInt8](repeating: 0, count: 32)
        guard zmq_z85_decode(&bytes, trimmed) != nil else {
            throw CurveKeyError("\"\(trimmed)\" is not Z85 text (ZeroMQ's base-85 alphabet)")
        }
        self.bytes = bytes
    }

    /// The key as 40 characters of Z85.
    public var z85: String {
        var text = [CChar](repeating: 0, count: 41)
        _ = zmq_z85_encode(&text, bytes, bytes.count)
        return String(decoding: text.prefix(40).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}

/// A key that cannot be read, or that libzmq cannot make.
public struct CurveKeyError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// A public key with its secret key.
public struct CurveKeyPair: Sendable {
    public let publicKey: CurveKey
    public let secretKey: CurveKey

    /// A fresh random key pair (libsodium's generator, through libzmq).
    /// - Throws: `CurveKeyError` when libzmq was built without CURVE.
    public static func generate() throws(CurveKeyError) -> CurveKeyPair {
        var publicText = [CChar](repeating: 0, count: 41)
        var secretText = [CChar](repeating: 0, count: 41)
        guard zmq_curve_keypair(&publicText, &secretText) == 0 else {
            throw CurveKeyError("libzmq \(ZMQContext.libraryVersion) cannot make CURVE keys (built without libsodium?)")
        }
        return CurveKeyPair(publicKey: try CurveKey(z85: text(publicText)), secretKey: try CurveKey(z85: text(secretText)))
    }

    /// The text of a NUL-terminated buffer libzmq filled.
    private static func text(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    private init(publicKey: CurveKey, secretKey: CurveKey) {
        self.publicKey = publicKey
        self.secretKey = secretKey
    }

    /// The pair of `secretKey`: its public key is derived from it.
    /// - Throws: `CurveKeyError` when libzmq cannot derive it.
    public init(secretKey: CurveKey) throws(CurveKeyError) {
        var publicText = [CChar](repeating: 0, count: 41)
        guard zmq_curve_public(&publicText, secretKey.z85) == 0 else {
            throw CurveKeyError("libzmq \(ZMQContext.libraryVersion) cannot derive a CURVE public key (built without libsodium?)")
        }
        self.publicKey = try CurveKey(z85: Self.text(publicText))
        self.secretKey = secretKey
    }
}

/// One decision of the coordinator's ZAP handler: a peer that completed the CURVE handshake was
/// let in (its key is on the allow-list) or refused.
public struct CurveAuthentication: Sendable {
    /// The peer's public key.
    public let key: CurveKey
    /// The key's name on the allow-list; nil when it is not listed (and so refused).
    public let name: String?
    /// The peer's network address as libzmq reports it (an IP address for tcp).
    public let address: String
    public var accepted: Bool { name != nil }
}

/// A CURVE server's keys: its own pair and the public keys it accepts, each with a name for the logs.
public struct CurveServerKeys: Sendable {
    public var server: CurveKeyPair
    /// Accepted public keys → their names (a key file's name, or a name given in an allow-list file).
    public var allowed: [CurveKey: String]

    public init(server: CurveKeyPair, allowed: [CurveKey: String]) {
        self.server = server
        self.allowed = allowed
    }
}

/// How a router authenticates the peers that connect to it.
public enum RouterSecurity: Sendable {
    /// No encryption, no authentication: anyone who reaches the port may talk to it.
    case plaintext
    /// CurveZMQ with `server` as the router's key pair; only keys in `allowed` (key → name) may
    /// connect. `onAuthentication` is told of every decision, on the ZAP handler's thread, before the peer learns it.
    case curve(server: CurveKeyPair, allowed: [CurveKey: String], onAuthentication: @Sendable (CurveAuthentication) -> Void)
}

/// How a dealer proves itself to the router it connects to.
public enum DealerSecurity: Sendable {
    /// No encryption: works only with a plaintext router.
    case plaintext
    /// CurveZMQ with the dealer's own key pair, trusting only a router that holds `serverKey`'s secret.
    case curve(client: CurveKeyPair, serverKey: CurveKey)
}

/// The coordinator's ZAP handler: a thread that answers libzmq's authentication requests for every
/// CURVE socket of one context from an allow-list.
///
/// RFC 27 (ZAP) is a small request/reply protocol that no Swift package implements, hence this code.
/// The REP socket lives on the handler's own thread and nowhere else.
final class ZAPHandler: Sendable {
    static let endpoint = "inproc://zeromq.zap.01"

    /// What the handler's thread and its owner share.
    private final class Control: Sendable {
        let stopRequested = Atomic<Bool>(false)
        let bound = Mutex<Result<Void, TransportError>?>(nil)
        let boundSignal = DispatchSemaphore(value: 0)
        let finished = DispatchSemaphore(value: 0)
        let wakeSignal: WakeSignal
        init() throws(TransportError) { wakeSignal = try WakeSignal() }
    }

    private let control: Control

    /// Binds the handler in `context` and starts answering; returns once it is bound.
    /// - Throws: `TransportError` when the ZAP endpoint cannot be bound (another handler in the context).
    init(
        context: ZMQContext, allowed: [CurveKey: String], onAuthentication: @escaping @Sendable (CurveAuthentication) -> Void
    ) throws(TransportError) {
        let control = try Control()
        self.control = control
        let thread = Thread {
            defer { control.finished.signal() }
            let socket: ZMQSocket
            do throws(TransportError) {
                socket = try ZMQSocket(context: context, type: ZMQ_REP, options: SocketOptions(), endpoint: Self.endpoint)
                try socket.bind(Self.endpoint)
                control.bound.withLock { $0 = .success(()) }
                control.boundSignal.signal()
            } catch {
                control.bound.withLock { $0 = .failure(error) }
                control.boundSignal.signal()
                return
            }
            while !control.stopRequested.load(ordering: .relaxed) {
                var items = [
                    zmq_pollitem_t(socket: socket.rawHandle, fd: 0, events: Int16(ZMQ_POLLIN), revents: 0),
                    zmq_pollitem_t(socket: nil, fd: control.wakeSignal.pollDescriptor, events: Int16(ZMQ_POLLIN), revents: 0),
                ]
                if zmq_poll(&items, 2, 1000) < 0, zmq_errno() != EINTR { return }
                guard let request = try? socket.receiveAvailable() else { continue }
                let (reply, decision) = Self.answer(request, allowed: allowed)
                // Told before the reply, which completes the peer's handshake: so the decision is known (and
                // logged) before any message of that peer arrives. (Told after it, a loaded host let a peer's
                // first message and its answer go both ways first: a CurveTransportTests failure in CI.)
                if let decision { onAuthentication(decision) }
                // A REP socket must answer before it can receive again; a failed send drops only this request.
                try? socket.send(prefix: nil, frames: reply)
            }
        }
        thread.name = "switchyard-zap"
        thread.start()
        control.boundSignal.wait()
        if case .failure(let error) = control.bound.withLock({ $0 }) { throw error }
    }

    /// Stops the thread (it closes its socket) and waits until it has.
    func stop() {
        control.stopRequested.store(true, ordering: .relaxed)
        control.wakeSignal.wake()
        control.finished.wait()
    }

    /// The reply to one ZAP request, and the decision to report (nil for a malformed request).
    ///
    /// Request frames (RFC 27): version "1.0", request id, domain, address, identity, mechanism,
    /// credentials (for CURVE: the client's 32-byte public key). Reply: version, request id,
    /// status code, status text, user id, metadata.
    static func answer(_ request: [[UInt8]], allowed: [CurveKey: String]) -> ([[UInt8]], CurveAuthentication?) {
        let version = Array("1.0".utf8)
        let requestID = request.count > 1 ? request[1] : []
        func reply(_ code: String, _ text: String, user: String = "") -> [[UInt8]] {
            [version, requestID, Array(code.utf8), Array(text.utf8), Array(user.utf8), []]
        }
        guard request.count >= 7, request[0] == version else { return (reply("500", "malformed ZAP request"), nil) }
        let address = String(decoding: request[3], as: UTF8.self)
        guard request[5] == Array("CURVE".utf8), request[6].count == 32 else {
            return (reply("400", "only CURVE peers are accepted"), nil)
        }
        let key = CurveKey(bytes: request[6])
        let name = allowed[key]
        let decision = CurveAuthentication(key: key, name: name, address: address)
        if let name { return (reply("200", "OK", user: name), decision) }
        return (reply("400", "key not on the allow-list"), decision)
    }
}

/// What a dealer's monitor saw of its CURVE (or plaintext) handshakes with the router.
public enum HandshakeEvent: Sendable, Equatable {
    /// The handshake completed: the router accepted this peer.
    case succeeded
    /// The router refused this peer's key (ZAP status, e.g. 400).
    case refused(status: UInt32)
    /// The two sides do not speak the same mechanism (one CURVE, the other plaintext) or sent a
    /// malformed handshake; `code` is libzmq's `ZMQ_PROTOCOL_ERROR_*`.
    case protocolError(code: UInt32)
    /// The connection closed before the handshake completed (a router that cannot decrypt our
    /// HELLO because we hold the wrong server key closes it without a word).
    case closedDuringHandshake
}

extension String {
    var trimmingWhitespace: String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
            let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })
        else { return "" }
        return String(scalars[first...last])
    }
}

/// Reads a dealer's handshake events and says when to give up: libzmq retries a failed handshake
/// for ever, so without this a worker or client in the wrong mode would wait in silence.
public struct HandshakeWatch: Sendable {
    /// Why the handshakes fail.
    public enum Problem: Sendable, Equatable {
        /// The router refused our key: it is not on the coordinator's allow-list.
        case keyRefused
        /// We speak plaintext; the router expects CURVE.
        case routerExpectsCurve
        /// We speak CURVE; the router speaks plaintext (or the handshake is garbled).
        case routerIsPlaintext
        /// The router closed every connection during the handshake: we hold the wrong server key.
        case wrongServerKey
    }

    /// Connections closed in the middle of a handshake in a row before giving up on them.
    static let closedLimit = 3
    private let secure: Bool
    private var closedInARow = 0

    /// A watch for a dealer with CURVE (`secure`) or plaintext.
    public init(secure: Bool) { self.secure = secure }

    /// The problem `events` show, or nil while nothing says the handshake cannot succeed.
    public mutating func problem(after events: [HandshakeEvent]) -> Problem? {
        for event in events {
            switch event {
            case .succeeded: closedInARow = 0
            case .refused: return .keyRefused
            case .protocolError: return secure ? .routerIsPlaintext : .routerExpectsCurve
            case .closedDuringHandshake:
                closedInARow += 1
                if closedInARow >= Self.closedLimit { return secure ? .wrongServerKey : .routerExpectsCurve }
            }
        }
        return nil
    }

    /// The problem behind `error` from a send on `dealer`, or nil when there is none to tell.
    ///
    /// After a protocol error (plaintext against CURVE) libzmq ends the connection for good, so a
    /// later send waits for a router that never comes and times out. Under load the send can come
    /// before the caller has read the failed handshake. Then the timeout says "the peer is not
    /// reading", and the monitor's events say why.
    public mutating func problem(behind error: any Error, on dealer: DealerSocket) -> Problem? {
        guard case .sendTimedOut? = error as? TransportError, let events = try? dealer.handshakeEvents() else { return nil }
        return problem(after: events)
    }
}

extension HandshakeWatch.Problem {
    /// What went wrong with the coordinator at `endpoint`, and how to fix it.
    public func explanation(endpoint: String) -> String {
        let make =
            "make a key pair with `switchyard keys generate --out DIR --name NAME`, add DIR/NAME.pub to the coordinator's --allow-keys, "
            + "and pass --key DIR/NAME.key --coordinator-key COORDINATOR.pub"
        switch self {
        case .keyRefused:
            return "the coordinator at \(endpoint) refused this key: its public key is not on the coordinator's --allow-keys list (add the .pub file there and restart the coordinator)"
        case .routerExpectsCurve:
            return "the coordinator at \(endpoint) requires CURVE encryption and authentication, but this process runs --insecure: \(make)"
        case .routerIsPlaintext:
            return "the coordinator at \(endpoint) speaks plaintext (it was started with --insecure), but this process uses CURVE keys: start both with keys, or both with --insecure"
        case .wrongServerKey:
            return "the coordinator at \(endpoint) closed the connection during the CURVE handshake \(HandshakeWatch.closedLimit) times: --coordinator-key is not the public key of that coordinator's --key"
        }
    }
}

/// Why a peer failed the handshake with a router, from libzmq's protocol error code.
public enum HandshakeFailure: Sendable, Equatable, CustomStringConvertible {
    /// One side speaks CURVE, the other plaintext.
    case mechanismMismatch
    /// A CURVE peer's HELLO did not decrypt: it holds another server key (or is garbage).
    case cryptographic
    /// Another protocol error (libzmq's `ZMQ_PROTOCOL_ERROR_*` code).
    case other(code: UInt32)
    /// The connection closed before the handshake completed (libzmq's "no detail" failure, with the
    /// errno): what the router sees when the peer noticed the mismatch first and hung up.
    case closedDuringHandshake(errno: UInt32)

    init(protocolError code: UInt32) {
        switch Int32(bitPattern: code) {
        case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH: self = .mechanismMismatch
        case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC: self = .cryptographic
        default: self = .other(code: code)
        }
    }

    public var description: String {
        switch self {
        case .mechanismMismatch: "it speaks plaintext where CURVE is expected, or the reverse (--insecure on one side only)"
        case .cryptographic: "its CURVE handshake did not decrypt: it holds another coordinator public key"
        case .other(let code): "libzmq protocol error 0x\(String(code, radix: 16))"
        case .closedDuringHandshake(let code):
            "it closed the connection during the handshake (errno \(code)): a plaintext peer, or a CURVE peer holding another coordinator public key, hangs up this way"
        }
    }
}
