// The seed corpus of fuzz-wire: one or more messages of every kind, encoded by `WireCodec.encode`
// and laid out as `FrameSplit` inputs. Regenerate Fuzz/corpus/fuzz-wire with
// `SWITCHYARD_FUZZ_WRITE_SEEDS=Fuzz/corpus/fuzz-wire .build/fuzz/debug/fuzz-wire`.
import Foundation
import Tensors
import Wire

/// Hidden states of the fuzz model's shape, [rowCount, modelHiddenSize], with varied values.
func seedHiddenStates(rowCount: Int, dtype: WireDType) -> HiddenStates {
    let values = (0..<rowCount * modelHiddenSize).map { Float($0 % 7) * 0.25 - 0.75 }
    return HiddenStates(rowCount: rowCount, hiddenSize: modelHiddenSize, values: values, dtype: dtype)
}

/// A dispatch of `rowCount` rows to layer 1, each row routed to two experts.
func seedDispatch(rowCount: Int, dtype: WireDType) -> WireMessage.Dispatch {
    WireMessage.Dispatch(
        requestID: RequestID(7), step: StepIndex(3), layer: LayerIndex(1),
        rowExpertOffsets: (0...rowCount).map { 2 * $0 },
        expertIDs: (0..<2 * rowCount).map { ExpertID($0 % 8) },
        weights: (0..<2 * rowCount).map { $0.isMultiple(of: 2) ? 0.625 : 0.375 },
        hiddenStates: seedHiddenStates(rowCount: rowCount, dtype: dtype))
}

let seedMessages: [(name: String, message: WireMessage)] = [
    ("hello", .hello(.init(workerName: "w0", modelFingerprint: "0123456789abcdef", threads: 4, pid: 4242))),
    (
        "hello-kernel-path",
        .hello(.init(workerName: "w0", modelFingerprint: "0123456789abcdef", threads: 4, pid: 4242, kernelPath: "avx512bf16"))
    ),
    ("welcome", .welcome(.init(workerID: WorkerID(2), coordinatorName: "coordinator"))),
    (
        "assign",
        .assign(
            .init(experts: [LayerExpert(layer: LayerIndex(0), expert: ExpertID(1)), LayerExpert(layer: LayerIndex(3), expert: ExpertID(7))])
        )
    ),
    (
        "assign-fast-q8",
        .assign(.init(experts: [LayerExpert(layer: LayerIndex(1), expert: ExpertID(0))], arithmetic: .fast, quantization: .q8))
    ),
    ("ready", .ready(.init(loadedExpertCount: 2, loadSeconds: 0.5))),
    ("dispatch-f32", .dispatch(seedDispatch(rowCount: 3, dtype: .f32))),
    ("dispatch-bf16", .dispatch(seedDispatch(rowCount: 2, dtype: .bf16))),
    ("dispatch-empty", .dispatch(seedDispatch(rowCount: 0, dtype: .f32))),
    (
        "combine-f32",
        .combine(
            .init(
                requestID: RequestID(7), step: StepIndex(3), layer: LayerIndex(1),
                outputs: seedHiddenStates(rowCount: 3, dtype: .f32), computeMicroseconds: 1500))
    ),
    (
        "combine-bf16",
        .combine(
            .init(
                requestID: RequestID(8), step: StepIndex(0), layer: LayerIndex(3),
                outputs: seedHiddenStates(rowCount: 1, dtype: .bf16), computeMicroseconds: 20))
    ),
    ("heartbeat", .heartbeat(.init(sentUnixMillis: 1_700_000_000_000))),
    (
        "error",
        .error(.init(code: .unknownExpert, message: "layer 1 expert 9 is not held", requestID: RequestID(7), layer: LayerIndex(1)))
    ),
    ("error-plain", .error(.init(code: .badFrame, message: "bad frame"))),
    ("bye", .bye(.init(reason: "shutdown"))),
    (
        "generate-text",
        .generateRequest(
            .init(
                clientRequestID: ClientRequestID(1), prompt: .text("Hello, world"), maxTokens: 16, temperature: 0.7,
                topP: 0.9, topK: 40, seed: 42, ignoreEOS: false, logprobs: 2))
    ),
    (
        "generate-ids",
        .generateRequest(
            .init(clientRequestID: ClientRequestID(2), prompt: .tokenIDs([1, 15043, 29892]), maxTokens: 4, ignoreEOS: true))
    ),
    ("generate-result", .generateResult(.init(clientRequestID: ClientRequestID(1), resultJSON: #"{"text":"hi"}"#))),
]

func writeSeeds(to directory: URL) {
    do {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        for (name, message) in seedMessages {
            let input = FrameSplit.join(WireCodec.encode(message))
            try Data(input).write(to: directory.appendingPathComponent("\(name).bin"))
        }
    } catch {
        FileHandle.standardError.write(Data("fuzz-wire: writing seeds to \(directory.path) failed: \(error)\n".utf8))
        exit(1)
    }
}
