import Foundation
import Testing
import Transport

@Suite("Waking a socket's owner thread")
struct WakeSignalTests {
    @Test("wake() from another thread ends the owner's poll early with .woken")
    func wakeFromAnotherThread() throws {
        let router = try RouterSocket(context: ZMQContext(), bind: "tcp://127.0.0.1:0")
        let signal = try WakeSignal()
        let waker = Thread {
            Thread.sleep(forTimeInterval: 0.05)
            signal.wake()
        }
        waker.start()
        // Nothing else can end this poll early: an expiry would report no events, so `.woken` is
        // the wake-up itself, however long the loaded machine took to deliver it.
        let events = try router.poll(timeout: .seconds(120), wakeSignal: signal)
        #expect(events == .woken)
    }

    @Test("wake-ups coalesce and are consumed by the poll that reports them")
    func wakesCoalesce() throws {
        let router = try RouterSocket(context: ZMQContext(), bind: "tcp://127.0.0.1:0")
        let signal = try WakeSignal()
        for _ in 0..<1000 { signal.wake() }
        #expect(try router.poll(timeout: .zero, wakeSignal: signal) == .woken)
        #expect(try router.poll(timeout: .milliseconds(20), wakeSignal: signal) == [])
    }

    @Test("a message arriving while polling with a wake signal reports .readable")
    func readable() throws {
        let context = try ZMQContext()
        let router = try RouterSocket(context: context, bind: "tcp://127.0.0.1:0")
        let dealer = try DealerSocket(context: context, connect: router.boundEndpoint, identity: PeerIdentity("d"))
        let signal = try WakeSignal()
        try dealer.send(frames: [[42]])
        #expect(try router.poll(timeout: .seconds(5), wakeSignal: signal) == .readable)
        #expect(try router.receive(timeout: .zero)?.frames == [[42]])
    }
}
