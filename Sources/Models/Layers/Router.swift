import Kernels
// The router of a MoE layer: a linear scoring of the E experts per token, then the routing policy.
// Legend: T = tokens, H = hidden size, E = experts, k = experts per token.
import Tensors

/// How router scores become the chosen experts and their routing weights.
struct RoutingPolicy: Sendable, Equatable {
    /// Renormalise the k chosen probabilities to sum to 1 (Mixtral always; Qwen and OLMoE when
    /// `norm_topk_prob` is true).
    var renormalize: Bool
}

/// The router of one MoE layer: softmax over all E experts, top-k, then the policy.
struct Router: Sendable {
    /// [E, H], f32 or bf16
    let weight: WeightTensor
    let expertCount: Int
    let expertsPerToken: Int
    let policy: RoutingPolicy

    /// Routes each token of `normed` to its top-k experts. Always exact arithmetic: the choices are
    /// what the experts' load depends on.
    /// - Parameter normed: [T, H], f32 (post-attention-normed hidden states).
    func route(_ normed: [Float], tokenCount: Int) -> RoutingDecision {
        var probabilities = linear(normed, rowCount: tokenCount, weight: weight)
        var expertIDs: [Int32] = []
        var weights: [Float] = []
        expertIDs.reserveCapacity(tokenCount * expertsPerToken)
        weights.reserveCapacity(tokenCount * expertsPerToken)
        probabilities.withUnsafeMutableBufferPointer { buffer in
            for token in 0..<tokenCount {
                let row = buffer.baseAddress! + token * expertCount
                // The softmax is over all E experts (in f32) *before* top-k, as transformers computes
                // it for every supported architecture. Softmax over only the top-k logits gives the same
                // renormalised weights mathematically, but not the same rounding: follow HF's order.
                softmax(row, count: expertCount)
                let chosen = topK(row, count: expertCount, k: expertsPerToken)
                guard policy.renormalize else {
                    for expert in chosen {
                        expertIDs.append(Int32(expert))
                        weights.append(row[expert])
                    }
                    continue
                }
                var sum: Float = 0
                for expert in chosen { sum += row[expert] }
                for expert in chosen {
                    expertIDs.append(Int32(expert))
                    weights.append(row[expert] / sum)
                }
            }
        }
        return RoutingDecision(
            tokenCount: tokenCount, expertsPerToken: expertsPerToken, expertIDs: expertIDs, weights: weights)
    }
}
