// Added tokens: strings matched in the text before anything else and mapped straight to one id.

/// One entry of `tokenizer.json` `added_tokens`.
struct AddedToken: Sendable {
    let id: Int32
    let content: String
    let isSpecial: Bool
    /// Matched after normalization (in normalized text) rather than in the raw input.
    let isNormalized: Bool
    let singleWord: Bool
    let lstrip: Bool
    let rstrip: Bool

    init(json: JSONField) throws {
        let id = try json["id"].int()
        guard id >= 0, id <= Int(Int32.max) else { throw json["id"].error("is \(id), but must be a token id") }
        self.id = Int32(id)
        content = try json["content"].string()
        guard !content.isEmpty else { throw json["content"].error("is empty, but an added token needs text") }
        isSpecial = try json["special"].bool(default: false)
        // tokenizers defaults `normalized` to the opposite of `special`.
        isNormalized = try json["normalized"].bool(default: !isSpecial)
        singleWord = try json["single_word"].bool(default: false)
        lstrip = try json["lstrip"].bool(default: false)
        rstrip = try json["rstrip"].bool(default: false)
    }
}

/// Finds added tokens in text: leftmost, then longest match, like the Aho-Corasick
/// `LeftmostLongest` matcher in `tokenizers`.
struct AddedTokenMatcher: Sendable {
    private struct Candidate: Sendable {
        let bytes: [UInt8]
        let token: AddedToken
    }

    /// Candidates by first UTF-8 byte, longest first.
    private let candidatesByFirstByte: [UInt8: [Candidate]]

    init(tokens: [(pattern: String, token: AddedToken)]) {
        var table: [UInt8: [Candidate]] = [:]
        for (pattern, token) in tokens {
            let bytes = Array(pattern.utf8)
            guard let first = bytes.first else { continue }
            table[first, default: []].append(Candidate(bytes: bytes, token: token))
        }
        candidatesByFirstByte = table.mapValues { $0.sorted { $0.bytes.count > $1.bytes.count } }
    }

    var isEmpty: Bool { candidatesByFirstByte.isEmpty }

    /// A piece of the input: either an added token's id or text still to be tokenized.
    enum Segment {
        case token(Int32)
        case text([UInt8], startOffset: Int)
    }

    /// Splits `text` (UTF-8) into added tokens and the text between them.
    func split(_ text: [UInt8], baseOffset: Int = 0) -> [Segment] {
        guard !isEmpty else { return text.isEmpty ? [] : [.text(text, startOffset: baseOffset)] }
        var segments: [Segment] = []
        var consumed = 0  // end of the previous match (after rstrip)
        var position = 0
        while position < text.count {
            guard let candidates = candidatesByFirstByte[text[position]],
                let match = candidates.first(where: { text[position...].starts(with: $0.bytes) })
            else {
                position += 1
                continue
            }
            var start = position
            var stop = position + match.bytes.count
            if match.token.singleWord {
                let before = start == 0 || !(Self.lastScalar(text[..<start])?.isWordCharacter ?? false)
                let after = stop == text.count || !(Self.firstScalar(text[stop...])?.isWordCharacter ?? false)
                guard before, after else {
                    position = stop
                    continue
                }
            }
            if match.token.lstrip {
                while start > consumed, let scalar = Self.lastScalar(text[consumed..<start]), scalar.isWhitespace {
                    start -= String(scalar).utf8.count
                }
            }
            if match.token.rstrip {
                while stop < text.count, let scalar = Self.firstScalar(text[stop...]), scalar.isWhitespace {
                    stop += String(scalar).utf8.count
                }
            }
            if consumed < start {
                segments.append(.text(Array(text[consumed..<start]), startOffset: baseOffset + consumed))
            }
            segments.append(.token(match.token.id))
            consumed = stop
            position = stop
        }
        if consumed < text.count {
            segments.append(.text(Array(text[consumed...]), startOffset: baseOffset + consumed))
        }
        return segments
    }

    private static func firstScalar(_ bytes: ArraySlice<UInt8>) -> Unicode.Scalar? {
        String(decoding: bytes.prefix(4), as: UTF8.self).unicodeScalars.first
    }

    private static func lastScalar(_ bytes: ArraySlice<UInt8>) -> Unicode.Scalar? {
        var start = bytes.endIndex
        while start > bytes.startIndex {
            start -= 1
            if bytes[start] & 0xC0 != 0x80 { break }
        }
        return String(decoding: bytes[start...], as: UTF8.self).unicodeScalars.first
    }
}

extension AddedToken {
    /// A special, unnormalized token (how transformers adds the special tokens named in tokenizer_config.json).
    init(id: Int32, content: String, isSpecial: Bool) {
        self.id = id
        self.content = content
        self.isSpecial = isSpecial
        isNormalized = false
        singleWord = false
        lstrip = false
        rstrip = false
    }
}
