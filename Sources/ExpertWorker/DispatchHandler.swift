// The worker's answer to each message from the coordinator, as a pure-ish function of the message
// and the experts it holds: no sockets here, so it is tested without a network.
import Foundation
public import Models
import Tensors
public import Wire

/// What the worker should do after handling a message.
public enum WorkerAction: Equatable {
    /// Send these frames back to the coordinator.
    case reply([[UInt8]])
    /// Load these experts (an ASSIGN), then report READY.
    case load(WireMessage.Assign)
    /// The coordinator accepted the registration.
    case welcomed(WorkerID)
    /// The coordinator refused this worker or reported an error about it; the message says why.
    case refused(WireMessage.ErrorReport)
    /// The coordinator asked the worker to leave.
    case leave(String)
    /// Nothing to do (a heartbeat answer).
    case none
}

/// Answers DISPATCH messages with COMBINE using an `ExpertStore`, and turns every other message
/// into a `WorkerAction`. Bad frames produce an ERROR reply naming the problem, never a crash.
public struct DispatchHandler: Sendable {
    /// The shape of the model whose experts this worker computes.
    public let shape: ModelShape
    /// The experts this worker holds; nil until the first ASSIGN is loaded.
    public var store: ExpertStore?

    public init(shape: ModelShape, store: ExpertStore? = nil) {
        self.shape = shape
        self.store = store
    }

    /// Handles one message from the coordinator.
    public func handle(frames: [[UInt8]]) -> WorkerAction {
        let message: WireMessage
        do {
            message = try WireCodec.decode(frames)
        } catch {
            return .reply(WireCodec.encode(.error(error.errorReport())))
        }
        switch message {
        case .dispatch(let dispatch):
            return .reply(answer(dispatch))
        case .assign(let assign):
            return .load(assign)
        case .welcome(let welcome):
            return .welcomed(welcome.workerID)
        case .error(let report):
            return .refused(report)
        case .bye(let bye):
            return .leave(bye.reason)
        case .heartbeat:
            return .none
        default:
            let report = WireMessage.ErrorReport(
                code: .badRequest,
                message: "a worker does not accept \(message.kind); it answers DISPATCH, ASSIGN, WELCOME, HEARTBEAT and BYE")
            return .reply(WireCodec.encode(.error(report)))
        }
    }

    /// Computes one dispatch: COMBINE on success, ERROR naming the problem otherwise.
    func answer(_ dispatch: WireMessage.Dispatch) -> [[UInt8]] {
        let started = ContinuousClock.now
        do throws(WireError) {
            try dispatch.validate(expertCounts: shape.expertCounts, hiddenSize: shape.hiddenSize)
        } catch {
            return WireCodec.encode(.error(error.errorReport(requestID: dispatch.requestID, layer: dispatch.layer)))
        }
        guard let store else {
            let report = WireMessage.ErrorReport(
                code: .notReady, message: "DISPATCH for \(dispatch.layer) arrived before any experts were assigned",
                requestID: dispatch.requestID, layer: dispatch.layer)
            return WireCodec.encode(.error(report))
        }
        for expert in dispatch.expertIDs
        where !store.heldExperts.contains(LayerExpert(layer: dispatch.layer, expert: expert)) {
            let report = WireMessage.ErrorReport(
                code: .unknownExpert,
                message: "DISPATCH routes rows to \(dispatch.layer) \(expert), which this worker does not hold",
                requestID: dispatch.requestID, layer: dispatch.layer)
            return WireCodec.encode(.error(report))
        }
        do {
            let outputs = try store.compute(
                layer: dispatch.layer, hidden: dispatch.hiddenStates.floats(), rowCount: dispatch.rowCount,
                rowExpertOffsets: dispatch.rowExpertOffsets.map { UInt32($0) },
                expertIDs: dispatch.expertIDs.map { UInt32($0.rawValue) }, weights: dispatch.weights)
            let elapsed = ContinuousClock.now - started
            let micros = UInt64(max(0, elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000))
            let combine = WireMessage.Combine(
                requestID: dispatch.requestID, step: dispatch.step, layer: dispatch.layer,
                outputs: HiddenStates(
                    rowCount: dispatch.rowCount, hiddenSize: shape.hiddenSize, values: outputs,
                    // Always f32: a row's expert outputs are added on the coordinator in a fixed order
                    // whatever the placement, which rounding partial sums to bf16 would break.
                    dtype: .f32),
                computeMicroseconds: micros)
            return WireCodec.encode(.combine(combine))
        } catch {
            let report = WireMessage.ErrorReport(
                code: .internal, message: "computing \(dispatch.layer) failed: \(error)",
                requestID: dispatch.requestID, layer: dispatch.layer)
            return WireCodec.encode(.error(report))
        }
    }
}
