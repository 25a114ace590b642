import ArgumentParser
import Coordinator

/// How the coordinator notices a lost worker and recovers: `serve` and `generate --spawn-workers`.
struct LivenessOptions: ParsableArguments {
    @Option(
        help: "Copies of every expert in the even placement, each on a different worker (1 to the number of workers). With 2 or more, a lost or slow worker's rows go to a replica at once.")
    var replicas: Int = 1

    @Option(
        name: .customLong("heartbeat-interval"),
        help: "Seconds between the heartbeats the coordinator and the workers send each other.")
    var heartbeatInterval: Double = 0.5

    @Option(
        name: .customLong("heartbeat-misses"),
        help: "Heartbeat intervals a worker with no dispatch pending may stay silent before it is declared lost.")
    var heartbeatMisses: Int = 3

    @Option(
        name: .customLong("dispatch-timeout"),
        help: "Seconds a worker may take to answer a dispatch before it is declared lost and its rows go elsewhere. Default: 10 × the expected round trip measured on recent dispatches, at least 2 s (10 s before any is measured).")
    var dispatchTimeout: Double?

    @Option(
        name: .customLong("rejoin-timeout"),
        help: "Seconds running requests wait for a worker to join when a lost worker's experts have no other holder and no survivor can take them (see --memory-budget); then they fail.")
    var rejoinTimeout: Double = 60

    @Option(
        name: .customLong("verify-fraction"),
        help: "The fraction of dispatches (0 to 1) also computed by a second worker holding the same experts and compared bitwise; on a difference the coordinator computes the rows itself, answers with its own result, and takes the worker that differs out of the placement. Costs this fraction of the expert work again; needs a second holder of every expert (--replicas 2). 0 (the default) is off.")
    var verifyFraction: Double = 0

    func validate() throws {
        guard replicas >= 1 else { throw ValidationError("--replicas is \(replicas), but must be at least 1") }
        guard verifyFraction >= 0 && verifyFraction <= 1 else {
            throw ValidationError("--verify-fraction is \(verifyFraction), but must be a number from 0 (off) to 1 (every dispatch)")
        }
        for (name, value) in [("--heartbeat-interval", heartbeatInterval), ("--rejoin-timeout", rejoinTimeout)]
        where !(value > 0 && value.isFinite) {
            throw ValidationError("\(name) is \(value), but must be a positive number of seconds")
        }
        guard heartbeatMisses >= 1 else {
            throw ValidationError("--heartbeat-misses is \(heartbeatMisses), but must be at least 1")
        }
        if let dispatchTimeout, !(dispatchTimeout > 0 && dispatchTimeout.isFinite) {
            throw ValidationError("--dispatch-timeout is \(dispatchTimeout), but must be a positive number of seconds")
        }
    }

    /// The policy, with `expertBudget` experts of a layer a worker may hold after a failover.
    func policy(expertBudget: Int? = nil) -> LivenessPolicy {
        LivenessPolicy(
            heartbeatInterval: Self.duration(heartbeatInterval), heartbeatMisses: heartbeatMisses,
            dispatchTimeout: dispatchTimeout.map(Self.duration), rejoinTimeout: Self.duration(rejoinTimeout),
            expertBudget: expertBudget)
    }

    static func duration(_ seconds: Double) -> Duration { .microseconds(Int64((seconds * 1_000_000).rounded())) }
}
