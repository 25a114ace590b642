import ArgumentParser
import Foundation
import Models
import Tensors
import Tokenization

/// `switchyard make-model`: a small random-weight checkpoint for tests and demos.
struct MakeModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "make-model",
        abstract: "Write a small random-weight checkpoint that Hugging Face transformers can also load.",
        discussion: """
            Writes config.json, model.safetensors, tokenizer.json and tokenizer_config.json to --out. \
            The weights are random (deterministic for a --seed); the tokenizer is a SentencePiece-style \
            BPE with byte fallback trained on a built-in corpus. The model generates gibberish, but \
            every code path of a real checkpoint runs. --arch gpt_oss writes a tokenizer of gpt-oss's \
            shape instead (byte-level BPE behind the o200k regex, the harmony special tokens last), its \
            harmony chat template as chat_template.jinja, and generation_config.json ending generation \
            at <|return|>, <|endoftext|> and <|call|>, as the released checkpoints do.
            """
    )

    @Option(
        help: ArgumentHelp(
            "The architecture to make: mixtral, qwen3_moe, qwen2_moe, olmoe, glm4_moe, deepseek_v3, deepseek_v2, minimax_m2 or gpt_oss (config.json model_type).",
            valueName: "mixtral|qwen3_moe|qwen2_moe|olmoe|glm4_moe|deepseek_v3|deepseek_v2|minimax_m2|gpt_oss"))
    var arch: String = "mixtral"

    @Option(help: "The directory to write (created if missing; existing checkpoint files are replaced).")
    var out: String

    @Option(help: "Hidden size (hidden_size).")
    var hidden: Int = 256

    @Option(help: "Number of decoder layers (num_hidden_layers).")
    var layers: Int = 4

    @Option(help: "Experts per MoE layer (num_local_experts).")
    var experts: Int = 8

    @Option(name: .customLong("top-k"), help: "Experts per token (num_experts_per_tok).")
    var topK: Int = 2

    @Option(help: "Vocabulary size (vocab_size); the tokenizer is trained to this size.")
    var vocab: Int = 1024

    @Option(help: "Expert FFN size (intermediate_size) of mixtral, olmoe, minimax_m2 and gpt_oss; the dense layers' MLP size of qwen3_moe, qwen2_moe, glm4_moe, deepseek_v3 and deepseek_v2. Default: 2 × hidden.")
    var intermediate: Int?

    @Option(name: .customLong("moe-intermediate"), help: "qwen3_moe, qwen2_moe, glm4_moe, deepseek_v3, deepseek_v2: each routed expert's FFN size (moe_intermediate_size). Default: hidden ÷ 2.")
    var moeIntermediate: Int?

    @Option(name: .customLong("shared-intermediate"), help: "qwen2_moe: the shared expert's FFN size (shared_expert_intermediate_size); 0 for none. Default: hidden.")
    var sharedIntermediate: Int?

    @Option(name: .customLong("dense-layers"), help: "qwen3_moe, qwen2_moe: comma-separated layers that are dense MLP layers (mlp_only_layers), e.g. 0,2; glm4_moe, deepseek_v3, deepseek_v2: the first layers 0,1,… (first_k_dense_replace).")
    var denseLayers: String = ""

    @Flag(name: .customLong("norm-topk-prob"), help: "qwen3_moe, qwen2_moe, olmoe, glm4_moe, deepseek_v3: renormalise the top-k routing weights (norm_topk_prob). Mixtral always does; deepseek_v2 never does.")
    var normTopKProb = false

    @Option(name: .customLong("shared-experts"), help: "glm4_moe, deepseek_v3, deepseek_v2: shared experts beside the routed ones (n_shared_experts), each moe_intermediate_size wide; 0 for none.")
    var sharedExperts: Int = 1

    @Option(help: "glm4_moe, deepseek_v3, deepseek_v2: groups of consecutive experts (n_group); must divide --experts into groups (of at least 2 for glm4_moe and deepseek_v3). deepseek_v2 routes group_limited_greedy when --top-groups is below --groups, else greedy.")
    var groups: Int = 1

    @Option(name: .customLong("top-groups"), help: "glm4_moe, deepseek_v3, deepseek_v2: the best groups a token's experts come from (topk_group). Default: --groups.")
    var topGroups: Int?

    @Option(name: .customLong("routed-scale"), help: "glm4_moe, deepseek_v3, deepseek_v2: the routing weights' last factor (routed_scaling_factor).")
    var routedScale: Double = 1

    @Flag(name: .customLong("qk-norm"), help: "glm4_moe: a per-head RMS norm of queries and keys (use_qk_norm).")
    var qkNorm = false

    @Option(name: .customLong("q-lora-rank"), help: "deepseek_v3, deepseek_v2: the queries' low rank (q_lora_rank); 0 for a plain q_proj. Default: hidden ÷ 2.")
    var qLoraRank: Int?

    @Option(name: .customLong("kv-lora-rank"), help: "deepseek_v3, deepseek_v2: the cached key/value latent's width (kv_lora_rank). Default: hidden ÷ 4.")
    var kvLoraRank: Int?

    @Option(name: .customLong("qk-nope-dim"), help: "deepseek_v3, deepseek_v2: each query/key head's part without RoPE (qk_nope_head_dim). Default: hidden ÷ heads.")
    var qkNopeDim: Int?

    @Option(name: .customLong("qk-rope-dim"), help: "deepseek_v3, deepseek_v2: each query head's rotated part and the shared rotated key (qk_rope_head_dim, even). Default: hidden ÷ heads ÷ 2, rounded up to even.")
    var qkRopeDim: Int?

    @Option(name: .customLong("v-head-dim"), help: "deepseek_v3, deepseek_v2: each value head's size (v_head_dim). Default: hidden ÷ heads.")
    var vHeadDim: Int?

    @Option(name: .customLong("head-dim"), help: "Attention head size (head_dim). Default: hidden ÷ heads.")
    var headDim: Int?

    @Flag(name: .customLong("tie-embeddings"), help: "Share the embedding matrix with the LM head (tie_word_embeddings).")
    var tieEmbeddings = false

    @Option(help: "Attention heads (num_attention_heads).")
    var heads: Int = 8

    @Option(name: .customLong("kv-heads"), help: "Key/value heads (num_key_value_heads); must divide --heads. Default: 2 (deepseek_v3, deepseek_v2: --heads, the only value they run).")
    var kvHeads: Int?

    /// `--kv-heads`, or its default.
    var keyValueHeads: Int { kvHeads ?? (latentAttention ? heads : 2) }

    /// Whether --arch has multi-head latent attention.
    var latentAttention: Bool { arch == "deepseek_v3" || arch == "deepseek_v2" }

    @Flag(
        inversion: .prefixedNo,
        help: "qwen2_moe, glm4_moe, deepseek_v3, deepseek_v2: biases on the attention projections (qkv_bias, attention_bias). DeepSeek's and GLM's released checkpoints have none.")
    var attentionBias = true

    @Option(name: .customLong("sliding-window"), help: "Attention sliding window in tokens (default: none; gpt_oss: 128, on its even layers).")
    var slidingWindow: Int?

    @Flag(help: "gpt_oss: store the experts in MXFP4 as the released checkpoints do (random e2m1 blocks and scales; quantization_config.quant_method mxfp4).")
    var mxfp4 = false

    @Flag(help: "deepseek_v3, deepseek_v2, glm4_moe, minimax_m2: store the linear weights (attention projections, dense and shared MLPs, routed experts) in FP8 as DeepSeek-V3's checkpoints are: float8_e4m3fn with an f32 weight_scale_inv per block (scale = amax ÷ 448), quantization_config quant_method fp8. Embeddings, norms, routers and lm_head stay --dtype.")
    var fp8 = false

    @Option(name: .customLong("fp8-block"), help: "With --fp8: the block size, rows and columns, sharing one scale (weight_block_size [N, N]); a positive multiple of 16.")
    var fp8Block: Int = 128

    @Option(name: .customLong("max-positions"), help: "Context length (max_position_embeddings).")
    var maxPositions: Int = 4096

    @Option(help: "Weight dtype on disk: f32 or bf16.")
    var dtype: String = "f32"

    @Option(help: "Random seed; the same seed writes the same checkpoint.")
    var seed: UInt64 = 0

    @Option(
        name: .customLong("hot-experts"),
        help: "Make every router prefer this many experts (layer l: experts l·N … l·N+N−1, mod --experts): a skewed load for balancing tests.")
    var hotExperts: Int = 0

    @Option(name: .customLong("hot-bias"), help: "With --hot-experts: about how much the preferred experts gain in router logit.")
    var hotBias: Double = 2

    func validate() throws {
        guard Architecture.supported.contains(where: { $0.name == arch }) else {
            throw ValidationError(
                "--arch is \"\(arch)\", but the supported architectures are: "
                    + Architecture.supported.map(\.name).joined(separator: ", "))
        }
        guard (try? parsedDenseLayers()) != nil else {
            throw ValidationError("--dense-layers is \"\(denseLayers)\", but must be comma-separated layer numbers below --layers (\(layers))")
        }
        if arch == "mixtral" || arch == "olmoe" || arch == "minimax_m2" || arch == "gpt_oss" {
            for (flag, given) in [("--moe-intermediate", moeIntermediate != nil), ("--shared-intermediate", sharedIntermediate != nil), ("--dense-layers", !denseLayers.isEmpty)] where given {
                throw ValidationError("\(flag) does not apply to --arch \(arch)")
            }
        }
        let groupedSigmoid = arch == "glm4_moe" || latentAttention
        if arch == "qwen3_moe" || groupedSigmoid, sharedIntermediate != nil {
            throw ValidationError("--shared-intermediate applies to qwen2_moe only (\(arch): --shared-experts)")
        }
        if !groupedSigmoid {
            let given = [
                ("--shared-experts", sharedExperts != 1), ("--groups", groups != 1), ("--top-groups", topGroups != nil),
                ("--routed-scale", routedScale != 1),
            ]
            for (flag, isGiven) in given where isGiven {
                throw ValidationError("\(flag) applies to glm4_moe, deepseek_v3 and deepseek_v2 only")
            }
        } else if let dense = try? parsedDenseLayers(), dense != Array(0..<dense.count) {
            throw ValidationError(
                "--dense-layers is \"\(denseLayers)\", but \(arch)'s dense layers are the first ones (0,1,…: first_k_dense_replace)")
        }
        if arch != "glm4_moe", qkNorm {
            throw ValidationError("--qk-norm applies to glm4_moe only")
        }
        if !latentAttention {
            let given = [
                ("--q-lora-rank", qLoraRank), ("--kv-lora-rank", kvLoraRank), ("--qk-nope-dim", qkNopeDim),
                ("--qk-rope-dim", qkRopeDim), ("--v-head-dim", vHeadDim),
            ]
            for (flag, value) in given where value != nil {
                throw ValidationError("\(flag) applies to deepseek_v3 and deepseek_v2 only")
            }
        } else {
            if headDim != nil {
                throw ValidationError("--head-dim does not apply to \(arch) (its heads are --qk-nope-dim, --qk-rope-dim, --v-head-dim)")
            }
            if keyValueHeads != heads {
                throw ValidationError("--kv-heads is \(keyValueHeads), but \(arch) needs as many as --heads (\(heads))")
            }
            if let qkRopeDim, qkRopeDim < 2 || qkRopeDim % 2 != 0 {
                throw ValidationError("--qk-rope-dim is \(qkRopeDim), but must be even and at least 2")
            }
            for (flag, value) in [("--kv-lora-rank", kvLoraRank), ("--qk-nope-dim", qkNopeDim), ("--v-head-dim", vHeadDim)] {
                if let value, value < 1 { throw ValidationError("\(flag) is \(value), but must be at least 1") }
            }
            if let qLoraRank, qLoraRank < 0 {
                throw ValidationError("--q-lora-rank is \(qLoraRank), but must be at least 0 (0: a plain q_proj)")
            }
        }
        if arch == "mixtral", normTopKProb {
            throw ValidationError("--norm-topk-prob does not apply to mixtral (it always renormalises)")
        }
        if arch != "gpt_oss", mxfp4 {
            throw ValidationError("--mxfp4 applies to gpt_oss only")
        }
        if fp8, !["deepseek_v3", "deepseek_v2", "glm4_moe", "minimax_m2"].contains(arch) {
            throw ValidationError("--fp8 applies to deepseek_v3, deepseek_v2, glm4_moe and minimax_m2 only")
        }
        guard fp8Block >= 16, fp8Block % 16 == 0 else {
            throw ValidationError("--fp8-block is \(fp8Block), but must be a positive multiple of 16")
        }
        if mxfp4, hidden % 32 != 0 || (intermediate ?? 2 * hidden) % 32 != 0 {
            throw ValidationError("--mxfp4 needs --hidden and --intermediate to be multiples of 32 (MXFP4's block size)")
        }
        if arch == "gpt_oss", normTopKProb {
            throw ValidationError("--norm-topk-prob does not apply to gpt_oss (it softmaxes the top-k logits)")
        }
        if arch == "minimax_m2", normTopKProb {
            throw ValidationError("--norm-topk-prob does not apply to minimax_m2 (it always renormalises)")
        }
        if arch == "deepseek_v2", normTopKProb {
            throw ValidationError("--norm-topk-prob does not apply to deepseek_v2 (transformers never renormalises its weights)")
        }
        guard ["f32", "bf16"].contains(dtype) else {
            throw ValidationError("--dtype is \"\(dtype)\", but must be f32 or bf16")
        }
        for (name, value) in [("--hidden", hidden), ("--layers", layers), ("--experts", experts), ("--heads", heads)]
        where value < 1 {
            throw ValidationError("\(name) is \(value), but must be at least 1")
        }
        guard (1...experts).contains(topK) else {
            throw ValidationError("--top-k is \(topK), but must be between 1 and --experts (\(experts))")
        }
        guard keyValueHeads >= 1, heads % keyValueHeads == 0 else {
            throw ValidationError("--kv-heads is \(keyValueHeads), but must divide --heads (\(heads))")
        }
        if let headDim {
            guard headDim >= 2, headDim % 2 == 0 else { throw ValidationError("--head-dim is \(headDim), but must be even and at least 2") }
        } else {
            guard hidden % heads == 0, (hidden / heads) % 2 == 0 else {
                throw ValidationError(
                    "--hidden (\(hidden)) must be a multiple of --heads (\(heads)) with an even head size (or give --head-dim)")
            }
        }
        guard (0..<experts).contains(hotExperts) else {
            throw ValidationError("--hot-experts is \(hotExperts), but must be between 0 and --experts − 1 (\(experts - 1))")
        }
        guard hotBias.isFinite, hotBias >= 0 else {
            throw ValidationError("--hot-bias is \(hotBias), but must be a finite number ≥ 0")
        }
        guard vocab >= 300 else {
            throw ValidationError("--vocab is \(vocab), but must be at least 300 (259 byte and special tokens plus merges)")
        }
    }

    /// `--dense-layers` as layer numbers.
    func parsedDenseLayers() throws -> [Int] {
        try denseLayers.split(separator: ",").map { item in
            guard let layer = Int(item.trimmingCharacters(in: .whitespaces)), (0..<layers).contains(layer) else {
                throw ValidationError("--dense-layers: \(item) is not a layer below \(layers)")
            }
            return layer
        }
    }

    func run() throws {
        let directory = URL(fileURLWithPath: out)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        if arch == "mixtral" && headDim == nil && !tieEmbeddings {
            try writeMixtral(to: directory)
        } else {
            guard let architecture = Architecture.supported.first(where: { $0.name == arch }) else { return }
            var options = RandomModelOptions()
            options.hiddenSize = hidden
            options.layerCount = layers
            options.attentionHeadCount = heads
            options.keyValueHeadCount = keyValueHeads
            options.headDimension = headDim
            options.expertCount = experts
            options.expertsPerToken = topK
            options.vocabularySize = vocab
            options.intermediateSize = intermediate ?? 2 * hidden
            options.expertIntermediateSize = moeIntermediate ?? max(1, hidden / 2)
            options.sharedExpertIntermediateSize = arch == "qwen2_moe" ? (sharedIntermediate ?? hidden) : 0
            options.sharedExpertCount = sharedExperts
            options.expertGroupCount = groups
            options.keptExpertGroupCount = topGroups ?? groups
            options.routedScalingFactor = routedScale
            options.queryKeyNorm = qkNorm
            options.queryKeyValueBias = attentionBias
            let headSize = max(1, hidden / heads)
            options.queryLowRank = (qLoraRank ?? max(1, hidden / 2)).nonZero
            options.keyValueLowRank = kvLoraRank ?? max(1, hidden / 4)
            options.nopeHeadDimension = qkNopeDim ?? headSize
            options.ropeHeadDimension = qkRopeDim ?? max(2, (headSize / 2 + 1) / 2 * 2)
            options.valueHeadDimension = vHeadDim ?? headSize
            options.denseLayers = try parsedDenseLayers()
            options.normalizeTopKProbabilities = normTopKProb
            options.slidingWindow = slidingWindow
            options.maxPositionEmbeddings = maxPositions
            options.mxfp4 = mxfp4
            options.fp8Block = fp8 ? FP8BlockSize(rows: fp8Block, columns: fp8Block) : nil
            options.tieWordEmbeddings = tieEmbeddings
            options.dtype = dtype == "bf16" ? .bf16 : .f32
            options.seed = seed
            options.hotExpertCount = hotExperts
            options.hotExpertBias = hotBias
            options.bosTokenID = 1
            options.eosTokenIDs = [2]
            if arch == "gpt_oss" {
                let harmony = try TokenizerTrainer.harmonyBPE(vocabularySize: vocab)
                // As released: config.json's eos is <|return|>; generation_config.json adds <|endoftext|> and <|call|>.
                options.bosTokenID = harmony.startOfTextID
                options.eosTokenIDs = [harmony.returnID]
                try RandomCheckpointWriter.write(options, architecture: architecture, to: directory)
                try Self.writeHarmonyTokenizer(harmony, to: directory)
                printSummary(directory)
                return
            }
            try RandomCheckpointWriter.write(options, architecture: architecture, to: directory)
        }
        // A gpt_oss checkpoint made here before left files that would override this tokenizer's.
        for stale in ["chat_template.jinja", GenerationConfig.fileName] {
            let url = directory.appendingPathComponent(stale)
            if FileManager.default.fileExists(atPath: url.path) { try FileManager.default.removeItem(at: url) }
        }
        let tokenizer = try TokenizerTrainer.sentencePieceBPE(vocabularySize: vocab)
        try tokenizer.tokenizerJSON.write(to: directory.appendingPathComponent("tokenizer.json"))
        try Self.withChatTemplate(tokenizer.tokenizerConfigJSON)
            .write(to: directory.appendingPathComponent("tokenizer_config.json"))
        printSummary(directory)
    }

    /// gpt-oss's tokenizer files: tokenizer.json, tokenizer_config.json, the harmony template as
    /// chat_template.jinja, and generation_config.json with the released end-of-sequence ids.
    static func writeHarmonyTokenizer(_ harmony: TokenizerTrainer.HarmonyTokenizerFiles, to directory: URL) throws {
        try harmony.tokenizerJSON.write(to: directory.appendingPathComponent("tokenizer.json"))
        try harmony.tokenizerConfigJSON.write(to: directory.appendingPathComponent("tokenizer_config.json"))
        try Data(HarmonyChatTemplate.source.utf8).write(to: directory.appendingPathComponent("chat_template.jinja"))
        let generation: [String: Any] = [
            "bos_token_id": harmony.startOfTextID,
            "eos_token_id": [harmony.returnID, harmony.endOfTextID, harmony.callID],
            "pad_token_id": harmony.endOfTextID,
        ]
        try JSONSerialization.data(withJSONObject: generation, options: [.prettyPrinted, .sortedKeys])
            .write(to: directory.appendingPathComponent(GenerationConfig.fileName))
    }

    /// The line that reports what was written.
    private func printSummary(_ directory: URL) {
        let dense = (try? parsedDenseLayers()) ?? []
        print(
            "wrote a random \(arch) checkpoint to \(directory.path): \(layers) layers"
                + (dense.isEmpty ? "" : " (dense: \(dense.map(String.init).joined(separator: ", ")))")
                + ", \(experts) experts (top-\(topK)), hidden \(hidden), vocab \(vocab), \(dtype)"
                + (fp8 ? " (linear weights FP8 e4m3, \(fp8Block) × \(fp8Block) blocks)" : "")
                + (hotExperts > 0 ? "; routers prefer \(hotExperts) experts per layer (bias \(hotBias))" : ""))
    }

    /// The Mixtral checkpoint of these options, written as ever (the files tests and benchmarks pin).
    private func writeMixtral(to directory: URL) throws {
        var options = MixtralCheckpointOptions()
        options.hiddenSize = hidden
        options.layerCount = layers
        options.expertCount = experts
        options.expertsPerToken = topK
        options.vocabularySize = vocab
        options.intermediateSize = intermediate ?? 2 * hidden
        options.attentionHeadCount = heads
        options.keyValueHeadCount = keyValueHeads
        options.slidingWindow = slidingWindow
        options.maxPositionEmbeddings = maxPositions
        options.dtype = dtype == "bf16" ? .bf16 : .f32
        options.seed = seed
        options.hotExpertCount = hotExperts
        options.hotExpertBias = hotBias
        try MixtralCheckpointWriter.write(options, to: directory)
    }

    /// Mixtral-8x7B-Instruct's chat template, so chat requests work on made models as on the real one.
    static let mixtralChatTemplate =
        "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
        + "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
        + "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
        + "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
        + "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"

    /// tokenizer_config.json with `chat_template` added.
    static func withChatTemplate(_ configJSON: Data) throws -> Data {
        guard var object = try JSONSerialization.jsonObject(with: configJSON) as? [String: Any] else {
            throw ValidationError("the trained tokenizer_config.json is not a JSON object")
        }
        object["chat_template"] = mixtralChatTemplate
        return try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
    }
}

extension Int {
    /// The value, or nil when it is 0 (`--q-lora-rank 0`: no low-rank query).
    fileprivate var nonZero: Int? { self == 0 ? nil : self }
}
