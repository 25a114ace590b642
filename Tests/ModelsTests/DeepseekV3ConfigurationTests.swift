// DeepSeek-V3's config.json: the Hub spelling decodes with DeepseekV3Config's defaults, the cache
// row is the compressed latent, and every value the runtime cannot honour is refused naming its field.
import Foundation
import Kernels
import Testing

@testable import Models

/// deepseek-ai/DeepSeek-V3's config.json without its YaRN rope_scaling (refused, tested below) and
/// quantization_config.
private var hubConfig: [String: Any] {
    [
    "architectures": ["DeepseekV3ForCausalLM"], "model_type": "deepseek_v3", "attention_bias": false,
    "bos_token_id": 0, "eos_token_id": 1, "first_k_dense_replace": 3, "hidden_act": "silu", "hidden_size": 7168,
    "intermediate_size": 18432, "kv_lora_rank": 512, "max_position_embeddings": 163840,
    "moe_intermediate_size": 2048, "moe_layer_freq": 1, "n_group": 8, "n_routed_experts": 256,
    "n_shared_experts": 1, "norm_topk_prob": true, "num_attention_heads": 128, "num_experts_per_tok": 8,
    "num_hidden_layers": 61, "num_key_value_heads": 128, "num_nextn_predict_layers": 1, "q_lora_rank": 1536,
    "qk_nope_head_dim": 128, "qk_rope_head_dim": 64, "rms_norm_eps": 1e-06, "rope_scaling": NSNull(),
    "rope_theta": 10000, "routed_scaling_factor": 2.5, "scoring_func": "sigmoid", "tie_word_embeddings": false,
    "topk_group": 4, "topk_method": "noaux_tc", "v_head_dim": 128, "vocab_size": 129280,
    ]
}

/// A small valid configuration, for the refusals below.
private var smallConfig: [String: Any] {
    [
    "model_type": "deepseek_v3", "hidden_size": 64, "num_hidden_layers": 3, "num_attention_heads": 4,
    "num_key_value_heads": 4, "vocab_size": 384, "n_routed_experts": 8, "num_experts_per_tok": 3,
    "n_group": 4, "topk_group": 2, "moe_intermediate_size": 16, "intermediate_size": 96, "first_k_dense_replace": 1,
    "q_lora_rank": 24, "kv_lora_rank": 16, "qk_nope_head_dim": 8, "qk_rope_head_dim": 8, "v_head_dim": 12,
    ]
}

private func decode(_ object: [String: Any]) throws -> DeepseekV3Configuration {
    let data = try JSONSerialization.data(withJSONObject: object)
    return try #require(try Architecture.deepseekV3.configuration(from: data) as? DeepseekV3Configuration)
}

@Suite("DeepSeek-V3 config.json")
struct DeepseekV3ConfigurationTests {
    @Test("the Hub's DeepSeek-V3 config.json decodes: a 576-value latent cache row, 3 dense layers, grouped router")
    func hubConfigDecodes() throws {
        let c = try decode(hubConfig)
        #expect(c.queryLowRank == 1536 && c.keyValueLowRank == 512 && c.queryKeyHeadDimension == 192)
        #expect(c.fields.headDimension == 64 && c.ropeInterleave && !c.attentionBias)
        #expect(c.shape.keyValueWidths == Array(repeating: 512 + 64, count: 61))
        #expect(c.shape.valueWidths == Array(repeating: 0, count: 61))
        #expect(c.shape.expertCounts.prefix(4) == [0, 0, 0, 256])
        let policy = c.moe.routingPolicy(correctionBias: Array(repeating: 0, count: 256))
        #expect(policy.groupLimit == .init(groupCount: 8, keptGroups: 4, score: .sumOfBestTwo) && policy.scale == 2.5)
    }

    @Test("the Hub's YaRN rope_scaling: cos/sin factor mscale(40, 1) ÷ mscale(40, 1) = 1, softmax scale × mscale(40, 1)²")
    func hubYaRN() throws {
        var config = hubConfig
        config["rope_scaling"] = [
            "beta_fast": 32, "beta_slow": 1, "factor": 40, "mscale": 1.0, "mscale_all_dim": 1.0,
            "original_max_position_embeddings": 4096, "type": "yarn",
        ]
        let c = try decode(config)
        let yarn = try #require(c.yarn)
        #expect(yarn.factor == 40 && yarn.originalMaxPositions == 4096 && yarn.attentionFactor == 1 && yarn.truncate)
        let mscale = 0.1 * log(40.0) + 1
        #expect(abs(c.softmaxScaleFactor - mscale * mscale) < 1e-12)
        #expect(c.scale == Float(pow(192.0, -0.5) * mscale * mscale))
        // Without mscale_all_dim: the attention factor is mscale(factor), the softmax scale plain.
        config["rope_scaling"] = ["type": "yarn", "factor": 4, "original_max_position_embeddings": 1024]
        let plain = try decode(config)
        #expect(plain.yarn?.attentionFactor == 0.1 * log(4.0) + 1 && plain.softmaxScaleFactor == 1)
    }

    @Test("absent fields take DeepseekV3Config's defaults; q_lora_rank null means a plain q_proj")
    func defaults() throws {
        var config = smallConfig
        for key in ["q_lora_rank", "kv_lora_rank", "qk_nope_head_dim", "qk_rope_head_dim", "v_head_dim"] {
            config[key] = nil
        }
        config["num_attention_heads"] = 128
        config["num_key_value_heads"] = nil
        config["hidden_size"] = 128
        let c = try decode(config)
        #expect(c.queryLowRank == 1536 && c.keyValueLowRank == 512 && c.nopeHeadDimension == 128)
        #expect(c.ropeHeadDimension == 64 && c.valueHeadDimension == 128 && c.fields.keyValueHeadCount == 128)
        #expect(c.fields.ropeTheta == 10_000 && c.fields.bosTokenID == 0 && c.fields.eosTokenIDs == [1])
        #expect(c.multiTokenPredictionLayerCount == 1 && c.ropeInterleave)
        var plain = smallConfig
        plain["q_lora_rank"] = NSNull()
        plain["rope_interleave"] = NSNull()
        let p = try decode(plain)
        #expect(p.queryLowRank == nil && !p.ropeInterleave)
        #expect(p.tensorShapes().contains { $0.name == "model.layers.0.self_attn.q_proj.weight" && $0.shape == [64, 64] })
    }

    @Test(
        "values that cannot be honoured are refused, naming the config.json field",
        arguments: [
            (#"{"num_key_value_heads": 2}"#, "num_key_value_heads is 2, but multi-head latent attention needs it equal"),
            (#"{"qk_rope_head_dim": 7}"#, "qk_rope_head_dim is 7, but must be a positive even number"),
            (#"{"kv_lora_rank": 0}"#, "kv_lora_rank is 0, but must be at least 1"),
            (#"{"q_lora_rank": 0}"#, "q_lora_rank is 0, but must be at least 1 (or null for a plain q_proj)"),
            (#"{"v_head_dim": null}"#, "v_head_dim is null, but must be at least 1"),
            (#"{"scoring_func": "softmax"}"#, "scoring_func is softmax, but DeepSeek-V3 routes with sigmoid only"),
            (#"{"topk_method": "greedy"}"#, "topk_method is greedy, but DeepSeek-V3 routes with noaux_tc only"),
            (#"{"n_group": 3}"#, "n_group is 3, but must divide n_routed_experts (8)"),
            (#"{"first_k_dense_replace": 4}"#, "first_k_dense_replace is 4, but must be between 0 and num_hidden_layers (3)"),
            (#"{"rope_scaling": {"type": "dynamic", "factor": 2}}"#, "rope_type is dynamic, but only default is supported"),
            (
                #"{"rope_scaling": {"type": "yarn", "factor": 40}}"#,
                "rope_scaling yarn has factor 40.0 and original_max_position_embeddings 0.0, but both must be positive"
            ),
        ])
    func refusals(change: String, message: String) throws {
        let edits = try #require(try JSONSerialization.jsonObject(with: Data(change.utf8)) as? [String: Any])
        let config = smallConfig.merging(edits) { _, new in new }
        let data = try JSONSerialization.data(withJSONObject: config)
        let error = modelError { _ = try Architecture.deepseekV3.configuration(from: data) }
        #expect(error?.description.hasPrefix("config.json: ") == true)
        #expect(error?.description.contains(message) == true, "\(error?.description ?? "accepted")")
    }

    @Test("the latent cache of the real shape takes 576 values per token and layer, 1/71 of full keys and values")
    func cacheBytes() throws {
        let c = try decode(hubConfig)
        let cache = KVCache(capacity: 1, rowWidths: c.shape.keyValueWidths, valueRowWidths: c.shape.valueWidths)
        #expect(cache.bytesPerToken == 61 * 576 * 4)
        // Full keys and values: 128 heads × (128 + 64) key and 128 value values per layer.
        let full = 61 * 128 * (192 + 128) * 4
        #expect(full / cache.bytesPerToken == 71)
    }
}
