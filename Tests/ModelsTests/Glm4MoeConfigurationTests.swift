// GLM-4.5's config.json: the Hub spelling decodes with transformers' defaults and precedence, and every
// value the runtime cannot honour is refused naming its field.
import Foundation
import Testing

@testable import Models

/// zai-org/GLM-4.5's config.json, as the Hub spells it (top-level rope_theta and partial_rotary_factor).
private var hubConfig: [String: Any] {
    [
    "architectures": ["Glm4MoeForCausalLM"], "model_type": "glm4_moe", "attention_bias": true,
    "first_k_dense_replace": 3, "head_dim": 128, "hidden_act": "silu", "hidden_size": 5120,
    "intermediate_size": 12288, "max_position_embeddings": 131072, "moe_intermediate_size": 1536,
    "n_group": 1, "n_routed_experts": 160, "n_shared_experts": 1, "norm_topk_prob": true,
    "num_attention_heads": 96, "num_experts_per_tok": 8, "num_hidden_layers": 92, "num_key_value_heads": 8,
    "num_nextn_predict_layers": 1, "partial_rotary_factor": 0.5, "rms_norm_eps": 1e-05, "rope_scaling": NSNull(),
    "rope_theta": 1000000, "routed_scaling_factor": 2.5, "tie_word_embeddings": false, "topk_group": 1,
    "use_qk_norm": true, "vocab_size": 151552, "pad_token_id": 151329, "eos_token_id": [151329, 151336, 151338],
    ]
}

/// A small valid configuration with expert groups, for the refusals below.
private var groupedConfig: [String: Any] {
    [
    "model_type": "glm4_moe", "hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4,
    "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 384, "n_routed_experts": 8, "num_experts_per_tok": 3,
    "n_group": 4, "topk_group": 2, "moe_intermediate_size": 16, "intermediate_size": 96, "first_k_dense_replace": 1,
    "rope_parameters": ["rope_type": "default", "rope_theta": 1e6, "partial_rotary_factor": 0.5],
    ]
}

private func decode(_ object: [String: Any]) throws -> Glm4MoeConfiguration {
    let data = try JSONSerialization.data(withJSONObject: object)
    return try #require(try Architecture.glm4Moe.configuration(from: data) as? Glm4MoeConfiguration)
}

@Suite("GLM-4.5 config.json")
struct Glm4MoeConfigurationTests {
    @Test("the Hub's GLM-4.5 config.json decodes: partial RoPE over half of each head, 3 dense layers, the router's fields")
    func hubConfigDecodes() throws {
        let c = try decode(hubConfig)
        #expect(c.rotaryDimension == 64 && c.fields.ropeTheta == 1e6)
        #expect(c.shape.expertCounts.prefix(4) == [0, 0, 0, 160] && c.shape.expertCounts.count == 92)
        #expect(c.moe.expertsPerToken == 8 && c.moe.routedScalingFactor == 2.5 && c.moe.normalizeTopKProbabilities)
        #expect(c.queryKeyNorm && c.attentionBias && c.moe.sharedExpertCount == 1 && c.multiTokenPredictionLayerCount == 1)
        #expect(c.fields.eosTokenIDs == [151329, 151336, 151338])
        // One group kept of one: no group limit, only the bias decides beside the scores.
        let policy = c.moe.routingPolicy(correctionBias: Array(repeating: 0.5, count: 160))
        #expect(policy.scoring == .sigmoid && policy.groupLimit == nil && policy.scale == 2.5)
        #expect(policy.renormalize && policy.renormalizeEpsilon == 1e-20 && policy.choiceBias?.count == 160)
    }

    @Test("expert groups: the best topk_group of n_group groups, each scored by its best two biased scores")
    func groupedPolicy() throws {
        let policy = try decode(groupedConfig).moe.routingPolicy(correctionBias: Array(repeating: 0, count: 8))
        #expect(policy.groupLimit == .init(groupCount: 4, keptGroups: 2, score: .sumOfBestTwo))
    }

    @Test("rope_parameters' partial_rotary_factor wins over the top-level one; without either it is 0.5, θ 10000")
    func ropeDefaultsAndPrecedence() throws {
        var both = groupedConfig
        both["partial_rotary_factor"] = 0.25
        #expect(try decode(both).partialRotaryFactor == 0.5)
        var none = groupedConfig
        none["rope_parameters"] = nil
        let c = try decode(none)
        #expect(c.partialRotaryFactor == 0.5 && c.fields.ropeTheta == 10_000 && c.fields.rmsNormEpsilon == 1e-5)
        #expect(c.multiTokenPredictionLayerCount == 1 && c.moe.sharedExpertCount == 1 && c.moe.normalizeTopKProbabilities)
    }

    @Test(
        "values that cannot be honoured are refused, naming the config.json field",
        arguments: [
            (#"{"n_group": 3}"#, "n_group is 3, but must divide n_routed_experts (8)"),
            (#"{"n_group": 8, "topk_group": 4}"#, "each group of n_routed_experts (8) needs at least 2 experts"),
            (#"{"topk_group": 5}"#, "topk_group is 5, but must be between 1 and n_group (4)"),
            (#"{"num_experts_per_tok": 5}"#, "num_experts_per_tok is 5, but topk_group (2) groups of 2 experts offer only 4"),
            (#"{"first_k_dense_replace": 4}"#, "first_k_dense_replace is 4, but must be between 0 and num_hidden_layers (3)"),
            (#"{"routed_scaling_factor": 0}"#, "routed_scaling_factor is 0.0, but must be a positive number"),
            (#"{"n_shared_experts": -1}"#, "n_shared_experts is -1, but must be at least 0"),
            (#"{"head_dim": 12, "rope_parameters": {"rope_theta": 1e6, "partial_rotary_factor": 0.25}}"#,
             "partial_rotary_factor is 0.25, but head_dim (12) × it must truncate to an even number"),
            (#"{"rope_parameters": null, "rope_scaling": {"type": "yarn", "factor": 4}}"#,
             "rope_type is yarn, but only default is supported"),
        ])
    func refusals(change: String, message: String) throws {
        let edits = try #require(try JSONSerialization.jsonObject(with: Data(change.utf8)) as? [String: Any])
        let config = groupedConfig.merging(edits) { _, new in new }
        let data = try JSONSerialization.data(withJSONObject: config)
        let error = modelError { _ = try Architecture.glm4Moe.configuration(from: data) }
        #expect(error?.description.hasPrefix("config.json: ") == true)
        #expect(error?.description.contains(message) == true, "\(error?.description ?? "accepted")")
    }
}
