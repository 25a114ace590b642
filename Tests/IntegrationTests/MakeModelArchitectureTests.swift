import Foundation
import TestSupport
import Testing
import Tokenization

/// One `make-model --arch` invocation and what its config.json must then say.
struct MadeArchitecture: Sendable, CustomTestStringConvertible {
    let arch: String
    let options: [String]
    /// config.json fields the options must have set (a field ignored by make-model fails the test).
    let expected: [String: String]
    /// Layers that must be dense (an empty expert-load row).
    let denseLayers: [Int]
    /// With `--fp8`: the block size quantization_config must give.
    var fp8Block: Int? = nil

    var testDescription: String {
        options.contains("--mxfp4") ? "\(arch) --mxfp4" : options.contains("--fp8") ? "\(arch) --fp8" : arch
    }

    static let all = [
        MadeArchitecture(
            arch: "qwen3_moe",
            options: ["--dense-layers", "1", "--norm-topk-prob", "--head-dim", "24", "--moe-intermediate", "48"],
            expected: ["mlp_only_layers": "[1]", "norm_topk_prob": "1", "head_dim": "24", "moe_intermediate_size": "48"],
            denseLayers: [1]),
        MadeArchitecture(
            arch: "qwen2_moe",
            options: ["--dense-layers", "0", "--shared-intermediate", "40", "--tie-embeddings"],
            expected: [
                "mlp_only_layers": "[0]", "shared_expert_intermediate_size": "40", "tie_word_embeddings": "1",
                "norm_topk_prob": "0",
            ],
            denseLayers: [0]),
        MadeArchitecture(
            arch: "olmoe", options: ["--norm-topk-prob", "--intermediate", "72"],
            expected: ["norm_topk_prob": "1", "intermediate_size": "72"], denseLayers: []),
        MadeArchitecture(
            arch: "glm4_moe",
            options: [
                "--dense-layers", "0", "--groups", "3", "--top-groups", "2", "--shared-experts", "2",
                "--routed-scale", "2.5", "--qk-norm", "--norm-topk-prob",
            ],
            expected: [
                "first_k_dense_replace": "1", "n_group": "3", "topk_group": "2", "n_shared_experts": "2",
                "routed_scaling_factor": "2.5", "use_qk_norm": "1", "norm_topk_prob": "1", "n_routed_experts": "6",
            ],
            denseLayers: [0]),
        MadeArchitecture(
            arch: "deepseek_v3",
            options: [
                "--kv-heads", "4", "--dense-layers", "0", "--groups", "3", "--top-groups", "2", "--shared-experts", "1",
                "--routed-scale", "2.5", "--norm-topk-prob", "--q-lora-rank", "20", "--kv-lora-rank", "10",
                "--qk-nope-dim", "6", "--qk-rope-dim", "4", "--v-head-dim", "10",
            ],
            expected: [
                "first_k_dense_replace": "1", "n_group": "3", "topk_group": "2", "n_shared_experts": "1",
                "routed_scaling_factor": "2.5", "norm_topk_prob": "1", "n_routed_experts": "6", "q_lora_rank": "20",
                "kv_lora_rank": "10", "qk_nope_head_dim": "6", "qk_rope_head_dim": "4", "v_head_dim": "10",
                "num_key_value_heads": "4",
            ],
            denseLayers: [0]),
        MadeArchitecture(
            arch: "gpt_oss", options: ["--intermediate", "40", "--sliding-window", "3"],
            expected: [
                "intermediate_size": "40", "sliding_window": "3", "num_local_experts": "6", "attention_bias": "1",
                "layer_types": #"["sliding_attention","full_attention","sliding_attention"]"#,
            ],
            denseLayers: []),
        // MXFP4 experts: blocks of 32, so a hidden size and expert width that are multiples of 32.
        MadeArchitecture(
            arch: "gpt_oss", options: ["--mxfp4", "--hidden", "64", "--intermediate", "64", "--heads", "4"],
            expected: ["hidden_size": "64", "intermediate_size": "64"], denseLayers: []),
        MadeArchitecture(
            arch: "deepseek_v2",
            options: [
                "--kv-heads", "4", "--dense-layers", "0,1", "--groups", "3", "--top-groups", "2", "--shared-experts", "2",
                "--routed-scale", "1.5", "--q-lora-rank", "0", "--kv-lora-rank", "12", "--qk-nope-dim", "8",
                "--qk-rope-dim", "4", "--v-head-dim", "6",
            ],
            expected: [
                "first_k_dense_replace": "2", "n_group": "3", "topk_group": "2", "topk_method": "group_limited_greedy",
                "n_shared_experts": "2", "routed_scaling_factor": "1.5", "norm_topk_prob": "0", "n_routed_experts": "6",
                "kv_lora_rank": "12", "qk_nope_head_dim": "8", "qk_rope_head_dim": "4", "v_head_dim": "6",
                "num_key_value_heads": "4",
            ],
            denseLayers: [0, 1]),
        MadeArchitecture(
            arch: "minimax_m2", options: ["--head-dim", "16", "--intermediate", "40"],
            expected: ["head_dim": "16", "intermediate_size": "40", "num_local_experts": "6"], denseLayers: []),
        // FP8 as DeepSeek-V3 ships it; blocks of 16 so that the 48-wide matrices have several.
        MadeArchitecture(
            arch: "deepseek_v3", options: ["--kv-heads", "4", "--dense-layers", "0", "--fp8", "--fp8-block", "16"],
            expected: ["first_k_dense_replace": "1"], denseLayers: [0], fp8Block: 16),
        MadeArchitecture(
            arch: "minimax_m2", options: ["--head-dim", "16", "--fp8"], expected: ["head_dim": "16"], denseLayers: [],
            fp8Block: 128),
    ]
}

@Suite("make-model writes every architecture", .serialized)
struct MakeModelArchitectureTests {
    @Test("make-model --arch writes the options into config.json, and generate runs it alike with 0 and 2 workers",
          arguments: MadeArchitecture.all)
    func makesAndRuns(made: MadeArchitecture) throws {
        let directory = try TestPaths.makeTemporaryDirectory("make-\(made.arch)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let written = try runSwitchyard(
            ["make-model", "--arch", made.arch, "--out", directory.path, "--hidden", "48", "--layers", "3",
             "--experts", "6", "--top-k", "2", "--heads", "4", "--kv-heads", "2", "--vocab", "320", "--seed", "3"]
                + made.options)
        #expect(written.status == 0, "\(written.stderr)")
        let config = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("config.json")))
                as? [String: Any])
        #expect(config["model_type"] as? String == made.arch)
        for (field, value) in made.expected {
            let found = config[field].map { "\($0)".replacingOccurrences(of: "\n", with: "").replacingOccurrences(of: " ", with: "") }
            #expect(found.map { $0 == value || $0 == "(\(value.dropFirst().dropLast()))" } == true, "\(field): \(found ?? "absent")")
        }
        if let block = made.fp8Block {
            let quantization = try #require(config["quantization_config"] as? [String: Any])
            #expect(quantization["quant_method"] as? String == "fp8" && quantization["fmt"] as? String == "e4m3")
            #expect(quantization["activation_scheme"] as? String == "dynamic")
            #expect(quantization["weight_block_size"] as? [Int] == [block, block])
            let weights = try Data(contentsOf: directory.appendingPathComponent("model.safetensors"))
            let header = String(decoding: weights.prefix(200_000), as: UTF8.self)
            #expect(header.contains(#""model.layers.1.mlp.experts.0.gate_proj.weight":{"dtype":"F8_E4M3""#)
                || header.contains(#""model.layers.1.block_sparse_moe.experts.0.w1.weight":{"dtype":"F8_E4M3""#))
            #expect(header.contains("weight_scale_inv"))
        }
        let prompt = ["--prompt", "The quick brown fox", "--max-tokens", "6", "--temperature", "0", "--ignore-eos"]
        let local = try generateJSON(["--model", directory.path, "--spawn-workers", "0"] + prompt)
        let distributed = try generateJSON(["--model", directory.path, "--spawn-workers", "2"] + prompt)
        #expect(local.completionTokenIDs == distributed.completionTokenIDs)
        #expect(local.prefillLoad == distributed.prefillLoad)
        for layer in 0..<3 {
            #expect(local.prefillLoad[layer].isEmpty == made.denseLayers.contains(layer), "layer \(layer)")
        }
    }

    @Test("make-model --arch gpt_oss writes gpt-oss's tokenizer shape, its harmony chat template and end-of-sequence ids")
    func gptOssChatsInHarmony() throws {
        let directory = try TestPaths.makeTemporaryDirectory("make-gpt-oss-harmony")
        defer { try? FileManager.default.removeItem(at: directory) }
        let written = try runSwitchyard(
            ["make-model", "--arch", "gpt_oss", "--out", directory.path, "--hidden", "32", "--layers", "2",
             "--experts", "4", "--heads", "4", "--vocab", "400", "--seed", "5"])
        #expect(written.status == 0, "\(written.stderr)")
        let tokenizer = try Tokenizer(directory: directory)
        #expect(tokenizer.chatTemplate == HarmonyChatTemplate.source, "chat_template.jinja as released")
        #expect(tokenizer.vocabularySize == 400)
        let harmony = try #require(tokenizer.harmonyTokens, "the harmony special tokens are special tokens")
        let returnID = try #require(tokenizer.tokenID(for: "<|return|>"))
        let callID = try #require(tokenizer.tokenID(for: "<|call|>"))
        let endOfText = try #require(tokenizer.tokenID(for: "<|endoftext|>"))
        #expect(harmony.turnEnds == [returnID, callID])
        #expect(tokenizer.eosTokenID == returnID && tokenizer.bosTokenID == tokenizer.tokenID(for: "<|startoftext|>"))
        // <|return|> and <|call|> end a turn: both stop generation, as generation_config.json says for the real ones.
        #expect(try GenerationConfig(directory: directory).eosTokenIDs == [returnID, endOfText, callID])
        let config = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: directory.appendingPathComponent("config.json")))
                as? [String: Any])
        #expect(config["eos_token_id"] as? Int == Int(returnID))
        #expect(config["vocab_size"] as? Int == 400)
        let ids = try tokenizer.applyChatTemplateTokenIDs(
            [["role": "system", "content": "Be brief."], ["role": "user", "content": "Hi"]], addGenerationPrompt: true,
            arguments: ChatTemplateArguments())
        let text = tokenizer.decode(ids)
        #expect(text.hasPrefix("<|start|>system<|message|>"))
        #expect(text.hasSuffix("<|start|>developer<|message|># Instructions\n\nBe brief.\n\n<|end|><|start|>user<|message|>Hi<|end|><|start|>assistant"))
        #expect(ids.filter { $0 == harmony.start }.count == 4, "system, developer, user and the assistant's turn")
    }

    @Test("make-model refuses an unknown architecture and options that do not fit it, naming them")
    func refusals() throws {
        let directory = try TestPaths.makeTemporaryDirectory("make-refused")
        defer { try? FileManager.default.removeItem(at: directory) }
        for (arguments, message) in [
            (["--arch", "llama"], "the supported architectures are: mixtral, qwen3_moe, qwen2_moe, olmoe, glm4_moe, deepseek_v3, deepseek_v2, minimax_m2, gpt_oss"),
            (["--arch", "deepseek_v3", "--heads", "4", "--kv-heads", "2"], "deepseek_v3 needs as many as --heads (4)"),
            (["--arch", "deepseek_v3", "--qk-rope-dim", "3"], "--qk-rope-dim is 3, but must be even"),
            (["--arch", "deepseek_v3", "--head-dim", "8"], "--head-dim does not apply to deepseek_v3"),
            (["--arch", "glm4_moe", "--kv-lora-rank", "8"], "--kv-lora-rank applies to deepseek_v3 and deepseek_v2 only"),
            (["--arch", "deepseek_v3", "--qk-norm"], "--qk-norm applies to glm4_moe only"),
            (["--arch", "deepseek_v2", "--norm-topk-prob"], "--norm-topk-prob does not apply to deepseek_v2"),
            (["--arch", "minimax_m2", "--moe-intermediate", "8"], "--moe-intermediate does not apply to --arch minimax_m2"),
            (["--arch", "glm4_moe", "--dense-layers", "1"], "glm4_moe's dense layers are the first ones"),
            (["--arch", "qwen3_moe", "--groups", "2"], "--groups applies to glm4_moe, deepseek_v3 and deepseek_v2 only"),
            (["--arch", "glm4_moe", "--shared-intermediate", "8"], "--shared-intermediate applies to qwen2_moe only"),
            (["--arch", "gpt_oss", "--norm-topk-prob"], "--norm-topk-prob does not apply to gpt_oss"),
            (["--arch", "olmoe", "--mxfp4"], "--mxfp4 applies to gpt_oss only"),
            (["--arch", "qwen3_moe", "--fp8"], "--fp8 applies to deepseek_v3, deepseek_v2, glm4_moe and minimax_m2 only"),
            (["--arch", "deepseek_v3", "--heads", "4", "--kv-heads", "4", "--fp8", "--fp8-block", "24"],
             "--fp8-block is 24, but must be a positive multiple of 16"),
            (["--arch", "gpt_oss", "--mxfp4", "--hidden", "48", "--heads", "4"], "--mxfp4 needs --hidden and --intermediate"),
            (["--arch", "gpt_oss", "--moe-intermediate", "8"], "--moe-intermediate does not apply to --arch gpt_oss"),
            (["--arch", "qwen3_moe", "--dense-layers", "9"], "--dense-layers"),
            (["--arch", "olmoe", "--shared-intermediate", "8"], "--shared-intermediate does not apply to --arch olmoe"),
            (["--arch", "mixtral", "--norm-topk-prob"], "--norm-topk-prob does not apply to mixtral"),
        ] {
            let output = try runSwitchyard(["make-model", "--out", directory.path] + arguments)
            #expect(output.status != 0)
            #expect(output.stderr.contains(message), "\(arguments): \(output.stderr)")
        }
    }
}
