import Kernels
// gpt-oss stores each MoE layer's experts stacked, input-major, with biases (ExpertSpec.Stacked):
// gate_up_proj [E, H, 2I] with gate and up interleaved along the last dimension, down_proj [E, I, H].
// An expert store takes one expert out of them as `nn.Linear`-shaped matrices ([out, in]) in the stored
// dtype (the same values, so products are those of the stacked layout), and computes the clamped SwiGLU.
// The released checkpoints store gate_up_proj and down_proj as MXFP4 in the `nn.Linear` layout
// (`_blocks` [E, out, in / 32, 16], `_scales` [E, out, in / 32]): those an expert uses in place, from
// the memory map (gate: the even rows of gate_up, up: the odd ones).
//
// Legend: E = experts of the layer, H = hidden size, I = expert intermediate size.
import Tensors

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The biases of one stacked expert, f32.
struct ExpertBiases: Sendable {
    /// [I]
    let gate: [Float]
    /// [I]
    let up: [Float]
    /// [H]
    let down: [Float]
}

/// One MoE layer's stacked expert tensors, read once per layer.
struct StackedExpertTensors {
    /// The projections of every expert of the layer.
    enum Projections {
        /// gate_up [E, H, 2I] and down [E, I, H], f32 or bf16.
        case numbers(gateUp: WeightTensor, down: WeightTensor)
        /// gate_up blocks [E, 2I, H / 32, 16] and scales [E, 2I, H / 32]; down blocks [E, H, I / 32, 16]
        /// and scales [E, H, I / 32]; U8 in the mapping that `owner` keeps.
        case mxfp4(
            gateUpBlocks: UnsafePointer<UInt8>, gateUpScales: UnsafePointer<UInt8>, downBlocks: UnsafePointer<UInt8>,
            downScales: UnsafePointer<UInt8>, owner: any AnyObject)
    }

    let projections: Projections
    /// [E, 2I], f32
    let gateUpBias: FloatTensor
    /// [E, H], f32
    let downBias: FloatTensor
    let hiddenSize: Int
    let intermediateSize: Int

    /// Reads layer `layer`'s stacked tensors and checks their shapes against `expertCount`, H and I.
    /// - Throws: `ModelError` when a tensor is missing or has another shape.
    init(
        _ checkpoint: Checkpoint, names: ExpertSpec.Stacked.LayerNames, mxfp4: Bool, expertCount: Int, hiddenSize: Int,
        intermediateSize: Int
    ) throws(ModelError) {
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        gateUpBias = try checkpoint.tensor(named: names.gateUpBias)
        downBias = try checkpoint.tensor(named: names.downBias)
        var expected: [(String, [Int], [Int])] = [
            (names.gateUpBias, gateUpBias.shape, [expertCount, 2 * intermediateSize]),
            (names.downBias, downBias.shape, [expertCount, hiddenSize]),
        ]
        if mxfp4 {
            // Checkpoint checked every shape against tensorShapes(); the byte counts follow from them.
            func bytes(_ name: String, count: Int) throws(ModelError) -> (UnsafePointer<UInt8>, any AnyObject) {
                let (buffer, owner) = try checkpoint.bytes(named: name)
                guard buffer.count == count, let base = buffer.baseAddress else {
                    throw .invalidInput("\(name) has \(buffer.count) bytes, expected \(count)")
                }
                return (base.assumingMemoryBound(to: UInt8.self), owner)
            }
            let gateUpRows = expertCount * 2 * intermediateSize, downRows = expertCount * hiddenSize
            let (gateUpBlocks, owner) = try bytes(names.gateUp + "_blocks", count: gateUpRows * hiddenSize / 2)
            let (gateUpScales, _) = try bytes(names.gateUp + "_scales", count: gateUpRows * hiddenSize / 32)
            let (downBlocks, _) = try bytes(names.down + "_blocks", count: downRows * intermediateSize / 2)
            let (downScales, _) = try bytes(names.down + "_scales", count: downRows * intermediateSize / 32)
            projections = .mxfp4(
                gateUpBlocks: gateUpBlocks, gateUpScales: gateUpScales, downBlocks: downBlocks, downScales: downScales,
                owner: owner)
        } else {
            let gateUp = try checkpoint.weight(named: names.gateUp)
            let down = try checkpoint.weight(named: names.down)
            expected += [
                (names.gateUp, gateUp.shape, [expertCount, hiddenSize, 2 * intermediateSize]),
                (names.down, down.shape, [expertCount, intermediateSize, hiddenSize]),
            ]
            projections = .numbers(gateUp: gateUp, down: down)
        }
        for (name, shape, want) in expected where shape != want {
            throw .invalidInput("\(name) has shape \(shape), expected \(want)")
        }
    }

    /// Expert `expert`'s gate [I, H], up [I, H] and down [H, I] as the store holds them: MXFP4 in place,
    /// else `nn.Linear` weights (owned copies in the stored dtype, or q8 with `quantization`); and its biases.
    /// - Throws: `ModelError.invalidInput` for q8 of MXFP4 experts (they stay as stored).
    func expert(_ expert: Int, quantization: WeightQuantization) throws(ModelError) -> (
        gate: ExpertMatrix, up: ExpertMatrix, down: ExpertMatrix, biases: ExpertBiases
    ) {
        let hidden = hiddenSize, intermediate = intermediateSize
        // gate[i, h] = gateUp[e, h, 2i], up[i, h] = gateUp[e, h, 2i + 1], down[h, i] = down[e, i, h].
        let biasBase = expert * 2 * intermediate
        let biases = gateUpBias.withUnsafePointer { gateUpBias in
            downBias.withUnsafePointer { downBias in
                ExpertBiases(
                    gate: (0..<intermediate).map { gateUpBias[biasBase + 2 * $0] },
                    up: (0..<intermediate).map { gateUpBias[biasBase + 2 * $0 + 1] },
                    down: Array(UnsafeBufferPointer(start: downBias + expert * hidden, count: hidden)))
            }
        }
        switch projections {
        case .numbers(let gateUp, let down):
            func held(_ weight: WeightTensor) -> ExpertMatrix {
                quantization == .q8 ? .q8(QuantizedMatrix(weight)) : .stored(weight)
            }
            return (
                held(Self.slice(gateUp, expert: expert, rows: intermediate, columns: hidden) { i, h in h * 2 * intermediate + 2 * i }),
                held(Self.slice(gateUp, expert: expert, rows: intermediate, columns: hidden) { i, h in
                    h * 2 * intermediate + 2 * i + 1
                }),
                held(Self.slice(down, expert: expert, rows: hidden, columns: intermediate) { h, i in i * hidden + h }),
                biases
            )
        case .mxfp4(let gateUpBlocks, let gateUpScales, let downBlocks, let downScales, let owner):
            guard quantization == .none else {
                throw .invalidInput("the experts are stored as MXFP4 and are computed as stored: use --quantize none")
            }
            // Row r of expert e's gate_up is stored row e · 2I + r: gate i is row 2i, up i row 2i + 1.
            let gateUpRow = expert * 2 * intermediate, downRow = expert * hidden
            func matrix(_ blocks: UnsafePointer<UInt8>, _ scales: UnsafePointer<UInt8>, row: Int, outputs: Int,
                        inputs: Int, stride: Int) -> ExpertMatrix {
                .mxfp4(MXFP4Matrix(
                    outputCount: outputs, inputCount: inputs, blocks: blocks + row * inputs / 2,
                    scales: scales + row * inputs / 32, rowStride: stride, owner: owner))
            }
            return (
                matrix(gateUpBlocks, gateUpScales, row: gateUpRow, outputs: intermediate, inputs: hidden, stride: 2),
                matrix(gateUpBlocks, gateUpScales, row: gateUpRow + 1, outputs: intermediate, inputs: hidden, stride: 2),
                matrix(downBlocks, downScales, row: downRow, outputs: hidden, inputs: intermediate, stride: 1),
                biases
            )
        }
    }

    /// The [rows, columns] matrix whose (r, c) entry is element `index(r, c)` of expert `expert`'s
    /// slice of `stacked`, in the stored dtype.
    private static func slice(
        _ stacked: WeightTensor, expert: Int, rows: Int, columns: Int, index: (Int, Int) -> Int
    ) -> WeightTensor {
        let perExpert = stacked.count / stacked.shape[0]
        let base = expert * perExpert
        return stacked.withElements { elements in
            switch elements {
            case .f32(let source):
                var values = [Float](repeating: 0, count: rows * columns)
                for r in 0..<rows { for c in 0..<columns { values[r * columns + c] = source[base + index(r, c)] } }
                return WeightTensor(FloatTensor(shape: [rows, columns], values: values))
            case .bf16(let source):
                var bits = [UInt16](repeating: 0, count: rows * columns)
                for r in 0..<rows { for c in 0..<columns { bits[r * columns + c] = source[base + index(r, c)] } }
                return WeightTensor(shape: [rows, columns], bfloat16Bits: bits)
            case .fp8, .q8, .amxPacked:
                // Checkpoint accepts FP8 for matrices only, and q8 and amx packing are made from matrices at
                // load; stacked tensors have three dimensions and come from the checkpoint.
                preconditionFailure("stacked expert tensors are never FP8, q8 or packed (shape \(stacked.shape))")
            }
        }
    }
}

/// gpt-oss's expert activation, in place: `gate[i] = (clamp(up[i], -limit, limit) + 1) · g · σ(alpha · g)`
/// with `g = min(gate[i], limit)` (NaN passes through as torch.clamp keeps it), as Kernels'
/// `clampedSwiGLU` computes it.
/// - Parameters:
///   - gate: [count], f32, overwritten with the product.
///   - up: [count], f32.
func clampedSwiGLU(gate: UnsafeMutablePointer<Float>, up: UnsafePointer<Float>, count: Int, alpha: Float, limit: Float) {
    clampedSwiGLU(
        gate: gate, up: up, stride: 1, rowStride: count, gateBias: nil, upBias: nil, rowCount: 1, width: count,
        alpha: alpha, limit: limit, into: gate)
}

/// Adds `bias` [width] to each of `rowCount` rows of `rows` [rowCount, width].
func addBias(_ bias: [Float], to rows: UnsafeMutablePointer<Float>, rowCount: Int) {
    let width = bias.count
    for row in 0..<rowCount {
        for column in 0..<width { rows[row * width + column] += bias[column] }
    }
}
