// CoordinatorWatch: how `generate --coordinator` decides, from what arrived and when, that nobody is
// there, that the coordinator stopped answering or restarted, or that the result is in. Pure: the
// times are durations since the job was sent.
import Coordinator
import Testing
import Wire

@Suite("generate --coordinator: heartbeats and deadlines")
struct CoordinatorWatchTests {
    static let endpoint = "tcp://127.0.0.1:5999"
    static let id = ClientRequestID(42)

    static func watch(connect: Duration = .seconds(10), timeout: Duration = .seconds(3600)) -> CoordinatorWatch {
        CoordinatorWatch(
            endpoint: endpoint, clientRequestID: id, limits: .init(connectTimeout: connect, timeout: timeout))
    }

    static let echo = WireMessage.heartbeat(.init(sentUnixMillis: 1))
    static let unknownPeer = WireMessage.error(.init(code: .notReady, message: "unknown worker: send HELLO first"))

    /// Asks the watch what to do at every due time from `start` until it fails or `end` passes,
    /// calling `answer` after each heartbeat sent; returns the failure, if any.
    static func run(
        _ watch: inout CoordinatorWatch, from start: Duration = .zero, to end: Duration,
        answer: (Duration) -> WireMessage? = { _ in nil }
    ) -> GenerateClientError? {
        var now = start
        while now <= end {
            switch watch.next(at: now) {
            case .sendHeartbeat:
                if let reply = answer(now), case .fail(let error) = watch.received(reply) { return error }
            case .wait(let until):
                #expect(until > now, "a wait must end after now")
                now = until
            case .fail(let error):
                return error
            }
        }
        return nil
    }

    @Test("nothing at all within the connect deadline fails naming the endpoint and how to serve there")
    func nobodyAnswers() {
        var watch = Self.watch(connect: .seconds(10))
        var heartbeats = 0
        let failure = Self.run(&watch, to: .seconds(60)) { _ in
            heartbeats += 1
            return nil
        }
        #expect(
            failure?.description
                == "nobody answered at tcp://127.0.0.1:5999 within 10 s; is `switchyard serve --bind tcp://127.0.0.1:5999` running there? (`serve --workers 0` binds no ZeroMQ socket: reach it with `generate --server http://HOST:PORT`)"
        )
        #expect(heartbeats == 10, "one heartbeat at once, then one a second until the deadline")
        #expect(watch.phase == .connecting)
    }

    @Test("a connect deadline of a fraction of a second is written as such")
    func fractionalDeadline() {
        var watch = Self.watch(connect: .milliseconds(1500))
        #expect(Self.run(&watch, to: .seconds(5))?.description.contains("within 1.5 s;") == true)
    }

    @Test("once a heartbeat was echoed, 5 unanswered heartbeats in a row mean the coordinator stopped answering")
    func stoppedAnswering() {
        var watch = Self.watch()
        // Echoes for the first 20 s, then silence.
        let failure = Self.run(&watch, to: .seconds(3600)) { now in now < .seconds(20) ? Self.echo : nil }
        #expect(watch.phase == .connected)
        #expect(
            failure?.description
                == "the coordinator at tcp://127.0.0.1:5999 stopped answering: 5 heartbeats 1 s apart went unanswered")
    }

    @Test("heartbeats answered now and then never add up to 5 missed in a row")
    func intermittentAnswers() {
        var watch = Self.watch(timeout: .seconds(100))
        // Every fourth heartbeat is echoed: at most 3 in a row go unanswered.
        let failure = Self.run(&watch, to: .seconds(200)) { now in
            now.components.seconds % 4 == 0 ? Self.echo : nil
        }
        #expect(failure?.description.contains("sent no result within 100 s (--timeout)") == true)
    }

    @Test("a result arriving before any echo is the job's result; one for another request is ignored")
    func result() {
        var watch = Self.watch()
        let other = WireMessage.generateResult(.init(clientRequestID: ClientRequestID(7), resultJSON: "{\"other\":1}"))
        #expect(watch.received(other) == .keepWaiting)
        let mine = WireMessage.generateResult(.init(clientRequestID: Self.id, resultJSON: "{\"text\":\"hi\"}"))
        #expect(watch.received(mine) == .result("{\"text\":\"hi\"}"))
    }

    @Test("an ERROR .notReady after an echo means the coordinator restarted and lost the request")
    func restarted() {
        var watch = Self.watch()
        _ = watch.next(at: .zero)
        #expect(watch.received(Self.echo) == .keepWaiting)
        #expect(
            watch.received(Self.unknownPeer)
                == .fail(
                    GenerateClientError(
                        "the coordinator at tcp://127.0.0.1:5999 restarted; the request was lost with its KV cache; submit it again"
                    )))
    }

    @Test(
        "a coordinator that answers heartbeats with .notReady from the start (one that does not echo clients) counts as alive, not restarted"
    )
    func answersWithoutEcho() {
        var watch = Self.watch(connect: .seconds(2), timeout: .seconds(30))
        let failure = Self.run(&watch, to: .seconds(60)) { _ in Self.unknownPeer }
        #expect(watch.phase == .answersWithoutEcho)
        #expect(failure?.description.contains("sent no result within 30 s") == true)
    }

    @Test("an ERROR of another kind fails the job with the coordinator's message")
    func refused() {
        var watch = Self.watch()
        let report = WireMessage.error(.init(code: .badRequest, message: "prompt token 0 is 999, but must be in 0..<320"))
        #expect(
            watch.received(report)
                == .fail(
                    GenerateClientError(
                        "the coordinator at tcp://127.0.0.1:5999 refused the job: prompt token 0 is 999, but must be in 0..<320")))
    }
}
