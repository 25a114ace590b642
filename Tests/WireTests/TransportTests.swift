import Foundation
import Testing
import Transport

/// Every test binds its own router on an ephemeral port of 127.0.0.1.
private let loopback = "tcp://127.0.0.1:0"

/// Receives on `router` until a message arrives, up to `timeout`; records an issue on timeout.
private func receiveOrRecord(
    _ router: RouterSocket, timeout: Duration = .seconds(5), sourceLocation: SourceLocation = #_sourceLocation
) throws -> (peer: PeerIdentity, frames: [[UInt8]])? {
    let received = try router.receive(timeout: timeout)
    if received == nil { Issue.record("router received nothing within \(timeout)", sourceLocation: sourceLocation) }
    return received
}

@Suite("Transport over ZeroMQ on 127.0.0.1")
struct TransportTests {
    @Test("binding to port 0 resolves the real endpoint")
    func boundEndpointResolved() throws {
        let router = try RouterSocket(context: ZMQContext(), bind: loopback)
        #expect(router.boundEndpoint.hasPrefix("tcp://127.0.0.1:"))
        #expect(!router.boundEndpoint.hasSuffix(":0"))
    }

    @Test("a multipart message goes dealer -> router and back, frames intact (including an empty one)")
    func multipartRoundTrip() throws {
        let context = try ZMQContext()
        let router = try RouterSocket(context: context, bind: loopback)
        let dealer = try DealerSocket(context: context, connect: router.boundEndpoint, identity: PeerIdentity("worker-1"))
        let frames: [[UInt8]] = [[1, 2, 3], [], Array(repeating: 0xAB, count: 1000)]
        try dealer.send(frames: frames)
        let received = try receiveOrRecord(router)
        #expect(received?.peer == PeerIdentity("worker-1"))
        #expect(received?.frames == frames)

        try router.send(to: PeerIdentity("worker-1"), frames: [[9], [8, 7]])
        #expect(try dealer.receive(timeout: .seconds(5)) == [[9], [8, 7]])
    }

    @Test("a receive that polls before sleeping takes messages sent before and during the poll, and still times out")
    func spinningReceive() throws {
        let context = try ZMQContext()
        let router = try RouterSocket(context: context, bind: loopback)
        let dealer = try DealerSocket(context: context, connect: router.boundEndpoint, identity: PeerIdentity("spin"))
        // The router learns the dealer's identity from its first message.
        try dealer.send(frames: [[0]])
        #expect(try router.receive(timeout: .seconds(5))?.peer == PeerIdentity("spin"))
        // Nothing sent: the wait polls for its whole timeout (shorter than the spin) and returns nil.
        #expect(try dealer.receive(timeout: .milliseconds(50), spin: .seconds(1)) == nil)
        // Sent before the wait: taken during the poll.
        try router.send(to: PeerIdentity("spin"), frames: [[1]])
        #expect(try dealer.receive(timeout: .seconds(5), spin: .seconds(5)) == [[1]])
        // Sent after a spin shorter than the wait has run out: taken by the sleeping poll. (Only the
        // sending thread uses the router meanwhile.)
        nonisolated(unsafe) let sendingRouter = router
        let sender = Thread {
            Thread.sleep(forTimeInterval: 0.1)
            try? sendingRouter.send(to: PeerIdentity("spin"), frames: [[2], [3]])
        }
        sender.start()
        #expect(try dealer.receive(timeout: .seconds(5), spin: .milliseconds(1)) == [[2], [3]])
    }

    @Test("a 4 MiB frame arrives whole")
    func largeFrame() throws {
        let context = try ZMQContext()
        let router = try RouterSocket(context: context, bind: loopback)
        let dealer = try DealerSocket(context: context, connect: router.boundEndpoint, identity: PeerIdentity("big"))
        let payload = (0..<(4 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try dealer.send(frames: [[0x01], payload])
        let received = try receiveOrRecord(router)
        #expect(received?.frames.count == 2)
        #expect(received?.frames.last == payload)
    }

    @Test("a frame above the receive limit is dropped and the socket keeps working")
    func oversizedFrameDropped() throws {
        let context = try ZMQContext()
        let router = try RouterSocket(
            context: context, bind: loopback, options: SocketOptions(maxMessageBytes: 64 << 10))
        let dealer = try DealerSocket(context: context, connect: router.boundEndpoint, identity: PeerIdentity("greedy"))
        try dealer.send(frames: [[UInt8](repeating: 1, count: 1 << 20)])
        #expect(try router.receive(timeout: .milliseconds(300)) == nil)
        // libzmq disconnected the dealer; it reconnects by itself. Small messages get through again.
        var delivered: [[UInt8]]?
        for attempt in 0..<50 where delivered == nil {
            try dealer.send(frames: [[UInt8(attempt)]])
            if let received = try router.receive(timeout: .milliseconds(100)) {
                #expect(received.frames[0].count == 1, "only small frames may arrive")
                delivered = received.frames
            }
        }
        #expect(delivered != nil, "no small message arrived after the oversized one")
    }

    @Test("the router routes replies by identity to each of two dealers")
    func identityRouting() throws {
        let context = try ZMQContext()
        let router = try RouterSocket(context: context, bind: loopback)
        let alpha = try DealerSocket(context: context, connect: router.boundEndpoint, identity: PeerIdentity("alpha"))
        let beta = try DealerSocket(context: context, connect: router.boundEndpoint, identity: PeerIdentity([0x01, 0xFF]))
        try alpha.send(frames: [Array("hello from alpha".utf8)])
        try beta.send(frames: [Array("hello from beta".utf8)])
        var seen: Set<PeerIdentity> = []
        for _ in 0..<2 {
            if let received = try receiveOrRecord(router) { seen.insert(received.peer) }
        }
        #expect(seen == [PeerIdentity("alpha"), PeerIdentity([0x01, 0xFF])])

        try router.send(to: PeerIdentity([0x01, 0xFF]), frames: [[2]])
        try router.send(to: PeerIdentity("alpha"), frames: [[1]])
        #expect(try alpha.receive(timeout: .seconds(5)) == [[1]])
        #expect(try beta.receive(timeout: .seconds(5)) == [[2]])
        #expect(try alpha.poll(timeout: .milliseconds(50)) == false)
        #expect(try beta.poll(timeout: .milliseconds(50)) == false)
    }

    @Test("sending to a peer that is not connected throws instead of dropping silently")
    func unknownPeerThrows() throws {
        let router = try RouterSocket(context: ZMQContext(), bind: loopback)
        #expect(throws: TransportError.peerUnreachable(peer: PeerIdentity("ghost"), endpoint: router.boundEndpoint)) {
            try router.send(to: PeerIdentity("ghost"), frames: [[1]])
        }
    }

    @Test("receive returns nil when nothing arrives before the timeout")
    func receiveTimesOut() throws {
        let router = try RouterSocket(context: ZMQContext(), bind: loopback)
        let start = ContinuousClock.now
        #expect(try router.receive(timeout: .milliseconds(50)) == nil)
        #expect(ContinuousClock.now - start >= .milliseconds(45))
        #expect(try router.poll(timeout: .zero) == false)
    }

    @Test(
        "a dealer identity libzmq would refuse is rejected up front",
        arguments: [PeerIdentity([]), PeerIdentity([0x00, 0x41]), PeerIdentity([UInt8](repeating: 0x41, count: 256))])
    func invalidIdentity(identity: PeerIdentity) throws {
        let context = try ZMQContext()
        #expect(throws: TransportError.self) {
            try DealerSocket(context: context, connect: "tcp://127.0.0.1:1", identity: identity)
        }
    }

    @Test("a bind failure names the endpoint and the system's reason")
    func bindFailureNamesEndpoint() throws {
        let context = try ZMQContext()
        let first = try RouterSocket(context: context, bind: loopback)
        do {
            _ = try RouterSocket(context: context, bind: first.boundEndpoint)
            Issue.record("binding \(first.boundEndpoint) twice succeeded")
        } catch {
            #expect(error.description.contains(first.boundEndpoint))
            #expect(error.description.contains("Address already in use"))
        }
    }
}
