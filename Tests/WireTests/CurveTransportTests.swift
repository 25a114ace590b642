import Foundation
import Synchronization
import Testing
import Transport

/// A list that closures on other threads append to.
private final class Recorded<Element: Sendable>: Sendable {
    private let items = Mutex<[Element]>([])
    func append(_ item: Element) { items.withLock { $0.append(item) } }
    var all: [Element] { items.withLock { $0 } }
}

/// A router with CURVE and an allow-list, on an ephemeral port of 127.0.0.1, that records the
/// ZAP handler's decisions.
private final class CurveRouter {
    let server: CurveKeyPair
    let router: RouterSocket
    let context: ZMQContext
    private let decisions = Recorded<CurveAuthentication>()

    init(allowed: [CurveKey: String]) throws {
        server = try CurveKeyPair.generate()
        context = try ZMQContext()
        let decisions = self.decisions
        router = try RouterSocket(
            context: context, bind: "tcp://127.0.0.1:0",
            security: .curve(
                server: server, allowed: allowed,
                onAuthentication: { decision in decisions.append(decision) }))
    }

    var seen: [CurveAuthentication] { decisions.all }

    /// Starts recording the router's failed handshakes (with disconnect events on, which report them).
    func recordFailures() throws -> Recorded<HandshakeFailure> {
        let failures = Recorded<HandshakeFailure>()
        router.onHandshakeFailure = { failure in failures.append(failure) }
        try router.enableDisconnectEvents()
        return failures
    }

    /// Polls the router until `failures` holds one, or until `deadline`; returns the first.
    func firstFailure(_ failures: Recorded<HandshakeFailure>, before deadline: ContinuousClock.Instant) throws -> HandshakeFailure? {
        while failures.all.isEmpty && ContinuousClock.now < deadline {
            _ = try router.receiveEvent(timeout: .milliseconds(10))
        }
        return failures.all.first
    }
}

/// The first handshake event of `dealer`, waiting (bounded) for one; `router` is polled meanwhile.
private func firstHandshakeEvent(_ dealer: DealerSocket, router: RouterSocket) throws -> HandshakeEvent? {
    let deadline = ContinuousClock.now + .seconds(30)
    while ContinuousClock.now < deadline {
        if let event = try dealer.handshakeEvents().first { return event }
        _ = try router.receiveEvent(timeout: .milliseconds(10))
    }
    return nil
}

@Suite("CurveZMQ on the transport")
struct CurveTransportTests {
    @Test("a key survives Z85 text both ways, and the public key derives from the secret one")
    func keys() throws {
        let pair = try CurveKeyPair.generate()
        #expect(pair.publicKey.z85.count == 40)
        #expect(try CurveKey(z85: pair.publicKey.z85) == pair.publicKey)
        #expect(try CurveKey(z85: " \(pair.secretKey.z85)\n") == pair.secretKey)
        #expect(try CurveKeyPair(secretKey: pair.secretKey).publicKey == pair.publicKey)
        #expect(throws: CurveKeyError.self) { try CurveKey(z85: "too short") }
        #expect(throws: CurveKeyError.self) { try CurveKey(z85: String(repeating: "~", count: 40)) }
    }

    @Test("an allowed key completes the handshake and its messages go both ways; the decision names the key")
    func allowedKey() throws {
        let client = try CurveKeyPair.generate()
        let curve = try CurveRouter(allowed: [client.publicKey: "w0"])
        let dealer = try DealerSocket(
            context: curve.context, connect: curve.router.boundEndpoint, identity: PeerIdentity("w0"),
            security: .curve(client: client, serverKey: curve.server.publicKey))
        try dealer.send(frames: [Array("hello".utf8)])
        let received = try #require(try curve.router.receive(timeout: .seconds(30)))
        #expect(received.frames == [Array("hello".utf8)])
        try curve.router.send(to: received.peer, frames: [Array("welcome".utf8)])
        #expect(try dealer.receive(timeout: .seconds(30)) == [Array("welcome".utf8)])
        #expect(try dealer.handshakeEvents().contains(.succeeded))
        #expect(curve.seen.map(\.name) == ["w0"])
        #expect(curve.seen.first?.key == client.publicKey)
        #expect(curve.seen.first?.address == "127.0.0.1")
    }

    @Test("an unlisted key is refused (ZAP 400): the router gets no message and the dealer none back")
    func unlistedKey() throws {
        let curve = try CurveRouter(allowed: [try CurveKeyPair.generate().publicKey: "someone-else"])
        let intruder = try CurveKeyPair.generate()
        let dealer = try DealerSocket(
            context: curve.context, connect: curve.router.boundEndpoint, identity: PeerIdentity("w0"),
            security: .curve(client: intruder, serverKey: curve.server.publicKey))
        try dealer.send(frames: [Array("hello".utf8)])
        #expect(try firstHandshakeEvent(dealer, router: curve.router) == .refused(status: 400))
        #expect(try curve.router.receive(timeout: .zero) == nil)
        #expect(try dealer.receive(timeout: .zero) == nil)
        #expect(curve.seen.map(\.accepted) == [false])
        #expect(curve.seen.first?.key == intruder.publicKey)
    }

    @Test("a plaintext dealer fails the handshake on both sides and gets nothing through")
    func plaintextDealer() throws {
        let curve = try CurveRouter(allowed: [try CurveKeyPair.generate().publicKey: "w0"])
        let failures = try curve.recordFailures()
        let dealer = try DealerSocket(context: curve.context, connect: curve.router.boundEndpoint, identity: PeerIdentity("w0"))
        try dealer.send(frames: [Array("hello".utf8)])
        guard case .protocolError = try firstHandshakeEvent(dealer, router: curve.router) else {
            Issue.record("expected a protocol error")
            return
        }
        // The router sees the mismatch, or (when the dealer hung up first) a handshake closed early.
        switch try curve.firstFailure(failures, before: .now + .seconds(30)) {
        case .mechanismMismatch?, .closedDuringHandshake?: break
        case let other: Issue.record("expected a mechanism mismatch or a closed handshake, got \(String(describing: other))")
        }
        #expect(try curve.router.receive(timeout: .zero) == nil)
        var watch = HandshakeWatch(secure: false)
        #expect(watch.problem(after: [.protocolError(code: 0)]) == .routerExpectsCurve)
    }

    @Test("a plaintext dealer's sends time out once the handshake failed, and the watch names the cause behind the timeout")
    func sendAfterFailedHandshake() throws {
        let curve = try CurveRouter(allowed: [try CurveKeyPair.generate().publicKey: "w0"])
        let failures = try curve.recordFailures()
        // A queue of 16 messages: a send times out when the queue is full or when libzmq ended the
        // connection after the protocol error (whichever side noticed the mismatch first).
        let dealer = try DealerSocket(
            context: curve.context, connect: curve.router.boundEndpoint, identity: PeerIdentity("w0"),
            options: SocketOptions(sendTimeout: .milliseconds(200), sendHighWaterMark: 16))
        try dealer.send(frames: [Array("hello".utf8)])
        let deadline = ContinuousClock.now + .seconds(60)
        #expect(try curve.firstFailure(failures, before: deadline) != nil, "the router saw no failed handshake")
        var failure: (any Error)?
        while failure == nil && ContinuousClock.now < deadline {
            do { try dealer.send(frames: [Array("hello".utf8)]) } catch { failure = error }
            _ = try curve.router.receiveEvent(timeout: .milliseconds(100))
        }
        let error = try #require(failure)
        guard case .sendTimedOut? = error as? TransportError else {
            Issue.record("expected the send to time out, got \(error)")
            return
        }
        var watch = HandshakeWatch(secure: false)
        #expect(watch.problem(behind: error, on: dealer) == .routerExpectsCurve)
        // Another error is not the handshake's doing.
        var other = HandshakeWatch(secure: false)
        let unreachable = TransportError.peerUnreachable(peer: PeerIdentity("w0"), endpoint: curve.router.boundEndpoint)
        #expect(other.problem(behind: unreachable, on: dealer) == nil)
        #expect(try curve.router.receive(timeout: .zero) == nil)
    }

    @Test("a dealer holding another server key has its connections closed during the handshake, and the watch gives up after three")
    func wrongServerKey() throws {
        let client = try CurveKeyPair.generate()
        let curve = try CurveRouter(allowed: [client.publicKey: "w0"])
        let dealer = try DealerSocket(
            context: curve.context, connect: curve.router.boundEndpoint, identity: PeerIdentity("w0"),
            security: .curve(client: client, serverKey: try CurveKeyPair.generate().publicKey))
        try dealer.send(frames: [Array("hello".utf8)])
        var watch = HandshakeWatch(secure: true)
        var problem: HandshakeWatch.Problem?
        let deadline = ContinuousClock.now + .seconds(60)
        while problem == nil && ContinuousClock.now < deadline {
            problem = watch.problem(after: try dealer.handshakeEvents())
            _ = try curve.router.receiveEvent(timeout: .milliseconds(10))
        }
        #expect(problem == .wrongServerKey)
        #expect(try curve.router.receive(timeout: .zero) == nil)
        #expect(curve.seen.isEmpty)
    }

    @Test("the watch: a success resets the count of closed handshakes; a refusal ends it at once")
    func watch() {
        var watch = HandshakeWatch(secure: true)
        #expect(watch.problem(after: [.closedDuringHandshake, .closedDuringHandshake, .succeeded]) == nil)
        #expect(watch.problem(after: [.closedDuringHandshake, .closedDuringHandshake]) == nil)
        #expect(watch.problem(after: [.closedDuringHandshake]) == .wrongServerKey)
        var other = HandshakeWatch(secure: true)
        #expect(other.problem(after: [.refused(status: 400)]) == .keyRefused)
        #expect(other.problem(after: [.protocolError(code: 1)]) == .routerIsPlaintext)
    }
}
