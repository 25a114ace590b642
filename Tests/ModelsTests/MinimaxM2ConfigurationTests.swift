// MiniMax-M2's config.json: the Hub spelling (rotary_dim, use_qk_norm, qk_norm_type, scoring_func,
// use_routing_bias) decodes into the rotated width, the whole-projection q/k norm and the biased
// sigmoid router; a switch that asks for another computation is refused naming its field.
import Foundation
import Kernels
import Testing

@testable import Models

/// MiniMaxAI/MiniMax-M2's config.json without its quantization_config and MTP fields.
private var hubConfig: [String: Any] {
    [
    "architectures": ["MiniMaxM2ForCausalLM"], "model_type": "minimax_m2", "head_dim": 128, "hidden_act": "silu",
    "hidden_size": 3072, "intermediate_size": 1536, "max_position_embeddings": 196608, "num_attention_heads": 48,
    "num_experts_per_tok": 8, "num_hidden_layers": 62, "num_key_value_heads": 8, "num_local_experts": 256,
    "qk_norm_type": "per_layer", "rms_norm_eps": 1e-06, "rope_theta": 5000000, "rotary_dim": 64,
    "scoring_func": "sigmoid", "shared_intermediate_size": 0, "use_qk_norm": true, "use_routing_bias": true,
    "vocab_size": 200064, "tie_word_embeddings": false,
    ]
}

private func decode(_ object: [String: Any]) throws -> MinimaxM2Configuration {
    let data = try JSONSerialization.data(withJSONObject: object)
    return try #require(try Architecture.minimaxM2.configuration(from: data) as? MinimaxM2Configuration)
}

@Suite("MiniMax-M2 config.json")
struct MinimaxM2ConfigurationTests {
    @Test("the Hub's MiniMax-M2 config.json decodes: rotary_dim 64 of 128, whole-projection q/k norms, w1/w3/w2")
    func hubConfigDecodes() throws {
        let c = try decode(hubConfig)
        #expect(c.rotaryDimension == 64 && c.fields.ropeTheta == 5_000_000)
        #expect(c.shape.expertCounts == Array(repeating: 256, count: 62))
        let shapes = Dictionary(c.tensorShapes().map { ($0.name, $0.shape) }, uniquingKeysWith: { a, _ in a })
        #expect(shapes["model.layers.0.self_attn.q_norm.weight"] == [48 * 128])
        #expect(shapes["model.layers.0.self_attn.k_norm.weight"] == [8 * 128])
        #expect(shapes["model.layers.3.block_sparse_moe.e_score_correction_bias"] == [256])
        #expect(shapes["model.layers.3.block_sparse_moe.experts.255.w2.weight"] == [3072, 1536])
        let names = c.expertSpec.tensorNames(layer: 1, expert: 7)
        #expect(names.gate.hasSuffix("experts.7.w1.weight") && names.up.hasSuffix("experts.7.w3.weight"))
        let policy = MinimaxM2Configuration.routingPolicy(correctionBias: [0.5, 0])
        #expect(policy.renormalize && policy.scoring == .sigmoid && policy.scale == 1 && policy.groupLimit == nil)
        #expect(policy.renormalizeEpsilon == 0 && policy.choiceBias == [0.5, 0])
    }

    @Test("partial_rotary_factor wins over rotary_dim; without either every dimension rotates")
    func rotaryWidth() throws {
        var config = hubConfig
        config["partial_rotary_factor"] = 0.25
        #expect(try decode(config).rotaryDimension == 32)
        config["partial_rotary_factor"] = nil
        config["rotary_dim"] = nil
        #expect(try decode(config).rotaryDimension == 128)
    }

    @Test("switches for computations transformers does not do are refused, naming the field",
          arguments: [
              (#"{"use_qk_norm": false}"#, "use_qk_norm is false"),
              (#"{"qk_norm_type": "per_head"}"#, "qk_norm_type is per_head"),
              (#"{"scoring_func": "softmax"}"#, "scoring_func is softmax"),
              (#"{"use_routing_bias": false}"#, "use_routing_bias is false"),
              (#"{"shared_intermediate_size": 512}"#, "shared_intermediate_size is 512"),
              (#"{"rotary_dim": 3}"#, "rotary_dim ÷ head_dim"),
              (#"{"num_experts_per_tok": 300}"#, "num_experts_per_tok is 300"),
          ])
    func refusals(change: String, message: String) throws {
        var config = hubConfig
        let fields = try #require(try JSONSerialization.jsonObject(with: Data(change.utf8)) as? [String: Any])
        config.merge(fields) { _, new in new }
        #expect {
            _ = try decode(config)
        } throws: { error in
            "\(error)".contains(message)
        }
    }
}
