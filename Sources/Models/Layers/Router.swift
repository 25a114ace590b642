import Foundation
import Kernels
// The router of a MoE layer: a linear scoring of the E experts per token, then the routing policy.
// Legend: T = tokens, H = hidden size, E = experts, k = experts per token.
import Tensors

/// How router scores become the chosen experts and their routing weights.
struct RoutingPolicy: Sendable, Equatable {
    /// How a logit becomes a score.
    enum Scoring: Sendable, Equatable {
        /// Softmax over all E experts (Mixtral, Qwen, OLMoE, DeepSeek-V2).
        case softmax
        /// Each expert's own sigmoid (DeepSeek-V3, GLM-4.5, MiniMax-M2).
        case sigmoid
        /// Top-k of the logits, then a softmax over the k chosen logits only (gpt-oss): the routing
        /// weights always sum to 1, and `renormalize` is not consulted.
        case softmaxOfTopK
    }

    /// Experts in `groupCount` equal groups of consecutive ids; only the experts of the
    /// `keptGroups` best groups may be chosen (DeepSeek's `n_group`, `topk_group`).
    struct GroupLimit: Sendable, Equatable {
        enum GroupScore: Sendable, Equatable {
            /// The group's best score (DeepSeek-V2 `group_limited_greedy`).
            case best
            /// The sum of its two best scores, bias included (DeepSeek-V3 `noaux_tc`).
            case sumOfBestTwo
        }
        var groupCount: Int
        var keptGroups: Int
        var score: GroupScore
    }

    /// Renormalise the k chosen probabilities to sum to 1 (Mixtral always; Qwen and OLMoE when
    /// `norm_topk_prob` is true).
    var renormalize: Bool
    var scoring: Scoring = .softmax
    var groupLimit: GroupLimit? = nil
    /// [E], added to the scores to choose the experts, never to weight them (DeepSeek-V3's
    /// `e_score_correction_bias`).
    var choiceBias: [Float]? = nil
    /// Added to the denominator of the renormalisation (DeepSeek-V3 adds 1e-20).
    var renormalizeEpsilon: Float = 0
    /// The routing weights' last factor (`routed_scaling_factor`).
    var scale: Float = 1

    /// The policy of Mixtral, Qwen and OLMoE: softmax, top-k, renormalised or not.
    static func softmaxTopK(renormalize: Bool) -> RoutingPolicy { RoutingPolicy(renormalize: renormalize) }
}

/// The router of one MoE layer: softmax over all E experts, top-k, then the policy.
struct Router: Sendable {
    /// [E, H], f32 or bf16
    let weight: WeightTensor
    let expertCount: Int
    let expertsPerToken: Int
    let policy: RoutingPolicy
    /// [E], f32, added to the logits (gpt-oss's router bias); nil: none.
    var logitBias: FloatTensor? = nil

    /// Routes each token of `normed` to its top-k experts. Always exact arithmetic: the choices are
    /// what the experts' load depends on.
    /// - Parameter normed: [T, H], f32 (post-attention-normed hidden states).
    func route(_ normed: [Float], tokenCount: Int) -> RoutingDecision {
        var scores = linear(normed, rowCount: tokenCount, weight: weight)
        if let logitBias { addBias(logitBias, to: &scores) }
        var expertIDs: [Int32] = []
        var weights: [Float] = []
        expertIDs.reserveCapacity(tokenCount * expertsPerToken)
        weights.reserveCapacity(tokenCount * expertsPerToken)
        var choice = [Float](repeating: 0, count: expertCount)
        scores.withUnsafeMutableBufferPointer { buffer in
            for token in 0..<tokenCount {
                let row = buffer.baseAddress! + token * expertCount
                switch policy.scoring {
                case .softmaxOfTopK:
                    // torch.topk (best first), then softmax over those k values in f32.
                    let chosen = topK(row, count: expertCount, k: expertsPerToken)
                    var top = chosen.map { row[$0] }
                    top.withUnsafeMutableBufferPointer { softmax($0.baseAddress!, count: expertsPerToken) }
                    for (expert, weight) in zip(chosen, top) {
                        expertIDs.append(Int32(expert))
                        weights.append(policy.scale == 1 ? weight : weight * policy.scale)
                    }
                    continue
                case .softmax:
                    // The softmax is over all E experts (in f32) *before* top-k, as transformers
                    // computes it for every supported architecture. Softmax over only the top-k logits
                    // gives the same renormalised weights mathematically, but not the same rounding:
                    // follow HF's order.
                    softmax(row, count: expertCount)
                case .sigmoid:
                    for expert in 0..<expertCount { row[expert] = 1 / (1 + exp(-row[expert])) }
                }
                let chosen = choose(scores: row, into: &choice)
                var sum: Float = 0
                if policy.renormalize { for expert in chosen { sum += row[expert] } }
                let denominator = sum + policy.renormalizeEpsilon
                for expert in chosen {
                    expertIDs.append(Int32(expert))
                    let weight = policy.renormalize ? row[expert] / denominator : row[expert]
                    weights.append(policy.scale == 1 ? weight : weight * policy.scale)
                }
            }
        }
        return RoutingDecision(
            tokenCount: tokenCount, expertsPerToken: expertsPerToken, expertIDs: expertIDs, weights: weights)
    }

    /// The k experts of one token: the top-k of its scores, or (with a choice bias or a group
    /// limit) of the biased scores among the best groups' experts. Port of transformers'
    /// `DeepseekV2TopkRouter` / `DeepseekV3TopkRouter`: V3 masks the other groups with -inf and
    /// scores a group by its two best biased scores; V2 masks them with 0 and scores a group by its best.
    /// - Parameters:
    ///   - scores: [E], f32, the token's scores (softmax or sigmoid)
    ///   - choice: [E] scratch
    /// - Returns: k expert ids, best first
    func choose(scores: UnsafeMutablePointer<Float>, into choice: inout [Float]) -> [Int] {
        guard policy.choiceBias != nil || policy.groupLimit != nil else {
            return topK(scores, count: expertCount, k: expertsPerToken)
        }
        for expert in 0..<expertCount { choice[expert] = scores[expert] + (policy.choiceBias?[expert] ?? 0) }
        if let limit = policy.groupLimit {
            let size = expertCount / limit.groupCount
            var groupScores = [Float](repeating: 0, count: limit.groupCount)
            choice.withUnsafeBufferPointer { values in
                for group in 0..<limit.groupCount {
                    let best = topK(values.baseAddress! + group * size, count: size, k: min(2, size))
                    let first = values[group * size + best[0]]
                    groupScores[group] = switch limit.score {
                    case .best: first
                    case .sumOfBestTwo: best.count > 1 ? first + values[group * size + best[1]] : first
                    }
                }
            }
            let kept = Set(topK(groupScores, k: limit.keptGroups))
            let masked: Float = limit.score == .best ? 0 : -.infinity
            for group in 0..<limit.groupCount where !kept.contains(group) {
                for expert in (group * size)..<((group + 1) * size) { choice[expert] = masked }
            }
        }
        return choice.withUnsafeBufferPointer { topK($0.baseAddress!, count: expertCount, k: expertsPerToken) }
    }
}
