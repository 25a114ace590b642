// Helpers that treat strings as sequences of Unicode scalars, as Hugging Face `tokenizers` (Rust `char`) does.
//
// Swift's `String ==` and `hasPrefix` use canonical equivalence ("é" == "e\u{301}"), but a tokenizer
// must tell composed and decomposed text apart, so vocabulary lookups and comparisons go through
// these scalar-exact helpers.

/// A string compared and hashed by its exact UTF-8 bytes (no canonical equivalence).
struct ExactString: Hashable, Sendable {
    let string: String

    init(_ string: String) { self.string = string }

    static func == (lhs: ExactString, rhs: ExactString) -> Bool {
        lhs.string.utf8.elementsEqual(rhs.string.utf8)
    }

    func hash(into hasher: inout Hasher) {
        for byte in string.utf8 { hasher.combine(byte) }
    }
}

extension String {
    /// Whether the first scalar is `scalar`.
    func startsWith(scalar: Unicode.Scalar) -> Bool { unicodeScalars.first == scalar }

    /// Whether `prefix`'s scalars are exactly the leading scalars of `self`.
    func startsWithExactly(_ prefix: String) -> Bool { utf8.starts(with: prefix.utf8) }

    /// Replaces every non-overlapping occurrence of `pattern` (scalar-exact, left to right) with `replacement`.
    func replacingExactly(_ pattern: String, with replacement: String) -> String {
        let source = Array(utf8)
        let needle = Array(pattern.utf8)
        guard !needle.isEmpty, source.count >= needle.count else { return self }
        var output: [UInt8] = []
        output.reserveCapacity(source.count)
        var index = 0
        while index < source.count {
            if index + needle.count <= source.count, source[index..<index + needle.count].elementsEqual(needle) {
                output.append(contentsOf: replacement.utf8)
                index += needle.count
            } else {
                output.append(source[index])
                index += 1
            }
        }
        return String(decoding: output, as: UTF8.self)
    }
}

extension Unicode.Scalar {
    /// Rust's `char::is_whitespace` (the Unicode White_Space property).
    var isWhitespace: Bool { properties.isWhitespace }

    /// A "word" character for `single_word` added tokens: the Unicode `\w` of Rust's regex crate
    /// (Alphabetic, marks, decimal digits, connector punctuation, join controls), which `tokenizers` uses.
    var isWordCharacter: Bool {
        if properties.isAlphabetic || properties.isJoinControl { return true }
        switch properties.generalCategory {
        case .nonspacingMark, .spacingMark, .enclosingMark, .decimalNumber, .connectorPunctuation: return true
        default: return false
        }
    }
}
