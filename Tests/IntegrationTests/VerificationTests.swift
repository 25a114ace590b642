// `serve --verify-fraction`: a worker whose answers differ from the coordinator's own computation
// is caught, taken out of the placement and logged, and the user's tokens stay the honest ones.
import Foundation
import Models
import Synchronization
import TestSupport
import Testing
import Tensors
import Transport
import Wire

/// A worker that speaks the real protocol and computes its experts with the real kernels, but adds
/// 8 to the first value of every answer: a faulty or dishonest worker. Built here, in the test: the
/// production worker has no such switch.
final class DishonestWorker: Sendable {
    struct Record {
        var stop = false
        var dispatches = 0
        var bye: String?
        var errors: [String] = []
    }

    private let record = Mutex(Record())

    /// Connects to `endpoint` and registers as `name` with `model`'s digests (they are right: only
    /// the answers are wrong).
    init(endpoint: String, model: URL, name: String, security: DealerSecurity) throws {
        let checkpoint = try Checkpoint(directory: model)
        let digests = try checkpoint.expertTensorDigests(cache: .standard()) { _ in }
        let hello = WireCodec.encode(.hello(.init(
            workerName: name, modelFingerprint: checkpoint.fingerprint, threads: 1, pid: Int(getpid()),
            expertTensorDigests: digests.digests)))
        let thread = Thread { [self] in
            do {
                // The socket lives and dies on this thread.
                let socket = try DealerSocket(
                    context: ZMQContext(), connect: endpoint, identity: PeerIdentity("\(name)-\(getpid())"), security: security)
                try socket.send(frames: hello)
                var store: ExpertStore?
                var lastBeat = ContinuousClock.now
                while !record.withLock({ $0.stop }) {
                    if ContinuousClock.now - lastBeat > .milliseconds(200) {
                        try socket.send(frames: WireCodec.encode(.heartbeat(.init(sentUnixMillis: 0))))
                        lastBeat = .now
                    }
                    guard let frames = try socket.receive(timeout: .milliseconds(50)) else { continue }
                    switch try WireCodec.decode(frames) {
                    case .assign(let assign):
                        store = try ExpertStore(
                            checkpoint: checkpoint, experts: assign.experts, arithmetic: assign.arithmetic,
                            quantization: assign.quantization)
                        try socket.send(frames: WireCodec.encode(.ready(.init(loadedExpertCount: assign.experts.count, loadSeconds: 0))))
                    case .dispatch(let dispatch):
                        guard let store else { continue }
                        var outputs = try store.compute(
                            layer: dispatch.layer, hidden: dispatch.hiddenStates.floats(), rowCount: dispatch.rowCount,
                            rowExpertOffsets: dispatch.rowExpertOffsets.map { UInt32($0) },
                            expertIDs: dispatch.expertIDs.map { UInt32($0.rawValue) }, weights: dispatch.weights)
                        outputs[0] += 8
                        record.withLock { $0.dispatches += 1 }
                        try socket.send(frames: WireCodec.encode(.combine(.init(
                            requestID: dispatch.requestID, step: dispatch.step, layer: dispatch.layer,
                            outputs: HiddenStates(
                                rowCount: dispatch.rowCount, hiddenSize: checkpoint.shape.hiddenSize, values: outputs, dtype: .f32),
                            computeMicroseconds: 1))))
                    case .bye(let bye):
                        record.withLock { $0.bye = bye.reason }
                        return
                    case .error(let report):
                        record.withLock { $0.errors.append(report.message) }
                    default:
                        break
                    }
                }
            } catch {
                record.withLock { $0.errors.append("\(error)") }
            }
        }
        thread.name = "dishonest-worker"
        thread.start()
    }

    var dispatches: Int { record.withLock { $0.dispatches } }
    var bye: String? { record.withLock { $0.bye } }
    var errors: [String] { record.withLock { $0.errors } }

    func stop() { record.withLock { $0.stop = true } }
}

@Suite("verification: --verify-fraction catches a worker whose answers differ", .serialized)
struct VerificationTests {
    @Test("with --verify-fraction 1 a dishonest worker is taken out of the placement, logged with its key and address, counted, and the tokens are the honest ones")
    func dishonestWorkerCaught() throws {
        let model = try ServeTests.makeModel(seed: 11)
        let cluster = try ServedCluster(
            model: model, workers: 2, extraArguments: ["--replicas", "2", "--verify-fraction", "1"])
        try cluster.startWorker(model: model, name: "honest")
        let liar = try DishonestWorker(
            endpoint: cluster.endpoint, model: model, name: "liar", security: cluster.dealerSecurity("worker"))
        defer { liar.stop() }
        try cluster.waitUntilServing()

        let common = ["--prompt", "verified twice", "--max-tokens", "8", "--temperature", "0", "--ignore-eos"]
        let remote = try generateJSON(common + cluster.clientArguments)
        let local = try generateJSON(common + ["--model", model.path])
        #expect(liar.dispatches >= 1)
        #expect(remote.completionTokenIDs == local.completionTokenIDs)

        let log = try cluster.serve.waitForStderr { $0.contains("VERIFICATION FAILED: worker liar") }
        let line = try #require(log.split(separator: "\n").first { $0.contains("VERIFICATION FAILED: worker liar") })
        #expect(line.contains("key worker ("), "\(line)")
        #expect(line.contains("address 127.0.0.1"), "\(line)")
        #expect(line.contains("differs bitwise"), "\(line)")
        #expect(!log.contains("VERIFICATION FAILED: worker honest"), "\(log)")
        _ = try cluster.serve.waitForStderr { $0.contains("worker liar") && $0.contains("lost: taken out of the placement") }
        // The worker is told why it is sent away.
        let deadline = ContinuousClock.now + .seconds(30)
        while liar.bye == nil && ContinuousClock.now < deadline { Thread.sleep(forTimeInterval: 0.05) }
        #expect(liar.bye?.contains("taken out of the placement") == true, "\(String(describing: liar.bye)) \(liar.errors)")

        let metrics = String(decoding: try httpGet(try cluster.httpBase() + "/metrics").body, as: UTF8.self)
        let mismatches = metrics.split(separator: "\n").first { $0.hasPrefix("switchyard_verify_mismatches_total{worker=\"liar\"} ") }
        #expect((mismatches?.split(separator: " ").last.flatMap { Int($0) } ?? 0) >= 1, "\(metrics)")
        #expect(!metrics.contains("switchyard_verify_mismatches_total{worker=\"honest\"}"))
        let verified = metrics.split(separator: "\n").first { $0.hasPrefix("switchyard_verify_dispatches_total ") }
        #expect((verified?.split(separator: " ").last.flatMap { Int($0) } ?? 0) >= 1, "\(metrics)")
        #expect(metrics.contains("switchyard_workers_up 1\n"), "\(metrics)")

        // The next request runs on the honest worker alone, with the same tokens.
        let sentToLiar = liar.dispatches
        let again = try generateJSON(common + cluster.clientArguments)
        #expect(again.completionTokenIDs == local.completionTokenIDs)
        #expect(liar.dispatches == sentToLiar)
    }

    @Test("--verify-fraction outside 0 to 1, or without workers, is refused by name, also from SWITCHYARD_VERIFY_FRACTION")
    func invalidFractionRefused() throws {
        let model = try ServeTests.makeModel(seed: 11)
        let serve = ["serve", "--model", model.path, "--bind", "tcp://127.0.0.1:0", "--http", "127.0.0.1:0", "--insecure"]
        for value in ["1.5", "-0.25", "nan"] {
            // `=`: a separate "-0.25" would be read as an option.
            let output = try runSwitchyard(serve + ["--workers", "2", "--verify-fraction=\(value)"], timeout: .seconds(60))
            #expect(output.status != 0)
            #expect(output.stderr.contains("--verify-fraction is"), "\(value): \(output.stderr)")
        }
        let word = try runSwitchyard(serve + ["--workers", "2", "--verify-fraction", "often"], timeout: .seconds(60))
        #expect(word.status != 0)
        #expect(word.stderr.contains("verify-fraction"), "\(word.stderr)")
        let fromEnvironment = try runSwitchyard(
            serve + ["--workers", "2"], timeout: .seconds(60), environment: ["SWITCHYARD_VERIFY_FRACTION": "2"])
        #expect(fromEnvironment.status != 0)
        #expect(fromEnvironment.stderr.contains("--verify-fraction is 2"), "\(fromEnvironment.stderr)")
        let inProcess = try runSwitchyard(serve + ["--workers", "0", "--verify-fraction", "0.5"], timeout: .seconds(60))
        #expect(inProcess.status != 0)
        #expect(inProcess.stderr.contains("--verify-fraction 0.5 needs workers"), "\(inProcess.stderr)")
        let generate = try runSwitchyard(
            ["generate", "--model", model.path, "--prompt", "x", "--verify-fraction", "0.5"], timeout: .seconds(60))
        #expect(generate.status != 0)
        #expect(generate.stderr.contains("--verify-fraction 0.5 applies to --spawn-workers"), "\(generate.stderr)")
    }
}
