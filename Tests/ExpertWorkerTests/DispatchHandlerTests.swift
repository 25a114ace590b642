import Foundation
import Models
import TestSupport
import Tensors
import Testing
import Wire

@testable import ExpertWorker

@Suite("Worker dispatch handling")
struct DispatchHandlerTests {
    static let checkpoint: Checkpoint = {
        let directory = TestPaths.scratch.appendingPathComponent("switchyard-worker-tests")
        if !FileManager.default.fileExists(atPath: directory.appendingPathComponent("config.json").path) {
            try! FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            var options = MixtralCheckpointOptions()
            options.hiddenSize = 16
            options.layerCount = 2
            options.expertCount = 4
            options.expertsPerToken = 2
            options.vocabularySize = 64
            options.intermediateSize = 24
            options.attentionHeadCount = 2
            options.keyValueHeadCount = 1
            options.maxPositionEmbeddings = 64
            options.seed = 3
            try! MixtralCheckpointWriter.write(options, to: directory)
        }
        return try! Checkpoint(directory: directory)
    }()

    /// A handler holding experts 0 and 1 of both layers.
    func makeHandler() throws -> DispatchHandler {
        let held = (0..<2).flatMap { layer in (0..<2).map { LayerExpert(layer: LayerIndex(layer), expert: ExpertID($0)) } }
        return DispatchHandler(
            shape: Self.checkpoint.shape,
            store: try ExpertStore(checkpoint: Self.checkpoint, experts: held))
    }

    func dispatch(layer: Int = 1, experts: [Int] = [0, 1, 1], hiddenSize: Int = 16) -> WireMessage.Dispatch {
        let rows = 2
        let values = (0..<(rows * hiddenSize)).map { Float(($0 * 37) % 11) / 11 - 0.5 }
        return WireMessage.Dispatch(
            requestID: RequestID(7), step: StepIndex(3), layer: LayerIndex(layer), rowExpertOffsets: [0, 2, 3],
            expertIDs: experts.map { ExpertID($0) }, weights: [0.75, 0.25, 1.0],
            hiddenStates: HiddenStates(rowCount: rows, hiddenSize: hiddenSize, values: values, dtype: .f32))
    }

    func decodeReply(_ action: WorkerAction) throws -> WireMessage {
        guard case .reply(let frames) = action else {
            Issue.record("expected a reply, got \(action)")
            throw CancellationError()
        }
        return try WireCodec.decode(frames)
    }

    @Test("a dispatch is answered with one combined row per token, equal to the expert store's weighted sum")
    func combine() throws {
        let handler = try makeHandler()
        let message = dispatch()
        let reply = try decodeReply(handler.handle(frames: WireCodec.encode(.dispatch(message))))
        guard case .combine(let combine) = reply else {
            Issue.record("expected COMBINE, got \(reply)")
            return
        }
        #expect(combine.requestID == RequestID(7))
        #expect(combine.step == StepIndex(3))
        #expect(combine.layer == LayerIndex(1))
        let expected = try handler.store!.compute(
            layer: LayerIndex(1), hidden: message.hiddenStates.floats(), rowCount: 2, rowExpertOffsets: [0, 2, 3],
            expertIDs: [0, 1, 1], weights: [0.75, 0.25, 1.0])
        #expect(combine.outputs.floats() == expected)
        #expect(expected.contains { $0 != 0 })
    }

    @Test(
        "a dispatch that does not fit the model or the worker's experts gets an ERROR naming the problem",
        arguments: [
            (5, [0, 1, 1], 16, "layer"),
            (1, [0, 3, 1], 16, "does not hold"),
            (1, [0, 9, 1], 16, "expert"),
            (1, [0, 1, 1], 8, "hidden"),
        ])
    func refusedDispatch(layer: Int, experts: [Int], hiddenSize: Int, words: String) throws {
        let handler = try makeHandler()
        let reply = try decodeReply(
            handler.handle(frames: WireCodec.encode(.dispatch(dispatch(layer: layer, experts: experts, hiddenSize: hiddenSize)))))
        guard case .error(let report) = reply else {
            Issue.record("expected ERROR, got \(reply)")
            return
        }
        #expect(report.message.contains(words), "\(report.message)")
        #expect(report.requestID == RequestID(7))
    }

    @Test("truncated and garbage frames get a BAD_FRAME error, and the next dispatch still works")
    func badFrames() throws {
        let handler = try makeHandler()
        var frames = WireCodec.encode(.dispatch(dispatch()))
        frames[1].removeLast(5)
        for bad in [frames, [[0xFF, 0x13, 0x02]], [], [frames[0]]] {
            let reply = try decodeReply(handler.handle(frames: bad))
            guard case .error(let report) = reply else {
                Issue.record("expected ERROR for \(bad.map(\.count)) bytes, got \(reply)")
                continue
            }
            #expect(report.code == .badFrame, "\(report.message)")
        }
        let reply = try decodeReply(handler.handle(frames: WireCodec.encode(.dispatch(dispatch()))))
        guard case .combine = reply else {
            Issue.record("expected COMBINE after bad frames, got \(reply)")
            return
        }
    }

    @Test("a dispatch before any ASSIGN is refused as not ready")
    func notReady() throws {
        let handler = DispatchHandler(shape: Self.checkpoint.shape)
        let reply = try decodeReply(handler.handle(frames: WireCodec.encode(.dispatch(dispatch()))))
        guard case .error(let report) = reply else {
            Issue.record("expected ERROR, got \(reply)")
            return
        }
        #expect(report.code == .notReady)
    }
}
