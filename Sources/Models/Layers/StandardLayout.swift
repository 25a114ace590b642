import Kernels
// The checkpoint layout that Llama-descended families share (Qwen2-MoE, Qwen3-MoE, OLMoE):
// `model.embed_tokens`, `model.layers.N.{input_layernorm, self_attn.*, post_attention_layernorm, mlp.*}`,
// `model.norm`, `lm_head`, and the loading of those layers' common parts. An architecture file names
// its own MLP tensors and options on top of these.
import Tensors

/// How an architecture normalises queries and keys: which q_norm/k_norm tensors it has, and their widths.
enum QueryKeyNormKind: Sendable, Equatable {
    case none
    /// One [D] weight per projection, applied to each head (Qwen3-MoE).
    case perHead
    /// One [heads × D] weight per projection, over the whole row (OLMoE).
    case whole
}

/// The tensor names of the shared layout.
enum StandardLayout {
    /// Token embeddings, [V, H].
    static let embedding = "model.embed_tokens.weight"
    /// Final RMS norm weight, [H].
    static let finalNorm = "model.norm.weight"
    /// LM head, [V, H]; absent when embeddings are tied.
    static let lmHead = "lm_head.weight"

    static func layer(_ layer: Int) -> String { "model.layers.\(layer)" }
    /// [H]
    static func inputNorm(_ layer: Int) -> String { "\(self.layer(layer)).input_layernorm.weight" }
    /// [H]
    static func postAttentionNorm(_ layer: Int) -> String { "\(self.layer(layer)).post_attention_layernorm.weight" }
    /// `self_attn.<name>` of a layer: q_proj, k_proj, v_proj, o_proj (`.weight`, `.bias`), q_norm, k_norm.
    static func attention(_ layer: Int, _ name: String) -> String { "\(self.layer(layer)).self_attn.\(name)" }
    /// `mlp.<name>` of a layer: gate (the router), experts.E.*, gate_proj/up_proj/down_proj, shared_expert.*.
    static func mlp(_ layer: Int, _ name: String) -> String { "\(self.layer(layer)).mlp.\(name)" }
    /// The projections of expert `expert` of a MoE layer (`mlp.experts.E.{gate,up,down}_proj.weight`).
    static func expert(_ layer: Int, _ expert: Int) -> ExpertSpec.TensorNames {
        swiGLU(prefix: mlp(layer, "experts.\(expert)"))
    }
    /// The projections of a dense layer's MLP (`mlp.{gate,up,down}_proj.weight`).
    static func denseMLP(_ layer: Int) -> ExpertSpec.TensorNames { swiGLU(prefix: "\(self.layer(layer)).mlp") }
    /// The three projections of a SwiGLU MLP under `prefix` (`<prefix>.gate_proj.weight`, ...).
    static func swiGLU(prefix: String) -> ExpertSpec.TensorNames {
        ExpertSpec.TensorNames(
            gate: "\(prefix).gate_proj.weight", up: "\(prefix).up_proj.weight", down: "\(prefix).down_proj.weight")
    }

    /// The shapes of embeddings, final norm and LM head around `layers`.
    static func modelShapes(
        _ fields: TransformerFields, layers: [(name: String, shape: [Int])]
    ) -> [(name: String, shape: [Int])] {
        var shapes: [(name: String, shape: [Int])] = [(embedding, [fields.vocabularySize, fields.hiddenSize])]
        shapes += layers
        shapes.append((finalNorm, [fields.hiddenSize]))
        if !fields.tieWordEmbeddings { shapes.append((lmHead, [fields.vocabularySize, fields.hiddenSize])) }
        return shapes
    }

    /// The norms and attention tensors of one layer, with their shapes.
    static func attentionShapes(
        _ fields: TransformerFields, layer: Int, biases: Bool, queryKeyNorm: QueryKeyNormKind
    ) -> [(name: String, shape: [Int])] {
        let (hidden, queryWidth, keyValueWidth) = (fields.hiddenSize, fields.queryWidth, fields.keyValueWidth)
        var shapes: [(name: String, shape: [Int])] = [
            (inputNorm(layer), [hidden]), (postAttentionNorm(layer), [hidden]),
            (attention(layer, "q_proj.weight"), [queryWidth, hidden]),
            (attention(layer, "k_proj.weight"), [keyValueWidth, hidden]),
            (attention(layer, "v_proj.weight"), [keyValueWidth, hidden]),
            (attention(layer, "o_proj.weight"), [hidden, queryWidth]),
        ]
        if biases {
            shapes += [
                (attention(layer, "q_proj.bias"), [queryWidth]), (attention(layer, "k_proj.bias"), [keyValueWidth]),
                (attention(layer, "v_proj.bias"), [keyValueWidth]),
            ]
        }
        switch queryKeyNorm {
        case .none: break
        case .perHead:
            shapes += [
                (attention(layer, "q_norm.weight"), [fields.headDimension]),
                (attention(layer, "k_norm.weight"), [fields.headDimension]),
            ]
        case .whole:
            shapes += [
                (attention(layer, "q_norm.weight"), [queryWidth]), (attention(layer, "k_norm.weight"), [keyValueWidth]),
            ]
        }
        return shapes
    }

    /// The shapes of a SwiGLU MLP of width `intermediate` under `names`.
    static func swiGLUShapes(
        _ names: ExpertSpec.TensorNames, hidden: Int, intermediate: Int
    ) -> [(name: String, shape: [Int])] {
        [(names.gate, [intermediate, hidden]), (names.up, [intermediate, hidden]), (names.down, [hidden, intermediate])]
    }

    /// The router (`mlp.gate.weight`, [E, H]) and the `expertCount` experts of MoE layer `layer`, with their shapes.
    static func routedExpertShapes(
        _ fields: TransformerFields, layer: Int, expertCount: Int, intermediate: Int
    ) -> [(name: String, shape: [Int])] {
        var shapes: [(name: String, shape: [Int])] = [(mlp(layer, "gate.weight"), [expertCount, fields.hiddenSize])]
        for expert in 0..<expertCount {
            shapes += swiGLUShapes(self.expert(layer, expert), hidden: fields.hiddenSize, intermediate: intermediate)
        }
        return shapes
    }

    /// The router of MoE layer `layer` (`mlp.gate.weight`): softmax over all experts, top-k, `policy`.
    static func loadRouter(
        _ checkpoint: Checkpoint, layer: Int, expertCount: Int, expertsPerToken: Int, renormalize: Bool
    ) throws(ModelError) -> Router {
        Router(
            weight: try checkpoint.weight(named: mlp(layer, "gate.weight")), expertCount: expertCount,
            expertsPerToken: expertsPerToken, policy: RoutingPolicy(renormalize: renormalize))
    }

    /// The key and value projection weights of every layer.
    static func keyValueProjectionNames(layerCount: Int) -> [String] {
        (0..<layerCount).flatMap { [attention($0, "k_proj.weight"), attention($0, "v_proj.weight")] }
    }

    /// The attention of `layer` as the shared layout stores it; RoPE rotates the first `rotaryDimension`
    /// dimensions of each head (nil: all of them).
    static func loadAttention(
        _ checkpoint: Checkpoint, layer: Int, fields: TransformerFields, biases: Bool,
        queryKeyNorm: QueryKeyNormKind, clip: Float? = nil, window: Int?, rotaryDimension: Int? = nil,
        arithmetic: BFloat16Arithmetic
    ) throws(ModelError) -> Attention {
        var options = AttentionOptions(normEpsilon: Float(fields.rmsNormEpsilon), clip: clip)
        if biases {
            options.queryBias = try checkpoint.tensor(named: attention(layer, "q_proj.bias"))
            options.keyBias = try checkpoint.tensor(named: attention(layer, "k_proj.bias"))
            options.valueBias = try checkpoint.tensor(named: attention(layer, "v_proj.bias"))
        }
        // The weights' widths (checked against tensorShapes) say whether a norm is per head or whole.
        if queryKeyNorm != .none {
            options.queryNorm = try checkpoint.tensor(named: attention(layer, "q_norm.weight"))
            options.keyNorm = try checkpoint.tensor(named: attention(layer, "k_norm.weight"))
        }
        return Attention(
            queryWeight: try checkpoint.weight(named: attention(layer, "q_proj.weight")),
            keyWeight: try checkpoint.weight(named: attention(layer, "k_proj.weight")),
            valueWeight: try checkpoint.weight(named: attention(layer, "v_proj.weight")),
            outputWeight: try checkpoint.weight(named: attention(layer, "o_proj.weight")),
            shape: fields.attentionShape(window: window),
            rotary: RotaryEmbedding(
                headDimension: fields.headDimension, theta: fields.ropeTheta, rotaryDimension: rotaryDimension),
            options: options,
            hiddenSize: fields.hiddenSize, arithmetic: arithmetic)
    }

    /// A SwiGLU MLP under `names`.
    static func loadMLP(
        _ checkpoint: Checkpoint, _ names: ExpertSpec.TensorNames, arithmetic: BFloat16Arithmetic
    ) throws(ModelError) -> DenseMLP {
        DenseMLP(
            gate: try checkpoint.weight(named: names.gate), up: try checkpoint.weight(named: names.up),
            down: try checkpoint.weight(named: names.down), arithmetic: arithmetic)
    }

    /// A decoder layer of the shared layout around `attention` and `feedForward`.
    static func decoderLayer(
        _ checkpoint: Checkpoint, layer: Int, fields: TransformerFields, attention: SelfAttention,
        feedForward: FeedForward
    ) throws(ModelError) -> DecoderLayer {
        DecoderLayer(
            index: layer, inputNorm: try checkpoint.tensor(named: inputNorm(layer)), attention: attention,
            postAttentionNorm: try checkpoint.tensor(named: postAttentionNorm(layer)), feedForward: feedForward,
            epsilon: Float(fields.rmsNormEpsilon))
    }

    /// The model whose layer l has the shared layout around `build(l)`'s attention and feed-forward
    /// block, with ``parts(_:fields:layers:)`` around the layers (every architecture's `assemble`).
    static func stack(
        _ checkpoint: Checkpoint, fields: TransformerFields,
        layer build: (Int) throws(ModelError) -> (attention: SelfAttention, feedForward: FeedForward)
    ) throws(ModelError) -> DecoderStackParts {
        var layers: [DecoderLayer] = []
        for layer in 0..<fields.layerCount {
            let (attention, feedForward) = try build(layer)
            layers.append(
                try decoderLayer(checkpoint, layer: layer, fields: fields, attention: attention, feedForward: feedForward))
        }
        return try parts(checkpoint, fields: fields, layers: layers)
    }

    /// The model around `layers`: embeddings, final norm, LM head (the embeddings when tied).
    static func parts(
        _ checkpoint: Checkpoint, fields: TransformerFields, layers: [DecoderLayer]
    ) throws(ModelError) -> DecoderStackParts {
        let embedding = try checkpoint.weight(named: embedding)
        return DecoderStackParts(
            embedding: embedding, layers: layers, finalNorm: try checkpoint.tensor(named: finalNorm),
            finalNormEpsilon: Float(fields.rmsNormEpsilon),
            lmHead: fields.tieWordEmbeddings ? embedding : try checkpoint.weight(named: lmHead))
    }
}
