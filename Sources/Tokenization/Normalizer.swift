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
            self = .strip(left: try json["strip_left"].bool(default: true), right: try json["strip_right"].bool(default: true))
        case "Sequence":
            self = .sequence(try json["normalizers"].array().map(Normalizer.init(json:)))
        default:
            throw json["type"].error(
                "is \"\(type)\", but only \(Normalizer.supportedTypes.map { "\"\($0)\"" }.joined(separator: ", ")) are supported")
        }
    }

    /// Whether normalizing `text` removes its first character, which moves the piece's start in the
    /// original input away from offset 0 (so Metaspace `prepend_scheme: "first"` no longer applies).
    func dropsFirstCharacter(of text: String) -> Bool {
        switch self {
        case .strip(let left, _):
            return left && (text.unicodeScalars.first?.isWhitespace ?? false)
        case .replace(let pattern, let content):
            guard content.isEmpty, let first = pattern.segments(of: text).first else { return false }
            return first.isMatch && !first.range.isEmpty
        case .sequence(let normalizers):
            var current = text
            for normalizer in normalizers {
                if normalizer.dropsFirstCharacter(of: current) { return true }
                current = normalizer.normalize(current)
            }
            return false
        default:
            return false
        }
    }

    func normalize(_ text: String) -> String {
        switch self {
        case .nfc: return text.precomposedStringWithCanonicalMapping
        case .nfd: return text.decomposedStringWithCanonicalMapping
        case .nfkc: return text.precomposedStringWithCompatibilityMapping
        case .nfkd: return text.decomposedStringWithCompatibilityMapping
        case .lowercase:
            var scalars = String.UnicodeScalarView()
            for scalar in text.unicodeScalars { scalars.append(contentsOf: scalar.properties.lowercaseMapping.unicodeScalars) }
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
