// Pre-tokenizers: split each normalized piece into words; the BPE model then runs on every word alone.

/// A piece of text on its way through the pipeline.
struct Piece: Sendable {
    var text: String
    /// How many leading scalars of `text` map to offset 0 of the original input. Metaspace
    /// `prepend_scheme: "first"` prepends only when this is positive, so text after an added token
    /// gets no "▁" (see `Normalizer.normalize(_:originPrefix:)`).
    var originPrefix: Int

    var atOrigin: Bool { originPrefix > 0 }
}

/// How `Split` keeps the delimiter (Hugging Face `SplitDelimiterBehavior`).
enum SplitBehavior: String, Sendable, CaseIterable {
    case removed = "Removed"
    case isolated = "Isolated"
    case mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext"
    case contiguous = "Contiguous"

    /// Turns match/non-match segments into the ranges to keep, exactly as `tokenizers` folds them.
    func apply<Bound>(_ segments: [(range: Range<Bound>, isMatch: Bool)]) -> [Range<Bound>] {
        switch self {
        case .removed:
            return segments.filter { !$0.isMatch }.map(\.range)
        case .isolated:
            return segments.map(\.range)
        case .mergedWithPrevious:
            var kept: [Range<Bound>] = []
            var previousMatch = false
            for segment in segments {
                if segment.isMatch, !previousMatch, let last = kept.last {
                    kept[kept.count - 1] = last.lowerBound..<segment.range.upperBound
                } else {
                    kept.append(segment.range)
                }
                previousMatch = segment.isMatch
            }
            return kept
        case .mergedWithNext:
            var kept: [Range<Bound>] = []
            var previousMatch = false
            for segment in segments.reversed() {
                if segment.isMatch, !previousMatch, let last = kept.last {
                    kept[kept.count - 1] = segment.range.lowerBound..<last.upperBound
                } else {
                    kept.append(segment.range)
                }
                previousMatch = segment.isMatch
            }
            return kept.reversed()
        case .contiguous:
            var kept: [Range<Bound>] = []
            var previousMatch = false
            for segment in segments {
                if segment.isMatch == previousMatch, let last = kept.last {
                    kept[kept.count - 1] = last.lowerBound..<segment.range.upperBound
                } else {
                    kept.append(segment.range)
                }
                previousMatch = segment.isMatch
            }
            return kept
        }
    }
}

/// Metaspace `prepend_scheme`.
enum PrependScheme: String, Sendable {
    case always, first, never
}

/// A `tokenizer.json` `pre_tokenizer`.
indirect enum PreTokenizer: Sendable {
    case metaspace(replacement: String, prependScheme: PrependScheme, split: Bool)
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    case split(TextPattern, behavior: SplitBehavior, invert: Bool)
    case digits(individual: Bool)
    case sequence([PreTokenizer])

    static let supportedTypes = [
        "Metaspace", "ByteLevel", "Split", "Digits", "Whitespace", "WhitespaceSplit", "Sequence",
    ]

    /// The GPT-2 word regex `ByteLevel` uses when `use_regex` is true.
    static let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#

    init(json: JSONField) throws {
        let type = try json.typeTag()
        switch type {
        case "Metaspace":
            self = .metaspace(
                replacement: try Self.replacement(json["replacement"]),
                prependScheme: try Self.prependScheme(json),
                split: try json["split"].bool(default: true))
        case "ByteLevel":
            self = .byteLevel(
                addPrefixSpace: try json["add_prefix_space"].bool(default: true),
                useRegex: try json["use_regex"].bool(default: true))
        case "Split":
            let behaviorName = try json["behavior"].string()
            guard let behavior = SplitBehavior(rawValue: behaviorName) else {
                throw json["behavior"].error(
                    "is \"\(behaviorName)\", but must be one of \(SplitBehavior.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", "))"
                )
            }
            self = .split(
                try TextPattern(json: json["pattern"]), behavior: behavior,
                invert: try json["invert"].bool(default: false))
        case "Digits":
            self = .digits(individual: try json["individual_digits"].bool(default: false))
        case "Whitespace":
            self = .split(try TextPattern(regex: #"\w+|[^\w\s]+"#), behavior: .removed, invert: true)
        case "WhitespaceSplit":
            self = .split(try TextPattern(regex: #"\s+"#), behavior: .removed, invert: false)
        case "Sequence":
            self = .sequence(try json["pretokenizers"].array().map(PreTokenizer.init(json:)))
        default:
            throw json["type"].error(
                "is \"\(type)\", but only \(PreTokenizer.supportedTypes.map { "\"\($0)\"" }.joined(separator: ", ")) are supported"
            )
        }
    }

    static func replacement(_ field: JSONField) throws -> String {
        let replacement = try field.string()
        guard replacement.unicodeScalars.count == 1 else {
            throw field.error("is \"\(replacement)\", but must be a single character")
        }
        return replacement
    }

    /// Reads `prepend_scheme`, falling back to the older `add_prefix_space` flag.
    static func prependScheme(_ json: JSONField) throws -> PrependScheme {
        if let name = try json["prepend_scheme"].optionalString() {
            guard let scheme = PrependScheme(rawValue: name) else {
                throw json["prepend_scheme"].error("is \"\(name)\", but must be \"always\", \"first\" or \"never\"")
            }
            return scheme
        }
        return try json["add_prefix_space"].bool(default: true) ? .always : .never
    }

    /// Splits every piece into words.
    func preTokenize(_ pieces: [Piece]) -> [Piece] {
        switch self {
        case .sequence(let steps):
            return steps.reduce(pieces) { $1.preTokenize($0) }
        default:
            return pieces.flatMap { preTokenize(piece: $0) }.filter { !$0.text.isEmpty }
        }
    }

    private func preTokenize(piece: Piece) -> [Piece] {
        switch self {
        case .metaspace(let replacement, let prependScheme, let split):
            var text = piece.text.replacingExactly(" ", with: replacement)
            let startsWithReplacement = text.startsWithExactly(replacement)
            switch prependScheme {
            case .always where !startsWithReplacement, .first where !startsWithReplacement && piece.atOrigin:
                text = replacement + text
            default:
                break
            }
            let prepended = text.unicodeScalars.count - piece.text.unicodeScalars.count
            let marked = Piece(text: text, originPrefix: piece.atOrigin ? piece.originPrefix + prepended : 0)
            guard split else { return [marked] }
            return Self.cut(
                marked, SplitBehavior.mergedWithNext.apply(TextPattern(literal: replacement).segments(of: text)))
        case .byteLevel(let addPrefixSpace, let useRegex):
            var text = piece.text
            if addPrefixSpace, !text.startsWith(scalar: " ") { text = " " + text }
            let prepended = text.unicodeScalars.count - piece.text.unicodeScalars.count
            let spaced = Piece(text: text, originPrefix: piece.atOrigin ? piece.originPrefix + prepended : 0)
            let words =
                useRegex
                ? Self.cut(spaced, SplitBehavior.isolated.apply(ByteLevel.wordPattern.segments(of: text))) : [spaced]
            return words.map { word in
                // Every UTF-8 byte becomes one scalar, all aligned to the scalar it came from.
                let originBytes = word.text.unicodeScalars.prefix(word.originPrefix).reduce(0) {
                    $0 + String($1).utf8.count
                }
                return Piece(text: ByteLevel.encode(word.text), originPrefix: originBytes)
            }
        case .split(let pattern, let behavior, let invert):
            let segments = pattern.segments(of: piece.text).map { (range: $0.range, isMatch: $0.isMatch != invert) }
            return Self.cut(piece, behavior.apply(segments))
        case .digits(let individual):
            return Self.cut(piece, Self.digitSplit(piece.text, individual: individual))
        case .sequence:
            return preTokenize([piece])
        }
    }

    private static func cut(_ piece: Piece, _ ranges: [Range<String.Index>]) -> [Piece] {
        ranges.map { range in
            Piece(
                text: String(piece.text.unicodeScalars[range]),
                originPrefix: originPrefix(of: piece, at: range.lowerBound))
        }
    }

    /// The origin prefix left for a sub-piece starting at `index`; walks at most `originPrefix` scalars,
    /// so cutting a long piece into many words stays linear.
    private static func originPrefix(of piece: Piece, at index: String.Index) -> Int {
        let scalars = piece.text.unicodeScalars
        var position = scalars.startIndex
        var offset = 0
        while offset < piece.originPrefix {
            if position >= index { return piece.originPrefix - offset }
            position = scalars.index(after: position)
            offset += 1
        }
        return 0
    }

    private static func digitSplit(_ text: String, individual: Bool) -> [Range<String.Index>] {
        var segments: [(range: Range<String.Index>, isMatch: Bool)] = []
        var index = text.unicodeScalars.startIndex
        while index < text.unicodeScalars.endIndex {
            let next = text.unicodeScalars.index(after: index)
            // Rust's char::is_numeric: categories Nd, Nl, No (not Unihan numeric values such as 幺).
            let isDigit =
                switch text.unicodeScalars[index].properties.generalCategory {
                case .decimalNumber, .letterNumber, .otherNumber: true
                default: false
                }
            if !individual, let last = segments.last, last.isMatch == isDigit {
                segments[segments.count - 1].range = last.range.lowerBound..<next
            } else if individual, !isDigit, let last = segments.last, !last.isMatch {
                segments[segments.count - 1].range = last.range.lowerBound..<next
            } else {
                segments.append((index..<next, isDigit))
            }
            index = next
        }
        return SplitBehavior.isolated.apply(segments)
    }
}

/// The GPT-2 byte ↔ printable-character mapping used by ByteLevel pre-tokenizers and decoders.
enum ByteLevel {
    static let wordPattern: TextPattern = {
        // The pattern is a compile-time constant that ICU accepts; a failure here is a programmer error.
        guard let pattern = try? TextPattern(regex: PreTokenizer.gpt2Pattern) else {
            preconditionFailure("the GPT-2 pre-tokenizer regex must compile")
        }
        return pattern
    }()

    /// `byteToScalar[b]` is the printable stand-in for byte `b`.
    static let byteToScalar: [Unicode.Scalar] = {
        var printable = Set<UInt32>()
        printable.formUnion(UInt32(0x21)...UInt32(0x7E))
        printable.formUnion(UInt32(0xA1)...UInt32(0xAC))
        printable.formUnion(UInt32(0xAE)...UInt32(0xFF))
        var table: [Unicode.Scalar] = []
        var shifted: UInt32 = 256
        for byte in UInt32(0)...UInt32(255) {
            if printable.contains(byte) {
                table.append(Unicode.Scalar(UInt8(byte)))
            } else {
                table.append(Unicode.Scalar(UInt16(shifted)).map { $0 } ?? "?")
                shifted += 1
            }
        }
        return table
    }()

    static let scalarToByte: [Unicode.Scalar: UInt8] = {
        var map: [Unicode.Scalar: UInt8] = [:]
        for (byte, scalar) in byteToScalar.enumerated() { map[scalar] = UInt8(byte) }
        return map
    }()

    /// Maps every UTF-8 byte of `text` to its printable stand-in.
    static func encode(_ text: String) -> String {
        var scalars = String.UnicodeScalarView()
        for byte in text.utf8 { scalars.append(byteToScalar[Int(byte)]) }
        return String(scalars)
    }
}
