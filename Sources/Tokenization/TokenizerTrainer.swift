// Trains a small SentencePiece-style BPE tokenizer for synthetic models (`switchyard make-model`).
public import Foundation

/// Trains Llama-style BPE tokenizers on a built-in English, code and multilingual corpus.
public enum TokenizerTrainer {
    /// The tokens every trained vocabulary starts with, at ids 0, 1 and 2.
    static let specialTokens = ["<unk>", "<s>", "</s>"]
    static let metaspace: Unicode.Scalar = "▁"

    /// Trains a SentencePiece-style BPE tokenizer with exactly `vocabularySize` vocabulary entries.
    ///
    /// Layout: `<unk>`=0, `<s>`=1, `</s>`=2, `<0x00>`…`<0xFF>` = 3…258, then the most frequent corpus
    /// characters, then tokens learned by merging the most frequent adjacent pair (ties broken by the
    /// pair's UTF-8 bytes), until the vocabulary is full; if the corpus runs out of pairs first, the
    /// rest is `<reserved_0>`, `<reserved_1>`, … (plain entries no merge produces). Metaspace "▁" (prepend "first", no split),
    /// byte fallback, a TemplateProcessing post-processor adding `<s>`, and a tokenizer_config.json in the
    /// LlamaTokenizerFast style (add_bos_token true) that Hugging Face `AutoTokenizer` loads.
    /// Deterministic: the same size always gives the same bytes.
    ///
    /// - Throws: `TokenizerError` if `vocabularySize` is not between 300 and 2^20.
    public static func sentencePieceBPE(vocabularySize: Int) throws -> (tokenizerJSON: Data, tokenizerConfigJSON: Data)
    {
        let minimum = 300
        let maximum = 1 << 20
        guard vocabularySize >= minimum, vocabularySize <= maximum else {
            throw TokenizerError(
                file: "TokenizerTrainer", field: "vocabularySize",
                problem:
                    "is \(vocabularySize), but must be between \(minimum) (3 special tokens, 256 byte tokens and some pieces) and \(maximum)"
            )
        }
        var tokens = specialTokens + (0...255).map { BPEModel.byteTokenName(UInt8($0)) }
        var ids: [ExactString: Int] = [:]
        for (id, token) in tokens.enumerated() { ids[ExactString(token)] = id }

        // Words as Metaspace sees them: spaces become "▁", which starts every word.
        var wordCounts: [ExactString: Int] = [:]
        for line in TrainingCorpus.text.split(separator: "\n", omittingEmptySubsequences: false) {
            var word = String.UnicodeScalarView()
            func flush() {
                if !word.isEmpty { wordCounts[ExactString(String(word)), default: 0] += 1 }
                word = String.UnicodeScalarView()
            }
            word.append(metaspace)
            for scalar in line.unicodeScalars {
                if scalar == " " {
                    flush()
                    word.append(metaspace)
                } else {
                    word.append(scalar)
                }
            }
            flush()
        }
        let words = wordCounts.keys.sorted { $0.string.utf8.lexicographicallyPrecedes($1.string.utf8) }

        // Alphabet: the most frequent characters; rarer ones are left to byte fallback.
        var scalarCounts: [Unicode.Scalar: Int] = [:]
        for word in words {
            for scalar in word.string.unicodeScalars { scalarCounts[scalar, default: 0] += wordCounts[word] ?? 0 }
        }
        let alphabetBudget = (vocabularySize - tokens.count) / 2
        let alphabet = scalarCounts.sorted { ($0.value, $1.key.value) > ($1.value, $0.key.value) }.prefix(
            alphabetBudget)
        for (scalar, _) in alphabet.sorted(by: { $0.key.value < $1.key.value })
        where ids[ExactString(String(scalar))] == nil {
            ids[ExactString(String(scalar))] = tokens.count
            tokens.append(String(scalar))
        }

        // Each word as symbol ids; -1 marks a character left to byte fallback, which never merges.
        let symbols: [[Int]] = words.map { word in word.string.unicodeScalars.map { ids[ExactString(String($0))] ?? -1 }
        }
        let counts = words.map { wordCounts[$0] ?? 0 }
        let merges = learnMerges(
            words: symbols, counts: counts, tokens: &tokens, ids: &ids, vocabularySize: vocabularySize)
        // The corpus ran out of pairs: fill up with reserved tokens, which no merge produces, so the
        // vocabulary (and a model's embedding table) has the requested size without changing encodings.
        fillReserved(tokens: &tokens, ids: &ids, upTo: vocabularySize)
        return (
            Data(tokenizerJSON(tokens: tokens, merges: merges.map { (tokens[$0.0], tokens[$0.1]) }).utf8),
            Data(tokenizerConfigJSON().utf8)
        )
    }

    /// Appends `<reserved_0>`, `<reserved_1>`, ... (skipping names taken) until there are `count` tokens.
    static func fillReserved(tokens: inout [String], ids: inout [ExactString: Int], upTo count: Int) {
        var reserved = 0
        while tokens.count < count {
            let name = "<reserved_\(reserved)>"
            reserved += 1
            guard ids[ExactString(name)] == nil else { continue }
            ids[ExactString(name)] = tokens.count
            tokens.append(name)
        }
    }

    /// Learns BPE merges: repeatedly merges the most frequent adjacent pair of symbols over `words`
    /// (each seen `counts[i]` times; a symbol -1 never merges), ties broken by the pair's text, then
    /// the smaller ids, appending each new token, until there are `vocabularySize` tokens or no pairs.
    /// - Returns: the merges, as pairs of token ids, in order.
    static func learnMerges(
        words: [[Int]], counts: [Int], tokens: inout [String], ids: inout [ExactString: Int], vocabularySize: Int
    ) -> [(Int, Int)] {
        var symbols = words
        var merges: [(Int, Int)] = []
        while tokens.count < vocabularySize {
            var pairCounts: [Int64: Int] = [:]
            for (wordIndex, word) in symbols.enumerated() where word.count > 1 {
                for index in 0..<(word.count - 1) where word[index] >= 0 && word[index + 1] >= 0 {
                    pairCounts[Int64(word[index]) << 32 | Int64(word[index + 1]), default: 0] += counts[wordIndex]
                }
            }
            let best = pairCounts.max { lhs, rhs in
                if lhs.value != rhs.value { return lhs.value < rhs.value }
                // Ties: prefer the pair whose concatenated text sorts first, then the smaller ids.
                let left = pairText(lhs.key, tokens)
                let right = pairText(rhs.key, tokens)
                if !left.utf8.elementsEqual(right.utf8) { return right.utf8.lexicographicallyPrecedes(left.utf8) }
                return lhs.key > rhs.key
            }
            guard let best else { break }
            let left = Int(best.key >> 32)
            let right = Int(best.key & 0xFFFF_FFFF)
            let mergedText = tokens[left] + tokens[right]
            let merged: Int
            if let existing = ids[ExactString(mergedText)] {
                merged = existing
            } else {
                merged = tokens.count
                ids[ExactString(mergedText)] = merged
                tokens.append(mergedText)
            }
            merges.append((left, right))
            for wordIndex in symbols.indices where symbols[wordIndex].count > 1 {
                var word = symbols[wordIndex]
                var index = 0
                while index < word.count - 1 {
                    if word[index] == left && word[index + 1] == right {
                        word[index] = merged
                        word.remove(at: index + 1)
                    }
                    index += 1
                }
                symbols[wordIndex] = word
            }
        }
        return merges
    }

    private static func pairText(_ key: Int64, _ tokens: [String]) -> String {
        tokens[Int(key >> 32)] + tokens[Int(key & 0xFFFF_FFFF)]
    }

    // MARK: Serialization (key order as Hugging Face writes it)

    private static func addedTokensJSON(indent: String) -> [String] {
        specialTokens.enumerated().map { id, content in
            "\(indent){\"id\": \(id), \"content\": \(quoted(content)), \"single_word\": false, \"lstrip\": false, \"rstrip\": false, \"normalized\": false, \"special\": true}"
        }
    }

    static func tokenizerJSON(tokens: [String], merges: [(String, String)]) -> String {
        let vocab = tokens.enumerated().map { "    \(quoted($0.element)): \($0.offset)" }.joined(separator: ",\n")
        let mergeLines = merges.map { "    [\(quoted($0.0)), \(quoted($0.1))]" }.joined(separator: ",\n")
        return """
            {
              "version": "1.0",
              "truncation": null,
              "padding": null,
              "added_tokens": [
            \(addedTokensJSON(indent: "    ").joined(separator: ",\n"))
              ],
              "normalizer": null,
              "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false},
              "post_processor": {
                "type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}
              },
              "decoder": {
                "type": "Sequence",
                "decoders": [
                  {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
                  {"type": "ByteFallback"},
                  {"type": "Fuse"},
                  {"type": "Strip", "content": " ", "start": 1, "stop": 0}
                ]
              },
              "model": {
                "type": "BPE",
                "dropout": null,
                "unk_token": "<unk>",
                "continuing_subword_prefix": null,
                "end_of_word_suffix": null,
                "fuse_unk": true,
                "byte_fallback": true,
                "ignore_merges": false,
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

    static func tokenizerConfigJSON() -> String {
        let decoderEntries = specialTokens.enumerated().map { id, content in
            "    \"\(id)\": {\"content\": \(quoted(content)), \"lstrip\": false, \"normalized\": false, \"rstrip\": false, \"single_word\": false, \"special\": true}"
        }
        return """
            {
              "add_bos_token": true,
              "add_eos_token": false,
              "added_tokens_decoder": {
            \(decoderEntries.joined(separator: ",\n"))
              },
              "bos_token": "<s>",
              "clean_up_tokenization_spaces": false,
              "eos_token": "</s>",
              "legacy": false,
              "model_max_length": 4096,
              "pad_token": null,
              "tokenizer_class": "LlamaTokenizerFast",
              "unk_token": "<unk>"
            }

            """
    }

    /// A JSON string literal: quotes, backslashes and control characters escaped, everything else as UTF-8.
    static func quoted(_ text: String) -> String {
        var output = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": output += "\\\""
            case "\\": output += "\\\\"
            case "\n": output += "\\n"
            case "\r": output += "\\r"
            case "\t": output += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                output += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: output.unicodeScalars.append(scalar)
            }
        }
        return output + "\""
    }
}
