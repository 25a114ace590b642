// A dense SwiGLU MLP, down(silu(gate x) ⊙ up x), computed on the coordinator: the feed-forward block of
// a dense (non-MoE) layer, and a shared expert (Qwen2-MoE, GLM-4.5) that every token passes through
// beside its routed experts, scaled by a sigmoid gate (Qwen2-MoE) or not (GLM-4.5).
// Legend: T = tokens, H = hidden size, I = the MLP's intermediate size.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Kernels
import Tensors

/// A SwiGLU MLP whose weights the coordinator holds.
struct DenseMLP: Sendable {
    /// [I, H], f32 or bf16
    let gate: WeightTensor
    /// [I, H], f32 or bf16
    let up: WeightTensor
    /// [H, I], f32 or bf16
    let down: WeightTensor
    let arithmetic: BFloat16Arithmetic

    /// This MLP with `transform` applied to its three matrices.
    func mappingMatrices(_ transform: (WeightTensor) -> WeightTensor) -> DenseMLP {
        DenseMLP(gate: transform(gate), up: transform(up), down: transform(down), arithmetic: arithmetic)
    }

    /// - Parameter input: [T, H], f32.
    /// - Returns: [T, H], f32.
    func callAsFunction(_ input: [Float], rowCount: Int) -> [Float] {
        let intermediate = gate.shape[0]
        var gated = [Float](repeating: 0, count: rowCount * intermediate)
        var upped = gated
        input.withUnsafeBufferPointer { x in
            gated.withUnsafeMutableBufferPointer { g in
                upped.withUnsafeMutableBufferPointer { u in
                    linear(
                        x.baseAddress!, rowCount: rowCount, weights: [gate, up], into: [g.baseAddress!, u.baseAddress!],
                        arithmetic: arithmetic)
                    swiGLU(gate: g.baseAddress!, up: u.baseAddress!, count: rowCount * intermediate)
                }
            }
        }
        return linear(gated, rowCount: rowCount, weight: down, arithmetic: arithmetic)
    }
}

/// A shared expert: a dense MLP every token passes through, scaled per token by
/// sigmoid(x · shared_expert_gate) (Qwen2-MoE) or unscaled (GLM-4.5's `shared_experts`, no gate).
struct SharedExpert: Sendable {
    let mlp: DenseMLP
    /// [1, H], f32 or bf16; nil: no gate, the MLP's output is added as it is.
    let gate: WeightTensor?

    /// This shared expert with `transform` applied to its MLP's matrices; the gate (one row, like the
    /// router) stays as it is.
    func mappingMatrices(_ transform: (WeightTensor) -> WeightTensor) -> SharedExpert {
        SharedExpert(mlp: mlp.mappingMatrices(transform), gate: gate)
    }

    /// - Parameter input: [T, H], f32 (the same post-attention-normed rows the router sees).
    /// - Returns: sigmoid(x · gate) · mlp(x), or mlp(x) without a gate, [T, H], f32.
    func callAsFunction(_ input: [Float], rowCount: Int) -> [Float] {
        var output = mlp(input, rowCount: rowCount)
        guard let gate else { return output }
        let scores = linear(input, rowCount: rowCount, weight: gate)
        let width = output.count / max(1, rowCount)
        for row in 0..<rowCount {
            let scale = 1 / (1 + expf(-scores[row]))
            for column in 0..<width { output[row * width + column] *= scale }
        }
        return output
    }
}
