import Foundation
import TestSupport
import Testing
import Tensors
import Transport
import Wire

/// A coordinator (`switchyard serve`) on an ephemeral port, stopped at the end of the test.
///
/// Secure as by default: `switchyard keys generate` makes the coordinator's key pair, one for the
/// workers and one for clients, in a temporary directory; `clientArguments` names the client's.
final class ServedCluster {
    let serve: SwitchyardProcess
    let endpoint: String
    var workers: [SwitchyardProcess] = []
    /// The key directory: coordinator/coordinator.{key,pub}, allowed/{worker,client}.{key,pub}.
    let keys: URL

    /// Makes a key pair NAME in `directory` with `switchyard keys generate`.
    static func generateKeys(in directory: URL, name: String) throws {
        let output = try runSwitchyard(["keys", "generate", "--out", directory.path, "--name", name])
        guard output.status == 0 else { throw TestProcessError(description: "keys generate failed:\n\(output.stderr)") }
    }

    /// `allowedKeys`: further allowed key pairs to make (allowed/NAME.key), besides `worker` and `client`.
    init(model: URL, workers count: Int, extraArguments: [String] = [], allowedKeys: [String] = []) throws {
        keys = TestPaths.scratch.appendingPathComponent("switchyard-keys-\(UUID().uuidString)")
        try Self.generateKeys(in: keys.appendingPathComponent("coordinator"), name: "coordinator")
        for name in ["worker", "client"] + allowedKeys {
            try Self.generateKeys(in: keys.appendingPathComponent("allowed"), name: name)
        }
        serve = SwitchyardProcess([
            "serve", "--model", model.path, "--bind", "tcp://127.0.0.1:0", "--workers", "\(count)", "--http", "127.0.0.1:0",
            "--key", keys.appendingPathComponent("coordinator/coordinator.key").path,
            "--allow-keys", keys.appendingPathComponent("allowed").path,
        ] + extraArguments)
        try serve.start()
        let log = try serve.waitForStderr { $0.contains("coordinator listening on ") }
        guard let line = log.split(separator: "\n").first(where: { $0.contains("coordinator listening on ") }),
            let range = line.range(of: #"tcp://127\.0\.0\.1:[0-9]+"#, options: .regularExpression)
        else { throw TestProcessError(description: "no endpoint in serve's log:\n\(log)") }
        endpoint = String(line[range])
    }

    /// `--key` (the allowed `key` pair) and `--coordinator-key` for a worker or client.
    func keyArguments(_ key: String) -> [String] {
        [
            "--key", keys.appendingPathComponent("allowed/\(key).key").path,
            "--coordinator-key", keys.appendingPathComponent("coordinator/coordinator.pub").path,
        ]
    }

    /// The key pair `name` (allowed) or the coordinator's, read from the files `keys generate` wrote.
    func keyPair(_ path: String) throws -> CurveKeyPair {
        let text = try String(contentsOf: keys.appendingPathComponent(path + ".key"), encoding: .utf8)
        return try CurveKeyPair(secretKey: CurveKey(z85: text))
    }

    /// CURVE security for an in-test dealer holding the allowed key pair `name`.
    func dealerSecurity(_ name: String) throws -> DealerSecurity {
        .curve(client: try keyPair("allowed/\(name)"), serverKey: try keyPair("coordinator/coordinator").publicKey)
    }

    /// `generate` arguments that send a job to this cluster as the allowed client.
    var clientArguments: [String] { ["--coordinator", endpoint] + keyArguments("client") }

    @discardableResult
    func startWorker(model: URL, name: String, keyArguments custom: [String]? = nil) throws -> SwitchyardProcess {
        let worker = SwitchyardProcess(
            ["worker", "--coordinator", endpoint, "--model", model.path, "--name", name] + (custom ?? keyArguments("worker")))
        try worker.start()
        workers.append(worker)
        return worker
    }

    func waitUntilServing() throws {
        _ = try serve.waitForStderr { $0.contains("workers ready; serving") }
    }

    deinit {
        for worker in workers { worker.kill() }
        serve.kill()
        try? FileManager.default.removeItem(at: keys)
    }
}

@Suite("serve: a coordinator with workers started by hand", .serialized)
struct ServeTests {
    static func makeModel(seed: Int) throws -> URL {
        let directory = TestPaths.scratch.appendingPathComponent("switchyard-serve-model-\(seed)")
        if !FileManager.default.fileExists(atPath: directory.appendingPathComponent("config.json").path) {
            let output = try runSwitchyard([
                "make-model", "--out", directory.path, "--hidden", "32", "--layers", "2", "--experts", "4",
                "--top-k", "2", "--vocab", "320", "--heads", "4", "--kv-heads", "2", "--seed", "\(seed)",
            ])
            guard output.status == 0 else { throw TestProcessError(description: output.stderr) }
        }
        return directory
    }

    @Test("jobs sent with generate --coordinator give the in-process tokens")
    func clientEqualsLocal() throws {
        let model = try Self.makeModel(seed: 11)
        let cluster = try ServedCluster(model: model, workers: 2)
        try cluster.startWorker(model: model, name: "alpha")
        try cluster.startWorker(model: model, name: "beta")
        try cluster.waitUntilServing()
        let common = ["--prompt", "served", "--max-tokens", "10", "--temperature", "0", "--ignore-eos", "--logprobs", "3"]
        let remote = try generateJSON(common + cluster.clientArguments)
        let local = try generateJSON(common + ["--model", model.path])
        #expect(remote.completionTokenIDs == local.completionTokenIDs)
        #expect(remote.prefillLoad == local.prefillLoad)
        #expect(Set(remote.workers) == ["alpha", "beta"])
        // A second job on the same cluster.
        let again = try generateJSON(common + cluster.clientArguments)
        #expect(again.completionTokenIDs == local.completionTokenIDs)
    }

    @Test("a worker with another model is refused with a message naming the mismatch, and the coordinator keeps serving")
    func modelMismatch() throws {
        let model = try Self.makeModel(seed: 11)
        let other = try Self.makeModel(seed: 12)
        let cluster = try ServedCluster(model: model, workers: 1)
        let wrong = try cluster.startWorker(model: other, name: "wrong")
        let output = try wrong.wait(timeout: .seconds(60))
        #expect(output.status != 0)
        #expect(output.stderr.contains("another model"), "\(output.stderr)")
        #expect(output.stderr.contains("fingerprint"), "\(output.stderr)")
        #expect(cluster.serve.isRunning)
        try cluster.startWorker(model: model, name: "right")
        try cluster.waitUntilServing()
        let result = try generateJSON(["--prompt", "still serving", "--max-tokens", "4", "--temperature", "0",
                                       ] + cluster.clientArguments)
        #expect(result.completionTokenIDs.count >= 1)
    }

    @Test("bad frames, another protocol version and misshaped messages get ERROR replies while the coordinator keeps serving")
    func badFrames() throws {
        let model = try Self.makeModel(seed: 11)
        let cluster = try ServedCluster(model: model, workers: 1)
        try cluster.startWorker(model: model, name: "only")
        try cluster.waitUntilServing()

        let socket = try DealerSocket(
            context: ZMQContext(), connect: cluster.endpoint, identity: PeerIdentity("bad-frame-tester"),
            security: cluster.dealerSecurity("client"))
        func exchange(_ frames: [[UInt8]]) throws -> WireMessage.ErrorReport? {
            try socket.send(frames: frames)
            guard let reply = try socket.receive(timeout: .seconds(20)) else { return nil }
            guard case .error(let report) = try WireCodec.decode(reply) else { return nil }
            return report
        }
        // Garbage header.
        let garbage = try exchange([[0x0A, 0xFF, 0xFF, 0xFF, 0x7F, 0x01]])
        #expect(garbage?.code == .badFrame, "\(String(describing: garbage))")
        // A COMBINE whose tensor frame is truncated.
        var combine = WireCodec.encode(.combine(.init(
            requestID: RequestID(1), step: StepIndex(1), layer: LayerIndex(0),
            outputs: HiddenStates(rowCount: 2, hiddenSize: 32, values: [Float](repeating: 1, count: 64), dtype: .f32),
            computeMicroseconds: 1)))
        combine[1].removeLast(7)
        let truncated = try exchange(combine)
        #expect(truncated?.code == .badFrame)
        #expect(truncated?.message.contains("tensor frame") == true, "\(String(describing: truncated))")
        // A WELCOME sent to the coordinator (the wrong direction).
        let wrongWay = try exchange(WireCodec.encode(.welcome(.init(workerID: WorkerID(1), coordinatorName: "x"))))
        #expect(wrongWay?.code == .badRequest)
        // A HELLO of another major protocol version.
        // Hand-encoded protobuf: Header{protocol_major: 2, hello: Hello{worker_name: "future"}}.
        let helloV2: [UInt8] = [0x08, 0x02, 0x52, 0x08, 0x0A, 0x06] + Array("future".utf8)
        let versionTwo = try exchange([helloV2])
        #expect(versionTwo?.code == .versionMismatch)
        #expect(versionTwo?.message.contains("2.0") == true, "\(String(describing: versionTwo))")

        let result = try generateJSON(["--prompt", "after bad frames", "--max-tokens", "4", "--temperature", "0",
                                       ] + cluster.clientArguments)
        #expect(result.completionTokenIDs.count >= 1)
        #expect(cluster.serve.isRunning)
    }

    @Test("a bad job gets a clear error and the next job runs")
    func badJob() throws {
        let model = try Self.makeModel(seed: 11)
        let cluster = try ServedCluster(model: model, workers: 1)
        try cluster.startWorker(model: model, name: "only")
        try cluster.waitUntilServing()
        let bad = try runSwitchyard(["generate", "--prompt-token-ids", "1,99999", "--max-tokens", "3",
                                     ] + cluster.clientArguments)
        #expect(bad.status != 0)
        #expect(bad.stderr.contains("99999"), "\(bad.stderr)")
        let good = try generateJSON(["--prompt-token-ids", "1,5,9", "--max-tokens", "3", "--temperature", "0",
                                     ] + cluster.clientArguments)
        #expect(good.completionTokenIDs.count == 3)
    }
}

@Suite("generate --server: the HTTP API from the CLI", .serialized)
struct GenerateServerTests {
    @Test("generate --server streams the same text the in-process run prints, and reports server errors")
    func serverEqualsLocal() throws {
        let model = try ServeTests.makeModel(seed: 11)
        let serve = SwitchyardProcess([
            "serve", "--model", model.path, "--workers", "0", "--bind", "tcp://127.0.0.1:0", "--http", "127.0.0.1:0",
        ])
        try serve.start()
        defer { serve.kill() }
        let log = try serve.waitForStderr { $0.contains("HTTP API listening on ") }
        guard let range = log.range(of: #"http://127\.0\.0\.1:[0-9]+"#, options: .regularExpression) else {
            throw TestProcessError(description: "no HTTP address in serve's log:\n\(log)")
        }
        let base = String(log[range])
        let common = ["--prompt", "over http", "--max-tokens", "9", "--temperature", "0", "--ignore-eos"]
        let local = try runSwitchyard(["generate", "--json", "--model", model.path] + common)
        let localText = try #require(
            (try JSONSerialization.jsonObject(with: Data(local.stdout.utf8)) as? [String: Any])?["text"] as? String)
        let streamed = try runSwitchyard(["generate", "--server", base] + common)
        #expect(streamed.status == 0, "\(streamed.stderr)")
        #expect(streamed.stdout.hasPrefix(localText))
        #expect(streamed.stdout.contains("9 generated (length)"))
        let refused = try runSwitchyard(["generate", "--server", base, "--prompt", "x", "--max-tokens", "999999"])
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("answered 400"), "\(refused.stderr)")
    }
}
