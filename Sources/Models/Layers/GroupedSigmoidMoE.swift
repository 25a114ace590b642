// The feed-forward half of DeepSeek-V3's decoder (shared by GLM-4.5 and DeepSeek-V2): the first
// `first_k_dense_replace` layers are a dense MLP; the others route with the noaux_tc sigmoid router
// (e_score_correction_bias for the choice, n_group/topk_group expert groups, norm_topk_prob,
// routed_scaling_factor) — or DeepSeek-V2's softmax router, greedy or group-limited — and add
// ungated shared experts, computed on the coordinator.
//
// Legend: H = hidden size, E = routed experts per MoE layer, k = experts per token.
import Foundation
import Kernels
import Tensors

/// The config.json fields of DeepSeek-V3's MoE feed-forward blocks.
public struct GroupedSigmoidMoEFields: Sendable, Equatable {
    /// How the router scores experts and chooses among them.
    public enum Selection: Sendable, Equatable {
        /// DeepSeek-V3, GLM-4.5: sigmoid scores, e_score_correction_bias for the choice, groups scored
        /// by their best two (`topk_method` noaux_tc).
        case noAuxTC
        /// DeepSeek-V2: softmax scores, plain top-k (`topk_method` greedy); the groups are ignored.
        case greedy
        /// DeepSeek-V2: softmax scores, groups scored by their best expert, the `topk_group` best kept
        /// (`topk_method` group_limited_greedy).
        case groupLimitedGreedy
    }

    /// The router's scoring and choice; not a config.json field of its own (each architecture sets it).
    public var selection: Selection = .noAuxTC
    /// Routed experts per MoE layer (E; `n_routed_experts`, also read as `num_local_experts`).
    public var expertCount: Int
    /// Experts chosen per token (k; `num_experts_per_tok`).
    public var expertsPerToken: Int
    /// Width of each routed expert's hidden layer (`moe_intermediate_size`).
    public var expertIntermediateSize: Int
    /// Width of a dense layer's MLP (`intermediate_size`).
    public var intermediateSize: Int
    /// Shared experts, fused into one MLP of `n_shared_experts × moe_intermediate_size` (0: none).
    public var sharedExpertCount: Int
    /// Layers 0 ..< this are dense MLP layers (`first_k_dense_replace`); the rest are MoE layers.
    public var firstDenseLayerCount: Int
    /// The experts form this many groups of consecutive ids (`n_group`).
    public var expertGroupCount: Int
    /// Only the experts of this many best groups may be chosen (`topk_group`).
    public var keptExpertGroupCount: Int
    /// The routing weights' last factor (`routed_scaling_factor`).
    public var routedScalingFactor: Double
    /// Renormalise the k chosen scores to sum to 1 before the scaling (`norm_topk_prob`).
    public var normalizeTopKProbabilities: Bool

    enum CodingKeys: String, CodingKey {
        case expertCount = "n_routed_experts"
        case localExpertCount = "num_local_experts"
        case expertsPerToken = "num_experts_per_tok"
        case expertIntermediateSize = "moe_intermediate_size"
        case intermediateSize = "intermediate_size"
        case sharedExpertCount = "n_shared_experts"
        case firstDenseLayerCount = "first_k_dense_replace"
        case expertGroupCount = "n_group"
        case keptExpertGroupCount = "topk_group"
        case routedScalingFactor = "routed_scaling_factor"
        case normalizeTopKProbabilities = "norm_topk_prob"
    }

    /// Decodes the fields from config.json; an absent field takes its value in `defaults`.
    init(from decoder: any Decoder, defaults: GroupedSigmoidMoEFields) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        func value<T: Decodable>(_ key: CodingKeys, _ fallback: T) throws -> T {
            try container.decodeIfPresent(T.self, forKey: key) ?? fallback
        }
        expertCount =
            try container.decodeIfPresent(Int.self, forKey: .expertCount)
            ?? value(.localExpertCount, defaults.expertCount)
        expertsPerToken = try value(.expertsPerToken, defaults.expertsPerToken)
        expertIntermediateSize = try value(.expertIntermediateSize, defaults.expertIntermediateSize)
        intermediateSize = try value(.intermediateSize, defaults.intermediateSize)
        sharedExpertCount = try value(.sharedExpertCount, defaults.sharedExpertCount)
        firstDenseLayerCount = try value(.firstDenseLayerCount, defaults.firstDenseLayerCount)
        expertGroupCount = try value(.expertGroupCount, defaults.expertGroupCount)
        keptExpertGroupCount = try value(.keptExpertGroupCount, defaults.keptExpertGroupCount)
        routedScalingFactor = try value(.routedScalingFactor, defaults.routedScalingFactor)
        normalizeTopKProbabilities = try value(.normalizeTopKProbabilities, defaults.normalizeTopKProbabilities)
        selection = defaults.selection
    }

    /// Fields with the given values.
    init(
        expertCount: Int, expertsPerToken: Int, expertIntermediateSize: Int, intermediateSize: Int,
        sharedExpertCount: Int, firstDenseLayerCount: Int, expertGroupCount: Int, keptExpertGroupCount: Int,
        routedScalingFactor: Double, normalizeTopKProbabilities: Bool, selection: Selection = .noAuxTC
    ) {
        self.selection = selection
        self.expertCount = expertCount
        self.expertsPerToken = expertsPerToken
        self.expertIntermediateSize = expertIntermediateSize
        self.intermediateSize = intermediateSize
        self.sharedExpertCount = sharedExpertCount
        self.firstDenseLayerCount = firstDenseLayerCount
        self.expertGroupCount = expertGroupCount
        self.keptExpertGroupCount = keptExpertGroupCount
        self.routedScalingFactor = routedScalingFactor
        self.normalizeTopKProbabilities = normalizeTopKProbabilities
    }

    /// Whether layer `layer` is a MoE layer (transformers: `layer_idx >= first_k_dense_replace`).
    public func isMoELayer(_ layer: Int) -> Bool { layer >= firstDenseLayerCount }

    /// Checks every field's range and the relations between fields for a model of `layerCount` layers.
    /// - Throws: `ModelError.invalidConfiguration` naming the config.json field and the valid range.
    func validate(layerCount: Int, file: String) throws(ModelError) {
        func fail(_ message: String) -> ModelError { .invalidConfiguration(file: file, message: message) }
        guard expertCount >= 1 else { throw fail("n_routed_experts is \(expertCount), but must be at least 1") }
        guard expertsPerToken >= 1 && expertsPerToken <= expertCount else {
            throw fail(
                "num_experts_per_tok is \(expertsPerToken), but must be between 1 and n_routed_experts "
                    + "(\(expertCount))")
        }
        guard expertIntermediateSize >= 1 else {
            throw fail("moe_intermediate_size is \(expertIntermediateSize), but must be at least 1")
        }
        guard sharedExpertCount >= 0 else {
            throw fail("n_shared_experts is \(sharedExpertCount), but must be at least 0")
        }
        guard (0...layerCount).contains(firstDenseLayerCount) else {
            throw fail(
                "first_k_dense_replace is \(firstDenseLayerCount), but must be between 0 and num_hidden_layers "
                    + "(\(layerCount))")
        }
        if firstDenseLayerCount > 0, intermediateSize < 1 {
            throw fail("intermediate_size is \(intermediateSize), but the dense layers need at least 1")
        }
        guard routedScalingFactor.isFinite, routedScalingFactor > 0 else {
            throw fail("routed_scaling_factor is \(routedScalingFactor), but must be a positive number")
        }
        // transformers' greedy router never reads n_group or topk_group.
        if selection == .greedy { return }
        guard expertGroupCount >= 1, expertCount % expertGroupCount == 0 else {
            throw fail("n_group is \(expertGroupCount), but must divide n_routed_experts (\(expertCount))")
        }
        // transformers scores a noaux_tc group by the sum of its two best experts (topk(2) per group).
        guard selection != .noAuxTC || expertCount / expertGroupCount >= 2 else {
            throw fail(
                "n_group is \(expertGroupCount), but each group of n_routed_experts (\(expertCount)) needs at least "
                    + "2 experts (a group's score is the sum of its best two)")
        }
        guard (1...expertGroupCount).contains(keptExpertGroupCount) else {
            throw fail("topk_group is \(keptExpertGroupCount), but must be between 1 and n_group (\(expertGroupCount))")
        }
        let choosable = keptExpertGroupCount * (expertCount / expertGroupCount)
        guard expertsPerToken <= choosable else {
            throw fail(
                "num_experts_per_tok is \(expertsPerToken), but topk_group (\(keptExpertGroupCount)) groups of "
                    + "\(expertCount / expertGroupCount) experts offer only \(choosable)")
        }
    }

    /// Per layer, its routed experts (0: a dense layer).
    func expertCounts(layerCount: Int) -> [Int] { (0..<layerCount).map { isMoELayer($0) ? expertCount : 0 } }

    /// The spec of every routed expert (`mlp.experts.{e}.{gate,up,down}_proj.weight`).
    func expertSpec(activation: String) -> ExpertSpec {
        ExpertSpec(intermediateSize: expertIntermediateSize, activation: activation) { layer, expert in
            StandardLayout.expert(layer, expert)
        }
    }

    /// `mlp.shared_experts.{gate,up,down}_proj.weight` of a MoE layer (plural: the n_shared_experts are one MLP).
    static func sharedExperts(_ layer: Int) -> ExpertSpec.TensorNames {
        StandardLayout.swiGLU(prefix: StandardLayout.mlp(layer, "shared_experts"))
    }

    /// `mlp.gate.e_score_correction_bias` of a MoE layer, [E], f32 in the released checkpoints.
    static func correctionBias(_ layer: Int) -> String { StandardLayout.mlp(layer, "gate.e_score_correction_bias") }

    /// The router weight of a MoE layer, `mlp.gate.weight` [E, H].
    static func routerWeightName(layer: Int) -> String { StandardLayout.mlp(layer, "gate.weight") }

    /// The feed-forward tensors of `layer`: router, correction bias, routed and shared experts of a
    /// MoE layer, or the dense MLP.
    func tensorShapes(_ fields: TransformerFields, layer: Int) -> [(name: String, shape: [Int])] {
        let hidden = fields.hiddenSize
        guard isMoELayer(layer) else {
            return StandardLayout.swiGLUShapes(
                StandardLayout.denseMLP(layer), hidden: hidden, intermediate: intermediateSize)
        }
        var shapes = StandardLayout.routedExpertShapes(
            fields, layer: layer, expertCount: expertCount, intermediate: expertIntermediateSize)
        if selection == .noAuxTC { shapes.append((Self.correctionBias(layer), [expertCount])) }
        if sharedExpertCount > 0 {
            shapes += StandardLayout.swiGLUShapes(
                Self.sharedExperts(layer), hidden: hidden, intermediate: sharedExpertCount * expertIntermediateSize)
        }
        return shapes
    }

    /// The routing policy of a MoE layer whose correction bias is `bias` [E]: DeepSeek-V3's noaux_tc,
    /// as `DeepseekV3TopkRouter` computes it in f32. Each expert's score is sigmoid(logit); the bias is
    /// added to the scores only to *choose* (groups scored by their best two biased scores, the
    /// `topk_group` best kept, top-k among their experts); the weights are the unbiased scores of the
    /// chosen experts, renormalised (+1e-20) when `norm_topk_prob`, then × `routed_scaling_factor`.
    func routingPolicy(correctionBias bias: [Float]) -> RoutingPolicy {
        precondition(selection == .noAuxTC, "the correction bias is noaux_tc's")
        return RoutingPolicy(
            renormalize: normalizeTopKProbabilities, scoring: .sigmoid,
            // Keeping every group masks nothing: the plain top-k of the biased scores.
            groupLimit: keptExpertGroupCount < expertGroupCount
                ? .init(groupCount: expertGroupCount, keptGroups: keptExpertGroupCount, score: .sumOfBestTwo) : nil,
            choiceBias: bias, renormalizeEpsilon: 1e-20, scale: Float(routedScalingFactor))
    }

    /// The routing policy of DeepSeek-V2's softmax router (`DeepseekV2TopkRouter` in f32): softmax over
    /// all E experts; group_limited_greedy scores each group by its best probability, keeps the
    /// `topk_group` best and sets the other groups' scores to 0; the weights are the top-k scores ×
    /// `routed_scaling_factor`, never renormalised (transformers 5.23 does not read norm_topk_prob).
    func softmaxRoutingPolicy() -> RoutingPolicy {
        precondition(selection != .noAuxTC, "noaux_tc routes with the sigmoid policy")
        return RoutingPolicy(
            renormalize: false, scoring: .softmax,
            groupLimit: selection == .groupLimitedGreedy && keptExpertGroupCount < expertGroupCount
                ? .init(groupCount: expertGroupCount, keptGroups: keptExpertGroupCount, score: .best) : nil,
            scale: Float(routedScalingFactor))
    }

    /// The feed-forward block of `layer`: a dense MLP on the coordinator, or the router
    /// (``routingPolicy(correctionBias:)``) with the shared experts — one ungated MLP — run on the
    /// coordinator while the workers compute the routed experts; transformers adds the shared output
    /// to the routed experts' sum, then the sum to the residual stream.
    func loadFeedForward(
        _ checkpoint: Checkpoint, layer: Int, arithmetic: BFloat16Arithmetic
    ) throws(ModelError) -> FeedForward {
        guard isMoELayer(layer) else {
            return .dense(
                try StandardLayout.loadMLP(checkpoint, StandardLayout.denseMLP(layer), arithmetic: arithmetic))
        }
        let router = Router(
            weight: try checkpoint.weight(named: Self.routerWeightName(layer: layer)), expertCount: expertCount,
            expertsPerToken: expertsPerToken,
            policy: selection == .noAuxTC
                ? routingPolicy(correctionBias: try checkpoint.floats(named: Self.correctionBias(layer)))
                : softmaxRoutingPolicy())
        let shared =
            sharedExpertCount > 0
            ? SharedExpert(
                mlp: try StandardLayout.loadMLP(checkpoint, Self.sharedExperts(layer), arithmetic: arithmetic),
                gate: nil)
            : nil
        return .experts(router, shared: shared)
    }

    /// The config.json fields of these options (for `make-model`).
    static func randomConfiguration(_ o: RandomModelOptions) -> [String: JSONValue] {
        [
            "n_routed_experts": .int(o.expertCount), "num_experts_per_tok": .int(o.expertsPerToken),
            "moe_intermediate_size": .int(o.expertIntermediateSize), "intermediate_size": .int(o.intermediateSize),
            "n_shared_experts": .int(o.sharedExpertCount), "first_k_dense_replace": .int(o.denseLayers.count),
            "n_group": .int(o.expertGroupCount), "topk_group": .int(o.keptExpertGroupCount),
            "routed_scaling_factor": .float(o.routedScalingFactor),
            "norm_topk_prob": .bool(o.normalizeTopKProbabilities),
        ]
    }
}
