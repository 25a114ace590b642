import Kernels
// Vocabulary: an expert is one SwiGLU feed-forward network of one MoE layer, y = w2(silu(w1 x) ⊙ w3 x).
// An expert store holds some experts' weights (a worker's shard, or all of them in process) and
// computes, for a batch of token rows, each row's weighted sum over the experts it is routed to.
import Synchronization
public import Tensors

/// The weights of a set of (layer, expert) FFNs and their batched computation.
public final class ExpertStore: Sendable {
    private struct Expert: Sendable {
        /// w1, [I, H]
        let gate: ExpertMatrix
        /// w3, [I, H]
        let up: ExpertMatrix
        /// w2, [H, I]
        let down: ExpertMatrix
    }

    /// The hyper-parameters of the model the experts belong to.
    public let configuration: MixtralConfiguration
    private let experts: [LayerExpert: Expert]
    /// Buffers of the last finished ``compute(layer:hidden:rowCount:rowExpertOffsets:expertIDs:weights:)``,
    /// reused by the next one so a steady stream of calls allocates no scratch; a call that finds it
    /// taken (another thread is computing) makes its own.
    private let idleScratch = Mutex<FeedForwardScratch?>(nil)

    /// The arithmetic of the expert products when their weights are bf16.
    public let arithmetic: BFloat16Arithmetic
    /// How the expert weights are held in memory.
    public let quantization: WeightQuantization

    /// Loads `experts` from `checkpoint`: f32 or bf16 as stored, in place from the memory map when
    /// possible (f16 converted to f32).
    /// - Parameters:
    ///   - arithmetic: how products with bf16 weights treat activations (f32 weights are always exact).
    ///   - quantization: ``WeightQuantization/q8`` quantizes every expert matrix at load time (an
    ///     owned copy, 1.125 bytes per weight); the stored dtype then no longer matters.
    /// - Throws: `ModelError.invalidInput` for a layer or expert outside the model; `ModelError` when a tensor cannot be read.
    public init(
        checkpoint: Checkpoint, experts: [LayerExpert], arithmetic: BFloat16Arithmetic = .exact,
        quantization: WeightQuantization = .none
    ) throws {
        let c = checkpoint.configuration
        configuration = c
        self.arithmetic = arithmetic
        self.quantization = quantization
        func matrix(_ name: String) throws -> ExpertMatrix {
            let weight = try checkpoint.weight(named: name)
            switch quantization {
            case .none: return .stored(weight)
            case .q8: return .q8(QuantizedMatrix(weight))
            }
        }
        var loaded: [LayerExpert: Expert] = [:]
        for layerExpert in experts where loaded[layerExpert] == nil {
            let layer = layerExpert.layer.rawValue
            let expert = layerExpert.expert.rawValue
            guard (0..<c.layerCount).contains(layer), (0..<c.expertCount).contains(expert) else {
                throw ModelError.invalidInput(
                    "\(layerExpert) is outside the model (\(c.layerCount) layers, \(c.expertCount) experts per layer)")
            }
            loaded[layerExpert] = Expert(
                gate: try matrix(MixtralTensorNames.expertGate(layer, expert)),
                up: try matrix(MixtralTensorNames.expertUp(layer, expert)),
                down: try matrix(MixtralTensorNames.expertDown(layer, expert)))
        }
        self.experts = loaded
    }

    /// The (layer, expert) pairs this store holds.
    public var heldExperts: Set<LayerExpert> { Set(experts.keys) }

    /// Computes each row's weighted sum over its listed experts.
    ///
    /// Rows are in CSR form: row r uses `expertIDs[rowExpertOffsets[r] ..< rowExpertOffsets[r + 1]]`
    /// with the matching `weights`. Rows are grouped by expert and each expert runs one batched
    /// matrix product; a row's terms are added in ascending expert order (as transformers does).
    /// Batch-invariant: the products are row-wise with a fixed reduction order and the terms are
    /// added in that fixed order, so a row's output is bitwise the same whatever other rows are sent.
    /// - Parameters:
    ///   - hidden: [rowCount, hiddenSize], f32.
    ///   - rowExpertOffsets: [rowCount + 1], starting at 0, non-decreasing, ending at `expertIDs.count`.
    ///   - expertIDs: [entries] expert ids of `layer`.
    ///   - weights: [entries], f32.
    /// - Returns: [rowCount, hiddenSize], f32.
    /// - Throws: `ModelError.expertNotHeld` for an expert not in this store, `ModelError.invalidInput`
    ///   for bad sizes, offsets or ids.
    public func compute(
        layer: LayerIndex, hidden: [Float], rowCount: Int,
        rowExpertOffsets: [UInt32], expertIDs: [UInt32], weights: [Float]
    ) throws -> [Float] {
        let hiddenSize = configuration.hiddenSize
        guard rowCount >= 0, hidden.count == rowCount * hiddenSize else {
            throw ModelError.invalidInput(
                "\(layer): hidden has \(hidden.count) values, expected [\(rowCount), \(hiddenSize)]")
        }
        guard rowExpertOffsets.count == rowCount + 1 else {
            throw ModelError.invalidInput(
                "\(layer): rowExpertOffsets has \(rowExpertOffsets.count) entries, expected rowCount + 1 (\(rowCount + 1))"
            )
        }
        guard expertIDs.count == weights.count else {
            throw ModelError.invalidInput(
                "\(layer): \(expertIDs.count) expert ids but \(weights.count) weights; expected one weight per id")
        }
        guard rowExpertOffsets.first == 0, Int(rowExpertOffsets[rowCount]) == expertIDs.count else {
            throw ModelError.invalidInput(
                "\(layer): rowExpertOffsets must start at 0 and end at \(expertIDs.count), got \(rowExpertOffsets.first ?? 0) … \(rowExpertOffsets.last ?? 0)"
            )
        }
        // Per expert: the rows routed to it and their weights, rows ascending (a counting sort).
        let expertCount = configuration.expertCount
        var entryCounts = [Int](repeating: 0, count: expertCount + 1)
        for row in 0..<rowCount {
            let begin = Int(rowExpertOffsets[row])
            let end = Int(rowExpertOffsets[row + 1])
            guard begin <= end, end <= expertIDs.count else {
                throw ModelError.invalidInput(
                    "\(layer): rowExpertOffsets[\(row) ... \(row + 1)] = \(begin), \(end), but must be non-decreasing and at most \(expertIDs.count)"
                )
            }
            for entry in begin..<end {
                let expert = Int(expertIDs[entry])
                guard expert < expertCount else {
                    throw ModelError.invalidInput(
                        "\(layer): expert id \(expert) at entry \(entry) is outside 0 ..< \(expertCount)")
                }
                entryCounts[expert + 1] += 1
            }
        }
        for expert in 0..<expertCount {
            if entryCounts[expert + 1] > 0,
                experts[LayerExpert(layer: layer, expert: ExpertID(expert))] == nil
            {
                throw ModelError.expertNotHeld(LayerExpert(layer: layer, expert: ExpertID(expert)))
            }
            entryCounts[expert + 1] += entryCounts[expert]
        }
        // expertStarts[e] ..< expertStarts[e + 1] index the (row, weight) pairs of expert e.
        let expertStarts = entryCounts
        var fill = entryCounts
        var assignedRows = [Int](repeating: 0, count: expertIDs.count)
        var assignedWeights = [Float](repeating: 0, count: expertIDs.count)
        for row in 0..<rowCount {
            for entry in Int(rowExpertOffsets[row])..<Int(rowExpertOffsets[row + 1]) {
                let expert = Int(expertIDs[entry])
                assignedRows[fill[expert]] = row
                assignedWeights[fill[expert]] = weights[entry]
                fill[expert] += 1
            }
        }
        let largestGroup = (0..<expertCount).map { expertStarts[$0 + 1] - expertStarts[$0] }.max() ?? 0
        var output = [Float](repeating: 0, count: rowCount * hiddenSize)
        guard largestGroup > 0 else { return output }
        let intermediateSize = configuration.intermediateSize
        // Scratch reused by every expert of the call (and by later calls): gathered rows, gate
        // (then SwiGLU), up, down. Only the first rows of a group are read, so stale values are harmless.
        var scratch =
            idleScratch.withLock { idle -> FeedForwardScratch? in
                defer { idle = nil }
                return idle
            }
            ?? FeedForwardScratch(rowCapacity: largestGroup, hiddenSize: hiddenSize, intermediateSize: intermediateSize)
        scratch.reserve(rowCapacity: largestGroup)
        // Ascending expert id: each row adds its terms in that fixed order, whatever the other rows.
        for expertIndex in 0..<expertCount where expertStarts[expertIndex + 1] > expertStarts[expertIndex] {
            let expert = experts[LayerExpert(layer: layer, expert: ExpertID(expertIndex))]!
            let group = expertStarts[expertIndex]..<expertStarts[expertIndex + 1]
            for (slot, entry) in group.enumerated() {
                let source = assignedRows[entry] * hiddenSize
                scratch.input.replaceSubrange(
                    (slot * hiddenSize)..<((slot + 1) * hiddenSize), with: hidden[source..<(source + hiddenSize)])
            }
            scratch.feedForward(expert.gate, expert.up, expert.down, rowCount: group.count, arithmetic: arithmetic)
            scratch.down.withUnsafeBufferPointer { result in
                output.withUnsafeMutableBufferPointer { combined in
                    for (slot, entry) in group.enumerated() {
                        let target = combined.baseAddress! + assignedRows[entry] * hiddenSize
                        let source = result.baseAddress! + slot * hiddenSize
                        let weight = assignedWeights[entry]
                        for column in 0..<hiddenSize { target[column] += source[column] * weight }
                    }
                }
            }
        }
        idleScratch.withLock { [scratch] idle in idle = scratch }
        return output
    }

    /// The combined expert output for a whole routing (the in-process path of `MixtralDenseModel.forward`).
    /// - Parameter hidden: [routing.tokenCount, hiddenSize], f32.
    /// - Returns: [routing.tokenCount, hiddenSize], f32.
    public func compute(layer: LayerIndex, hidden: [Float], routing: RoutingDecision) throws -> [Float] {
        try compute(
            layer: layer, hidden: hidden, rowCount: routing.tokenCount,
            rowExpertOffsets: (0...routing.tokenCount).map { UInt32($0 * routing.expertsPerToken) },
            expertIDs: routing.expertIDs.map { UInt32(clamping: $0) }, weights: routing.weights)
    }
}

/// Buffers for one expert FFN over up to `rowCapacity` rows, reused across the experts of a call.
private struct FeedForwardScratch {
    /// [rowCapacity, H], f32: the gathered rows.
    var input: [Float]
    /// [rowCapacity, I], f32: w1 x, then silu(w1 x) ⊙ w3 x.
    var gate: [Float]
    /// [rowCapacity, I], f32: w3 x.
    var up: [Float]
    /// [rowCapacity, H], f32: the FFN output.
    var down: [Float]
    let hiddenSize: Int
    let intermediateSize: Int

    /// Grows the buffers to hold at least `rowCapacity` rows (never shrinks them).
    mutating func reserve(rowCapacity: Int) {
        guard input.count < rowCapacity * hiddenSize else { return }
        input = [Float](repeating: 0, count: rowCapacity * hiddenSize)
        gate = [Float](repeating: 0, count: rowCapacity * intermediateSize)
        up = gate
        down = input
    }

    init(rowCapacity: Int, hiddenSize: Int, intermediateSize: Int) {
        input = [Float](repeating: 0, count: rowCapacity * hiddenSize)
        gate = [Float](repeating: 0, count: rowCapacity * intermediateSize)
        up = gate
        down = input
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
    }

    /// `down[0 ..< rowCount] = w2(silu(w1 x) ⊙ w3 x)` for the first `rowCount` rows of `input`.
    /// - Parameters:
    ///   - gateWeight: w1, [I, H].
    ///   - upWeight: w3, [I, H].
    ///   - downWeight: w2, [H, I].
    mutating func feedForward(
        _ gateWeight: ExpertMatrix, _ upWeight: ExpertMatrix, _ downWeight: ExpertMatrix, rowCount: Int,
        arithmetic: BFloat16Arithmetic
    ) {
        input.withUnsafeBufferPointer { x in
            gate.withUnsafeMutableBufferPointer { g in
                up.withUnsafeMutableBufferPointer { u in
                    down.withUnsafeMutableBufferPointer { d in
                        if case .stored(let gateStored) = gateWeight, case .stored(let upStored) = upWeight {
                            linear(
                                x.baseAddress!, rowCount: rowCount, weights: [gateStored, upStored],
                                into: [g.baseAddress!, u.baseAddress!], arithmetic: arithmetic)
                        } else {
                            gateWeight.apply(x.baseAddress!, rowCount: rowCount, into: g.baseAddress!, arithmetic: arithmetic)
                            upWeight.apply(x.baseAddress!, rowCount: rowCount, into: u.baseAddress!, arithmetic: arithmetic)
                        }
                        swiGLU(gate: g.baseAddress!, up: u.baseAddress!, count: rowCount * intermediateSize)
                        downWeight.apply(g.baseAddress!, rowCount: rowCount, into: d.baseAddress!, arithmetic: arithmetic)
                    }
                }
            }
        }
    }
}

/// An expert matrix as held in memory: as stored in the checkpoint, or quantized to q8 at load time.
enum ExpertMatrix: Sendable {
    case stored(WeightTensor)
    case q8(QuantizedMatrix)

    /// `output = input · weightᵀ` for `rowCount` rows.
    func apply(
        _ input: UnsafePointer<Float>, rowCount: Int, into output: UnsafeMutablePointer<Float>,
        arithmetic: BFloat16Arithmetic
    ) {
        switch self {
        case .stored(let weight): linear(input, rowCount: rowCount, weight: weight, into: output, arithmetic: arithmetic)
        case .q8(let matrix): matrix.apply(input, rowCount: rowCount, into: output)
        }
    }
}

/// An `nn.Linear` weight [outputCount, inputCount] quantized to int8 in blocks of 32 columns with an
/// f32 scale per block (see `quantizeQ8` in Kernels).
struct QuantizedMatrix: Sendable {
    let outputCount: Int
    let inputCount: Int
    /// [outputCount, blocks × 32]
    let values: [Int8]
    /// [outputCount, blocks]
    let scales: [Float]

    init(_ weight: WeightTensor) {
        precondition(weight.shape.count == 2, "QuantizedMatrix: weight must be a matrix, got shape \(weight.shape)")
        outputCount = weight.shape[0]
        inputCount = weight.shape[1]
        (values, scales) = quantizeQ8(weight.values, outputCount: outputCount, inputCount: inputCount)
    }

    func apply(_ input: UnsafePointer<Float>, rowCount: Int, into output: UnsafeMutablePointer<Float>) {
        values.withUnsafeBufferPointer { q in
            scales.withUnsafeBufferPointer { s in
                linear(
                    input, rowCount: rowCount, inputCount: inputCount, q8Values: q.baseAddress!, q8Scales: s.baseAddress!,
                    outputCount: outputCount, into: output)
            }
        }
    }
}
