// Tokenization: Hugging Face tokenizer.json BPE tokenizers, token-exact with `tokenizers` and transformers 5.
//
// Vocabulary (Hugging Face's words, used throughout this module):
// - added token: a string from `added_tokens` (special like `<s>` or not), matched in the text first
//   and mapped straight to its id; the text between added tokens goes through the pipeline below.
// - normalizer: rewrites each such piece (NFC, Prepend "▁", Replace " " → "▁", ...).
// - pre-tokenizer: splits a normalized piece into words (Metaspace, ByteLevel, Split regex, Digits).
// - model: BPE, which turns one word into ids by applying merges by rank, with byte fallback.
// - post-processor: adds BOS/EOS around the sequence when special tokens are requested.
// - decoder: turns token strings back into text (Metaspace, ByteLevel, ByteFallback, Fuse, Strip).
public import Foundation

/// A byte-pair-encoding tokenizer loaded from `tokenizer.json` (and `tokenizer_config.json`).
///
/// Immutable after loading and safe to share across threads; `encode` caches BPE results per word
/// behind a lock.
public final class Tokenizer: Sendable {
    private let normalizer: Normalizer?
    private let preTokenizer: PreTokenizer?
    private let model: BPEModel
    private let postProcessor: PostProcessor?
    private let decoder: TokenDecoder?
    /// What `token(for:)` returns for an added token: its content, normalized if the token is normalized.
    private let addedTokenTextByID: [Int32: String]
    private let addedTokenIDs: [ExactString: Int32]
    private let specialTokenContents: Set<ExactString>
    private let rawMatcher: AddedTokenMatcher
    private let normalizedMatcher: AddedTokenMatcher

    /// The number of ids: the largest id over the model vocabulary and the added tokens, plus one.
    public let vocabularySize: Int
    /// The beginning-of-sequence token id, from tokenizer_config.json `bos_token` (or the post-processor's leading token).
    public let bosTokenID: Int32?
    /// The end-of-sequence token id, from tokenizer_config.json `eos_token`.
    public let eosTokenID: Int32?
    /// The chat template: `chat_template.jinja` if present, else tokenizer_config.json `chat_template`
    /// (a string, or the `"default"` entry of a list of `{name, template}`), as transformers 5 loads it.
    public let chatTemplate: String?
    /// The named special tokens as strings (`bos_token`, `eos_token`, `unk_token`, `pad_token`, ...), as
    /// transformers' `special_tokens_map` passes them to chat templates.
    public let specialTokenStrings: [String: String]
    /// `chatTemplate` parsed once at load; its error is reported when a conversation is rendered.
    let parsedChatTemplate: Result<ChatTemplate, ChatTemplateError>?

    /// Loads `tokenizer.json` and, if present, `tokenizer_config.json` from a model directory.
    ///
    /// - Throws: `TokenizerError` if `tokenizer.json` is missing, unreadable or uses an unsupported component.
    public convenience init(directory: URL) throws {
        let tokenizerURL = directory.appendingPathComponent("tokenizer.json")
        let configURL = directory.appendingPathComponent("tokenizer_config.json")
        let tokenizerJSON: Data
        do {
            tokenizerJSON = try Data(contentsOf: tokenizerURL)
        } catch {
            throw TokenizerError(
                file: tokenizerURL.path, field: "", problem: "cannot be read (\(error.localizedDescription))")
        }
        var configJSON: Data?
        if FileManager.default.fileExists(atPath: configURL.path) {
            do {
                configJSON = try Data(contentsOf: configURL)
            } catch {
                throw TokenizerError(
                    file: configURL.path, field: "", problem: "cannot be read (\(error.localizedDescription))")
            }
        }
        // transformers 5 saves the template as chat_template.jinja, which takes precedence over the config.
        let templateURL = directory.appendingPathComponent("chat_template.jinja")
        var chatTemplateJinja: String?
        if FileManager.default.fileExists(atPath: templateURL.path) {
            do {
                chatTemplateJinja = try String(contentsOf: templateURL, encoding: .utf8)
            } catch {
                throw TokenizerError(
                    file: templateURL.path, field: "",
                    problem: "cannot be read as UTF-8 (\(error.localizedDescription))")
            }
        }
        try self.init(
            tokenizerJSON: tokenizerJSON, tokenizerConfigJSON: configJSON, chatTemplateJinja: chatTemplateJinja)
    }

    /// Builds a tokenizer from the bytes of `tokenizer.json` and, optionally, `tokenizer_config.json`.
    ///
    /// Follows transformers 5 `AutoTokenizer.from_pretrained`: the post-processor in tokenizer.json
    /// decides BOS/EOS (transformers 5 ignores `add_bos_token`/`add_eos_token` when tokenizer.json exists),
    /// and a `tokenizer_class` of `LlamaTokenizer`/`Qwen2Tokenizer` rebuilds the normalizer, pre-tokenizer
    /// and decoder the way those classes do.
    ///
    /// `chatTemplateJinja` is the text of a `chat_template.jinja` file; it overrides the config's `chat_template`.
    ///
    /// - Throws: `TokenizerError` naming the file and field that is malformed or unsupported.
    public init(tokenizerJSON: Data, tokenizerConfigJSON: Data?, chatTemplateJinja: String? = nil) throws {
        let root = JSONField(try JSONValue.parse(tokenizerJSON, file: "tokenizer.json"), file: "tokenizer.json")
        _ = try root.object()  // both files must be JSON objects
        let config = try tokenizerConfigJSON.map {
            JSONField(try JSONValue.parse($0, file: "tokenizer_config.json"), file: "tokenizer_config.json")
        }
        if let config { _ = try config.object() }
        let pipeline = try Self.pipeline(root: root, config: config)

        normalizer = pipeline.normalizer
        preTokenizer = pipeline.preTokenizer
        decoder = pipeline.decoder
        let model = try BPEModel(json: root["model"], overrideByteFallback: pipeline.byteFallback)
        self.model = model
        let postProcessor = try root["post_processor"].isNull ? nil : PostProcessor(json: root["post_processor"])
        self.postProcessor = postProcessor

        var addedTokens =
            try root["added_tokens"].isNull ? [] : root["added_tokens"].array().map(AddedToken.init(json:))
        var largestID = max(model.tokensByID.keys.max() ?? -1, addedTokens.map(\.id).max() ?? -1)
        // transformers adds the named special tokens of tokenizer_config.json to the added vocabulary
        // when tokenizer.json does not already list them.
        let named = try Self.namedSpecialTokens(config: config, tokenizerClass: pipeline.tokenizerClass)
        for content in named.all where !addedTokens.contains(where: { ExactString($0.content) == ExactString(content) })
        {
            let id: Int32
            if let existing = model.vocabulary[ExactString(content)] {
                id = existing
            } else {
                largestID += 1
                id = Int32(clamping: largestID)
            }
            addedTokens.append(AddedToken(id: id, content: content, isSpecial: true))
        }
        vocabularySize = Int(largestID) + 1

        let normalizer = pipeline.normalizer
        var textByID: [Int32: String] = [:]
        var byContent: [ExactString: Int32] = [:]
        for token in addedTokens {
            // tokenizers reports a normalized added token by its normalized form ("Ɐ" under Lowercase is "ɐ").
            textByID[token.id] =
                token.isNormalized ? (normalizer?.normalize(token.content) ?? token.content) : token.content
            byContent[ExactString(token.content)] = token.id
        }
        addedTokenTextByID = textByID
        addedTokenIDs = byContent
        specialTokenContents = Set(addedTokens.filter(\.isSpecial).map { ExactString($0.content) })
        rawMatcher = AddedTokenMatcher(tokens: addedTokens.filter { !$0.isNormalized }.map { ($0.content, $0) })
        normalizedMatcher = AddedTokenMatcher(
            tokens: addedTokens.filter(\.isNormalized).map { (normalizer?.normalize($0.content) ?? $0.content, $0) })

        let id = { (content: String?) -> Int32? in
            guard let content else { return nil }
            return byContent[ExactString(content)] ?? model.vocabulary[ExactString(content)]
        }
        let leadingID = config == nil ? postProcessor?.leadingSpecialIDs.first : nil
        bosTokenID = id(named.bos) ?? leadingID
        eosTokenID = id(named.eos)
        specialTokenStrings = named.byName
        let template = try chatTemplateJinja ?? config.flatMap(Self.configChatTemplate)
        chatTemplate = template
        parsedChatTemplate = template.map { source in
            Result { () throws(ChatTemplateError) in try ChatTemplate(source) }
        }
    }

    /// tokenizer_config.json `chat_template`: a string, or a list of `{name, template}` whose "default" is used.
    private static func configChatTemplate(_ config: JSONField) throws -> String? {
        let field = config["chat_template"]
        switch field.value {
        case .null:
            return nil
        case .string(let template):
            return template
        case .array:
            for entry in try field.array() where try entry["name"].string() == "default" {
                return try entry["template"].string()
            }
            return nil
        default:
            throw field.error("is \(field.value.typeName), but must be a string or a list of {name, template}")
        }
    }

    // MARK: Encoding

    /// The token ids of `text`: Hugging Face `tokenizer(text)["input_ids"]`.
    ///
    /// Never fails: a character that is neither in the vocabulary nor covered by byte fallback becomes
    /// `unk_token`, or is dropped when the model has none (where Hugging Face raises an error).
    ///
    /// - Parameter addSpecialTokens: apply the post-processor (BOS/EOS) as transformers does by default.
    public func encode(_ text: String, addSpecialTokens: Bool = true) -> [Int32] {
        var ids: [Int32] = []
        // As in `tokenizers`: split on unnormalized added tokens in the raw text, normalize each piece
        // in between, split that on normalized added tokens, then pre-tokenize and BPE each word.
        for segment in rawMatcher.split(Array(text.utf8)) {
            switch segment {
            case .token(let id):
                ids.append(id)
            case .text(let bytes, let startOffset):
                let raw = String(decoding: bytes, as: UTF8.self)
                let rawOriginPrefix = startOffset == 0 ? 1 : 0
                let (normalized, originPrefix) =
                    normalizer?.normalize(raw, originPrefix: rawOriginPrefix) ?? (raw, rawOriginPrefix)
                for inner in normalizedMatcher.split(Array(normalized.utf8)) {
                    switch inner {
                    case .token(let id):
                        ids.append(id)
                    case .text(let innerBytes, let innerOffset):
                        let scalarOffset = normalized.utf8.prefix(innerOffset).filter { $0 & 0xC0 != 0x80 }.count
                        let piece = Piece(
                            text: String(decoding: innerBytes, as: UTF8.self),
                            originPrefix: max(0, originPrefix - scalarOffset))
                        appendModelIDs(for: piece, to: &ids)
                    }
                }
            }
        }
        guard addSpecialTokens, let postProcessor else { return ids }
        return postProcessor.process(ids)
    }

    /// Pre-tokenizes one normalized piece and appends the BPE ids of each word.
    private func appendModelIDs(for piece: Piece, to ids: inout [Int32]) {
        let words = preTokenizer?.preTokenize([piece]) ?? [piece]
        for word in words where !word.text.isEmpty {
            ids.append(contentsOf: model.tokenize(word.text))
        }
    }

    // MARK: Decoding

    /// The text of `ids`: Hugging Face `tokenizer.decode(ids, skip_special_tokens:)`.
    ///
    /// Ids outside the vocabulary are skipped; invalid UTF-8 from byte tokens becomes U+FFFD.
    public func decode(_ ids: [Int32], skipSpecialTokens: Bool = false) -> String {
        let tokens = decoderInput(ids, skipSpecialTokens: skipSpecialTokens)
        guard let decoder else { return tokens.joined(separator: " ") }
        return decoder.decode(tokens).joined()
    }

    /// Whether ids appended to `ids` can still change the text of `ids` itself, not only add to it:
    /// true while byte tokens at the end can still become valid UTF-8 (see `TokenDecoder.leavesTextOpen`).
    func leavesTextOpen(_ ids: [Int32], skipSpecialTokens: Bool) -> Bool {
        decoder?.leavesTextOpen(decoderInput(ids, skipSpecialTokens: skipSpecialTokens)) ?? false
    }

    /// Whether a byte token appended to `ids` would join a byte-fallback run that `ids` ends in.
    func endsInByteRun(_ ids: [Int32], skipSpecialTokens: Bool) -> Bool {
        decoder?.endsInByteRun(decoderInput(ids, skipSpecialTokens: skipSpecialTokens)) ?? false
    }

    /// The token strings the decoder sees: unknown ids and (if asked) special tokens left out.
    private func decoderInput(_ ids: [Int32], skipSpecialTokens: Bool) -> [String] {
        var tokens: [String] = []
        tokens.reserveCapacity(ids.count)
        for id in ids {
            guard let token = token(for: id) else { continue }
            if skipSpecialTokens, specialTokenContents.contains(ExactString(token)) { continue }
            tokens.append(token)
        }
        return tokens
    }

    /// A decoder that turns ids into text one at a time, as they are generated.
    public func makeStreamingDecoder(skipSpecialTokens: Bool = true) -> StreamingDecoder {
        StreamingDecoder(tokenizer: self, skipSpecialTokens: skipSpecialTokens)
    }

    // MARK: Vocabulary

    /// Whether `content` is a special added token of this vocabulary (`special: true` in tokenizer.json).
    public func isSpecialToken(_ content: String) -> Bool {
        specialTokenContents.contains(ExactString(content))
    }

    /// The id of `token` (an added token or a model vocabulary entry), compared scalar-exactly.
    public func tokenID(for token: String) -> Int32? {
        addedTokenIDs[ExactString(token)] ?? model.vocabulary[ExactString(token)]
    }

    /// Per id (0..<vocabularySize), the bytes the token adds to a text it continues; nil for special
    /// tokens and ids no token has. Constrained decoding matches these against its grammar.
    public func tokenBytes() -> [[UInt8]?] {
        (0..<Int32(vocabularySize)).map { id in
            guard let token = token(for: id), !specialTokenContents.contains(ExactString(token)) else { return nil }
            guard let decoder else { return Array(token.utf8) }
            return decoder.bytesMidText(of: token)
        }
    }

    /// The token string of `id`, or nil if no token has that id.
    public func token(for id: Int32) -> String? {
        addedTokenTextByID[id] ?? model.tokensByID[id]
    }

    // MARK: Loading helpers

    private struct Pipeline {
        var tokenizerClass: String?
        var normalizer: Normalizer?
        var preTokenizer: PreTokenizer?
        var decoder: TokenDecoder?
        var byteFallback: Bool?
    }

    private static func pipeline(root: JSONField, config: JSONField?) throws -> Pipeline {
        let tokenizerClass = try config?["tokenizer_class"].optionalString().map {
            $0.hasSuffix("Fast") ? String($0.dropLast(4)) : $0
        }
        switch tokenizerClass {
        case "LlamaTokenizer":
            // transformers 5 LlamaTokenizer keeps only vocab, merges and post-processor from tokenizer.json
            // and rebuilds the rest: no normalizer, Metaspace without split, prepend "first" unless legacy.
            let addPrefixSpace = try config?["add_prefix_space"].bool(default: true) ?? true
            let legacy = try config?["legacy"].bool(default: false) ?? false
            let scheme: PrependScheme = addPrefixSpace ? (legacy ? .always : .first) : .never
            var steps: [TokenDecoder] = [
                .replace(TextPattern(literal: "▁"), content: " "), .byteFallback, .fuse,
            ]
            if addPrefixSpace { steps.append(.strip(content: " ", start: 1, stop: 0)) }
            return Pipeline(
                tokenizerClass: tokenizerClass, normalizer: nil,
                preTokenizer: .metaspace(replacement: "▁", prependScheme: scheme, split: false),
                decoder: .sequence(steps), byteFallback: true)
        case "Qwen2Tokenizer":
            // transformers 5 Qwen2Tokenizer rebuilds NFC + Split(its regex) + ByteLevel, without byte fallback.
            let addPrefixSpace = try config?["add_prefix_space"].bool(default: false) ?? false
            return Pipeline(
                tokenizerClass: tokenizerClass, normalizer: .nfc,
                preTokenizer: .sequence([
                    .split(try TextPattern(regex: qwen2Pattern), behavior: .isolated, invert: false),
                    .byteLevel(addPrefixSpace: addPrefixSpace, useRegex: false),
                ]),
                decoder: .byteLevel, byteFallback: false)
        default:
            return Pipeline(
                tokenizerClass: tokenizerClass,
                normalizer: try root["normalizer"].isNull ? nil : Normalizer(json: root["normalizer"]),
                preTokenizer: try root["pre_tokenizer"].isNull ? nil : PreTokenizer(json: root["pre_tokenizer"]),
                decoder: try root["decoder"].isNull ? nil : TokenDecoder(json: root["decoder"]),
                byteFallback: nil)
        }
    }

    /// The pre-tokenizer regex of transformers' `Qwen2Tokenizer`.
    static let qwen2Pattern =
        #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    private struct NamedSpecialTokens {
        var bos: String?
        var eos: String?
        var all: [String]
        var byName: [String: String] = [:]
    }

    /// bos/eos/unk/pad and extra special tokens named in tokenizer_config.json, with the class defaults.
    private static func namedSpecialTokens(config: JSONField?, tokenizerClass: String?) throws -> NamedSpecialTokens {
        guard let config else { return NamedSpecialTokens(all: []) }
        let defaults: [String: String] =
            switch tokenizerClass {
            case "LlamaTokenizer": ["bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"]
            case "Qwen2Tokenizer":
                ["eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>"]
            default: [:]
            }
        func named(_ key: String) throws -> String? {
            let field = config[key]
            if case .object(let members) = config.value, members.keys.contains(key) { return try field.tokenContent() }
            return defaults[key]
        }
        var all: [String] = []
        for key in ["bos_token", "eos_token", "unk_token", "pad_token"] {
            if let content = try named(key) { all.append(content) }
        }
        // A list of tokens, or (transformers 5 `extra_special_tokens`) a map from a name to a token.
        for key in ["additional_special_tokens", "extra_special_tokens"] {
            let field = config[key]
            switch field.value {
            case .array:
                for entry in try field.array() {
                    if let content = try entry.tokenContent() { all.append(content) }
                }
            case .object:
                for (_, entry) in try field.object().sorted(by: { $0.key < $1.key }) {
                    if let content = try entry.tokenContent() { all.append(content) }
                }
            case .null:
                break
            default:
                throw field.error(
                    "is \(field.value.typeName), but must be a list of tokens or a map from names to tokens")
            }
        }
        var byName: [String: String] = [:]
        for key in ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"] {
            byName[key] = try named(key)
        }
        return NamedSpecialTokens(bos: try named("bos_token"), eos: try named("eos_token"), all: all, byName: byName)
    }
}
