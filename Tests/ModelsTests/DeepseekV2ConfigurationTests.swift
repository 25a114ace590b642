// DeepSeek-V2's config.json: the Hub spellings of V2-Lite and V2 decode with DeepseekV2Config's
// defaults into V3's latent attention and V2's softmax router, and every value the runtime (or
// transformers 5.23, the reference) does not compute is refused naming its field.
import Foundation
import Kernels
import Testing

@testable import Models

/// deepseek-ai/DeepSeek-V2-Lite's config.json (its YaRN rope_scaling included).
private var liteConfig: [String: Any] {
    [
    "architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2", "attention_bias": false,
    "aux_loss_alpha": 0.001, "bos_token_id": 100000, "eos_token_id": 100001, "first_k_dense_replace": 1,
    "hidden_act": "silu", "hidden_size": 2048, "intermediate_size": 10944, "kv_lora_rank": 512,
    "max_position_embeddings": 163840, "moe_intermediate_size": 1408, "moe_layer_freq": 1, "n_group": 1,
    "n_routed_experts": 64, "n_shared_experts": 2, "norm_topk_prob": false, "num_attention_heads": 16,
    "num_experts_per_tok": 6, "num_hidden_layers": 27, "num_key_value_heads": 16, "q_lora_rank": NSNull(),
    "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "rms_norm_eps": 1e-06,
    "rope_scaling": [
        "beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 0.707, "mscale_all_dim": 0.707,
        "original_max_position_embeddings": 4096, "type": "yarn",
    ],
    "rope_theta": 10000, "routed_scaling_factor": 1.0, "scoring_func": "softmax", "seq_aux": true,
    "tie_word_embeddings": false, "topk_group": 1, "topk_method": "greedy", "v_head_dim": 128, "vocab_size": 102400,
    ]
}

private func decode(_ object: [String: Any]) throws -> DeepseekV2Configuration {
    let data = try JSONSerialization.data(withJSONObject: object)
    return try #require(try Architecture.deepseekV2.configuration(from: data) as? DeepseekV2Configuration)
}

@Suite("DeepSeek-V2 config.json")
struct DeepseekV2ConfigurationTests {
    @Test("DeepSeek-V2-Lite's config.json decodes: q_proj, a 576-value latent cache row, greedy softmax router, YaRN")
    func liteDecodes() throws {
        let c = try decode(liteConfig)
        #expect(c.latent.queryLowRank == nil && c.latent.ropeInterleave && c.latent.queryKeyHeadDimension == 192)
        #expect(c.shape.keyValueWidths == Array(repeating: 512 + 64, count: 27))
        #expect(c.shape.expertCounts.prefix(3) == [0, 64, 64])
        #expect(c.moe.selection == .greedy)
        let policy = c.moe.softmaxRoutingPolicy()
        #expect(policy == RoutingPolicy(renormalize: false, scoring: .softmax, groupLimit: nil, scale: 1))
        // mscale == mscale_all_dim: cos/sin unscaled, the softmax scale × mscale(40, 0.707)².
        let mscale = 0.1 * 0.707 * log(40.0) + 1
        #expect(c.latent.yarn?.attentionFactor == 1)
        #expect(abs(c.latent.softmaxScaleFactor - mscale * mscale) < 1e-12)
        let names = Set(c.tensorShapes().map(\.name))
        #expect(names.contains("model.layers.0.self_attn.q_proj.weight"))
        #expect(names.contains("model.layers.1.mlp.shared_experts.up_proj.weight"))
        #expect(!names.contains { $0.hasSuffix("e_score_correction_bias") })
    }

    @Test("DeepSeek-V2's group_limited_greedy: n_group 8, topk_group 3, groups scored by their best, × 16")
    func groupLimited() throws {
        var config = liteConfig
        config.merge([
            "q_lora_rank": 1536, "n_group": 8, "topk_group": 3, "topk_method": "group_limited_greedy",
            "n_routed_experts": 160, "routed_scaling_factor": 16.0,
        ]) { _, new in new }
        let c = try decode(config)
        #expect(c.latent.queryLowRank == 1536)
        #expect(c.moe.softmaxRoutingPolicy().groupLimit == .init(groupCount: 8, keptGroups: 3, score: .best))
        #expect(c.moe.softmaxRoutingPolicy().scale == 16)
    }

    @Test("DeepseekV2Config's defaults: as many KV heads as heads, bos 1, eos 2, greedy")
    func defaults() throws {
        let c = try decode([
            "model_type": "deepseek_v2", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "vocab_size": 320, "num_experts_per_tok": 2,
        ])
        #expect(c.fields.keyValueHeadCount == 4 && c.fields.bosTokenID == 1 && c.fields.eosTokenIDs == [2])
        #expect(c.moe.expertCount == 64 && c.moe.sharedExpertCount == 2 && c.moe.selection == .greedy)
    }

    @Test("values transformers 5.23 does not compute are refused, naming the field",
          arguments: [
              (#"{"norm_topk_prob": true}"#, "norm_topk_prob is true"),
              (#"{"moe_layer_freq": 2}"#, "moe_layer_freq is 2"),
              (#"{"scoring_func": "sigmoid"}"#, "scoring_func is sigmoid"),
              (#"{"topk_method": "noaux_tc"}"#, "topk_method is noaux_tc"),
              (#"{"topk_method": "group_limited_greedy", "n_group": null}"#, "n_group or topk_group is missing"),
              (#"{"topk_method": "group_limited_greedy", "n_group": 5, "topk_group": 2}"#, "n_group is 5"),
              (#"{"n_shared_experts": null}"#, "n_shared_experts is null"),
              (#"{"num_key_value_heads": 8}"#, "num_key_value_heads is 8"),
          ])
    func refusals(change: String, message: String) throws {
        var config = liteConfig
        let fields = try #require(try JSONSerialization.jsonObject(with: Data(change.utf8)) as? [String: Any])
        config.merge(fields) { _, new in new }
        #expect {
            _ = try decode(config)
        } throws: { error in
            "\(error)".contains(message)
        }
    }
}
