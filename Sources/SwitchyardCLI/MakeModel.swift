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
            every code path of a real checkpoint runs.
            """
    )

    @Option(help: "The architecture to make. Supported: mixtral.")
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

    @Option(help: "Expert FFN size (intermediate_size). Default: 2 × hidden.")
    var intermediate: Int?

    @Option(help: "Attention heads (num_attention_heads).")
    var heads: Int = 8

    @Option(name: .customLong("kv-heads"), help: "Key/value heads (num_key_value_heads); must divide --heads.")
    var kvHeads: Int = 2

    @Option(name: .customLong("sliding-window"), help: "Attention sliding window in tokens (default: none).")
    var slidingWindow: Int?

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
        guard arch == "mixtral" else {
            throw ValidationError("--arch is \"\(arch)\", but the supported architectures are: mixtral")
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
        guard kvHeads >= 1, heads % kvHeads == 0 else {
            throw ValidationError("--kv-heads is \(kvHeads), but must divide --heads (\(heads))")
        }
        guard hidden % heads == 0, (hidden / heads) % 2 == 0 else {
            throw ValidationError(
                "--hidden (\(hidden)) must be a multiple of --heads (\(heads)) with an even head size")
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

    func run() throws {
        let directory = URL(fileURLWithPath: out)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        var options = MixtralCheckpointOptions()
        options.hiddenSize = hidden
        options.layerCount = layers
        options.expertCount = experts
        options.expertsPerToken = topK
        options.vocabularySize = vocab
        options.intermediateSize = intermediate ?? 2 * hidden
        options.attentionHeadCount = heads
        options.keyValueHeadCount = kvHeads
        options.slidingWindow = slidingWindow
        options.maxPositionEmbeddings = maxPositions
        options.dtype = dtype == "bf16" ? .bf16 : .f32
        options.seed = seed
        options.hotExpertCount = hotExperts
        options.hotExpertBias = hotBias
        try MixtralCheckpointWriter.write(options, to: directory)
        let tokenizer = try TokenizerTrainer.sentencePieceBPE(vocabularySize: vocab)
        try tokenizer.tokenizerJSON.write(to: directory.appendingPathComponent("tokenizer.json"))
        try Self.withChatTemplate(tokenizer.tokenizerConfigJSON)
            .write(to: directory.appendingPathComponent("tokenizer_config.json"))
        print(
            "wrote a random Mixtral checkpoint to \(directory.path): \(layers) layers, \(experts) experts "
                + "(top-\(topK)), hidden \(hidden), vocab \(vocab), \(dtype)"
                + (hotExperts > 0 ? "; routers prefer \(hotExperts) experts per layer (bias \(hotBias))" : ""))
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
