// gpt-oss's config.json (the released spelling and GptOssConfig's defaults, refusals naming the field),
// its clamped SwiGLU and its router (top-k of the biased logits, softmax over those k).
import Foundation
import Kernels
import Tensors
import Testing

@testable import Models

/// openai/gpt-oss-20b's config.json, without quantization_config (tested below).
private var hubConfig: [String: Any] {
    [
    "architectures": ["GptOssForCausalLM"], "model_type": "gpt_oss", "attention_bias": true,
    "attention_dropout": 0.0, "eos_token_id": 200002, "experts_per_token": 4, "head_dim": 64, "hidden_act": "silu",
    "hidden_size": 2880, "initial_context_length": 4096, "initializer_range": 0.02, "intermediate_size": 2880,
    "layer_types": (0..<24).map { $0 % 2 == 0 ? "sliding_attention" : "full_attention" },
    "max_position_embeddings": 131072, "num_attention_heads": 64, "num_experts_per_tok": 4, "num_hidden_layers": 24,
    "num_key_value_heads": 8, "num_local_experts": 32, "output_router_logits": false, "pad_token_id": 199999,
    "rms_norm_eps": 1e-05,
    "rope_scaling": [
        "beta_fast": 32.0, "beta_slow": 1.0, "factor": 32.0, "original_max_position_embeddings": 4096,
        "rope_type": "yarn", "truncate": false,
    ],
    "rope_theta": 150000, "router_aux_loss_coef": 0.9, "sliding_window": 128, "swiglu_limit": 7.0,
    "tie_word_embeddings": false, "use_cache": true, "vocab_size": 201088,
    ]
}

private func decode(_ object: [String: Any]) throws -> GptOssConfiguration {
    let data = try JSONSerialization.data(withJSONObject: object)
    return try #require(try Architecture.gptOss.configuration(from: data) as? GptOssConfiguration)
}

@Suite("gpt-oss")
struct GptOssTests {
    @Test("gpt-oss-20b's config.json decodes: 24 layers alternating a 128-token window and full attention, YaRN")
    func hubConfigDecodes() throws {
        let c = try decode(hubConfig)
        #expect(c.shape.slidingWindows == (0..<24).map { $0 % 2 == 0 ? 128 : nil })
        #expect(c.shape.expertCounts == Array(repeating: 32, count: 24) && c.shape.expertsPerToken == 4)
        #expect(c.swiGLUAlpha == 1.702 && c.swiGLULimit == 7 && c.attentionBias && !c.isMXFP4)
        let yarn = try #require(c.yarn)
        #expect(yarn.factor == 32 && yarn.originalMaxPositions == 4096 && !yarn.truncate)
        // transformers infers the cos/sin factor 0.1 · ln(32) + 1 when attention_factor is absent.
        #expect(abs(yarn.attentionFactor - (0.1 * log(32.0) + 1)) < 1e-12)
        #expect(c.fields.ropeTheta == 150_000 && c.fields.rmsNormEpsilon == 1e-5)
    }

    @Test("without layer_types, rope_parameters and rope_theta: GptOssConfig's defaults")
    func defaults() throws {
        var config = hubConfig
        for field in ["layer_types", "rope_scaling", "rope_theta", "swiglu_limit", "sliding_window"] {
            config.removeValue(forKey: field)
        }
        config["num_hidden_layers"] = 3
        let c = try decode(config)
        #expect(c.layerTypes == ["sliding_attention", "full_attention", "sliding_attention"])
        #expect(c.shape.slidingWindows == [128, nil, 128])
        #expect(c.fields.ropeTheta == 150_000 && c.swiGLULimit == 7)
        #expect(c.yarn == RotaryEmbedding.YaRN(
            factor: 32, originalMaxPositions: 4096, betaFast: 32, betaSlow: 1,
            attentionFactor: 0.1 * log(32.0) + 1, truncate: false))
    }

    @Test("MXFP4 quantization_config: the experts' tensors become _blocks and _scales, U8")
    func mxfp4Tensors() throws {
        var config = hubConfig
        config["quantization_config"] = ["quant_method": "mxfp4", "modules_to_not_convert": ["lm_head"]]
        let c = try decode(config)
        #expect(c.isMXFP4 && c.expertSpec.stacked?.mxfp4 == true)
        let shapes = Dictionary(uniqueKeysWithValues: c.tensorShapes().map { ($0.name, $0.shape) })
        #expect(shapes["model.layers.0.mlp.experts.gate_up_proj_blocks"] == [32, 5760, 90, 16])
        #expect(shapes["model.layers.0.mlp.experts.gate_up_proj_scales"] == [32, 5760, 90])
        #expect(shapes["model.layers.0.mlp.experts.down_proj_blocks"] == [32, 2880, 90, 16])
        #expect(shapes["model.layers.0.mlp.experts.gate_up_proj"] == nil)
        #expect(c.storesBytes("model.layers.3.mlp.experts.down_proj_scales"))
        #expect(!c.storesBytes("model.layers.3.mlp.experts.down_proj_bias"))
    }

    @Test("config.json values the runtime cannot honour are refused, naming the field", arguments: [
        ("layer_types", #"["sliding_attention", "chunked_attention"]"#, "layer_types[1] is chunked_attention"),
        ("layer_types", #"["sliding_attention"]"#, "layer_types has 1 entries, but num_hidden_layers is 2"),
        ("quantization_config", #"{"quant_method": "bitsandbytes"}"#,
         "quantization_config.quant_method is bitsandbytes, but only mxfp4 is supported"),
        ("num_experts_per_tok", "40", "num_experts_per_tok is 40"),
        ("sliding_window", "null", "sliding_window is null"),
        ("rope_scaling", #"{"rope_type": "linear", "factor": 2.0}"#, "rope_type is linear"),
    ])
    func refusals(field: String, json: String, message: String) throws {
        var config = hubConfig
        config["num_hidden_layers"] = 2
        config["layer_types"] = ["sliding_attention", "full_attention"]
        config[field] = try JSONSerialization.jsonObject(with: Data(json.utf8), options: .fragmentsAllowed)
        let data = try JSONSerialization.data(withJSONObject: config)
        do {
            _ = try Architecture.gptOss.configuration(from: data)
            Issue.record("\(field) = \(json) was accepted")
        } catch {
            #expect("\(error)".contains(message), "\(error)")
        }
    }

    @Test("MXFP4 experts need hidden and intermediate sizes in whole blocks of 32")
    func mxfp4BlockSize() throws {
        var config = hubConfig
        config["quantization_config"] = ["quant_method": "mxfp4"]
        config["intermediate_size"] = 2888
        let data = try JSONSerialization.data(withJSONObject: config)
        #expect(throws: ModelError.self) { try Architecture.gptOss.configuration(from: data) }
    }

    @Test("the MXFP4 fixture's experts are held as stored: no float copy of them, and q8 of them is refused")
    func mxfp4HeldAsStored() throws {
        let checkpoint = try Checkpoint(directory: Fixtures.directory("gpt_oss_mxfp4"))
        #expect(checkpoint.entry(named: "model.layers.0.mlp.experts.gate_up_proj_blocks")?.dtypeName == "U8")
        #expect(checkpoint.entry(named: "model.layers.0.mlp.experts.gate_up_proj") == nil)
        let experts = checkpoint.shape.allExperts
        let store = try ExpertStore(checkpoint: checkpoint, experts: experts)
        #expect(store.heldExperts == Set(experts))
        #expect {
            _ = try ExpertStore(checkpoint: checkpoint, experts: experts, quantization: .q8)
        } throws: { error in
            "\(error)".contains("stored as MXFP4")
        }
    }

    /// The stated tolerance of fast MXFP4 experts (x quantized to int8 in blocks of 32, as llama.cpp
    /// computes them) on the MXFP4 fixture: |logit - transformers' logit on the dequantized weights|.
    static let fastMXFP4LogitTolerance: Float = 0.1

    @Test("fast MXFP4 experts (x quantized to int8) stay within 0.1 of transformers' logits and keep its clear greedy choices")
    func fastMXFP4WithinTolerance() throws {
        let name = "gpt_oss_mxfp4"
        let reference = try Fixtures.reference(name)
        let checkpoint = try Checkpoint(directory: Fixtures.directory(name))
        // The dense part in f32 (exact), so that the difference is the experts' arithmetic alone.
        let model = try DecoderStack(checkpoint: checkpoint)
        let experts = checkpoint.shape.allExperts
        let fast = try ExpertStore(checkpoint: checkpoint, experts: experts, arithmetic: .fast)
        let exact = try ExpertStore(checkpoint: checkpoint, experts: experts, arithmetic: .exact)
        var largest: Float = 0
        var differsFromExact = false
        for (caseIndex, testCase) in reference.cases.enumerated() {
            // Teacher-forced along the reference's tokens, so that every step is compared.
            var cache = model.makeCache(capacity: testCase.promptTokenIDs.count + testCase.maxNewTokens)
            var exactCache = model.makeCache(capacity: testCase.promptTokenIDs.count + testCase.maxNewTokens)
            var input = testCase.promptTokenIDs
            for (step, expected) in testCase.stepLogits.enumerated() {
                let logits = try model.forward(
                    tokens: input, cache: &cache, logits: .lastToken,
                    experts: { try fast.compute(layer: $0, hidden: $1, routing: $2) })
                let exactLogits = try model.forward(
                    tokens: input, cache: &exactCache, logits: .lastToken,
                    experts: { try exact.compute(layer: $0, hidden: $1, routing: $2) })
                differsFromExact = differsFromExact || logits != exactLogits
                let difference = Difference(logits, expected, tolerance: Self.fastMXFP4LogitTolerance)
                largest = max(largest, difference.maximum)
                #expect(difference.firstMismatch == nil, "\(name) case \(caseIndex) step \(step): \(difference)")
                // The greedy choice wherever the reference's best two are further apart than twice the tolerance.
                let ranked = expected.indices.sorted { expected[$0] > expected[$1] }
                if expected[ranked[0]] - expected[ranked[1]] > 2 * Self.fastMXFP4LogitTolerance {
                    #expect(argmax(logits[...]) == ranked[0], "\(name) case \(caseIndex) step \(step): greedy choice")
                }
                input = [testCase.completionTokenIDs[step]]
            }
        }
        // The fast path really ran: its int8 inputs change the bits.
        #expect(differsFromExact)
        print("fast MXFP4 experts: largest |logit - reference| \(largest)")
    }

    @Test("clamped SwiGLU: gate clamped above at limit, up both ways, (up + 1) · gate · σ(alpha · gate)")
    func clampedActivation() {
        let gates: [Float] = [-9, -1, 0, 0.5, 3, 7, 12, .nan]
        let ups: [Float] = [9, -8, 0.25, -0.5, 2, -7.5, 1, 0]
        var output = gates
        clampedSwiGLU(gate: &output, up: ups, count: gates.count, alpha: 1.702, limit: 7)
        for index in gates.indices where !gates[index].isNaN {
            // The formula in double; the kernel's f32 steps (its exp within about 2 ulp) stay within
            // 1e-6 · (|u| + 1) · |g| of it (the bound the C kernel test checks on every path).
            let g = Double(min(gates[index], 7)), u = Double(min(max(ups[index], -7), 7))
            let expected = (u + 1) * g / (1 + exp(-Double(Float(g) * 1.702)))
            #expect(
                abs(Double(output[index]) - expected) <= 1e-6 * (abs(u) + 1) * abs(g),
                "gate \(gates[index]), up \(ups[index]): \(output[index]) vs \(expected)")
        }
        #expect(output[7].isNaN)
    }

    @Test("the router adds its bias, takes the top-k logits and softmaxes only those")
    func router() {
        // Two experts' logits 1 and 3 without the bias; the bias makes expert 2 the best.
        let weight = WeightTensor(FloatTensor(shape: [4, 2], values: [1, 0, 3, 0, 0, 0, -1, 0]))
        let router = Router(
            weight: weight, expertCount: 4, expertsPerToken: 2,
            policy: RoutingPolicy(renormalize: false, scoring: .softmaxOfTopK),
            logitBias: FloatTensor(shape: [4], values: [0, 0, 5, 0]))
        let routing = router.route([1, 2], tokenCount: 1)
        #expect(routing.expertIDs == [2, 1])
        let e = expf(3 - 5)
        #expect(abs(routing.weights[0] - 1 / (1 + e)) < 1e-7 && abs(routing.weights[1] - e / (1 + e)) < 1e-7)
    }
}
