// Registration compares a worker's kernel path with the coordinator's where the bits depend on it.
import Kernels
import Models
import Tensors
import Testing
import Transport
import Wire

@testable import Coordinator

@Suite("Registration refuses a worker whose fast bf16 products would not give the coordinator's bits")
struct KernelPathCheckTests {
    /// The coordinator's answers to one HELLO naming `workerPath`, the coordinator on `coordinatorPath`.
    static func register(
        worker workerPath: String, coordinator coordinatorPath: KernelISA, arithmetic: BFloat16Arithmetic = .fast,
        quantization: WeightQuantization = .none
    ) -> [ClusterAction] {
        let shape = ExpertDigestCheckTests.shape
        let placement = try! Placement.replicated(expertCounts: shape.expertCounts, workerNames: ["w0"], replicas: 1)
        var state = ClusterState(
            shape: shape, fingerprint: "model", placement: placement, namedSlots: true, policy: LivenessPolicy(),
            arithmetic: arithmetic, quantization: quantization, joinHint: "switchyard worker …",
            kernelPath: coordinatorPath)
        let hello = WireMessage.Hello(
            workerName: "w0", modelFingerprint: "model", threads: 1, pid: 1, kernelPath: workerPath)
        return state.handle(.received(PeerIdentity("w0-1"), .hello(hello)), now: .zero)
    }

    static func assigned(_ actions: [ClusterAction]) -> Bool {
        ExpertDigestCheckTests.refusal(actions) == nil
            && actions.contains { if case .send(_, .assign) = $0 { true } else { false } }
    }

    @Test(
        "paths that give the same bits register, whichever CPUs they name",
        arguments: [("avx2", KernelISA.avx512bf16), ("neon", .avx2), ("scalar", .avx512), ("avx2vnni", .neon),
                    ("amx", .amx), ("", .avx512bf16)])
    func alike(worker: String, coordinator: KernelISA) {
        #expect(Self.assigned(Self.register(worker: worker, coordinator: coordinator)))
    }

    @Test("amx on one side only is refused with fast bf16 experts, naming both paths and the fix",
          arguments: [("amx", KernelISA.avx512bf16), ("avx2", .amx), ("", .amx)])
    func mixed(worker: String, coordinator: KernelISA) throws {
        let (log, reply) = try #require(ExpertDigestCheckTests.refusal(Self.register(worker: worker, coordinator: coordinator)))
        #expect(reply.code == .badRequest)
        #expect(reply.message.contains("coordinator's is \(coordinator)"), "\(reply.message)")
        #expect(reply.message.contains("kernel path \(worker.isEmpty ? "not named" : worker)"), "\(reply.message)")
        #expect(reply.message.contains("SWITCHYARD_KERNEL=amx on every host or on none"), "\(reply.message)")
        #expect(log.contains("refused worker w0"), "\(log)")
    }

    @Test("exact arithmetic and q8 experts give every path the same bits: amx on one side registers")
    func sharedBits() {
        #expect(Self.assigned(Self.register(worker: "amx", coordinator: .avx512bf16, arithmetic: .exact)))
        #expect(Self.assigned(Self.register(worker: "avx2", coordinator: .amx, quantization: .q8)))
    }

    @Test("a path this version does not know is refused with fast bf16 experts, by name")
    func unknown() throws {
        let (_, reply) = try #require(
            ExpertDigestCheckTests.refusal(Self.register(worker: "sve2", coordinator: .avx512bf16)))
        #expect(reply.code == .badRequest)
        #expect(reply.message.contains("kernel path \"sve2\", which this coordinator does not know"), "\(reply.message)")
        #expect(Self.assigned(Self.register(worker: "sve2", coordinator: .avx512bf16, arithmetic: .exact)))
    }
}
