// generation_config.json: the generation defaults a Hugging Face checkpoint ships next to config.json.
public import Foundation

/// What Switchyard reads from a checkpoint's `generation_config.json`: the tokens that end generation.
///
/// transformers' `generate` and vLLM stop at every id of its `eos_token_id` (an integer or a list),
/// which instruct checkpoints use for end-of-turn tokens that config.json does not list (Llama 3's
/// `<|eot_id|>`, Qwen's `<|im_end|>`). Every other field is ignored.
public struct GenerationConfig: Sendable, Equatable {
    /// The file's name in a model directory.
    public static let fileName = "generation_config.json"

    /// `eos_token_id` as a list: empty when the file, the field or its value is missing (null).
    public var eosTokenIDs: [Int32]

    /// A configuration with the given end-of-sequence ids (none by default: a checkpoint without the file).
    public init(eosTokenIDs: [Int32] = []) {
        self.eosTokenIDs = eosTokenIDs
    }

    /// Loads `generation_config.json` from a model directory; a directory without one gives no ids.
    ///
    /// - Throws: `TokenizerError` naming the file (and the field) when it cannot be read, is not a JSON
    ///   object, or `eos_token_id` is not null, a token id or a list of token ids.
    public init(directory: URL) throws {
        let url = directory.appendingPathComponent(Self.fileName)
        guard FileManager.default.fileExists(atPath: url.path) else {
            self.init()
            return
        }
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            throw TokenizerError(file: url.path, field: "", problem: "cannot be read (\(error.localizedDescription))")
        }
        try self.init(json: data, file: url.path)
    }

    /// Parses the bytes of a `generation_config.json`; `file` names it in errors.
    ///
    /// - Throws: `TokenizerError`, as `init(directory:)`.
    public init(json: Data, file: String = GenerationConfig.fileName) throws {
        let root = JSONField(try JSONValue.parse(json, file: file), file: file)
        _ = try root.object()
        let field = root["eos_token_id"]
        let ids: [JSONField]
        switch field.value {
        case .null: ids = []
        case .number: ids = [field]
        case .array: ids = try field.array()
        default:
            throw field.error("is \(field.value.typeName), but must be a token id, a list of token ids, or null")
        }
        eosTokenIDs = try ids.map { id in
            guard case .number = id.value else {
                throw id.error("is \(id.value.typeName), but must be a token id (an integer >= 0)")
            }
            let value = try id.int()
            guard let tokenID = Int32(exactly: value), tokenID >= 0 else {
                throw id.error("is \(value), but must be a token id between 0 and \(Int32.max)")
            }
            return tokenID
        }
    }
}
