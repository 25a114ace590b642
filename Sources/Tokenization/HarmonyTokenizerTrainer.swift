// A small tokenizer of gpt-oss's shape for synthetic gpt-oss models (`switchyard make-model --arch
// gpt_oss`): a byte-level BPE behind the o200k pre-tokenizer regex, with the harmony special tokens, as
// transformers' GptOssConverter writes the o200k_harmony tokenizer.json of the released checkpoints.
public import Foundation

extension PreTokenizer {
    /// tiktoken's o200k_base (and o200k_harmony) word pattern, which gpt-oss's tokenizer.json splits with
    /// (`Split`, behavior `Isolated`) before a `ByteLevel` without its own regex.
    static let o200kPattern =
        #"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?"#
        + #"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?"#
        + #"|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
}

extension TokenizerTrainer {
    /// gpt-oss's special tokens in the order of their ids (199998 ... 200018 in the released vocabulary),
    /// `<|reserved_…|>` filling the ids harmony does not use.
    public static let harmonySpecialTokens = [
        "<|startoftext|>", "<|endoftext|>", "<|reserved_200000|>", "<|reserved_200001|>", "<|return|>",
        "<|constrain|>", "<|reserved_200004|>", "<|channel|>", "<|start|>", "<|end|>", "<|message|>",
        "<|reserved_200009|>", "<|reserved_200010|>", "<|reserved_200011|>", "<|call|>", "<|reserved_200013|>",
        "<|reserved_200014|>", "<|reserved_200015|>", "<|reserved_200016|>", "<|reserved_200017|>",
        "<|endofprompt|>",
    ]

    /// A trained tokenizer of gpt-oss's shape, with the ids a checkpoint's config needs.
    public struct HarmonyTokenizerFiles: Sendable {
        public let tokenizerJSON: Data
        public let tokenizerConfigJSON: Data
        /// `<|startoftext|>`: bos_token_id.
        public let startOfTextID: Int
        /// `<|endoftext|>`: pad_token_id, and an end of sequence.
        public let endOfTextID: Int
        /// `<|return|>`: the eos_token of tokenizer_config.json (an answer is complete).
        public let returnID: Int
        /// `<|call|>`: a tool call ends the turn.
        public let callID: Int
    }

    /// Trains a tokenizer shaped as gpt-oss's (o200k_harmony) with exactly `vocabularySize` ids.
    ///
    /// Layout: ids 0…255 the bytes (as ByteLevel's printable stand-ins), then tokens learned by merging
    /// the most frequent adjacent pair within the built-in corpus's o200k words (ties broken as
    /// `sentencePieceBPE`; `<reserved_N>` entries if the corpus runs out of pairs), then the 21
    /// `harmonySpecialTokens` in gpt-oss's order, the last `vocabularySize - 21 …` ids, as the released
    /// vocabulary ends in them. tokenizer.json: BPE with `ignore_merges`, the o200k `Split` then
    /// `ByteLevel` (no regex), ByteLevel decoder and post-processor; tokenizer_config.json as released
    /// (`PreTrainedTokenizerFast`, bos `<|startoftext|>`, eos `<|return|>`, pad `<|endoftext|>`).
    /// Deterministic: the same size always gives the same bytes.
    ///
    /// - Throws: `TokenizerError` if `vocabularySize` is not between 300 and 2^20.
    public static func harmonyBPE(vocabularySize: Int) throws -> HarmonyTokenizerFiles {
        let minimum = 300
        let maximum = 1 << 20
        guard vocabularySize >= minimum, vocabularySize <= maximum else {
            throw TokenizerError(
                file: "TokenizerTrainer", field: "vocabularySize",
                problem:
                    "is \(vocabularySize), but must be between \(minimum) (256 byte tokens, 21 special tokens and some merges) and \(maximum)"
            )
        }
        let wordVocabularySize = vocabularySize - harmonySpecialTokens.count
        var tokens = (0...255).map { String(ByteLevel.byteToScalar[$0]) }
        var ids: [ExactString: Int] = [:]
        for (id, token) in tokens.enumerated() { ids[ExactString(token)] = id }

        // Words as the o200k Split sees them, then as ByteLevel writes them (one stand-in per UTF-8 byte).
        let pattern = try TextPattern(regex: PreTokenizer.o200kPattern)
        let text = TrainingCorpus.text
        var wordCounts: [ExactString: Int] = [:]
        for segment in pattern.segments(of: text) {
            let word = String(text.unicodeScalars[segment.range])
            guard !word.isEmpty else { continue }
            wordCounts[ExactString(ByteLevel.encode(word)), default: 0] += 1
        }
        let words = wordCounts.keys.sorted { $0.string.utf8.lexicographicallyPrecedes($1.string.utf8) }
        let symbols = words.map { word in word.string.unicodeScalars.map { ids[ExactString(String($0))] ?? -1 } }
        let merges = learnMerges(
            words: symbols, counts: words.map { wordCounts[$0] ?? 0 }, tokens: &tokens, ids: &ids,
            vocabularySize: wordVocabularySize)
        fillReserved(tokens: &tokens, ids: &ids, upTo: wordVocabularySize)

        let json = harmonyTokenizerJSON(
            tokens: tokens, merges: merges.map { (tokens[$0.0], tokens[$0.1]) }, firstSpecialID: wordVocabularySize)
        func id(_ token: String) -> Int {
            guard let offset = harmonySpecialTokens.firstIndex(of: token) else {
                preconditionFailure("\(token) is one of harmonySpecialTokens")
            }
            return wordVocabularySize + offset
        }
        return HarmonyTokenizerFiles(
            tokenizerJSON: Data(json.utf8),
            tokenizerConfigJSON: Data(harmonyTokenizerConfigJSON(firstSpecialID: wordVocabularySize).utf8),
            startOfTextID: id("<|startoftext|>"), endOfTextID: id("<|endoftext|>"), returnID: id("<|return|>"),
            callID: id("<|call|>"))
    }

    static func harmonyTokenizerJSON(tokens: [String], merges: [(String, String)], firstSpecialID: Int) -> String {
        let added = harmonySpecialTokens.enumerated().map { offset, content in
            "    {\"id\": \(firstSpecialID + offset), \"content\": \(quoted(content)), \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}"
        }
        let vocab = tokens.enumerated().map { "    \(quoted($0.element)): \($0.offset)" }.joined(separator: ",\n")
        let mergeLines = merges.map { "    [\(quoted($0.0)), \(quoted($0.1))]" }.joined(separator: ",\n")
        return """
            {
              "version": "1.0",
              "truncation": null,
              "padding": null,
              "added_tokens": [
            \(added.joined(separator: ",\n"))
              ],
              "normalizer": null,
              "pre_tokenizer": {
                "type": "Sequence",
                "pretokenizers": [
                  {"type": "Split", "pattern": {"Regex": \(quoted(PreTokenizer.o200kPattern))}, "behavior": "Isolated", "invert": false},
                  {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false}
                ]
              },
              "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
              "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
              "model": {
                "type": "BPE",
                "dropout": null,
                "unk_token": null,
                "continuing_subword_prefix": null,
                "end_of_word_suffix": null,
                "fuse_unk": false,
                "byte_fallback": false,
                "ignore_merges": true,
                "vocab": {
            \(vocab)
                },
                "merges": [
            \(mergeLines)
                ]
              }
            }

            """
    }

    static func harmonyTokenizerConfigJSON(firstSpecialID: Int) -> String {
        let decoderEntries = harmonySpecialTokens.enumerated().map { offset, content in
            "    \"\(firstSpecialID + offset)\": {\"content\": \(quoted(content)), \"lstrip\": false, \"normalized\": false, \"rstrip\": false, \"single_word\": false, \"special\": true}"
        }
        return """
            {
              "added_tokens_decoder": {
            \(decoderEntries.joined(separator: ",\n"))
              },
              "bos_token": "<|startoftext|>",
              "clean_up_tokenization_spaces": false,
              "eos_token": "<|return|>",
              "extra_special_tokens": {},
              "model_input_names": ["input_ids", "attention_mask"],
              "model_max_length": 1000000000000000019884624838656,
              "pad_token": "<|endoftext|>",
              "tokenizer_class": "PreTrainedTokenizerFast"
            }

            """
    }
}
