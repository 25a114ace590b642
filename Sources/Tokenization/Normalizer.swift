// Normalizers: text → text rewrites applied to every piece between added tokens before pre-tokenization.
import Foundation

/// A `tokenizer.json` `normalizer`.
indirect enum Normalizer: Sendable {
    case nfc, nfd, nfkc, nfkd
    case lowercase
    case prepend(String)
    /// Replace every match of a literal `pattern` (or a regular expression) with `content`.
    case replace(TextPattern, content: String)
    case strip(left: Bool, right: Bool)
    case sequence([Normalizer])

    static let supportedTypes = ["NFC", "NFD", "NFKC", "NFKD", "Lowercase", "Prepend", "Replace", "Strip", "Sequence"]

    init(json: JSONField) throws {
        let type = try json.typeTag()
        switch type {
        case "NFC": self = .nfc
        case "NFD": self = .nfd
        case "NFKC": self = .nfkc
        case "NFKD": self = .nfkd
        case "Lowercase": self = .lowercase
        case "Prepend": self = .prepend(try json["prepend"].string())
        case "Replace":
            self = .replace(try TextPattern(json: json["pattern"]), content: try json["content"].string())
        case "Strip":
            self = .strip(
                left: try json["strip_left"].bool(default: true), right: try json["strip_right"].bool(default: true))
        case "Sequence":
            self = .sequence(try json["normalizers"].array().map(Normalizer.init(json:)))
        default:
            throw json["type"].error(
                "is \"\(type)\", but only \(Normalizer.supportedTypes.map { "\"\($0)\"" }.joined(separator: ", ")) are supported"
            )
        }
    }

    /// Normalizes `text` and tracks how many of its leading scalars come from offset 0 of the original
    /// input (`originPrefix`), the way `tokenizers` alignments do: Metaspace `prepend_scheme: "first"`
    /// prepends only to a piece whose first scalar maps to original offset 0. So "ñ" decomposed by NFD
    /// is two scalars both at offset 0, a stripped leading space leaves none, a prepended "▁" adds one.
    func normalize(_ text: String, originPrefix: Int) -> (text: String, originPrefix: Int) {
        let output = normalize(text)
        guard originPrefix > 0 else { return (output, 0) }
        let scalars = Array(text.unicodeScalars)
        switch self {
        case .nfc, .nfd, .nfkc, .nfkd:
            // The origin scalars plus the combining marks that may compose with them.
            var headEnd = min(originPrefix, scalars.count)
            while headEnd < scalars.count, scalars[headEnd].properties.canonicalCombiningClass.rawValue != 0 {
                headEnd += 1
            }
            let head = Self.string(scalars[..<headEnd])
            let normalizedHead = normalize(head)
            if normalizedHead.utf8.elementsEqual(head.utf8) { return (output, originPrefix) }
            return (output, normalizedHead.unicodeScalars.count)
        case .lowercase:
            let head = Self.string(scalars.prefix(originPrefix))
            return (output, normalize(head).unicodeScalars.count)
        case .prepend(let prefix):
            return (output, text.isEmpty ? 0 : originPrefix + prefix.unicodeScalars.count)
        case .replace(let pattern, let content):
            var kept = 0
            var position = 0
            for segment in pattern.segments(of: text) {
                let length = text.unicodeScalars[segment.range].count
                guard position < originPrefix else { break }
                kept += segment.isMatch ? content.unicodeScalars.count : min(length, originPrefix - position)
                position += length
            }
            return (output, kept)
        case .strip(let left, _):
            let stripped = left ? scalars.prefix { $0.isWhitespace }.count : 0
            return (output, max(0, originPrefix - stripped))
        case .sequence(let normalizers):
            var current = (text: text, originPrefix: originPrefix)
            for normalizer in normalizers {
                current = normalizer.normalize(current.text, originPrefix: current.originPrefix)
            }
            return current
        }
    }

    private static func string(_ scalars: some Sequence<Unicode.Scalar>) -> String {
        var view = String.UnicodeScalarView()
        view.append(contentsOf: scalars)
        return String(view)
    }

    func normalize(_ text: String) -> String {
        switch self {
        case .nfc: return text.precomposedStringWithCanonicalMapping
        case .nfd: return text.decomposedStringWithCanonicalMapping
        case .nfkc: return text.precomposedStringWithCompatibilityMapping
        case .nfkd: return text.decomposedStringWithCompatibilityMapping
        case .lowercase:
            var scalars = String.UnicodeScalarView()
            for scalar in text.unicodeScalars {
                scalars.append(contentsOf: scalar.properties.lowercaseMapping.unicodeScalars)
            }
            return String(scalars)
        case .prepend(let prefix):
            return text.isEmpty ? text : prefix + text
        case .replace(let pattern, let content):
            return pattern.replacingMatches(in: text, with: content)
        case .strip(let left, let right):
            var scalars = Array(text.unicodeScalars)
            if right { while let last = scalars.last, last.isWhitespace { scalars.removeLast() } }
            if left, let first = scalars.firstIndex(where: { !$0.isWhitespace }) {
                scalars.removeFirst(first)
            } else if left {
                scalars.removeAll()
            }
            var view = String.UnicodeScalarView()
            view.append(contentsOf: scalars)
            return String(view)
        case .sequence(let normalizers):
            return normalizers.reduce(text) { $1.normalize($0) }
        }
    }
}
