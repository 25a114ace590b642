// HELLO, WELCOME, ASSIGN, READY <-> protobuf-c structs.
import CProtobufC
import Tensors

extension WireMessage.Hello {
    func cMessage(in arena: CArena) -> UnsafeMutablePointer<Switchyard__V1__Hello> {
        var c = Switchyard__V1__Hello()
        switchyard__v1__hello__init(&c)
        c.worker_name = arena.string(workerName)
        c.model_fingerprint = arena.string(modelFingerprint)
        c.threads = wireUInt32(threads, "HELLO threads")
        c.pid = wireUInt32(pid, "HELLO pid")
        let digestBytes = expertTensorDigests.flatMap(\.bytes)
        c.expert_tensor_digests = ProtobufCBinaryData(len: digestBytes.count, data: arena.array(digestBytes))
        c.kernel_path = arena.string(kernelPath)
        return arena.box(c)
    }

    init(_ c: Switchyard__V1__Hello) throws(WireError) {
        let digestBytes = UnsafeBufferPointer(start: c.expert_tensor_digests.data, count: c.expert_tensor_digests.len)
        guard digestBytes.count % TensorDigest.byteCount == 0 else {
            throw .invalidField(
                .hello, field: "expert_tensor_digests",
                reason: "has \(digestBytes.count) bytes, but must be a multiple of \(TensorDigest.byteCount) (SHA-256 digests)")
        }
        /// The string field `field` (`what` it holds), refused past `limit` UTF-8 bytes.
        func bounded(_ pointer: UnsafeMutablePointer<CChar>?, _ field: String, _ what: String, limit: Int) throws(WireError)
            -> String
        {
            let text = swiftString(pointer)
            guard text.utf8.count <= limit else {
                throw .invalidField(.hello, field: field, reason: "has \(text.utf8.count) bytes, but \(what) has at most \(limit)")
            }
            return text
        }
        let workerName = try bounded(c.worker_name, "worker_name", "a worker name", limit: Self.workerNameLimit)
        let kernelPath = try bounded(c.kernel_path, "kernel_path", "a kernel path", limit: Self.kernelPathLimit)
        let digests = stride(from: 0, to: digestBytes.count, by: TensorDigest.byteCount).map { start in
            TensorDigest(bytes: Array(digestBytes[start..<(start + TensorDigest.byteCount)]))!
        }
        self.init(
            workerName: workerName, modelFingerprint: swiftString(c.model_fingerprint),
            threads: Int(c.threads), pid: Int(c.pid), expertTensorDigests: digests, kernelPath: kernelPath)
    }

    /// The longest `worker_name` accepted (a host name is at most 253 bytes; names go into logs, reports and
    /// metric labels).
    public static let workerNameLimit = 255

    /// The longest `kernel_path` accepted (the names are a dozen bytes; it is echoed in refusals and logs).
    static let kernelPathLimit = 32
}

extension WireMessage.Welcome {
    func cMessage(in arena: CArena) -> UnsafeMutablePointer<Switchyard__V1__Welcome> {
        var c = Switchyard__V1__Welcome()
        switchyard__v1__welcome__init(&c)
        c.worker_id = workerID.rawValue
        c.coordinator_name = arena.string(coordinatorName)
        return arena.box(c)
    }

    init(_ c: Switchyard__V1__Welcome) {
        self.init(workerID: WorkerID(c.worker_id), coordinatorName: swiftString(c.coordinator_name))
    }
}

extension WireMessage.Assign {
    func cMessage(in arena: CArena) -> UnsafeMutablePointer<Switchyard__V1__Assign> {
        var c = Switchyard__V1__Assign()
        switchyard__v1__assign__init(&c)
        let entries: [UnsafeMutablePointer<Switchyard__V1__LayerExpert>?] = experts.map { pair in
            var entry = Switchyard__V1__LayerExpert()
            switchyard__v1__layer_expert__init(&entry)
            entry.layer = wireUInt32(pair.layer.rawValue, "ASSIGN layer")
            entry.expert = wireUInt32(pair.expert.rawValue, "ASSIGN expert")
            return arena.box(entry)
        }
        c.n_experts = entries.count
        c.experts = arena.array(entries)
        c.bf16_arithmetic =
            arithmetic == .fast ? SWITCHYARD__V1__BF16_ARITHMETIC__BF16_ARITHMETIC_FAST
            : SWITCHYARD__V1__BF16_ARITHMETIC__BF16_ARITHMETIC_EXACT
        c.quantization =
            quantization == .q8 ? SWITCHYARD__V1__QUANTIZATION__QUANTIZATION_Q8
            : SWITCHYARD__V1__QUANTIZATION__QUANTIZATION_NONE
        return arena.box(c)
    }

    init(_ c: Switchyard__V1__Assign) throws(WireError) {
        let entries = UnsafeBufferPointer(start: c.experts, count: c.n_experts)
        var experts: [LayerExpert] = []
        experts.reserveCapacity(entries.count)
        for (index, entry) in entries.enumerated() {
            guard let entry else {
                throw .invalidField(.assign, field: "experts[\(index)]", reason: "is missing")
            }
            experts.append(
                LayerExpert(layer: LayerIndex(Int(entry.pointee.layer)), expert: ExpertID(Int(entry.pointee.expert))))
        }
        let arithmetic: BFloat16Arithmetic
        switch c.bf16_arithmetic {
        case SWITCHYARD__V1__BF16_ARITHMETIC__BF16_ARITHMETIC_EXACT: arithmetic = .exact
        case SWITCHYARD__V1__BF16_ARITHMETIC__BF16_ARITHMETIC_FAST: arithmetic = .fast
        default:
            throw .invalidField(
                .assign, field: "bf16_arithmetic", reason: "is \(c.bf16_arithmetic.rawValue), but must be 0 (exact) or 1 (fast)")
        }
        let quantization: WeightQuantization
        switch c.quantization {
        case SWITCHYARD__V1__QUANTIZATION__QUANTIZATION_NONE: quantization = .none
        case SWITCHYARD__V1__QUANTIZATION__QUANTIZATION_Q8: quantization = .q8
        default:
            throw .invalidField(
                .assign, field: "quantization", reason: "is \(c.quantization.rawValue), but must be 0 (none) or 1 (q8)")
        }
        self.init(experts: experts, arithmetic: arithmetic, quantization: quantization)
    }
}

extension WireMessage.Ready {
    func cMessage(in arena: CArena) -> UnsafeMutablePointer<Switchyard__V1__Ready> {
        var c = Switchyard__V1__Ready()
        switchyard__v1__ready__init(&c)
        c.loaded_expert_count = wireUInt32(loadedExpertCount, "READY loaded_expert_count")
        c.load_seconds = loadSeconds
        return arena.box(c)
    }

    init(_ c: Switchyard__V1__Ready) throws(WireError) {
        guard c.load_seconds.isFinite, c.load_seconds >= 0 else {
            throw .invalidField(.ready, field: "load_seconds", reason: "is \(c.load_seconds), but must be finite and ≥ 0")
        }
        self.init(loadedExpertCount: Int(c.loaded_expert_count), loadSeconds: c.load_seconds)
    }
}
