// DeepSeek-V2 / V2-Lite (DeepSeek-AI): DeepSeek-V3's multi-head latent attention (its config fields,
// tensors and layer are shared: DeepseekV3.swift, Layers/LatentAttention.swift) with V2's MoE block:
// a softmax router, greedy or group-limited greedy (a group scores its best expert), weights never
// renormalised, × routed_scaling_factor; ungated shared experts and `first_k_dense_replace` dense
// first layers (Layers/GroupedSigmoidMoE.swift).
// Port of transformers/models/deepseek_v2/modeling_deepseek_v2.py (transformers 5.23), f32 compute.
//
// V2's RoPE multiplies each interleaved pair (x₂ᵢ, x₂ᵢ₊₁) as one complex number by e^{iθᵢ}: the
// same rotation as V3's `rope_interleave`, whose de-interleaved output order differs but is the same
// for queries and keys, so their dot products (all attention reads of them) are equal.
//
// Legend: H = hidden size, E = routed experts per MoE layer.
import Foundation
import Kernels
public import Tensors

// MARK: - Configuration

/// The DeepSeek-V2 hyper-parameters, decoded from a Hugging Face `config.json`.
public struct DeepseekV2Configuration: Sendable, Equatable {
    /// Widths, heads, RoPE (default or YaRN) and the multi-head latent attention fields, decoded as
    /// DeepSeek-V3 decodes them; its router fields are not read (``moe`` holds V2's).
    public var latent: DeepseekV3Configuration
    /// The MoE feed-forward blocks (softmax router) and the dense first layers.
    public var moe: GroupedSigmoidMoEFields
    /// `norm_topk_prob` (transformers 5.23 never renormalises V2's weights: only false runs).
    public var normalizeTopKProbabilities: Bool
    /// `moe_layer_freq` when config.json has it (transformers 5.23 makes every layer from
    /// first_k_dense_replace on a MoE layer: only 1 runs).
    public var moeLayerFrequency: Int?
    /// `topk_method`: greedy or group_limited_greedy.
    public var topKMethod: String
    /// `scoring_func` when config.json has it (transformers 5.23 always scores with softmax).
    public var scoringFunction: String?
    /// Whether config.json sets `n_group` and `topk_group` (group_limited_greedy needs both).
    var hasGroups: Bool

    enum CodingKeys: String, CodingKey {
        case normalizeTopKProbabilities = "norm_topk_prob"
        case moeLayerFrequency = "moe_layer_freq"
        case topKMethod = "topk_method"
        case scoringFunction = "scoring_func"
        case expertGroupCount = "n_group"
        case keptExpertGroupCount = "topk_group"
        case keyValueHeadCount = "num_key_value_heads"
        case bosTokenID = "bos_token_id"
        case eosTokenID = "eos_token_id"
        case sharedExpertCount = "n_shared_experts"
    }

    /// The shared transformer fields.
    public var fields: TransformerFields { latent.fields }

    /// Checks every field's range and the relations between fields.
    /// - Throws: `ModelError.invalidConfiguration` naming the config.json field and the valid range.
    public func validate(file: String = "config.json") throws(ModelError) {
        func fail(_ message: String) -> ModelError { .invalidConfiguration(file: file, message: message) }
        try latent.validateLatentAttention(file: file)
        guard ["greedy", "group_limited_greedy"].contains(topKMethod) else {
            throw fail("topk_method is \(topKMethod), but DeepSeek-V2 routes with greedy or group_limited_greedy")
        }
        if moe.selection == .groupLimitedGreedy, !hasGroups {
            throw fail("topk_method is group_limited_greedy, but n_group or topk_group is missing or null")
        }
        guard moe.sharedExpertCount >= 0 else {
            throw fail("n_shared_experts is null, but DeepSeek-V2's MoE block needs a count (0: none)")
        }
        try moe.validate(layerCount: fields.layerCount, file: file)
        if let scoringFunction, scoringFunction != "softmax" {
            throw fail("scoring_func is \(scoringFunction), but DeepSeek-V2 routes with softmax only")
        }
        guard !normalizeTopKProbabilities else {
            throw fail("norm_topk_prob is true, but transformers' DeepSeek-V2 never renormalises the routing weights")
        }
        if let moeLayerFrequency, moeLayerFrequency != 1 {
            throw fail(
                "moe_layer_freq is \(moeLayerFrequency), but only 1 runs (every layer from first_k_dense_replace "
                    + "on is a MoE layer, as transformers builds it)")
        }
    }
}

extension DeepseekV2Configuration: Decodable {
    /// DeepseekV2Config's MoE defaults (n_group and topk_group default to null: one group).
    static let moeDefaults = GroupedSigmoidMoEFields(
        expertCount: 64, expertsPerToken: 6, expertIntermediateSize: 1407, intermediateSize: 11008,
        sharedExpertCount: 2, firstDenseLayerCount: 0, expertGroupCount: 1, keptExpertGroupCount: 1,
        routedScalingFactor: 1, normalizeTopKProbabilities: false, selection: .greedy)

    /// Decodes config.json; range checks are left to ``validate(file:)``. Missing fields take
    /// `DeepseekV2Config`'s defaults.
    public init(from decoder: any Decoder) throws {
        latent = try DeepseekV3Configuration(from: decoder)
        moe = try GroupedSigmoidMoEFields(from: decoder, defaults: Self.moeDefaults)
        let container = try decoder.container(keyedBy: CodingKeys.self)
        normalizeTopKProbabilities =
            try container.decodeIfPresent(Bool.self, forKey: .normalizeTopKProbabilities) ?? false
        moeLayerFrequency = try container.decodeIfPresent(Int.self, forKey: .moeLayerFrequency)
        topKMethod = try container.decodeIfPresent(String.self, forKey: .topKMethod) ?? "greedy"
        scoringFunction = try container.decodeIfPresent(String.self, forKey: .scoringFunction)
        hasGroups =
            try container.decodeIfPresent(Int.self, forKey: .expertGroupCount) != nil
            && container.decodeIfPresent(Int.self, forKey: .keptExpertGroupCount) != nil
        moe.selection = topKMethod == "group_limited_greedy" ? .groupLimitedGreedy : .greedy
        // n_shared_experts null: transformers cannot build the MoE block; -1 marks it for validate().
        if try container.contains(.sharedExpertCount) && container.decodeNil(forKey: .sharedExpertCount) {
            moe.sharedExpertCount = -1
        }
        // The V3 decoder's settings that V2 has otherwise: the pairs are always interleaved (complex
        // RoPE), no multi-token prediction, no V3 router fields, its own default ids and KV heads.
        latent.ropeInterleave = true
        latent.multiTokenPredictionLayerCount = 0
        latent.scoringFunction = nil
        latent.topKMethod = nil
        latent.moe = moe
        if try container.decodeIfPresent(Int.self, forKey: .keyValueHeadCount) == nil {
            latent.fields.keyValueHeadCount = latent.fields.attentionHeadCount
        }
        if !container.contains(.bosTokenID) { latent.fields.bosTokenID = 1 }
        if !container.contains(.eosTokenID) { latent.fields.eosTokenIDs = [2] }
    }
}

// MARK: - Checkpoint tensors and assembly

extension DeepseekV2Configuration: ArchitectureConfiguration {
    public var layerCount: Int { fields.layerCount }
    public var expertCountPerLayer: Int { moe.expertCount }

    /// Every layer caches one latent row (kv_lora_rank + qk_rope_head_dim values per token) and no value row.
    public var shape: ModelShape { latent.shape }

    public var expertSpec: ExpertSpec { moe.expertSpec(activation: fields.hiddenActivation) }

    public func tensorShapes() -> [(name: String, shape: [Int])] {
        var layers: [(name: String, shape: [Int])] = []
        for layer in 0..<fields.layerCount {
            layers += latent.attentionShapes(layer: layer)
            layers += moe.tensorShapes(fields, layer: layer)
        }
        return StandardLayout.modelShapes(fields, layers: layers)
    }

    public var keyValueProjectionNames: [String] { latent.keyValueProjectionNames }

    public func routerWeightName(layer: Int) -> String { GroupedSigmoidMoEFields.routerWeightName(layer: layer) }

    public var embeddingName: String { StandardLayout.embedding }

    /// Latent attention, then a dense MLP (the first `first_k_dense_replace` layers) or the routed
    /// experts with the shared ones (transformers adds the shared output to the routed sum).
    public func assemble(from checkpoint: Checkpoint, arithmetic: BFloat16Arithmetic) throws(ModelError)
        -> DecoderStackParts
    {
        try StandardLayout.stack(checkpoint, fields: fields) { layer throws(ModelError) in
            (.latent(try latent.loadAttention(checkpoint, layer: layer, arithmetic: arithmetic)),
             try moe.loadFeedForward(checkpoint, layer: layer, arithmetic: arithmetic))
        }
    }
}

extension Architecture {
    /// DeepSeek-V2 and V2-Lite (deepseek-ai/DeepSeek-V2, DeepSeek-V2-Lite and their chat models).
    public static let deepseekV2 = Architecture(
        modelTypes: ["deepseek_v2"], classNames: ["DeepseekV2ForCausalLM"],
        summary: "multi-head latent attention (q_lora_rank or q_proj, kv_lora_rank latent cached, interleaved "
            + "RoPE pairs); softmax router, topk_method greedy or group_limited_greedy (n_group / topk_group), "
            + "routed_scaling_factor; n_shared_experts ungated on the coordinator; first_k_dense_replace dense "
            + "layers; attention_bias; default or YaRN RoPE",
        randomConfiguration: { o in
            var fields = Architecture.deepseekV3.randomConfiguration(o)
            for key in ["rope_interleave", "num_nextn_predict_layers"] { fields[key] = nil }
            let groupLimited = o.keptExpertGroupCount < o.expertGroupCount
            fields["topk_method"] = .string(groupLimited ? "group_limited_greedy" : "greedy")
            fields["scoring_func"] = .string("softmax")  // as deepseek-ai/DeepSeek-V2's config.json has it
            fields["norm_topk_prob"] = .bool(false)
            return fields
        }
    ) { data throws(ModelError) in
        let configuration = try Architecture.decodeJSON(DeepseekV2Configuration.self, from: data)
        try configuration.validate()
        return configuration
    }
}
