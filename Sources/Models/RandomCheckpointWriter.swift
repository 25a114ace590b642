// Writes random-weight checkpoints of any architecture that Hugging Face transformers loads: for
// tests, benchmarks and `switchyard make-model --arch`. The architecture renders config.json from
// the options; the tensors are the ones its configuration lists, deterministic for a seed (our own
// PRNG, as MixtralCheckpointWriter). Mixtral keeps MixtralCheckpointWriter, whose files existing
// tests and benchmarks pin byte for byte.
public import Foundation
public import Tensors
import Kernels

/// The shape, dtype and seed of a random checkpoint; each architecture reads the fields it has.
public struct RandomModelOptions: Sendable, Equatable {
    public var hiddenSize = 64
    public var layerCount = 2
    public var attentionHeadCount = 4
    public var keyValueHeadCount = 2
    /// `head_dim`; nil: hidden ÷ heads.
    public var headDimension: Int?
    public var expertCount = 8
    public var expertsPerToken = 2
    public var vocabularySize = 256
    /// A dense layer's MLP width (`intermediate_size`; OLMoE's and Mixtral's expert width).
    public var intermediateSize = 128
    /// A routed expert's width (`moe_intermediate_size`).
    public var expertIntermediateSize = 64
    /// The shared expert's width (Qwen2-MoE); 0: none.
    public var sharedExpertIntermediateSize = 0
    /// GLM-4.5's shared experts (`n_shared_experts`, each `moe_intermediate_size` wide).
    public var sharedExpertCount = 1
    /// Layers that are dense (`mlp_only_layers`; GLM-4.5 takes their count as `first_k_dense_replace`).
    public var denseLayers: [Int] = []
    /// DeepSeek-V3's multi-head latent attention: `q_lora_rank` (nil: a plain q_proj), `kv_lora_rank`,
    /// `qk_nope_head_dim`, `qk_rope_head_dim`, `v_head_dim`.
    public var queryLowRank: Int? = 24
    public var keyValueLowRank = 16
    public var nopeHeadDimension = 8
    public var ropeHeadDimension = 8
    public var valueHeadDimension = 12
    /// Expert groups (`n_group`) and the groups a token may choose from (`topk_group`), GLM-4.5.
    public var expertGroupCount = 1
    public var keptExpertGroupCount = 1
    /// The routing weights' last factor (GLM-4.5 `routed_scaling_factor`).
    public var routedScalingFactor = 1.0
    /// The rotated fraction of each attention head (GLM-4.5 `partial_rotary_factor`).
    public var partialRotaryFactor = 0.5
    /// A per-head q/k RMS norm (GLM-4.5 `use_qk_norm`).
    public var queryKeyNorm = false
    /// `norm_topk_prob`.
    public var normalizeTopKProbabilities = false
    /// q/k/v biases (Qwen2-MoE `qkv_bias`, GLM-4.5 `attention_bias`).
    public var queryKeyValueBias = true
    /// The attention window (nil: none).
    public var slidingWindow: Int?
    public var maxPositionEmbeddings = 4096
    public var ropeTheta = 1e6
    public var tieWordEmbeddings = false
    public var dtype: DType = .f32
    public var seed: UInt64 = 0
    /// The standard deviation of weight matrices (HF's `initializer_range`).
    public var initializerRange = 0.02
    /// Experts every router prefers (see `MixtralCheckpointOptions.hotExpertCount`).
    public var hotExpertCount = 0
    /// Roughly what the preferred experts gain in router logit.
    public var hotExpertBias = 0.0
    public var bosTokenID: Int?
    public var eosTokenIDs: [Int] = []
    /// gpt-oss: the experts in MXFP4 (`quantization_config.quant_method` mxfp4): random e2m1 bytes and
    /// scale bytes 2^-7 ... 2^-5, so the weights are about `initializerRange` in size.
    public var mxfp4 = false
    /// Set: every linear weight (a matrix other than the embedding, lm_head and the routers) is stored as
    /// FP8 the way DeepSeek-V3's checkpoints are (``quantizeFP8(_:outputCount:inputCount:block:)`` in
    /// blocks of this size, `<name>_scale_inv` f32 beside it, `quantization_config` quant_method fp8);
    /// the other tensors stay `dtype`.
    public var fp8Block: FP8BlockSize?

    public init() {}
}

/// Writes random-weight checkpoints of any supported architecture.
public enum RandomCheckpointWriter {
    /// Writes config.json and model.safetensors of `architecture` with `options` into `directory`.
    /// - Throws: `ModelError.invalidConfiguration` for options that do not make a valid model; file errors.
    public static func write(_ options: RandomModelOptions, architecture: Architecture, to directory: URL) throws {
        var fields = architecture.randomConfiguration(options)
        fields["architectures"] = .array(architecture.classNames.map(JSONValue.string))
        fields["model_type"] = .string(architecture.name)
        fields["dtype"] = .string(options.dtype.huggingFaceName)
        fields["initializer_range"] = .float(options.initializerRange)
        fields["use_cache"] = .bool(true)
        if let block = options.fp8Block {
            // As deepseek-ai/DeepSeek-V3's config.json has it.
            fields["quantization_config"] = .object([
                "quant_method": .string("fp8"), "fmt": .string("e4m3"), "activation_scheme": .string("dynamic"),
                "weight_block_size": .array([.int(block.rows), .int(block.columns)]),
            ])
        }
        let config = Data((JSONValue.object(fields).rendered(indent: "") + "\n").utf8)
        let configuration = try architecture.configuration(from: config)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try config.write(to: directory.appendingPathComponent("config.json"))
        let shape = configuration.shape
        var generator = NormalGenerator(seed: options.seed)
        var tensors: [SafetensorsWriter.Tensor] = []
        var byteSource = SplitMix64(seed: options.seed ^ 0x4D58_4650_3400_0000)
        // The matrices that stay numbers in an FP8 checkpoint (DeepSeek-V3 keeps them bf16).
        let unquantized = Set(
            [configuration.embeddingName, "lm_head.weight"]
                + shape.moeLayers.map { configuration.routerWeightName(layer: $0.rawValue) })
        for (name, tensorShape) in configuration.tensorShapes() {
            let count = tensorShape.reduce(1, *)
            if configuration.storesBytes(name) {
                let bytes = (0..<count).map { _ in
                    name.hasSuffix("_scales") ? UInt8(120 + byteSource.next() % 3) : UInt8(truncatingIfNeeded: byteSource.next())
                }
                tensors.append(SafetensorsWriter.Tensor(name: name, shape: tensorShape, u8: bytes))
                continue
            }
            // Norm weights start at 1, as HF initialises RMSNorm; everything else (biases included, so
            // that a runtime ignoring them differs) ~ N(0, initializer_range).
            var values: [Float] =
                tensorShape.count == 1 && !name.hasSuffix(".bias")
                ? [Float](repeating: 1, count: count)
                : (0..<count).map { _ in generator.nextNormal() * Float(options.initializerRange) }
            if options.hotExpertCount > 0 {
                let hidden = options.hiddenSize
                if name == configuration.embeddingName {
                    for token in 0..<tensorShape[0] { values[token * hidden] = 1 }
                }
                for layer in shape.moeLayers.map(\.rawValue) where name == configuration.routerWeightName(layer: layer) {
                    let experts = shape.expertCounts[layer]
                    let hot = Set((0..<min(options.hotExpertCount, experts)).map { (layer * options.hotExpertCount + $0) % experts })
                    for expert in 0..<experts {
                        values[expert * hidden] =
                            hot.contains(expert) ? Float(options.hotExpertBias / Double(hidden).squareRoot()) : 0
                    }
                }
            }
            if let block = options.fp8Block, tensorShape.count == 2, name.hasSuffix(".weight"), !unquantized.contains(name) {
                let (bytes, scales) = quantizeFP8(
                    values, outputCount: tensorShape[0], inputCount: tensorShape[1], block: block)
                tensors.append(SafetensorsWriter.Tensor(name: name, shape: tensorShape, fp8E4M3: bytes))
                tensors.append(
                    SafetensorsWriter.Tensor(
                        name: name + FP8Quantization.scaleSuffix, shape: block.scaleShape(forWeight: tensorShape),
                        values: scales, storedAs: .f32))
                continue
            }
            tensors.append(SafetensorsWriter.Tensor(name: name, shape: tensorShape, values: values, storedAs: options.dtype))
        }
        try SafetensorsWriter.write(tensors, to: directory.appendingPathComponent(Checkpoint.singleFileName))
    }

    /// The config.json fields of `SparseLayerFields` (Qwen2-MoE, Qwen3-MoE) for `options`.
    static func sparseLayerFields(_ options: RandomModelOptions) -> [String: JSONValue] {
        [
            "num_experts": .int(options.expertCount), "num_experts_per_tok": .int(options.expertsPerToken),
            "moe_intermediate_size": .int(options.expertIntermediateSize),
            "intermediate_size": .int(options.intermediateSize), "decoder_sparse_step": .int(1),
            "mlp_only_layers": .array(options.denseLayers.map(JSONValue.int)),
            "norm_topk_prob": .bool(options.normalizeTopKProbabilities),
            "use_sliding_window": .bool(options.slidingWindow != nil),
            "sliding_window": options.slidingWindow.map(JSONValue.int) ?? .null,
            "router_aux_loss_coef": .float(0.001), "output_router_logits": .bool(false),
        ]
    }

    /// The config.json fields of `TransformerFields` for `options`.
    static func transformerFields(_ options: RandomModelOptions, rmsNormEpsilon: Double = 1e-6) -> [String: JSONValue] {
        var fields: [String: JSONValue] = [
            "hidden_size": .int(options.hiddenSize), "num_hidden_layers": .int(options.layerCount),
            "num_attention_heads": .int(options.attentionHeadCount),
            "num_key_value_heads": .int(options.keyValueHeadCount), "vocab_size": .int(options.vocabularySize),
            "rms_norm_eps": .float(rmsNormEpsilon),
            "rope_parameters": .object(["rope_theta": .float(options.ropeTheta), "rope_type": .string("default")]),
            "max_position_embeddings": .int(options.maxPositionEmbeddings),
            "tie_word_embeddings": .bool(options.tieWordEmbeddings), "hidden_act": .string("silu"),
            "attention_dropout": .float(0), "bos_token_id": options.bosTokenID.map(JSONValue.int) ?? .null,
        ]
        if let headDimension = options.headDimension { fields["head_dim"] = .int(headDimension) }
        switch options.eosTokenIDs.count {
        case 0: fields["eos_token_id"] = .null
        case 1: fields["eos_token_id"] = .int(options.eosTokenIDs[0])
        default: fields["eos_token_id"] = .array(options.eosTokenIDs.map(JSONValue.int))
        }
        return fields
    }
}
