// DISPATCH, COMBINE and the tensor-frame dtype <-> protobuf-c structs.
import CProtobufC
import Tensors

extension WireDType {
    var cValue: Switchyard__V1__DType {
        switch self {
        case .f32: SWITCHYARD__V1__DTYPE__F32
        case .bf16: SWITCHYARD__V1__DTYPE__BF16
        }
    }

    init(_ c: Switchyard__V1__DType, in kind: MessageKind) throws(WireError) {
        guard let dtype = WireDType(rawValue: UInt32(truncatingIfNeeded: c.rawValue)) else {
            throw .invalidField(kind, field: "dtype", reason: "is \(c.rawValue), but must be 0 (f32) or 1 (bf16)")
        }
        self = dtype
    }
}

extension HiddenStates {
    /// Checks a header's shape against its tensor frame and wraps the frame.
    init(rowCount wireRowCount: UInt32, hiddenSize wireHiddenSize: UInt32, dtype: WireDType, frame: [UInt8], in kind: MessageKind)
        throws(WireError)
    {
        let rowCount = Int(wireRowCount)
        let hiddenSize = Int(wireHiddenSize)
        guard rowCount <= WireLimits.maxRowCount else {
            throw .invalidField(kind, field: "row_count", reason: "is \(rowCount), but must be at most \(WireLimits.maxRowCount)")
        }
        guard (1...WireLimits.maxHiddenSize).contains(hiddenSize) else {
            throw .invalidField(
                kind, field: "hidden_size", reason: "is \(hiddenSize), but must be between 1 and \(WireLimits.maxHiddenSize)")
        }
        guard frame.count == HiddenStates.expectedByteCount(rowCount: rowCount, hiddenSize: hiddenSize, dtype: dtype) else {
            throw .tensorFrameSize(kind, byteCount: frame.count, rowCount: rowCount, hiddenSize: hiddenSize, dtype: dtype)
        }
        self.init(rowCount: rowCount, hiddenSize: hiddenSize, dtype: dtype, bytes: frame)
    }
}

extension WireMessage.Dispatch {
    func cMessage(in arena: CArena) -> UnsafeMutablePointer<Switchyard__V1__Dispatch> {
        var c = Switchyard__V1__Dispatch()
        switchyard__v1__dispatch__init(&c)
        c.request_id = requestID.rawValue
        c.step = step.rawValue
        // init checked that the layer, offsets and expert ids fit in uint32.
        c.layer = UInt32(truncatingIfNeeded: layer.rawValue)
        c.row_count = UInt32(truncatingIfNeeded: hiddenStates.rowCount)
        c.hidden_size = UInt32(truncatingIfNeeded: hiddenStates.hiddenSize)
        c.dtype = hiddenStates.dtype.cValue
        c.n_row_expert_offsets = rowExpertOffsets.count
        c.row_expert_offsets = arena.array(rowExpertOffsets.lazy.map { UInt32(truncatingIfNeeded: $0) })
        c.n_expert_ids = expertIDs.count
        c.expert_ids = arena.array(expertIDs.lazy.map { UInt32(truncatingIfNeeded: $0.rawValue) })
        c.n_weights = weights.count
        c.weights = arena.array(weights)
        return arena.box(c)
    }

    init(_ c: Switchyard__V1__Dispatch, tensor: [UInt8]) throws(WireError) {
        let dtype = try WireDType(c.dtype, in: .dispatch)
        let hiddenStates = try HiddenStates(
            rowCount: c.row_count, hiddenSize: c.hidden_size, dtype: dtype, frame: tensor, in: .dispatch)
        let offsets = UnsafeBufferPointer(start: c.row_expert_offsets, count: c.n_row_expert_offsets)
        let expertIDs = UnsafeBufferPointer(start: c.expert_ids, count: c.n_expert_ids)
        let weights = UnsafeBufferPointer(start: c.weights, count: c.n_weights)
        try Self.checkRouting(
            rowCount: hiddenStates.rowCount, offsets: offsets.lazy.map { Int($0) }, expertIDCount: expertIDs.count,
            weights: weights)
        self.init(
            checkedRequestID: RequestID(c.request_id), step: StepIndex(c.step), layer: LayerIndex(Int(c.layer)),
            rowExpertOffsets: offsets.map { Int($0) }, expertIDs: expertIDs.map { ExpertID(Int($0)) },
            weights: Array(weights), hiddenStates: hiddenStates)
    }
}

extension WireMessage.Combine {
    func cMessage(in arena: CArena) -> UnsafeMutablePointer<Switchyard__V1__Combine> {
        var c = Switchyard__V1__Combine()
        switchyard__v1__combine__init(&c)
        c.request_id = requestID.rawValue
        c.step = step.rawValue
        c.layer = wireUInt32(layer.rawValue, "COMBINE layer")
        c.row_count = UInt32(truncatingIfNeeded: outputs.rowCount)
        c.hidden_size = UInt32(truncatingIfNeeded: outputs.hiddenSize)
        c.dtype = outputs.dtype.cValue
        c.compute_micros = computeMicroseconds
        return arena.box(c)
    }

    init(_ c: Switchyard__V1__Combine, tensor: [UInt8]) throws(WireError) {
        let dtype = try WireDType(c.dtype, in: .combine)
        let outputs = try HiddenStates(
            rowCount: c.row_count, hiddenSize: c.hidden_size, dtype: dtype, frame: tensor, in: .combine)
        self.init(
            requestID: RequestID(c.request_id), step: StepIndex(c.step), layer: LayerIndex(Int(c.layer)),
            outputs: outputs, computeMicroseconds: c.compute_micros)
    }
}
