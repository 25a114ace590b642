public import Tensors

/// Why a message could not be decoded, or a dispatch does not fit the model.
///
/// Every case names what was wrong and what would have been valid; `description` is one line
/// for logs and for the message of an ERROR reply (see `errorReport`).
public enum WireError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The message had no frames at all.
    case noFrames
    /// Frame 0 is larger than `WireLimits.maxHeaderBytes`.
    case headerTooLarge(byteCount: Int, limit: Int)
    /// Frame 0 is not a valid protobuf `Header` (protobuf-c could not unpack it).
    case malformedHeader(byteCount: Int)
    /// The peer speaks another major protocol version.
    case protocolMismatch(local: ProtocolVersion, remote: ProtocolVersion)
    /// The header carries no message body this version knows.
    case missingBody(remote: ProtocolVersion)
    /// The message has the wrong number of frames for its kind.
    case frameCount(MessageKind, count: Int, expected: Int)
    /// The tensor frame's size does not match the shape and dtype in the header.
    case tensorFrameSize(MessageKind, byteCount: Int, rowCount: Int, hiddenSize: Int, dtype: WireDType)
    /// A header field is out of range; `reason` says what the valid range is.
    case invalidField(MessageKind, field: String, reason: String)
    /// The CSR routing of a dispatch is malformed.
    case invalidRouting(MessageKind, RoutingProblem)
    /// A routing weight is NaN or infinite.
    case nonFiniteWeight(MessageKind, index: Int)
    /// `Dispatch.validate`: the layer is not below the model's layer count.
    case layerOutOfRange(MessageKind, layer: LayerIndex, layerCount: Int)
    /// `Dispatch.validate`: an expert id is not below the model's expert count.
    case expertOutOfRange(MessageKind, row: Int, expert: ExpertID, expertCount: Int)
    /// `Dispatch.validate`: the layer is a dense layer of the model (no experts to dispatch to).
    case denseLayer(MessageKind, layer: LayerIndex)
    /// `Dispatch.validate`: the hidden size is not the model's.
    case hiddenSizeMismatch(MessageKind, hiddenSize: Int, expected: Int)

    /// What is wrong with a dispatch's CSR routing (`rowExpertOffsets`, `expertIDs`, `weights`).
    public enum RoutingProblem: Sendable, Equatable {
        /// There must be rowCount + 1 offsets.
        case offsetCount(count: Int, rowCount: Int)
        /// The first offset must be 0.
        case firstOffset(Int)
        /// Offsets must not decrease; `row`'s end `next` is below its start `offset`.
        case decreasingOffset(row: Int, offset: Int, next: Int)
        /// The last offset must equal the number of expert ids and of weights.
        case lengthMismatch(lastOffset: Int, expertIDCount: Int, weightCount: Int)
        /// A row is routed to more than `WireLimits.maxExpertsPerRow` experts.
        case tooManyExperts(row: Int, count: Int, limit: Int)
    }

    /// One line: what, where, and what would be valid.
    public var description: String {
        switch self {
        case .noFrames:
            return "message has no frames, but needs at least a header frame"
        case .headerTooLarge(let byteCount, let limit):
            return "header frame is \(byteCount) bytes, but must be at most \(limit)"
        case .malformedHeader(let byteCount):
            return "header frame (\(byteCount) bytes) is not a valid switchyard.v1.Header protobuf"
        case .protocolMismatch(let local, let remote):
            return "peer speaks protocol \(remote), but this build speaks \(local) (major versions must be equal)"
        case .missingBody(let remote):
            return "header (protocol \(remote)) has no message body known to protocol \(ProtocolVersion.current)"
        case .frameCount(let kind, let count, let expected):
            return "\(kind): message has \(count) frames, but must have \(expected)"
        case .tensorFrameSize(let kind, let byteCount, let rowCount, let hiddenSize, let dtype):
            return "\(kind): tensor frame is \(byteCount) bytes, but \(rowCount) rows × \(hiddenSize) × \(dtype) needs \(rowCount * hiddenSize * dtype.byteCount)"
        case .invalidField(let kind, let field, let reason):
            return "\(kind): \(field) \(reason)"
        case .invalidRouting(let kind, let problem):
            switch problem {
            case .offsetCount(let count, let rowCount):
                return "\(kind): row_expert_offsets has \(count) entries, but \(rowCount) rows need \(rowCount + 1)"
            case .firstOffset(let offset):
                return "\(kind): row_expert_offsets starts at \(offset), but must start at 0"
            case .decreasingOffset(let row, let offset, let next):
                return "\(kind): row_expert_offsets decreases at row \(row) (\(offset) then \(next)), but must not decrease"
            case .lengthMismatch(let lastOffset, let expertIDCount, let weightCount):
                return "\(kind): row_expert_offsets ends at \(lastOffset), but expert_ids has \(expertIDCount) and weights \(weightCount) entries (all three must be equal)"
            case .tooManyExperts(let row, let count, let limit):
                return "\(kind): row \(row) is routed to \(count) experts, but at most \(limit) are allowed"
            }
        case .nonFiniteWeight(let kind, let index):
            return "\(kind): weights[\(index)] is not finite, but routing weights must be finite"
        case .layerOutOfRange(let kind, let layer, let layerCount):
            return "\(kind): \(layer) does not exist, the model has layers 0..<\(layerCount)"
        case .expertOutOfRange(let kind, let row, let expert, let expertCount):
            return "\(kind): row \(row) is routed to \(expert), but the model has experts 0..<\(expertCount)"
        case .denseLayer(let kind, let layer):
            return "\(kind): \(layer) is a dense layer of the model; only MoE layers have experts"
        case .hiddenSizeMismatch(let kind, let hiddenSize, let expected):
            return "\(kind): hidden_size is \(hiddenSize), but the model's is \(expected)"
        }
    }

    /// The ERROR message to send back to the peer that sent the offending message:
    /// VERSION_MISMATCH for a protocol mismatch, UNKNOWN_EXPERT for an expert out of range,
    /// BAD_FRAME otherwise.
    public func errorReport(requestID: RequestID? = nil, layer: LayerIndex? = nil) -> WireMessage.ErrorReport {
        let code: WireMessage.ErrorReport.Code
        switch self {
        case .protocolMismatch: code = .versionMismatch
        case .expertOutOfRange: code = .unknownExpert
        default: code = .badFrame
        }
        return WireMessage.ErrorReport(code: code, message: description, requestID: requestID, layer: layer)
    }
}
