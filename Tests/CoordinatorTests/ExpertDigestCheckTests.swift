// Registration compares a worker's full-content expert tensor digests with the coordinator's.
import Models
import Tensors
import Testing
import Transport
import Wire

@testable import Coordinator

@Suite("Registration checks every expert tensor's digest (ClusterState, no sockets)")
struct ExpertDigestCheckTests {
    static let shape = ModelShape(
        hiddenSize: 4, vocabularySize: 8, expertCounts: [2], expertsPerToken: 1, keyValueWidths: [4],
        slidingWindows: [nil], maxPositionEmbeddings: 16, bosTokenID: nil, eosTokenIDs: [])
    static let names = ["e0.gate", "e0.up", "e0.down", "e1.gate", "e1.up", "e1.down"]
    static let digests = (0..<6).map { TensorDigest(bytes: [UInt8](repeating: UInt8($0), count: 32))! }

    /// The coordinator's answers to one HELLO carrying `digests`.
    static func register(_ digests: [TensorDigest]) -> [ClusterAction] {
        let placement = try! Placement.replicated(expertCounts: shape.expertCounts, workerNames: ["w0"], replicas: 1)
        var state = ClusterState(
            shape: shape, fingerprint: "model", placement: placement, namedSlots: true, policy: LivenessPolicy(),
            arithmetic: .exact, quantization: .none, joinHint: "switchyard worker …",
            expertDigests: ExpertTensorDigests(names: names, digests: Self.digests))
        let hello = WireMessage.Hello(
            workerName: "w0", modelFingerprint: "model", threads: 1, pid: 1, expertTensorDigests: digests)
        return state.handle(.received(PeerIdentity("w0-1"), .hello(hello)), now: .zero)
    }

    static func refusal(_ actions: [ClusterAction]) -> (log: String, reply: WireMessage.ErrorReport)? {
        var log: String?
        var reply: WireMessage.ErrorReport?
        for action in actions {
            if case .log(_, let line) = action { log = line }
            if case .send(_, .error(let report)) = action { reply = report }
        }
        guard let log, let reply else { return nil }
        return (log, reply)
    }

    @Test("equal digests register the worker and assign it experts")
    func equalDigests() {
        let actions = Self.register(Self.digests)
        #expect(Self.refusal(actions) == nil)
        #expect(actions.contains { if case .send(_, .assign) = $0 { true } else { false } })
    }

    @Test("one differing digest is refused with that tensor's name, logged and sent to the worker")
    func oneDiffers() throws {
        var digests = Self.digests
        digests[4] = TensorDigest(bytes: [UInt8](repeating: 0xAB, count: 32))!
        let (log, reply) = try #require(Self.refusal(Self.register(digests)))
        #expect(reply.code == .modelMismatch)
        #expect(reply.message.contains("expert tensor e1.up differs"), "\(reply.message)")
        #expect(log.contains("refused worker w0") && log.contains("e1.up"), "\(log)")
    }

    @Test("a HELLO without digests (an older worker) or with another count is refused", arguments: [0, 5, 7])
    func wrongCount(count: Int) throws {
        let digests = (0..<count).map { Self.digests[$0 % 6] }
        let (_, reply) = try #require(Self.refusal(Self.register(digests)))
        #expect(reply.code == .modelMismatch)
        #expect(reply.message.contains("sent \(count) expert tensor digests, but the model has 6"), "\(reply.message)")
    }
}
