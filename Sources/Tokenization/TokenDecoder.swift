// Decoders: turn the token strings of an id sequence back into text.

/// A `tokenizer.json` `decoder`; each step maps a list of token strings to a new list.
indirect enum TokenDecoder: Sendable {
    case metaspace(replacement: String, prependScheme: PrependScheme)
    case byteLevel
    case byteFallback
    case fuse
    case replace(TextPattern, content: String)
    case strip(content: Unicode.Scalar, start: Int, stop: Int)
    case sequence([TokenDecoder])

    static let supportedTypes = ["Metaspace", "ByteLevel", "ByteFallback", "Fuse", "Replace", "Strip", "Sequence"]

    init(json: JSONField) throws {
        let type = try json.typeTag()
        switch type {
        case "Metaspace":
            self = .metaspace(
                replacement: try PreTokenizer.replacement(json["replacement"]),
                prependScheme: try PreTokenizer.prependScheme(json))
        case "ByteLevel": self = .byteLevel
        case "ByteFallback": self = .byteFallback
        case "Fuse": self = .fuse
        case "Replace":
            self = .replace(try TextPattern(json: json["pattern"]), content: try json["content"].string())
        case "Strip":
            let content = try json["content"].string()
            guard let scalar = content.unicodeScalars.first, content.unicodeScalars.count == 1 else {
                throw json["content"].error("is \"\(content)\", but must be a single character")
            }
            self = .strip(
                content: scalar, start: try json["start"].int(default: 0), stop: try json["stop"].int(default: 0))
        case "Sequence":
            self = .sequence(try json["decoders"].array().map(TokenDecoder.init(json:)))
        default:
            throw json["type"].error(
                "is \"\(type)\", but only \(TokenDecoder.supportedTypes.map { "\"\($0)\"" }.joined(separator: ", ")) are supported"
            )
        }
    }

    func decode(_ tokens: [String]) -> [String] {
        switch self {
        case .metaspace(let replacement, let prependScheme):
            // In the first token every replacement character is dropped, not only a leading one.
            let marker = replacement.unicodeScalars.first
            return tokens.enumerated().map { index, token in
                var scalars = String.UnicodeScalarView()
                for scalar in token.unicodeScalars {
                    if scalar == marker {
                        if index == 0 && prependScheme != .never { continue }
                        scalars.append(" ")
                    } else {
                        scalars.append(scalar)
                    }
                }
                return String(scalars)
            }
        case .byteLevel:
            return [String(decoding: Self.byteLevelBytes(tokens), as: UTF8.self)]
        case .byteFallback:
            var output: [String] = []
            var pending: [UInt8] = []
            func flush() {
                guard !pending.isEmpty else { return }
                if let text = String(validating: pending, as: UTF8.self) {
                    output.append(text)
                } else {
                    // Invalid UTF-8: one U+FFFD per byte, as Hugging Face does.
                    output.append(contentsOf: Array(repeating: "\u{FFFD}", count: pending.count))
                }
                pending.removeAll()
            }
            for token in tokens {
                if let byte = Self.byteValue(token) {
                    pending.append(byte)
                } else {
                    flush()
                    output.append(token)
                }
            }
            flush()
            return output
        case .fuse:
            return [tokens.joined()]
        case .replace(let pattern, let content):
            return tokens.map { pattern.replacingMatches(in: $0, with: content) }
        case .strip(let content, let start, let stop):
            return tokens.map { token in
                var scalars = Array(token.unicodeScalars)
                var removedStart = 0
                while removedStart < start, let first = scalars.first, first == content {
                    scalars.removeFirst()
                    removedStart += 1
                }
                var removedStop = 0
                while removedStop < stop, let last = scalars.last, last == content {
                    scalars.removeLast()
                    removedStop += 1
                }
                var view = String.UnicodeScalarView()
                view.append(contentsOf: scalars)
                return String(view)
            }
        case .sequence(let decoders):
            return decoders.reduce(tokens) { $1.decode($0) }
        }
    }

    /// The bytes a ByteLevel step decodes: per token, the bytes its characters stand in for if every
    /// character is a byte stand-in, else the token's own UTF-8.
    static func byteLevelBytes(_ tokens: [String]) -> [UInt8] {
        var bytes: [UInt8] = []
        for token in tokens {
            var mapped: [UInt8] = []
            var allMapped = true
            for scalar in token.unicodeScalars {
                guard let byte = ByteLevel.scalarToByte[scalar] else {
                    allMapped = false
                    break
                }
                mapped.append(byte)
            }
            bytes.append(contentsOf: allMapped ? mapped : Array(token.utf8))
        }
        return bytes
    }

    /// Whether later tokens can still change the text of `tokens`, not only add to it.
    ///
    /// - ByteFallback: its input ends in a run of byte tokens that can still become valid UTF-8. A run
    ///   becomes one U+FFFD per byte if it is not valid once it ends, even bytes that were valid so far
    ///   ("<0x41>" alone is "A", but "<0x41>" "<0xE2>" "<0x41>" is three U+FFFD), so such a run stays
    ///   open; a run no continuation can make valid is final: its bytes, and every later byte of it,
    ///   are U+FFFD whatever follows.
    /// - ByteLevel: its bytes end in the start of a character that later bytes could complete (decoded
    ///   as a trailing U+FFFD for now). Bytes that cannot complete are final: `String::from_utf8_lossy`
    ///   gives them one U+FFFD per maximal ill-formed subpart, whatever follows.
    func leavesTextOpen(_ tokens: [String]) -> Bool {
        switch self {
        case .byteFallback:
            let run = Self.trailingByteRun(tokens)
            return !run.isEmpty && UTF8Prefix.canBecomeValid(run)
        case .byteLevel:
            return UTF8Prefix.openTailCount(Self.byteLevelBytes(tokens)) > 0
        case .sequence(let decoders):
            // Only the steps up to the last byte step matter; each sees what the ones before it made.
            guard let last = decoders.lastIndex(where: \.hasByteStep) else { return false }
            var current = tokens
            for decoder in decoders[...last] {
                if decoder.leavesTextOpen(current) { return true }
                current = decoder.decode(current)
            }
            return false
        default:
            return false
        }
    }

    /// Whether the ByteFallback step's input ends in a byte token, so that a next byte token joins
    /// the same run (and a decoding that starts at that next token would judge a run of its own).
    func endsInByteRun(_ tokens: [String]) -> Bool {
        switch self {
        case .byteFallback:
            return tokens.last.flatMap(Self.byteValue) != nil
        case .sequence(let decoders):
            guard let last = decoders.lastIndex(where: \.hasByteFallback) else { return false }
            var current = tokens
            for decoder in decoders[..<last] { current = decoder.decode(current) }
            return decoders[last].endsInByteRun(current)
        default:
            return false
        }
    }

    /// The bytes of the byte tokens at the end of `tokens`.
    private static func trailingByteRun(_ tokens: [String]) -> [UInt8] {
        var run: [UInt8] = []
        for token in tokens.reversed() {
            guard let byte = byteValue(token) else { break }
            run.append(byte)
        }
        return run.reversed()
    }

    /// Whether this decoder or one of its steps is ByteFallback.
    private var hasByteFallback: Bool {
        switch self {
        case .byteFallback: true
        case .sequence(let decoders): decoders.contains(where: \.hasByteFallback)
        default: false
        }
    }

    /// Whether this decoder or one of its steps turns bytes into text (ByteFallback or ByteLevel).
    private var hasByteStep: Bool {
        switch self {
        case .byteFallback, .byteLevel: true
        case .sequence(let decoders): decoders.contains(where: \.hasByteStep)
        default: false
        }
    }

    /// The byte a `<0xAB>` token stands for, as `tokenizers` reads it: six bytes, `<0x`, `>`, and
    /// Rust's `u8::from_str_radix` of the two in between (which takes `+F` but not `-0`).
    static func byteValue(_ token: String) -> UInt8? {
        let utf8 = Array(token.utf8)
        guard utf8.count == 6, utf8.starts(with: "<0x".utf8), utf8[5] == UInt8(ascii: ">"), utf8[3] != UInt8(ascii: "-")
        else { return nil }
        return UInt8(String(decoding: utf8[3..<5], as: UTF8.self), radix: 16)
    }
}
