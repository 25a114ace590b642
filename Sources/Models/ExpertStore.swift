import Kernels
// Vocabulary: an expert is one SwiGLU feed-forward network of one MoE layer, y = w2(silu(w1 x) ⊙ w3 x).
// An expert store holds some experts' weights (a worker's shard, or all of them in process) and
// computes, for a batch of token rows, each row's weighted sum over the experts it is routed to.
public import Tensors

/// The weights of a set of (layer, expert) FFNs and their batched computation.
public final class ExpertStore: Sendable {
    private struct Expert: Sendable {
        /// w1, [I, H], f32
        let gate: FloatTensor
        /// w3, [I, H], f32
        let up: FloatTensor
        /// w2, [H, I], f32
        let down: FloatTensor
    }

    /// The hyper-parameters of the model the experts belong to.
    public let configuration: MixtralConfiguration
    private let experts: [LayerExpert: Expert]

    /// Loads `experts` from `checkpoint` (converted to f32).
    /// - Throws: `ModelError.invalidInput` for a layer or expert outside the model; `ModelError` when a tensor cannot be read.
    public init(checkpoint: Checkpoint, experts: [LayerExpert]) throws {
        let c = checkpoint.configuration
        configuration = c
        var loaded: [LayerExpert: Expert] = [:]
        for layerExpert in experts where loaded[layerExpert] == nil {
            let layer = layerExpert.layer.rawValue
            let expert = layerExpert.expert.rawValue
            guard (0..<c.layerCount).contains(layer), (0..<c.expertCount).contains(expert) else {
                throw ModelError.invalidInput(
                    "\(layerExpert) is outside the model (\(c.layerCount) layers, \(c.expertCount) experts per layer)")
            }
            loaded[layerExpert] = Expert(
                gate: try checkpoint.tensor(named: MixtralTensorNames.expertGate(layer, expert)),
                up: try checkpoint.tensor(named: MixtralTensorNames.expertUp(layer, expert)),
                down: try checkpoint.tensor(named: MixtralTensorNames.expertDown(layer, expert)))
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
        // Per expert: the rows routed to it and their weights, rows ascending.
        var assignments: [Int: [(row: Int, weight: Float)]] = [:]
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
                guard expert < configuration.expertCount else {
                    throw ModelError.invalidInput(
                        "\(layer): expert id \(expert) at entry \(entry) is outside 0 ..< \(configuration.expertCount)")
                }
                assignments[expert, default: []].append((row, weights[entry]))
            }
        }
        var output = [Float](repeating: 0, count: rowCount * hiddenSize)
        for expertIndex in assignments.keys.sorted() {
            let key = LayerExpert(layer: layer, expert: ExpertID(expertIndex))
            guard let expert = experts[key] else { throw ModelError.expertNotHeld(key) }
            let rows = assignments[expertIndex]!
            var gathered = [Float](repeating: 0, count: rows.count * hiddenSize)
            for (slot, assignment) in rows.enumerated() {
                let source = assignment.row * hiddenSize
                gathered.replaceSubrange(
                    (slot * hiddenSize)..<((slot + 1) * hiddenSize), with: hidden[source..<(source + hiddenSize)])
            }
            let result = feedForward(expert, gathered, rowCount: rows.count)
            for (slot, assignment) in rows.enumerated() {
                let target = assignment.row * hiddenSize
                let source = slot * hiddenSize
                for column in 0..<hiddenSize {
                    output[target + column] += result[source + column] * assignment.weight
                }
            }
        }
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

    /// w2(silu(w1 x) ⊙ w3 x) for each row.
    /// - Parameter input: [rowCount, H], f32.
    /// - Returns: [rowCount, H], f32.
    private func feedForward(_ expert: Expert, _ input: [Float], rowCount: Int) -> [Float] {
        var gate = linear(input, rowCount: rowCount, weight: expert.gate)
        let up = linear(input, rowCount: rowCount, weight: expert.up)
        gate.withUnsafeMutableBufferPointer { g in
            up.withUnsafeBufferPointer { u in swiGLU(gate: g.baseAddress!, up: u.baseAddress!, count: g.count) }
        }
        return linear(gate, rowCount: rowCount, weight: expert.down)
    }
}
