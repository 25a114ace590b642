import Kernels
// Vocabulary: an expert is one SwiGLU feed-forward network of one MoE layer, y = down(silu(gate x) ⊙ up x)
// (Mixtral's w2(silu(w1 x) ⊙ w3 x)); the architecture's ExpertSpec names its tensors.
// An expert store holds some experts' weights (a worker's shard, or all of them in process) and
// computes, for a batch of token rows, each row's weighted sum over the experts it is routed to.
import Synchronization
public import Tensors

/// The weights of a set of (layer, expert) FFNs and their batched computation.
public final class ExpertStore: Sendable {
    fileprivate struct Expert: Sendable {
        /// w1, [I, H]
        let gate: ExpertMatrix
        /// w3, [I, H]
        let up: ExpertMatrix
        /// w2, [H, I]
        let down: ExpertMatrix
        /// The biases of a stacked (gpt-oss) expert; nil: none.
        var biases: ExpertBiases? = nil
    }

    /// An expert as ``compute(layer:hidden:rowCount:rowExpertOffsets:expertIDs:weights:)`` looks it
    /// up: not held; held; or held with its three matrices as plain pointers for the grouped bf16, amx
    /// or q8 products (into storage that its ``ExpertMatrix`` values in `experts` keep).
    fileprivate enum HeldExpert: @unchecked Sendable {
        case absent
        /// Held, its products run through its ``ExpertMatrix`` values (f32, FP8, MXFP4, with biases or
        /// gpt-oss's activation, or shapes other than the model's).
        case held
        /// gate w1 [I, H], up w3 [I, H] and down w2 [H, I], bf16 as stored.
        case bf16(gate: UnsafePointer<UInt16>, up: UnsafePointer<UInt16>, down: UnsafePointer<UInt16>)
        /// The same matrices packed for the amx path (``AMXPackedMatrix``).
        case amxPacked(gate: UnsafePointer<UInt16>, up: UnsafePointer<UInt16>, down: UnsafePointer<UInt16>)
        /// The same matrices held as q8: each one's values and scales.
        case q8(gate: Q8Pointers, up: Q8Pointers, down: Q8Pointers)

        struct Q8Pointers {
            let values: UnsafePointer<Int8>
            let scales: UnsafePointer<Float>
        }

        init(_ expert: Expert, hiddenSize: Int, intermediateSize: Int, stacked: Bool) {
            self = .held
            guard expert.biases == nil, !stacked else { return }
            let shapes = [[intermediateSize, hiddenSize], [intermediateSize, hiddenSize], [hiddenSize, intermediateSize]]
            switch (expert.gate, expert.up, expert.down) {
            case (.stored(let w1), .stored(let w3), .stored(let w2)):
                // Borrowed storage only: its address is its owner's, fixed while the weight lives.
                let weights = [w1, w3, w2]
                guard weights.map(\.shape) == shapes, weights.allSatisfy(\.isBorrowed) else { return }
                let pointers = weights.compactMap { weight in
                    weight.withElements { elements -> UnsafePointer<UInt16>? in
                        if case .bf16(let pointer) = elements { pointer } else { nil }
                    }
                }
                if pointers.count == 3 { self = .bf16(gate: pointers[0], up: pointers[1], down: pointers[2]) }
            case (.q8(let w1), .q8(let w3), .q8(let w2)):
                let matrices = [w1, w3, w2]
                guard matrices.map({ [$0.outputCount, $0.inputCount] }) == shapes else { return }
                let pointers = matrices.map {
                    Q8Pointers(values: $0.storage.values.baseAddress!, scales: $0.storage.scales.baseAddress!)
                }
                self = .q8(gate: pointers[0], up: pointers[1], down: pointers[2])
            case (.amxPacked(let w1), .amxPacked(let w3), .amxPacked(let w2)):
                let matrices = [w1, w3, w2]
                guard matrices.map({ [$0.outputCount, $0.inputCount] }) == shapes else { return }
                let pointers = matrices.map { UnsafePointer($0.storage.values.baseAddress!) }
                self = .amxPacked(gate: pointers[0], up: pointers[1], down: pointers[2])
            default: return
            }
        }
    }

    /// The shape of the model the experts belong to.
    public let shape: ModelShape
    /// What each expert is (its tensors and widths).
    public let spec: ExpertSpec
    private let experts: [LayerExpert: Expert]
    /// Per layer (all of the model's, indexed by layer), per expert: whether this store holds it, and
    /// its matrices as plain pointers when they run as grouped bf16, amx or q8 products. A call looks its
    /// experts up here, without hashing and without copying (and retaining) their matrices.
    private let held: [[HeldExpert]]
    /// Buffers of the last finished ``compute(layer:hidden:rowCount:rowExpertOffsets:expertIDs:weights:)``,
    /// reused by the next one so a steady stream of calls allocates no scratch; a call that finds it
    /// taken (another thread is computing) makes its own.
    private let idleScratch = Mutex<FeedForwardScratch?>(nil)

    /// The arithmetic of the expert products when their weights are bf16.
    public let arithmetic: BFloat16Arithmetic
    /// How the expert weights are held in memory.
    public let quantization: WeightQuantization
    /// Bytes of gate and up rows one wave of experts may hold (see ``compute(layer:hidden:rowCount:rowExpertOffsets:expertIDs:weights:)``).
    let waveScratchBytes: Int

    /// Loads `experts` from `checkpoint`: f32 or bf16 as stored (f16 converted to f32), bf16 and FP8
    /// copied from the memory map into weight arenas of the store's own (``WeightArena``, huge pages).
    /// - Parameters:
    ///   - arithmetic: how products with bf16 weights treat activations (f32 weights are always exact).
    ///   - quantization: ``WeightQuantization/q8`` quantizes every expert matrix at load time (into
    ///     the arenas, 1.125 bytes per weight); the stored dtype then no longer matters.
    ///   - previous: a store loaded from the same checkpoint (the worker's before a new ASSIGN): the
    ///     experts both hold are taken from it, not copied again, when its quantization is the same.
    ///   - progress: called after each expert with the experts done and the experts to load (a large
    ///     shard takes minutes; see ``LoadProgress``).
    /// - Throws: `ModelError.invalidInput` for a layer or expert outside the model; `ModelError` when a tensor cannot be read.
    public convenience init(
        checkpoint: Checkpoint, experts: [LayerExpert], arithmetic: BFloat16Arithmetic = .exact,
        quantization: WeightQuantization = .none, reusing previous: ExpertStore? = nil,
        progress: ((_ done: Int, _ total: Int) -> Void)? = nil
    ) throws {
        try self.init(
            checkpoint: checkpoint, experts: experts, arithmetic: arithmetic, quantization: quantization,
            waveScratchBytes: 16 << 20, reusing: previous, progress: progress)
    }

    /// The public initializer with the wave size set (tests split the experts of a call into small waves).
    init(
        checkpoint: Checkpoint, experts: [LayerExpert], arithmetic: BFloat16Arithmetic,
        quantization: WeightQuantization, waveScratchBytes: Int, reusing previous: ExpertStore? = nil,
        progress: ((_ done: Int, _ total: Int) -> Void)? = nil
    ) throws {
        let c = checkpoint.shape
        shape = c
        let spec = checkpoint.configuration.expertSpec
        self.spec = spec
        guard spec.activation == "silu" else {
            throw ModelError.invalidConfiguration(
                file: "config.json", message: "the experts' activation is \(spec.activation), but only silu is supported")
        }
        self.arithmetic = arithmetic
        self.quantization = quantization
        self.waveScratchBytes = waveScratchBytes
        // The experts' weights in arenas (see ``WeightArena``) of about 32 MiB: a large expert has one
        // of its own, small ones (under 2 MiB, like Qwen3-MoE's) share one, so that they still fill
        // whole huge pages. An arena is freed with the last expert in it: a store loaded for a new
        // ASSIGN takes the experts it shares with the previous one from it, so that a worker holds
        // its shard once, not twice, while it reloads (after a rebalance, or when it takes over a
        // lost worker's experts); what a rebalance drops is freed with its arena-mates.
        let reusable = previous.flatMap { $0.quantization == quantization ? $0.experts : nil } ?? [:]
        // On the amx path (SWITCHYARD_KERNEL=amx) with fast arithmetic, bf16 experts are held packed for
        // it (``AMXPackedMatrix``): the same bits, their weights read in one stream per 16 rows.
        let packsForAMX = holdsPackedForAMX(arithmetic)
        func arenaBytes(_ names: [String]) -> Int {
            names.reduce(0) { total, name in
                guard let entry = checkpoint.entry(named: name), entry.shape.count == 2 else { return total }
                let (rows, columns) = (entry.shape[0], entry.shape[1])
                let bytes =
                    switch quantization {
                    case .none where packsForAMX && entry.dtype == .bf16:
                        amxPackedCount(outputCount: rows, inputCount: columns) * MemoryLayout<UInt16>.stride
                    case .none: entry.byteRange.count
                    case .q8: rows * q8BlockCount(inputCount: columns) * (32 + MemoryLayout<Float>.stride)
                    }
                return total + bytes + 128  // alignment of each copy (and of q8 scales after values)
            }
        }
        let groupBytes = 32 << 20
        var arena = WeightArena()
        var arenaBytesPlanned = Int.max  // the first expert starts an arena
        defer { arena.seal() }
        func matrix(_ name: String) throws -> ExpertMatrix {
            let weight = try checkpoint.weight(named: name)
            switch quantization {
            case .none where packsForAMX && weight.dtype == .bf16 && weight.shape.count == 2:
                return .amxPacked(AMXPackedMatrix(weight, arena: arena))
            case .none: return .stored(weight.resident(in: arena, copier: parallelCopier))
            case .q8: return .q8(QuantizedMatrix(weight, arena: arena))
            }
        }
        var loaded: [LayerExpert: Expert] = [:]
        // Stacked experts (gpt-oss): each layer's stacked tensors are read once.
        var stackedLayers: [Int: StackedExpertTensors] = [:]
        let total = Set(experts).count
        for layerExpert in experts where loaded[layerExpert] == nil {
            defer { progress?(loaded.count, total) }
            let layer = layerExpert.layer.rawValue
            let expert = layerExpert.expert.rawValue
            guard c.contains(layerExpert) else {
                let moeLayers = c.moeLayers.map { String($0.rawValue) }.joined(separator: ", ")
                throw ModelError.invalidInput(
                    "\(layerExpert) is outside the model (\(c.layerCount) layers, MoE layers \(moeLayers) with "
                        + "\(c.expertCount) experts each)")
            }
            if let reused = reusable[layerExpert] {
                loaded[layerExpert] = reused
                continue
            }
            if let stacked = spec.stacked {
                let tensors =
                    try stackedLayers[layer]
                    ?? StackedExpertTensors(
                        checkpoint, names: stacked.layerNames(layer), mxfp4: stacked.mxfp4,
                        expertCount: c.expertCounts[layer], hiddenSize: c.hiddenSize,
                        intermediateSize: spec.intermediateSize)
                stackedLayers[layer] = tensors
                let weights = try tensors.expert(expert, quantization: quantization)
                loaded[layerExpert] = Expert(
                    gate: weights.gate, up: weights.up, down: weights.down, biases: weights.biases)
                continue
            }
            let names = spec.tensorNames(layer: layer, expert: expert)
            let bytes = arenaBytes([names.gate, names.up, names.down])
            if arenaBytesPlanned > groupBytes - bytes {
                arena.seal()
                arena = WeightArena(chunkBytes: max(groupBytes, bytes))
                arenaBytesPlanned = 0
            }
            arenaBytesPlanned += bytes
            loaded[layerExpert] = Expert(
                gate: try matrix(names.gate), up: try matrix(names.up), down: try matrix(names.down))
        }
        self.experts = loaded
        held = c.expertCounts.enumerated().map { layer, count in
            (0..<count).map { expert in
                loaded[LayerExpert(layer: LayerIndex(layer), expert: ExpertID(expert))].map {
                    HeldExpert(
                        $0, hiddenSize: c.hiddenSize, intermediateSize: spec.intermediateSize, stacked: spec.stacked != nil)
                } ?? .absent
            }
        }
        checkpoint.releaseMappedPages()
    }

    /// Where the gate matrix of `layerExpert` lives (its first element), nil when not held: tests check
    /// that a store loaded with `reusing:` shares the experts it has in common with the previous one.
    func gateAddress(of layerExpert: LayerExpert) -> UnsafeRawPointer? {
        switch experts[layerExpert]?.gate {
        case .stored(let weight): weight.withElements { elements in
                switch elements {
                case .f32(let p): UnsafeRawPointer(p)
                case .bf16(let p): UnsafeRawPointer(p)
                case .fp8(let p, _, _): UnsafeRawPointer(p)
                case .q8(let p, _, _): UnsafeRawPointer(p)
                case .amxPacked(let p): UnsafeRawPointer(p)
                }
            }
        case .q8(let matrix): UnsafeRawPointer(matrix.storage.values.baseAddress!)
        case .amxPacked(let matrix): UnsafeRawPointer(matrix.storage.values.baseAddress!)
        case .mxfp4, nil: nil
        }
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
        let hiddenSize = shape.hiddenSize
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
        guard shape.isMoELayer(layer) else {
            throw ModelError.invalidInput("\(layer) is not a MoE layer of this model; it has no experts")
        }
        let expertCount = shape.expertCounts[layer.rawValue]
        let layerExperts = held[layer.rawValue]
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
            if entryCounts[expert + 1] > 0, case .absent = layerExperts[expert] {
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
        let groupSizes = (0..<expertCount).map { expertStarts[$0 + 1] - expertStarts[$0] }
        var output = [Float](repeating: 0, count: rowCount * hiddenSize)
        let active = (0..<expertCount).filter { groupSizes[$0] > 0 }
        guard !active.isEmpty else { return output }
        let intermediateSize = spec.intermediateSize
        // The experts run in waves of whole experts, ascending: each wave's rows are gathered one
        // expert after the other, its products run as one job per stage (gate and up, then down) when
        // its experts are held as plain pointers (`held`: bf16 as stored, packed for the amx path, or
        // q8) or are MXFP4 under fast arithmetic, else expert by expert. A wave holds at most
        // `waveScratchBytes` of gate and up rows (or one expert whose rows need more).
        let waveRowBudget = max(1, waveScratchBytes / (2 * intermediateSize * MemoryLayout<Float>.size))
        var waves: [Range<Int>] = []
        var first = 0
        while first < active.count {
            var end = first + 1
            var rows = groupSizes[active[first]]
            while end < active.count, rows + groupSizes[active[end]] <= waveRowBudget {
                rows += groupSizes[active[end]]
                end += 1
            }
            waves.append(first..<end)
            first = end
        }
        let largestWave = waves.map { wave in active[wave].reduce(0) { $0 + groupSizes[$1] } }.max()!
        // Scratch reused by every wave of the call (and by later calls): gathered rows, gate (then
        // SwiGLU), up, down. Only the wave's rows are read, so stale values are harmless.
        var scratch =
            idleScratch.withLock { idle -> FeedForwardScratch? in
                defer { idle = nil }
                return idle
            }
            ?? FeedForwardScratch(rowCapacity: largestWave, hiddenSize: hiddenSize, intermediateSize: intermediateSize)
        scratch.reserve(rowCapacity: largestWave)
        for wave in waves {
            let waveExperts = active[wave]
            let firstEntry = expertStarts[waveExperts.first!]
            let entries = firstEntry..<expertStarts[waveExperts.last! + 1]
            for entry in entries {
                let slot = entry - firstEntry
                let source = assignedRows[entry] * hiddenSize
                scratch.input.replaceSubrange(
                    (slot * hiddenSize)..<((slot + 1) * hiddenSize), with: hidden[source..<(source + hiddenSize)])
            }
            func rows(_ expert: Int) -> Range<Int> {
                (expertStarts[expert] - firstEntry)..<(expertStarts[expert + 1] - firstEntry)
            }
            let plain = waveExperts.map { (rows: rows($0), weights: layerExperts[$0]) }
            if !scratch.feedForward(plain, rowCount: entries.count, arithmetic: arithmetic) {
                let groups = waveExperts.map { index in
                    let expert = experts[LayerExpert(layer: layer, expert: ExpertID(index))]!
                    return (rows: rows(index), gate: expert.gate, up: expert.up, down: expert.down, biases: expert.biases)
                }
                scratch.feedForward(groups, rowCount: entries.count, activation: spec.stacked, arithmetic: arithmetic)
            }
            // Ascending expert id: each row adds its terms in that fixed order, whatever the other rows.
            scratch.down.withUnsafeBufferPointer { result in
                output.withUnsafeMutableBufferPointer { combined in
                    for entry in entries {
                        let target = combined.baseAddress! + assignedRows[entry] * hiddenSize
                        let source = result.baseAddress! + (entry - firstEntry) * hiddenSize
                        let weight = assignedWeights[entry]
                        for column in 0..<hiddenSize { target[column] += source[column] * weight }
                    }
                }
            }
        }
        idleScratch.withLock { [scratch] idle in idle = scratch }
        return output
    }

    /// The combined expert output for a whole routing (the in-process path of `DecoderStack.forward`).
    /// - Parameter hidden: [routing.tokenCount, hiddenSize], f32.
    /// - Returns: [routing.tokenCount, hiddenSize], f32.
    public func compute(layer: LayerIndex, hidden: [Float], routing: RoutingDecision) throws -> [Float] {
        try compute(
            layer: layer, hidden: hidden, rowCount: routing.tokenCount,
            rowExpertOffsets: (0...routing.tokenCount).map { UInt32($0 * routing.expertsPerToken) },
            expertIDs: routing.expertIDs.map { UInt32(clamping: $0) }, weights: routing.weights)
    }
}

/// Buffers for the expert FFNs of up to `rowCapacity` rows (a wave of experts), reused across the
/// waves of a call and across calls.
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

    private typealias Q8Pointers = ExpertStore.HeldExpert.Q8Pointers

    /// Calls `body` with the buffers' first elements: input, gate, up and down.
    private mutating func withBuffers<Result>(
        _ body: (
            UnsafePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>, UnsafeMutablePointer<Float>
        ) -> Result
    ) -> Result {
        input.withUnsafeBufferPointer { input in
            gate.withUnsafeMutableBufferPointer { gate in
                up.withUnsafeMutableBufferPointer { up in
                    down.withUnsafeMutableBufferPointer { down in
                        body(input.baseAddress!, gate.baseAddress!, up.baseAddress!, down.baseAddress!)
                    }
                }
            }
        }
    }

    /// `down[rows] = w2(silu(w1 x) ⊙ w3 x)` for each group's rows of `input`, with the group's expert
    /// (the groups cover the first `rowCount` rows) when every expert is held bf16 as stored, or every
    /// one packed for the amx path, or every one q8: all gate and up products run as one job (the input
    /// rounded or quantized once for all), then one SwiGLU, then all down products as one job. Each
    /// row's result is bitwise what its expert's products give one by one. Returns false, computing
    /// nothing, for any other mix.
    mutating func feedForward(
        _ groups: [(rows: Range<Int>, weights: ExpertStore.HeldExpert)], rowCount: Int, arithmetic: BFloat16Arithmetic
    ) -> Bool {
        let (hiddenSize, intermediateSize) = (self.hiddenSize, self.intermediateSize)
        var bf16: [(gate: UnsafePointer<UInt16>, up: UnsafePointer<UInt16>, down: UnsafePointer<UInt16>)] = []
        var packed = bf16
        var q8: [(gate: Q8Pointers, up: Q8Pointers, down: Q8Pointers)] = []
        for group in groups {
            switch group.weights {
            case .bf16(let gate, let up, let down): bf16.append((gate, up, down))
            case .amxPacked(let gate, let up, let down): packed.append((gate, up, down))
            case .q8(let gate, let up, let down): q8.append((gate, up, down))
            case .absent, .held: return false
            }
        }
        let count = groups.count
        guard count > 0, bf16.count == count || packed.count == count || q8.count == count else { return false }
        withBuffers { x, g, u, d in
            if q8.isEmpty {
                let matrices = packed.isEmpty ? bf16 : packed
                func product(
                    _ i: Int, _ weight: UnsafePointer<UInt16>, _ outputCount: Int, into output: UnsafeMutablePointer<Float>
                ) -> GroupedBFloat16Product {
                    let rows = groups[i].rows
                    return GroupedBFloat16Product(
                        firstRow: rows.lowerBound, rowCount: rows.count, weight: weight, outputCount: outputCount,
                        output: output + rows.lowerBound * outputCount)
                }
                func run(_ products: [GroupedBFloat16Product], on input: UnsafePointer<Float>, inputCount: Int) {
                    if packed.isEmpty {
                        linear(
                            input, rowCount: rowCount, inputCount: inputCount, groupedProducts: products,
                            arithmetic: arithmetic)
                    } else {
                        linear(input, rowCount: rowCount, inputCount: inputCount, amxPackedProducts: products)
                    }
                }
                run(
                    matrices.indices.flatMap { i in
                        [product(i, matrices[i].gate, intermediateSize, into: g),
                         product(i, matrices[i].up, intermediateSize, into: u)]
                    }, on: x, inputCount: hiddenSize)
                swiGLU(gate: g, up: u, count: rowCount * intermediateSize)
                run(
                    matrices.indices.map { i in product(i, matrices[i].down, hiddenSize, into: d) }, on: g,
                    inputCount: intermediateSize)
            } else {
                func product(
                    _ i: Int, _ weight: Q8Pointers, _ outputCount: Int, into output: UnsafeMutablePointer<Float>
                ) -> GroupedQ8Product {
                    let rows = groups[i].rows
                    return GroupedQ8Product(
                        firstRow: rows.lowerBound, rowCount: rows.count, values: weight.values, scales: weight.scales,
                        outputCount: outputCount, output: output + rows.lowerBound * outputCount)
                }
                linear(
                    x, rowCount: rowCount, inputCount: hiddenSize,
                    groupedQ8Products: q8.indices.flatMap { i in
                        [product(i, q8[i].gate, intermediateSize, into: g), product(i, q8[i].up, intermediateSize, into: u)]
                    })
                swiGLU(gate: g, up: u, count: rowCount * intermediateSize)
                linear(
                    g, rowCount: rowCount, inputCount: intermediateSize,
                    groupedQ8Products: q8.indices.map { i in product(i, q8[i].down, hiddenSize, into: d) })
            }
        }
        return true
    }

    /// `down[rows] = w2(silu(w1 x) ⊙ w3 x)` for each group's rows of `input`, with the group's
    /// expert, for experts the plain-pointer form above does not take; the groups cover the first
    /// `rowCount` rows. With MXFP4 weights (gpt-oss) under fast arithmetic the gate and up products
    /// run as one job and the down products as another; otherwise group by group. Either way a row's
    /// result is bitwise the same. Stacked (gpt-oss) experts add their biases after each product and
    /// use the clamped SwiGLU of `activation`.
    /// - Parameter groups: gate w1 [I, H], up w3 [I, H] and down w2 [H, I] of each group's expert.
    mutating func feedForward(
        _ groups: [(rows: Range<Int>, gate: ExpertMatrix, up: ExpertMatrix, down: ExpertMatrix, biases: ExpertBiases?)],
        rowCount: Int, activation: ExpertSpec.Stacked?, arithmetic: BFloat16Arithmetic
    ) {
        let (hiddenSize, intermediateSize) = (self.hiddenSize, self.intermediateSize)
        withBuffers { x, g, u, d in
            /// A group's gate and up rows (its products done): their biases, then the
            /// activation into the gate rows.
            func activate(_ group: (rows: Range<Int>, gate: ExpertMatrix, up: ExpertMatrix, down: ExpertMatrix, biases: ExpertBiases?)) {
                let first = group.rows.lowerBound
                let (gRows, uRows) = (g + first * intermediateSize, u + first * intermediateSize)
                let count = group.rows.count
                if let biases = group.biases {
                    addBias(biases.gate, to: gRows, rowCount: count)
                    addBias(biases.up, to: uRows, rowCount: count)
                }
                if let activation {
                    clampedSwiGLU(
                        gate: gRows, up: uRows, count: count * intermediateSize, alpha: activation.alpha,
                        limit: activation.limit)
                } else {
                    swiGLU(gate: gRows, up: uRows, count: count * intermediateSize)
                }
            }
            // Every matrix MXFP4 (gpt-oss) under fast arithmetic: the gate and up products of
            // every group as one job, the biases and the activation group by group, then every
            // down product as one job; each product's rows quantized once (bitwise what the
            // products give one by one).
            let mxfp4 = groups.compactMap { group -> (MXFP4Matrix, MXFP4Matrix, MXFP4Matrix)? in
                guard case .mxfp4(let w1) = group.gate, case .mxfp4(let w3) = group.up,
                    case .mxfp4(let w2) = group.down, w1.outputCount == intermediateSize,
                    w1.inputCount == hiddenSize, w3.outputCount == intermediateSize,
                    w3.inputCount == hiddenSize, w2.outputCount == hiddenSize,
                    w2.inputCount == intermediateSize
                else { return nil }
                return (w1, w3, w2)
            }
            let gateUp = mxfp4.compactMap { MXFP4Matrix.interleaved(gate: $0.0, up: $0.1) }
            if arithmetic == .fast, !groups.isEmpty, mxfp4.count == groups.count, gateUp.count == groups.count {
                // Gate and up as stored, interleaved (one stream over gate_up_proj), then split.
                var pairs = [Float](repeating: 0, count: rowCount * 2 * intermediateSize)
                pairs.withUnsafeMutableBufferPointer { pairs in
                    let p = pairs.baseAddress!
                    linear(
                        x, rowCount: rowCount, inputCount: hiddenSize,
                        groupedMXFP4Products: groups.indices.map { i in
                            GroupedMXFP4Product(
                                firstRow: groups[i].rows.lowerBound, rowCount: groups[i].rows.count,
                                matrix: gateUp[i], output: p + groups[i].rows.lowerBound * 2 * intermediateSize)
                        })
                    for group in groups {
                        let first = group.rows.lowerBound
                        if let activation {
                            // The biases and the clamped SwiGLU straight from the pairs into the gate rows.
                            withOptionalPointers(group.biases?.gate, group.biases?.up) { gateBias, upBias in
                                clampedSwiGLU(
                                    gate: p + first * 2 * intermediateSize, up: p + first * 2 * intermediateSize + 1,
                                    stride: 2, rowStride: 2 * intermediateSize, gateBias: gateBias,
                                    upBias: upBias, rowCount: group.rows.count, width: intermediateSize,
                                    alpha: activation.alpha, limit: activation.limit,
                                    into: g + first * intermediateSize)
                            }
                        } else {
                            for index in first * intermediateSize..<group.rows.upperBound * intermediateSize {
                                g[index] = p[2 * index]
                                u[index] = p[2 * index + 1]
                            }
                            activate(group)
                        }
                    }
                }
                let downs = groups.indices.map { i in
                    GroupedMXFP4Product(
                        firstRow: groups[i].rows.lowerBound, rowCount: groups[i].rows.count, matrix: mxfp4[i].2,
                        output: d + groups[i].rows.lowerBound * hiddenSize)
                }
                linear(g, rowCount: rowCount, inputCount: intermediateSize, groupedMXFP4Products: downs)
                for group in groups {
                    if let biases = group.biases {
                        addBias(biases.down, to: d + group.rows.lowerBound * hiddenSize, rowCount: group.rows.count)
                    }
                }
                return
            }
            for group in groups {
                let first = group.rows.lowerBound
                let (gRows, uRows) = (g + first * intermediateSize, u + first * intermediateSize)
                let count = group.rows.count
                group.gate.apply(x + first * hiddenSize, rowCount: count, into: gRows, arithmetic: arithmetic)
                group.up.apply(x + first * hiddenSize, rowCount: count, into: uRows, arithmetic: arithmetic)
                activate(group)
                group.down.apply(gRows, rowCount: count, into: d + first * hiddenSize, arithmetic: arithmetic)
                if let biases = group.biases {
                    addBias(biases.down, to: d + first * hiddenSize, rowCount: count)
                }
            }
        }
    }
}

enum ExpertMatrix: Sendable {
    case stored(WeightTensor)
    case q8(QuantizedMatrix)
    /// bf16 packed for the amx path (``AMXPackedMatrix``).
    case amxPacked(AMXPackedMatrix)
    /// MXFP4 as stored, borrowed from the checkpoint's mapping (gpt-oss).
    case mxfp4(MXFP4Matrix)

    /// `output = input · weightᵀ` for `rowCount` rows.
    func apply(
        _ input: UnsafePointer<Float>, rowCount: Int, into output: UnsafeMutablePointer<Float>,
        arithmetic: BFloat16Arithmetic
    ) {
        switch self {
        case .stored(let weight): linear(input, rowCount: rowCount, weight: weight, into: output, arithmetic: arithmetic)
        case .q8(let matrix): matrix.apply(input, rowCount: rowCount, into: output)
        case .amxPacked(let matrix):
            linear(
                input, rowCount: rowCount, inputCount: matrix.inputCount,
                amxPackedProducts: [matrix.product(0..<rowCount, into: output)])
        case .mxfp4(let matrix): matrix.apply(input, rowCount: rowCount, into: output, arithmetic: arithmetic)
        }
    }
}

/// A bf16 `nn.Linear` weight [outputCount, inputCount] packed for the amx path (``packForAMX`` in
/// Kernels): its products are bitwise the amx path's on the weight as stored, and read it in one stream
/// per 16 rows instead of 16 (Benchmarks/kernels/amx_packed.c). Only the packed copy is kept.
struct AMXPackedMatrix: Sendable {
    let outputCount: Int
    let inputCount: Int
    /// The packed elements, at an address that stays put while the matrix lives (so that a layer's
    /// experts can run as one grouped product).
    let storage: PackedBFloat16Storage

    /// `weight` (bf16, a matrix) packed, its storage in `arena` (huge pages) when it can take it.
    init(_ weight: WeightTensor, arena: WeightArena? = nil) {
        outputCount = weight.shape[0]
        inputCount = weight.shape[1]
        storage = packedForAMX(weight, arena: arena)
    }

    /// This matrix on `rows` of a grouped product's input, into the same rows of `output` [*, outputCount].
    func product(_ rows: Range<Int>, into output: UnsafeMutablePointer<Float>) -> GroupedBFloat16Product {
        GroupedBFloat16Product(
            firstRow: rows.lowerBound, rowCount: rows.count, weight: storage.values.baseAddress!,
            outputCount: outputCount, output: output + rows.lowerBound * outputCount)
    }
}

/// An `nn.Linear` weight [outputCount, inputCount] quantized to int8 in blocks of 32 columns with an
/// f32 scale per block (see `quantizeQ8` in Kernels).
struct QuantizedMatrix: Sendable {
    let outputCount: Int
    let inputCount: Int
    /// The values [outputCount, blocks × 32] and scales [outputCount, blocks], at addresses that stay
    /// put while the matrix lives (so that a layer's experts can run as one grouped product).
    let storage: QuantizedStorage

    /// `weight` quantized, its storage in `arena` (huge pages) when given.
    init(_ weight: WeightTensor, arena: WeightArena? = nil) {
        precondition(weight.shape.count == 2, "QuantizedMatrix: weight must be a matrix, got shape \(weight.shape)")
        outputCount = weight.shape[0]
        inputCount = weight.shape[1]
        storage = weight.q8Storage(in: arena)
    }

    func apply(_ input: UnsafePointer<Float>, rowCount: Int, into output: UnsafeMutablePointer<Float>) {
        linear(
            input, rowCount: rowCount, inputCount: inputCount, q8Values: storage.values.baseAddress!,
            q8Scales: storage.scales.baseAddress!, outputCount: outputCount, into: output)
    }
}

/// Runs `body` with the storage of two optional arrays (nil for an absent one).
private func withOptionalPointers<R>(
    _ first: [Float]?, _ second: [Float]?, _ body: (UnsafePointer<Float>?, UnsafePointer<Float>?) -> R
) -> R {
    func withSecond(_ a: UnsafePointer<Float>?) -> R {
        guard let second else { return body(a, nil) }
        return second.withUnsafeBufferPointer { body(a, $0.baseAddress) }
    }
    guard let first else { return withSecond(nil) }
    return first.withUnsafeBufferPointer { withSecond($0.baseAddress) }
}

/// Progress lines for a long load: ``report(done:total:)`` passes a line to `emit` at most once every
/// `interval` (and never for a load that ends sooner), saying how far the load is and how long it has
/// taken; ``finished(_:)`` gives the closing line.
public final class LoadProgress {
    private let what: String
    private let interval: Duration
    private let emit: (String) -> Void
    private let started = ContinuousClock.now
    private var lastLine: ContinuousClock.Instant

    /// - Parameters:
    ///   - what: what is loaded, as the lines name it ("experts").
    ///   - emit: where a line goes (a logger).
    public init(_ what: String, every interval: Duration = .seconds(5), emit: @escaping (String) -> Void) {
        self.what = what
        self.interval = interval
        self.emit = emit
        lastLine = started
    }

    /// Seconds since the load started.
    public var seconds: Double { (ContinuousClock.now - started).secondsValue }

    /// Emits "loading experts: 37% (1024 of 2760) after 12.3 s" when `interval` has passed since the last line.
    public func report(done: Int, total: Int) {
        let now = ContinuousClock.now
        guard now - lastLine >= interval, total > 0 else { return }
        lastLine = now
        emit("loading \(what): \(done * 100 / total)% (\(done) of \(total)) after \((seconds * 10).rounded() / 10) s")
    }

    /// Emits "loaded DETAIL in 12.3 s".
    public func finished(_ detail: String) {
        emit("loaded \(detail) in \((seconds * 100).rounded() / 100) s")
    }
}
