import Logging
import Models
import Testing
import Tensors
import Transport
import Wire

@testable import Coordinator

/// A worker as the tests play it: it answers ASSIGN with READY and DISPATCH with COMBINE (a
/// row's terms weight · f_e(x), added in ascending expert id from 0, as `ExpertStore.compute`
/// does), unless it is dead (sends to it fail) or stopped (it keeps what it receives unanswered).
private struct SimulatedWorker {
    let name: String
    let peer: PeerIdentity
    var dead = false
    var stopped = false
    /// Answers every DISPATCH with one value off by the last bit of its mantissa.
    var dishonest = false
    var held: Set<LayerExpert> = []
    /// Messages it received while stopped (with the flight's hidden states), answered when it continues.
    var inbox: [(ClusterAction, [Float])] = []
}

/// f_e(x): values of mixed magnitude, so that adding a row's terms in another order changes the bits.
private func expertTerm(_ expert: Int, _ x: Float, column: Int) -> Float {
    x * Float(expert + 1) * 0.731 + Float((expert * 7 + column * 3) % 11) * 1e-3 * (expert % 2 == 0 ? 1 : -1000)
}

/// The cluster (state machine plus simulated workers and network) on a virtual clock.
private struct Cluster {
    static let hiddenSize = 16
    static let shape = ModelShape(
        hiddenSize: hiddenSize, vocabularySize: 16, expertCounts: [8, 0, 8], expertsPerToken: 2,
        keyValueWidths: [16, 16, 16], slidingWindows: [nil, nil, nil], maxPositionEmbeddings: 64, bosTokenID: nil,
        eosTokenIDs: [])

    var state: ClusterState
    var workers: [SimulatedWorker] = []
    var now: Duration = .zero
    /// Messages on their way to the coordinator.
    var toCoordinator: [(PeerIdentity, WireMessage)] = []
    var logs: [String] = []
    var dispatchesTo: [String: Int] = [:]
    /// Workers the coordinator took out of the placement for a wrong answer.
    var faulty: [String] = []
    /// Arbitrations the coordinator computed itself.
    var arbitrations = 0

    init(
        workers names: [String], replicas: Int = 1, named: Bool = true, policy: LivenessPolicy = LivenessPolicy(),
        verification: VerificationPolicy = .off
    ) {
        let placement = try! Placement.replicated(expertCounts: Self.shape.expertCounts, workerNames: names, replicas: replicas)
        state = ClusterState(
            shape: Self.shape, fingerprint: "model", placement: placement, namedSlots: named, policy: policy,
            arithmetic: .exact, quantization: .none, joinHint: "switchyard worker …", verification: verification)
    }

    /// Starts a worker process and lets it register.
    mutating func start(_ name: String, fingerprint: String = "model") -> Int {
        let peer = PeerIdentity("\(name)-\(workers.count)")
        workers.append(SimulatedWorker(name: name, peer: peer))
        toCoordinator.append((peer, .hello(.init(workerName: name, modelFingerprint: fingerprint, threads: 1, pid: 100 + workers.count))))
        return workers.count - 1
    }

    mutating func perform(_ actions: [ClusterAction]) {
        var queue = actions[...]
        while let action = queue.popFirst() {
            switch action {
            case .log(_, let line):
                logs.append(line)
            case .answered:
                break
            case .arbitrate(let order):
                // The coordinator's own computation: the same function every honest worker runs.
                arbitrations += 1
                let outputs = order.rows.map { rows in
                    Self.compute(rows, rows: DispatchPlan.gather(rows, from: state.hidden(of: order.flight), hiddenSize: Self.hiddenSize))
                }
                queue.append(contentsOf: state.arbitrated(order, outputs: .success(outputs), now: now))
            case .faulty(_, let worker, let reason):
                faulty.append(worker)
                logs.append("FAULTY \(worker): \(reason)")
            case .send(let peer, _), .dispatch(let peer, _):
                guard let index = workers.lastIndex(where: { $0.peer == peer }) else { continue }
                if workers[index].dead {
                    queue.append(contentsOf: state.handle(.sendFailed(peer, reason: "not connected"), now: now))
                } else if workers[index].stopped {
                    let rows: [Float] = if case .dispatch(_, let order) = action { state.hidden(of: order.flight) } else { [] }
                    workers[index].inbox.append((action, rows))
                } else {
                    answer(action, worker: index)
                }
            }
        }
    }

    /// The worker's answer to a message, queued to the coordinator.
    mutating func answer(_ action: ClusterAction, worker index: Int, hidden flightHidden: [Float]? = nil) {
        let peer = workers[index].peer
        switch action {
        case .send(_, .assign(let assign)):
            workers[index].held = Set(assign.experts)
            toCoordinator.append((peer, .ready(.init(loadedExpertCount: assign.experts.count, loadSeconds: 0))))
        case .dispatch(_, let order):
            dispatchesTo[workers[index].name, default: 0] += 1
            let batch = order.batch
            precondition(batch.expertIDs.allSatisfy { workers[index].held.contains(LayerExpert(layer: order.layer, expert: ExpertID(Int($0)))) },
                         "a dispatch to \(workers[index].name) of an expert it does not hold")
            let rows = DispatchPlan.gather(batch, from: flightHidden ?? state.hidden(of: order.flight), hiddenSize: Self.hiddenSize)
            var values = Self.compute(batch, rows: rows)
            if workers[index].dishonest { values[values.count / 2] = Float(bitPattern: values[values.count / 2].bitPattern ^ 1) }
            toCoordinator.append((peer, .combine(.init(
                requestID: order.requestID, step: order.step, layer: order.layer,
                outputs: HiddenStates(rowCount: batch.rowCount, hiddenSize: Self.hiddenSize,
                                      values: values, dtype: .f32),
                computeMicroseconds: 1))))
        default:
            break
        }
    }

    static func compute(_ batch: DispatchPlan.WorkerBatch, rows: [Float]) -> [Float] {
        var out = [Float](repeating: 0, count: rows.count)
        for row in 0..<batch.rowCount {
            let entries = Int(batch.rowExpertOffsets[row])..<Int(batch.rowExpertOffsets[row + 1])
            for entry in entries.sorted(by: { batch.expertIDs[$0] < batch.expertIDs[$1] }) {
                for column in 0..<hiddenSize {
                    out[row * hiddenSize + column] +=
                        expertTerm(Int(batch.expertIDs[entry]), rows[row * hiddenSize + column], column: column) * batch.weights[entry]
                }
            }
        }
        return out
    }

    /// Delivers everything on its way to the coordinator (and the answers that follows).
    mutating func deliver() {
        while !toCoordinator.isEmpty {
            let (peer, message) = toCoordinator.removeFirst()
            perform(state.handle(.received(peer, message), now: now))
        }
    }

    /// Lets time pass in steps of at most 250 ms; each step every running worker heartbeats.
    mutating func advance(_ duration: Duration) {
        var left = duration
        while left > .zero {
            let step = min(left, .milliseconds(250))
            now += step
            left -= step
            for worker in workers where !worker.dead && !worker.stopped {
                toCoordinator.append((worker.peer, .heartbeat(.init(sentUnixMillis: 0))))
            }
            perform(state.tick(now: now))
            deliver()
        }
    }

    /// Starts every named worker and runs until they are ready.
    mutating func startAll() {
        for name in state.home.workerNames { _ = start(name) }
        deliver()
    }

    mutating func kill(_ name: String) { workers[workers.lastIndex { $0.name == name }!].dead = true }
    mutating func corrupt(_ name: String) { workers[workers.lastIndex { $0.name == name }!].dishonest = true }

    /// The batches the plan of `routing` has on the active placement (one DISPATCH each).
    func plannedBatches(_ routing: RoutingDecision) -> Int {
        DispatchPlan(routing: routing, layer: LayerIndex(0), placement: state.active).batches.count
    }
    mutating func stop(_ name: String) { workers[workers.lastIndex { $0.name == name }!].stopped = true }
    mutating func resume(_ name: String) {
        let index = workers.lastIndex { $0.name == name }!
        workers[index].stopped = false
        for (action, rows) in workers[index].inbox { answer(action, worker: index, hidden: rows) }
        workers[index].inbox.removeAll()
    }

    /// Dispatches one layer and returns the flight (answers are queued, not yet delivered).
    mutating func dispatch(_ routing: RoutingDecision, hidden: [Float]) -> FlightID {
        let (flight, actions) = state.dispatch(
            layer: LayerIndex(0), hidden: hidden, routing: routing, requestID: RequestID(7), now: now)
        perform(actions)
        return flight
    }
}

/// 6 tokens, top-2, over 8 experts: every pair of workers shares some tokens.
private let routing = RoutingDecision(
    tokenCount: 6, expertsPerToken: 2,
    expertIDs: [0, 5, 3, 1, 7, 2, 4, 6, 2, 3, 5, 0],
    weights: [0.6, 0.4, 0.7, 0.3, 0.55, 0.45, 0.8, 0.2, 0.5, 0.5, 0.9, 0.1])
private let hidden: [Float] = (0..<(6 * Cluster.hiddenSize)).map { Float($0 % 7) * 0.37 - 1.1 + Float($0) * 0.0131 }

/// 4 tokens, top-3: with three terms a row's sum depends on the order they are added in. With 4
/// workers and 2 replicas (w1 holds experts 0-3), token 1's experts {1, 2, 3} are planned as one
/// row on w1 (the second token of expert 1 goes to its second replica).
private let routing3 = RoutingDecision(
    tokenCount: 4, expertsPerToken: 3,
    expertIDs: [1, 6, 7, 2, 1, 3, 0, 4, 5, 3, 5, 6],
    weights: [0.5, 0.3, 0.2, 0.61, 0.27, 0.12, 0.4, 0.35, 0.25, 0.7, 0.2, 0.1])

/// The expert output computed in one place, in ascending expert order: what every run must equal bitwise.
private func singlePlace(_ routing: RoutingDecision) -> [Float] {
    let all = try! Placement(workerNames: ["all"], holders: [Array(repeating: [0], count: 8), [], Array(repeating: [0], count: 8)])
    let batch = DispatchPlan(routing: routing, layer: LayerIndex(0), placement: all).batches[0]
    return Cluster.compute(batch, rows: DispatchPlan.gather(batch, from: hidden, hiddenSize: Cluster.hiddenSize))
}
private let expected = singlePlace(routing)

@Suite("Coordinator decisions about workers (ClusterState, no sockets, no clock)")
struct ClusterStateTests {
    @Test("workers register, load their experts and make the cluster ready; another model is refused")
    func registration() {
        var cluster = Cluster(workers: ["w0", "w1", "w2"])
        #expect(cluster.state.health(now: .zero) != .ready)
        let stranger = cluster.start("w9", fingerprint: "other model")
        cluster.startAll()
        #expect(cluster.state.health(now: cluster.now) == .ready)
        #expect(cluster.state.readyWorkerCount == 3)
        #expect(!cluster.state.isWorker(cluster.workers[stranger].peer))
        #expect(cluster.logs.contains { $0.contains("w9") && $0.contains("another model") })
        #expect(cluster.workers.filter { $0.name != "w9" }.allSatisfy { !$0.held.isEmpty })
    }

    @Test("a dispatch answered by every worker combines to the single-place result, bitwise")
    func faultFree() {
        var cluster = Cluster(workers: ["w0", "w1", "w2"])
        cluster.startAll()
        let flight = cluster.dispatch(routing, hidden: hidden)
        #expect(cluster.state.outcome(of: flight) == .pending)
        cluster.deliver()
        #expect(cluster.state.outcome(of: flight) == .done(expected))
    }

    @Test("a worker killed mid-dispatch: its experts move to the survivors, its rows are sent again, same bits")
    func killWithoutReplicas() {
        var cluster = Cluster(workers: ["w0", "w1", "w2"])
        cluster.startAll()
        cluster.kill("w1")
        let flight = cluster.dispatch(routing, hidden: hidden)
        cluster.deliver()
        #expect(cluster.state.outcome(of: flight) == .done(expected))
        #expect(cluster.state.counters.workersLost == 1)
        #expect(cluster.state.counters.failovers == 1)
        #expect(cluster.state.counters.retriedDispatches >= 1)
        guard case .degraded(let reason) = cluster.state.health(now: cluster.now) else {
            Issue.record("health is \(cluster.state.health(now: cluster.now)), expected degraded")
            return
        }
        #expect(reason.contains("w1") && reason.contains("2 of 3"))
        #expect(cluster.logs.contains { $0.contains("worker w1") && $0.contains("lost") && $0.contains("moved") })
        // Later steps run on the survivors alone.
        let next = cluster.dispatch(routing, hidden: hidden)
        cluster.deliver()
        #expect(cluster.state.outcome(of: next) == .done(expected))
    }

    @Test("a connection closing makes the coordinator probe its workers; the one gone is lost at once")
    func connectionClosed() {
        var cluster = Cluster(workers: ["w0", "w1"])
        cluster.startAll()
        cluster.kill("w0")
        cluster.perform(cluster.state.handle(.connectionClosed, now: cluster.now))
        #expect(cluster.state.counters.workersLost == 1)
        #expect(cluster.state.readyWorkerCount == 1)
    }

    @Test("with replicas a lost worker's rows go to the replicas without moving any expert")
    func killWithReplicas() {
        var cluster = Cluster(workers: ["w0", "w1", "w2"], replicas: 2)
        cluster.startAll()
        let assignsBefore = cluster.workers.map(\.held)
        cluster.kill("w2")
        let flight = cluster.dispatch(routing, hidden: hidden)
        cluster.deliver()
        #expect(cluster.state.outcome(of: flight) == .done(expected))
        #expect(cluster.state.counters.failovers == 0)
        #expect(Array(cluster.workers.map(\.held).prefix(2)) == Array(assignsBefore.prefix(2)))
    }

    @Test("a hung worker: its rows are hedged to a replica after the hedge delay, and it is lost past the deadline")
    func hungWorkerWithReplicas() {
        var cluster = Cluster(workers: ["w0", "w1", "w2"], replicas: 2)
        cluster.startAll()
        // Round trips measured at 1 ms: hedge after 100 ms, deadline 2 s.
        for _ in 0..<3 {
            let warm = cluster.dispatch(routing, hidden: hidden)
            cluster.advance(.milliseconds(1))
            #expect(cluster.state.outcome(of: warm) == .done(expected))
        }
        cluster.stop("w0")
        let flight = cluster.dispatch(routing, hidden: hidden)
        cluster.deliver()
        cluster.advance(.milliseconds(50))
        #expect(cluster.state.outcome(of: flight) == .pending)
        cluster.advance(.milliseconds(60))
        #expect(cluster.state.outcome(of: flight) == .done(expected))
        #expect(cluster.state.counters.hedgedDispatches >= 1)
        // The next step avoids the slow worker where a replica holds the rows.
        let avoided = cluster.dispatch(routing, hidden: hidden)
        cluster.deliver()
        #expect(cluster.state.outcome(of: avoided) == .done(expected))
        #expect(cluster.state.counters.workersLost == 0)
        cluster.advance(.seconds(2))
        #expect(cluster.state.counters.workersLost == 1)
        #expect(cluster.logs.contains { $0.contains("w0") && $0.contains("did not answer a dispatch within 2.0 s") })
        // Its late answers, when it continues, are not added again.
        cluster.resume("w0")
        cluster.deliver()
        let after = cluster.dispatch(routing, hidden: hidden)
        cluster.deliver()
        #expect(cluster.state.outcome(of: after) == .done(expected))
    }

    @Test("a hung worker without replicas is lost at the dispatch deadline and its experts move")
    func hungWorkerWithoutReplicas() {
        var cluster = Cluster(workers: ["w0", "w1"], policy: LivenessPolicy(dispatchTimeout: .seconds(3)))
        cluster.startAll()
        cluster.stop("w1")
        let flight = cluster.dispatch(routing, hidden: hidden)
        cluster.advance(.milliseconds(400))
        cluster.advance(.milliseconds(400))
        #expect(cluster.state.outcome(of: flight) == .pending)
        #expect(cluster.state.counters.workersLost == 0)
        cluster.advance(.seconds(3))
        #expect(cluster.state.counters.workersLost == 1)
        #expect(cluster.state.outcome(of: flight) == .done(expected))
    }

    @Test("a worker silent for heartbeatMisses intervals with nothing pending is lost; one that keeps talking is not")
    func silence() {
        var cluster = Cluster(workers: ["w0", "w1"], policy: LivenessPolicy(heartbeatInterval: .milliseconds(500), heartbeatMisses: 3))
        cluster.startAll()
        for _ in 0..<8 {
            cluster.now += .milliseconds(400)
            cluster.toCoordinator.append((cluster.workers[0].peer, .heartbeat(.init(sentUnixMillis: 0))))
            cluster.deliver()
            cluster.perform(cluster.state.tick(now: cluster.now))
        }
        #expect(cluster.state.readyWorkerCount == 1)
        #expect(cluster.logs.contains { $0.contains("worker w1") && $0.contains("nothing heard from it") })
        #expect(!cluster.logs.contains { $0.contains("worker w0") && $0.contains("lost") })
    }

    @Test("a replacement takes a lost worker's slot, named or not; the configured placement comes back at a step boundary")
    func replacement() {
        var cluster = Cluster(workers: ["w0", "w1", "w2"])
        cluster.startAll()
        let home = cluster.state.home
        cluster.kill("w1")
        cluster.perform(cluster.state.handle(.connectionClosed, now: cluster.now))
        #expect(cluster.state.active != home)
        _ = cluster.start("spare")
        cluster.deliver()
        #expect(cluster.state.readyWorkerCount == 3)
        #expect(cluster.state.workerNames == ["w0", "spare", "w2"])
        cluster.perform(cluster.state.stepBoundary(now: cluster.now))
        cluster.deliver()
        #expect(cluster.state.active.holders == home.holders)
        #expect(cluster.state.health(now: cluster.now) == .ready)
        // The survivors were told to drop what they took over.
        #expect(cluster.workers[0].held == Set(home.experts(ofWorker: 0)))
        let flight = cluster.dispatch(routing, hidden: hidden)
        cluster.deliver()
        #expect(cluster.state.outcome(of: flight) == .done(expected))
        #expect(cluster.dispatchesTo["spare", default: 0] >= 1)
    }

    @Test("a second worker under a live worker's name waits; once the first is gone it takes the slot")
    func uniqueNames() {
        var cluster = Cluster(workers: ["w0", "w1"], named: false)
        cluster.startAll()
        let first = cluster.workers.firstIndex { $0.name == "w0" }!
        let twin = cluster.start("w0")
        cluster.deliver()
        #expect(!cluster.state.isWorker(cluster.workers[twin].peer))
        #expect(cluster.logs.contains { $0.contains("taken by a live worker") })
        // The first one's process died: the probe sent with the refusal finds it gone.
        cluster.workers[first].dead = true
        cluster.toCoordinator.append((cluster.workers[twin].peer, .hello(.init(workerName: "w0", modelFingerprint: "model", threads: 1, pid: 9))))
        cluster.deliver()
        cluster.toCoordinator.append((cluster.workers[twin].peer, .hello(.init(workerName: "w0", modelFingerprint: "model", threads: 1, pid: 9))))
        cluster.deliver()
        #expect(cluster.state.isWorker(cluster.workers[twin].peer))
        #expect(cluster.state.readyWorkerCount == 2)
    }

    @Test("the same process registering again keeps its slot and its readiness")
    func registeringAgain() {
        var cluster = Cluster(workers: ["w0", "w1"])
        cluster.startAll()
        cluster.toCoordinator.append((cluster.workers[0].peer, .hello(.init(workerName: "w0", modelFingerprint: "model", threads: 1, pid: 1))))
        cluster.deliver()
        #expect(cluster.state.readyWorkerCount == 2)
        #expect(cluster.state.counters.workersJoined == 2)
    }

    @Test("an unknown peer's heartbeats are answered 'send HELLO' at most once a second")
    func unknownPeer() {
        var cluster = Cluster(workers: ["w0"])
        let stranger = PeerIdentity("stranger")
        var answers = 0
        for _ in 0..<20 {
            answers += cluster.state.handle(.received(stranger, .heartbeat(.init(sentUnixMillis: 0))), now: cluster.now).count
            cluster.now += .milliseconds(100)
        }
        #expect(answers == 2)
    }

    @Test("with no room on the survivors, rows wait for a worker to join, then resume with the same bits")
    func waitForRejoin() {
        var cluster = Cluster(workers: ["w0", "w1"], policy: LivenessPolicy(rejoinTimeout: .seconds(30), expertBudget: 4))
        cluster.startAll()
        cluster.kill("w1")
        let flight = cluster.dispatch(routing, hidden: hidden)
        cluster.deliver()
        #expect(cluster.state.outcome(of: flight) == .pending)
        guard case .stalled(let reason) = cluster.state.health(now: cluster.now) else {
            Issue.record("health is \(cluster.state.health(now: cluster.now)), expected stalled")
            return
        }
        #expect(reason.contains("no live worker") && reason.contains("switchyard worker"))
        cluster.advance(.seconds(10))
        #expect(cluster.state.outcome(of: flight) == .pending)
        _ = cluster.start("w1")
        cluster.deliver()
        #expect(cluster.state.outcome(of: flight) == .done(expected))
    }

    @Test("past the rejoin timeout the waiting rows fail with an error that says so")
    func rejoinTimeout() {
        var cluster = Cluster(workers: ["w0", "w1"], policy: LivenessPolicy(rejoinTimeout: .seconds(5), expertBudget: 4))
        cluster.startAll()
        cluster.kill("w0")
        let flight = cluster.dispatch(routing, hidden: hidden)
        cluster.deliver()
        cluster.advance(.seconds(3))
        #expect(cluster.state.outcome(of: flight) == .pending)
        cluster.advance(.seconds(3))
        guard case .failed(.expertsFailed(let message)) = cluster.state.outcome(of: flight) else {
            Issue.record("the flight did not fail")
            return
        }
        #expect(message.contains("rejoin timeout 5.0 s"))
    }

    @Test("rows whose experts no single survivor holds are split per expert and still add up to the same bits (top-3)")
    func splitRows() {
        // w0 holds 0-3, w1 holds 4-7 (even split of two workers, each expert on one); with a
        // replica placement of 4 workers, rows of a lost worker may need two survivors.
        var cluster = Cluster(workers: ["w0", "w1", "w2", "w3"], replicas: 2)
        cluster.startAll()
        cluster.kill("w1")
        cluster.kill("w3")
        let hidden3 = Array(hidden.prefix(4 * Cluster.hiddenSize))
        let flight = cluster.dispatch(routing3, hidden: hidden3)
        cluster.deliver()
        #expect(cluster.state.outcome(of: flight) == .done(singlePlace(routing3)))
        #expect(cluster.state.counters.failovers == 0)
        // Expert 1 went to w0, experts 2 and 3 to w2: the row was split.
        #expect(cluster.dispatchesTo["w0", default: 0] >= 2 && cluster.dispatchesTo["w2", default: 0] >= 2)
    }

    @Test("a placement change is refused while a worker is missing, and accepted once it is back")
    func stagingWhileDegraded() {
        var cluster = Cluster(workers: ["w0", "w1"])
        cluster.startAll()
        let proposal = cluster.state.home
        cluster.kill("w1")
        cluster.perform(cluster.state.handle(.connectionClosed, now: cluster.now))
        #expect(throws: PlacementError.self) { _ = try cluster.state.stage(proposal, now: cluster.now) }
        _ = cluster.start("w1")
        cluster.deliver()
        cluster.perform(cluster.state.stepBoundary(now: cluster.now))
        cluster.deliver()
        let (ticket, actions) = try! cluster.state.stage(proposal, now: cluster.now)
        cluster.perform(actions)
        cluster.deliver()
        cluster.perform(cluster.state.stepBoundary(now: cluster.now))
        #expect(cluster.state.placementOutcome(ticket) == .applied)
    }
}

@Suite("Verification of dispatches on a second holder (ClusterState, no sockets, no clock)")
struct DispatchVerificationTests {
    static let everyDispatch = VerificationPolicy(fraction: 1, seed: 7)

    @Test("a dishonest worker changes the result when nothing is verified (the perturbation matters)")
    func undetectedWithoutVerification() {
        var cluster = Cluster(workers: ["w0", "w1"], replicas: 2)
        cluster.startAll()
        cluster.corrupt("w1")
        let flight = cluster.dispatch(routing, hidden: hidden)
        cluster.deliver()
        guard case .done(let output) = cluster.state.outcome(of: flight) else {
            Issue.record("the flight did not finish")
            return
        }
        #expect(output.map(\.bitPattern) != expected.map(\.bitPattern))
        #expect(cluster.state.readyWorkerCount == 2)
    }

    @Test(
        "with every dispatch verified a dishonest worker is caught, taken out of the placement, counted, and the result is the honest one",
        arguments: [2, 3])
    func dishonestWorkerCaught(workers count: Int) {
        let names = (0..<count).map { "w\($0)" }
        var cluster = Cluster(workers: names, replicas: 2, verification: Self.everyDispatch)
        cluster.startAll()
        cluster.corrupt("w1")
        let flight = cluster.dispatch(routing, hidden: hidden)
        cluster.deliver()
        #expect(cluster.state.outcome(of: flight) == .done(expected))
        #expect(cluster.arbitrations >= 1)
        #expect(Set(cluster.faulty) == ["w1"])
        #expect(cluster.state.counters.verifyMismatches["w1", default: 0] >= 1)
        #expect(cluster.state.counters.verifyMismatches.keys.sorted() == ["w1"])
        #expect(cluster.state.counters.verifiedDispatches >= 1)
        // Out of the placement: no expert is held by its slot any more, as after a lost worker.
        #expect(cluster.state.readyWorkerCount == count - 1)
        #expect(cluster.state.counters.workersLost == 1)
        #expect(!cluster.state.active.holders.joined().contains { $0.contains(1) })
        #expect(cluster.logs.contains { $0.contains("FAULTY w1") && $0.contains("differs bitwise") })
        #expect(cluster.logs.contains { $0.contains("worker w1") && $0.contains("lost: taken out of the placement") })

        // Later dispatches go to the honest workers only and give the honest result.
        let sentToW1 = cluster.dispatchesTo["w1", default: 0]
        for _ in 0..<3 {
            let next = cluster.dispatch(routing, hidden: hidden)
            cluster.deliver()
            #expect(cluster.state.outcome(of: next) == .done(expected))
        }
        #expect(cluster.dispatchesTo["w1", default: 0] == sentToW1)
        // Experts left with one holder cannot be verified: counted, and said once in the log.
        #expect(cluster.state.counters.unverifiableDispatches >= 1)
        cluster.advance(.milliseconds(250))
        cluster.advance(.milliseconds(250))
        #expect(cluster.logs.filter { $0.contains("have a single holder") }.count == 1)

        // The same name may not register again.
        _ = cluster.start("w1")
        cluster.deliver()
        #expect(cluster.state.readyWorkerCount == count - 1)
        #expect(cluster.logs.contains { $0.contains("refused worker w1") && $0.contains("taken out of the placement") })
    }

    @Test("with verification off nothing is dispatched twice; with every dispatch verified each batch goes to two holders")
    func noExtraDispatchesWhenOff() {
        var off = Cluster(workers: ["w0", "w1", "w2"], replicas: 2, verification: VerificationPolicy(fraction: 0, seed: 7))
        var on = Cluster(workers: ["w0", "w1", "w2"], replicas: 2, verification: Self.everyDispatch)
        off.startAll()
        on.startAll()
        let planned = off.plannedBatches(routing)
        #expect(planned == on.plannedBatches(routing))
        let offBefore = off.dispatchesTo.values.reduce(0, +)
        let onBefore = on.dispatchesTo.values.reduce(0, +)
        for _ in 0..<5 {
            let a = off.dispatch(routing, hidden: hidden)
            off.deliver()
            #expect(off.state.outcome(of: a) == .done(expected))
            let b = on.dispatch(routing, hidden: hidden)
            on.deliver()
            #expect(on.state.outcome(of: b) == .done(expected))
        }
        #expect(off.dispatchesTo.values.reduce(0, +) - offBefore == 5 * planned)
        #expect(off.state.counters.verifiedDispatches == 0 && off.state.counters.unverifiableDispatches == 0)
        #expect(on.dispatchesTo.values.reduce(0, +) - onBefore > 5 * planned)
        #expect(on.state.counters.verifiedDispatches == 5 * planned)
        #expect(on.arbitrations == 0 && on.faulty.isEmpty)
    }

    @Test("a fraction verifies about that share of dispatches, the same ones for the same seed")
    func sampledFraction() {
        func run(seed: UInt64) -> (verified: Int, batches: Int) {
            var cluster = Cluster(workers: ["w0", "w1"], replicas: 2, verification: VerificationPolicy(fraction: 0.5, seed: seed))
            cluster.startAll()
            var batches = 0
            for _ in 0..<40 {
                batches += cluster.plannedBatches(routing)
                let flight = cluster.dispatch(routing, hidden: hidden)
                cluster.deliver()
                #expect(cluster.state.outcome(of: flight) == .done(expected))
            }
            return (cluster.state.counters.verifiedDispatches, batches)
        }
        let first = run(seed: 42)
        #expect(first.verified > first.batches / 4 && first.verified < first.batches * 3 / 4, "\(first)")
        #expect(run(seed: 42).verified == first.verified)
    }

    @Test("workers lost while they compute or check verified dispatches: the rows are computed and checked elsewhere, same bits")
    func lossDuringVerification() {
        var cluster = Cluster(workers: ["w0", "w1", "w2", "w3"], replicas: 2, verification: Self.everyDispatch)
        cluster.startAll()
        cluster.kill("w2")
        let flight = cluster.dispatch(routing, hidden: hidden)
        cluster.deliver()
        #expect(cluster.state.outcome(of: flight) == .done(expected))
        #expect(cluster.state.counters.workersLost == 1)
        cluster.stop("w0")
        let hung = cluster.dispatch(routing, hidden: hidden)
        cluster.deliver()
        cluster.advance(.seconds(12))
        #expect(cluster.state.outcome(of: hung) == .done(expected))
        #expect(cluster.state.counters.workersLost == 2)
        #expect(cluster.faulty.isEmpty && cluster.arbitrations == 0)
        #expect(cluster.state.counters.verifiedDispatches >= 1)
    }

    @Test("without a second holder every sampled dispatch is counted unverifiable and the log says why")
    func singleHolders() {
        var cluster = Cluster(workers: ["w0", "w1"], replicas: 1, verification: Self.everyDispatch)
        cluster.startAll()
        cluster.advance(.milliseconds(250))
        #expect(cluster.logs.contains { $0.contains("16 of 16 experts have a single holder") && $0.contains("--replicas 2") })
        let before = cluster.dispatchesTo.values.reduce(0, +)
        let flight = cluster.dispatch(routing, hidden: hidden)
        cluster.deliver()
        #expect(cluster.state.outcome(of: flight) == .done(expected))
        #expect(cluster.dispatchesTo.values.reduce(0, +) - before == cluster.plannedBatches(routing))
        #expect(cluster.state.counters.unverifiableDispatches == cluster.plannedBatches(routing))
        #expect(cluster.state.counters.verifiedDispatches == 0)
    }
}
