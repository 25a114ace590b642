import Foundation
import Models
import TestSupport
import Testing
import Transport
import Wire

/// The attacks of issue 18 against a coordinator started as the README says (CURVE keys, the
/// default): each is refused, logged, and gets nothing back.
@Suite("security: CURVE on the worker endpoint", .serialized)
struct SecurityTests {
    /// Waits (bounded, generously) until `socket`'s handshake ends in something other than
    /// "still trying", and returns that event.
    static func handshakeOutcome(_ socket: DealerSocket) throws -> HandshakeEvent {
        let deadline = ContinuousClock.now + .seconds(60)
        while ContinuousClock.now < deadline {
            if let event = try socket.handshakeEvents().first { return event }
            Thread.sleep(forTimeInterval: 0.02)
        }
        throw TestProcessError(description: "no handshake outcome within 60 s")
    }

    /// A HELLO as a real worker of `model` sends it (its fingerprint is not a secret).
    static func validHello(model: URL, name: String) throws -> [[UInt8]] {
        let checkpoint = try Checkpoint(directory: model)
        return WireCodec.encode(.hello(.init(workerName: name, modelFingerprint: checkpoint.fingerprint, threads: 1, pid: 1)))
    }

    @Test("a peer whose key is not on the allow-list is refused in the handshake, receives no frame, and is logged with its key and address")
    func unlistedKey() throws {
        let model = try ServeTests.makeModel(seed: 11)
        let cluster = try ServedCluster(model: model, workers: 1)
        let intruder = try CurveKeyPair.generate()
        let serverKey = try cluster.keyPair("coordinator/coordinator").publicKey
        let socket = try DealerSocket(
            context: ZMQContext(), connect: cluster.endpoint, identity: PeerIdentity("w0"),
            options: SocketOptions(sendTimeout: .milliseconds(100)), security: .curve(client: intruder, serverKey: serverKey))
        // Queued, or refused at once when the handshake already failed: either way nothing gets through.
        _ = try? socket.send(frames: try Self.validHello(model: model, name: "w0"))
        let outcome = try Self.handshakeOutcome(socket)
        #expect(outcome == .refused(status: 400), "\(outcome)")
        #expect(try socket.receive(timeout: .zero) == nil)
        let log = try cluster.serve.waitForStderr { $0.contains(intruder.publicKey.z85) }
        #expect(log.contains("refused a peer at 127.0.0.1"), "\(log)")
        #expect(log.contains("not on the allow-list"), "\(log)")
        // The refused peer filled no slot: the coordinator still waits for its worker.
        #expect(!cluster.serve.stderr.contains("workers ready; serving"))
    }

    @Test("a plaintext DEALER sending a valid HELLO gets nothing back, and the coordinator logs the refusal")
    func plaintextPeer() throws {
        let model = try ServeTests.makeModel(seed: 11)
        let cluster = try ServedCluster(model: model, workers: 1)
        let socket = try DealerSocket(
            context: ZMQContext(), connect: cluster.endpoint, identity: PeerIdentity("w0"),
            options: SocketOptions(sendTimeout: .milliseconds(100)))
        _ = try? socket.send(frames: try Self.validHello(model: model, name: "w0"))
        // The dealer sees the mechanism mismatch itself, or the coordinator closing on it first.
        let outcome = try Self.handshakeOutcome(socket)
        switch outcome {
        case .protocolError, .closedDuringHandshake: break
        default: Issue.record("expected a failed handshake, got \(outcome)")
        }
        #expect(try socket.receive(timeout: .zero) == nil)
        let log = try cluster.serve.waitForStderr { $0.contains("failed the handshake") }
        // Whichever side notices the mismatch first closes: the coordinator logs the mismatch, or
        // the peer hanging up during the handshake (libzmq's monitor then has no detail).
        #expect(
            log.contains("speaks plaintext where CURVE is expected") || log.contains("closed the connection during the handshake"),
            "\(log)")
    }

    @Test("a worker with the wrong coordinator key, or none (--insecure), exits with a message saying what to fix")
    func workerWithoutTheRightKeys() throws {
        let model = try ServeTests.makeModel(seed: 11)
        let cluster = try ServedCluster(model: model, workers: 1)
        // The worker's own (allowed) key, but another key pair's public key as the coordinator's.
        try ServedCluster.generateKeys(in: cluster.keys.appendingPathComponent("other"), name: "impostor")
        let wrongServer = try cluster.startWorker(
            model: model, name: "w0",
            keyArguments: [
                "--key", cluster.keys.appendingPathComponent("allowed/worker.key").path,
                "--coordinator-key", cluster.keys.appendingPathComponent("other/impostor.pub").path,
            ])
        let wrong = try wrongServer.wait(timeout: .seconds(120))
        #expect(wrong.status != 0)
        #expect(wrong.stderr.contains("--coordinator-key is not the public key"), "\(wrong.stderr)")

        let plaintext = try cluster.startWorker(model: model, name: "w0", keyArguments: ["--insecure"])
        let insecure = try plaintext.wait(timeout: .seconds(120))
        #expect(insecure.status != 0)
        #expect(insecure.stderr.contains("requires CURVE"), "\(insecure.stderr)")
        #expect(insecure.stderr.contains("switchyard keys generate"), "\(insecure.stderr)")
        #expect(!cluster.serve.stderr.contains("workers ready; serving"))

        // The right keys still work.
        try cluster.startWorker(model: model, name: "w0")
        try cluster.waitUntilServing()
    }

    @Test("a worker name that is also a key's name belongs to that key: another listed key cannot take it over")
    func nameTakeover() throws {
        let model = try ServeTests.makeModel(seed: 11)
        let cluster = try ServedCluster(model: model, workers: 1, allowedKeys: ["w0", "mallory"])
        let impostor = try cluster.startWorker(model: model, name: "w0", keyArguments: cluster.keyArguments("mallory"))
        let refused = try impostor.wait(timeout: .seconds(120))
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("the worker name w0 belongs to the key w0"), "\(refused.stderr)")
        #expect(!cluster.serve.stderr.contains("workers ready; serving"))
        #expect(cluster.serve.stderr.contains("refused worker w0"), "\(cluster.serve.stderr)")

        try cluster.startWorker(model: model, name: "w0", keyArguments: cluster.keyArguments("w0"))
        try cluster.waitUntilServing()
    }

    @Test("generate --coordinator without credentials, or in plaintext, gets no generation")
    func clientWithoutCredentials() throws {
        let model = try ServeTests.makeModel(seed: 11)
        let cluster = try ServedCluster(model: model, workers: 1)
        try cluster.startWorker(model: model, name: "w0")
        try cluster.waitUntilServing()
        let prompt = ["generate", "--prompt", "secret", "--max-tokens", "3", "--coordinator", cluster.endpoint]
        let none = try runSwitchyard(prompt, timeout: .seconds(120))
        #expect(none.status != 0)
        #expect(none.stderr.contains("switchyard keys generate"), "\(none.stderr)")
        #expect(none.stdout.isEmpty)

        let plaintext = try runSwitchyard(prompt + ["--insecure"], timeout: .seconds(120))
        #expect(plaintext.status != 0)
        #expect(plaintext.stderr.contains("requires CURVE"), "\(plaintext.stderr)")
        #expect(plaintext.stdout.isEmpty)

        // The worker's key is allowed too, but a client with an unlisted key is refused.
        try ServedCluster.generateKeys(in: cluster.keys.appendingPathComponent("other"), name: "stranger")
        let stranger = try runSwitchyard(
            prompt + [
                "--key", cluster.keys.appendingPathComponent("other/stranger.key").path,
                "--coordinator-key", cluster.keys.appendingPathComponent("coordinator/coordinator.pub").path,
            ], timeout: .seconds(120))
        #expect(stranger.status != 0)
        #expect(stranger.stderr.contains("refused this key"), "\(stranger.stderr)")
        #expect(stranger.stdout.isEmpty)
    }

    @Test("keys generate writes a secret key of mode 0600 and a public key, and never overwrites them")
    func keysGenerate() throws {
        let directory = TestPaths.scratch.appendingPathComponent("switchyard-keys-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        try ServedCluster.generateKeys(in: directory, name: "w7")
        let secret = directory.appendingPathComponent("w7.key")
        let attributes = try FileManager.default.attributesOfItem(atPath: secret.path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        let pair = try CurveKeyPair(secretKey: CurveKey(z85: String(contentsOf: secret, encoding: .utf8)))
        let published = try CurveKey(z85: String(contentsOf: directory.appendingPathComponent("w7.pub"), encoding: .utf8))
        #expect(pair.publicKey == published)
        let again = try runSwitchyard(["keys", "generate", "--out", directory.path, "--name", "w7"])
        #expect(again.status != 0)
        #expect(again.stderr.contains("refusing to overwrite"), "\(again.stderr)")
        #expect(try CurveKeyPair(secretKey: CurveKey(z85: String(contentsOf: secret, encoding: .utf8))).publicKey == published)
    }

    @Test("serve without keys or --insecure refuses to start and says how to make keys")
    func serveNeedsKeys() throws {
        let model = try ServeTests.makeModel(seed: 11)
        let output = try runSwitchyard(["serve", "--model", model.path, "--bind", "tcp://127.0.0.1:0", "--http", "127.0.0.1:0"])
        #expect(output.status != 0)
        #expect(output.stderr.contains("switchyard keys generate"), "\(output.stderr)")
        #expect(output.stderr.contains("--insecure"), "\(output.stderr)")
    }
}
