// A client of a running coordinator (`switchyard generate --coordinator ENDPOINT`): it sends its
// GENERATE_REQUEST, then a HEARTBEAT at once and every second while it waits. The coordinator echoes
// the heartbeats of a client whose job it holds, and answers one from a peer it does not know with
// ERROR `.notReady`; from that the client tells "nobody there", "stopped answering" and "restarted
// and lost the job" apart instead of waiting out the whole timeout.
public import Foundation
public import Transport
public import Wire

/// Why `generate --coordinator` gave up; the description is the one line the CLI prints.
public struct GenerateClientError: Error, Sendable, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// What the client decides while it waits for its job, from what arrived and when: no clock reads,
/// no I/O (times come in as durations since the job was sent), so every rule is tested without sockets.
public struct CoordinatorWatch: Sendable {
    /// How long to wait for what.
    public struct Limits: Sendable, Equatable {
        /// The coordinator must answer something (an echoed heartbeat, the result) within this.
        public var connectTimeout: Duration
        /// Time between heartbeats.
        public var heartbeatInterval: Duration
        /// This many heartbeats in a row unanswered, once connected, and the coordinator is taken for gone.
        public var missedHeartbeatLimit: Int
        /// The result must arrive within this, however alive the coordinator is.
        public var timeout: Duration

        public init(
            connectTimeout: Duration = .seconds(10), heartbeatInterval: Duration = .seconds(1),
            missedHeartbeatLimit: Int = 5, timeout: Duration = .seconds(3600)
        ) {
            precondition(missedHeartbeatLimit >= 1, "missedHeartbeatLimit must be at least 1")
            self.connectTimeout = connectTimeout
            self.heartbeatInterval = heartbeatInterval
            self.missedHeartbeatLimit = missedHeartbeatLimit
            self.timeout = timeout
        }
    }

    /// What the client knows of the coordinator.
    public enum Phase: Sendable, Equatable {
        /// Nothing has arrived yet.
        case connecting
        /// It echoed a heartbeat: it holds the job.
        case connected
        /// It answered the first heartbeat with `.notReady`: a coordinator from before clients sent
        /// heartbeats, which does not echo them. Its answers still show it is alive, but a restart
        /// cannot be told from them.
        case answersWithoutEcho
    }

    /// The next step while waiting.
    public enum Decision: Sendable, Equatable {
        /// Send a HEARTBEAT now (then ask again).
        case sendHeartbeat
        /// Receive until this time (since the job was sent), then ask again.
        case wait(until: Duration)
        case fail(GenerateClientError)
    }

    /// What a message from the coordinator means for the job.
    public enum Outcome: Sendable, Equatable {
        /// The job's result JSON.
        case result(String)
        case fail(GenerateClientError)
        case keepWaiting
    }

    public let endpoint: String
    public let clientRequestID: ClientRequestID
    public let limits: Limits
    public private(set) var phase = Phase.connecting
    /// Heartbeats sent since the coordinator last answered one.
    public private(set) var unansweredHeartbeats = 0
    private var nextHeartbeat: Duration = .zero

    public init(endpoint: String, clientRequestID: ClientRequestID, limits: Limits) {
        self.endpoint = endpoint
        self.clientRequestID = clientRequestID
        self.limits = limits
    }

    /// What to do at `now` (time since the GENERATE_REQUEST was sent).
    public mutating func next(at now: Duration) -> Decision {
        if phase == .connecting, now >= limits.connectTimeout {
            return .fail(
                GenerateClientError(
                    "nobody answered at \(endpoint) within \(Self.seconds(limits.connectTimeout)); "
                        + "is `switchyard serve --bind \(endpoint)` running there? (`serve --workers 0` binds no "
                        + "ZeroMQ socket: reach it with `generate --server http://HOST:PORT`)"))
        }
        if now >= limits.timeout {
            return .fail(
                GenerateClientError(
                    "the coordinator at \(endpoint) sent no result within \(Self.seconds(limits.timeout)) (--timeout)"))
        }
        if now >= nextHeartbeat {
            if phase != .connecting, unansweredHeartbeats >= limits.missedHeartbeatLimit {
                return .fail(
                    GenerateClientError(
                        "the coordinator at \(endpoint) stopped answering: \(unansweredHeartbeats) heartbeats "
                            + "\(Self.seconds(limits.heartbeatInterval)) apart went unanswered"))
            }
            unansweredHeartbeats += 1
            nextHeartbeat = now + limits.heartbeatInterval
            return .sendHeartbeat
        }
        var until = min(nextHeartbeat, limits.timeout)
        if phase == .connecting { until = min(until, limits.connectTimeout) }
        return .wait(until: until)
    }

    /// Takes in a message from the coordinator.
    public mutating func received(_ message: WireMessage) -> Outcome {
        switch message {
        case .generateResult(let result) where result.clientRequestID == clientRequestID:
            return .result(result.resultJSON)
        case .heartbeat:
            if phase == .connecting { phase = .connected }
            unansweredHeartbeats = 0
            return .keepWaiting
        case .error(let report) where report.code == .notReady:
            switch phase {
            case .connecting:
                phase = .answersWithoutEcho
                unansweredHeartbeats = 0
                return .keepWaiting
            case .answersWithoutEcho:
                unansweredHeartbeats = 0
                return .keepWaiting
            case .connected:
                // It echoed before and now does not know us: a new process on the same endpoint.
                return .fail(
                    GenerateClientError(
                        "the coordinator at \(endpoint) restarted; the request was lost with its KV cache; submit it again"
                    ))
            }
        case .error(let report):
            return .fail(GenerateClientError("the coordinator at \(endpoint) refused the job: \(report.message)"))
        default:
            return .keepWaiting
        }
    }

    /// `10 s`, `1.5 s`.
    static func seconds(_ duration: Duration) -> String {
        let (whole, attoseconds) = duration.components
        if attoseconds == 0 { return "\(whole) s" }
        return "\(Double(whole) + Double(attoseconds) / 1e18) s"
    }
}

/// Submits one generation job to a coordinator over ZeroMQ and waits for its result.
public enum GenerateClient {
    /// Sends the job, then heartbeats as `limits` says, until the result arrives or `CoordinatorWatch`
    /// gives up.
    /// - Returns: the result JSON the coordinator built (the same object `generate --json` prints).
    /// - Throws: `GenerateClientError` saying why there is no result: nobody answered, the coordinator
    ///   stopped answering or restarted, it refused or failed the job, or `shouldStop` turned true.
    public static func submit(
        _ request: GenerationRequest, to endpoint: String, security: DealerSecurity, limits: CoordinatorWatch.Limits,
        shouldStop: () -> Bool
    ) throws(GenerateClientError) -> Data {
        let id = ClientRequestID(UInt64.random(in: 1...UInt64.max))
        let prompt: WireMessage.GenerateRequest.Prompt =
            switch request.prompt {
            case .text(let text): .text(text)
            case .tokenIDs(let ids): .tokenIDs(ids.map { UInt32(bitPattern: $0) })
            }
        let message = WireMessage.generateRequest(
            .init(
                clientRequestID: id, prompt: prompt, maxTokens: request.maxTokens,
                temperature: request.sampling.temperature, topP: request.sampling.topP, topK: request.sampling.topK,
                seed: request.sampling.seed, ignoreEOS: request.ignoreEOS, logprobs: request.logprobs))

        do {
            let socket = try DealerSocket(
                context: ZMQContext(), connect: endpoint, identity: PeerIdentity("client-\(id.rawValue)"),
                security: security)
            var handshakes: HandshakeWatch
            if case .plaintext = security { handshakes = HandshakeWatch(secure: false) } else { handshakes = HandshakeWatch(secure: true) }
            do {
                try socket.send(frames: WireCodec.encode(message))
                var watch = CoordinatorWatch(endpoint: endpoint, clientRequestID: id, limits: limits)
                let clock = ContinuousClock()
                let start = clock.now
                while true {
                    if shouldStop() { throw GenerateClientError("interrupted while waiting for \(endpoint)") }
                    if let problem = handshakes.problem(after: try socket.handshakeEvents()) {
                        throw GenerateClientError(problem.explanation(endpoint: endpoint))
                    }
                    let now = clock.now - start
                    switch watch.next(at: now) {
                    case .sendHeartbeat:
                        let millis = UInt64(max(0, Date().timeIntervalSince1970 * 1000))
                        try socket.send(frames: WireCodec.encode(.heartbeat(.init(sentUnixMillis: millis))))
                    case .fail(let error):
                        throw error
                    case .wait(let until):
                        // Short slices, so an interrupt is seen promptly.
                        guard let frames = try socket.receive(timeout: max(.zero, min(until - now, .milliseconds(200)))) else {
                            continue
                        }
                        let reply: WireMessage
                        do {
                            reply = try WireCodec.decode(frames)
                        } catch {
                            throw GenerateClientError("the coordinator at \(endpoint) sent a message that is not valid: \(error)")
                        }
                        switch watch.received(reply) {
                        case .result(let json): return Data(json.utf8)
                        case .fail(let error): throw error
                        case .keepWaiting: continue
                        }
                    }
                }
            } catch {
                // A send that timed out because the handshake failed says what to fix.
                if let problem = handshakes.problem(behind: error, on: socket) {
                    throw GenerateClientError(problem.explanation(endpoint: endpoint))
                }
                throw error
            }
        } catch let error as GenerateClientError {
            throw error
        } catch {
            throw GenerateClientError("talking to the coordinator at \(endpoint) failed: \(error)")
        }
    }
}
