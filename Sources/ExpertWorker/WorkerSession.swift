// The worker's side of registration and liveness, as a value type: when to send HELLO and
// heartbeats, and when to decide the coordinator has forgotten us. No sockets, no clock reads:
// every call takes `now`.
//
// Why the backoff: after a coordinator restart (or a link that comes back), every queued
// heartbeat is answered "unknown worker". Registering once per answer made 35 registrations in
// one burst; registering at most once per backoff window, and not again while a HELLO awaits its
// WELCOME, makes one.

/// Decisions of the worker about its link to the coordinator.
public struct WorkerSession: Sendable {
    public enum Action: Equatable, Sendable {
        /// Send HELLO; the reason (when any) says why it is sent again.
        case sendHello(reason: String?)
        case sendHeartbeat
    }

    public let heartbeatInterval: Duration
    /// How long the coordinator may stay silent before the worker registers again: a
    /// coordinator sends a heartbeat every interval while it runs.
    public var coordinatorSilenceLimit: Duration { max(.seconds(5), heartbeatInterval * 10) }
    static let firstBackoff: Duration = .seconds(1)
    static let longestBackoff: Duration = .seconds(5)

    public private(set) var registered = false
    private var helloSentAt: ContinuousClock.Instant?
    private var backoff = Self.firstBackoff
    private var lastHeard: ContinuousClock.Instant?
    private var nextHeartbeat: ContinuousClock.Instant?

    public init(heartbeatInterval: Duration) {
        self.heartbeatInterval = heartbeatInterval
    }

    /// Time-driven decisions: the first HELLO, a HELLO not answered within the backoff, a
    /// coordinator silent for too long, and heartbeats.
    public mutating func tick(now: ContinuousClock.Instant) -> [Action] {
        var actions: [Action] = []
        if let sent = helloSentAt {
            if !registered, now - sent >= backoff {
                actions.append(hello(now: now, reason: "no WELCOME within \(backoff)"))
            } else if registered, let heard = lastHeard, now - heard > coordinatorSilenceLimit {
                registered = false
                actions.append(hello(now: now, reason: "nothing heard from the coordinator for \(coordinatorSilenceLimit)"))
            }
        } else {
            actions.append(hello(now: now, reason: nil))
            lastHeard = now
        }
        if nextHeartbeat.map({ now >= $0 }) ?? true {
            nextHeartbeat = now + heartbeatInterval
            actions.append(.sendHeartbeat)
        }
        return actions
    }

    private mutating func hello(now: ContinuousClock.Instant, reason: String?) -> Action {
        if helloSentAt != nil { backoff = min(Self.longestBackoff, backoff * 2) }
        helloSentAt = now
        return .sendHello(reason: reason)
    }

    /// Any message from the coordinator.
    public mutating func heard(at now: ContinuousClock.Instant) { lastHeard = now }

    /// The coordinator accepted the registration.
    public mutating func welcomed() {
        registered = true
        backoff = Self.firstBackoff
    }

    /// The coordinator answered "unknown worker" (or that our name is still held).
    /// - Returns: true when a HELLO should be sent now; otherwise one is pending or the backoff
    ///   has not passed (``tick(now:)`` sends it then).
    public mutating func refused(now: ContinuousClock.Instant) -> Bool {
        if registered {
            // It forgot us: register at once.
            registered = false
            backoff = Self.firstBackoff
            helloSentAt = now
            return true
        }
        return false
    }
}
