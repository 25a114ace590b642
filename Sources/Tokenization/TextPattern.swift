// A `{"String": ...}` or `{"Regex": ...}` pattern, as used by Replace normalizers/decoders and Split pre-tokenizers.
import Foundation

/// A literal or regular-expression pattern that can find its matches in a piece of text.
struct TextPattern: Sendable {
    private enum Kind: Sendable {
        case literal(String)
        case regex(CompiledRegex)
    }

    private let kind: Kind

    init(json: JSONField) throws {
        if case .string(let literal) = json.value {
            kind = .literal(literal)
            return
        }
        let members = try json.object()
        if let literal = members["String"] {
            kind = .literal(try literal.string())
        } else if let regex = members["Regex"] {
            kind = .regex(try CompiledRegex(try regex.string(), field: regex))
        } else {
            throw json.error("must be {\"String\": ...} or {\"Regex\": ...}")
        }
    }

    init(literal: String) {
        kind = .literal(literal)
    }

    init(regex pattern: String) throws {
        kind = .regex(try CompiledRegex(pattern, field: JSONField(.string(pattern), file: "built-in pattern")))
    }

    /// Splits `text` into consecutive ranges covering it, each flagged as a match or not.
    ///
    /// Ranges fall on Unicode scalar boundaries, not Character boundaries: slice with
    /// `text.unicodeScalars[range]`, because `String`'s own subscript rounds to Characters
    /// and would glue a combining accent to the letter before it.
    ///
    /// Empty matches produce empty ranges; callers drop empty pieces, as Hugging Face does.
    func segments(of text: String) -> [(range: Range<String.Index>, isMatch: Bool)] {
        var segments: [(range: Range<String.Index>, isMatch: Bool)] = []
        var previous = text.startIndex
        for match in matches(in: text) {
            if previous < match.lowerBound { segments.append((previous..<match.lowerBound, false)) }
            segments.append((match, true))
            previous = match.upperBound
        }
        if previous < text.endIndex { segments.append((previous..<text.endIndex, false)) }
        return segments
    }

    func replacingMatches(in text: String, with replacement: String) -> String {
        switch kind {
        case .literal(let literal):
            return text.replacingExactly(literal, with: replacement)
        case .regex:
            var output = ""
            for segment in segments(of: text) {
                output += segment.isMatch ? replacement : String(text.unicodeScalars[segment.range])
            }
            return output
        }
    }

    private func matches(in text: String) -> [Range<String.Index>] {
        switch kind {
        case .literal(let literal):
            return literalMatches(of: literal, in: text)
        case .regex(let regex):
            return regex.matches(in: text)
        }
    }

    private func literalMatches(of literal: String, in text: String) -> [Range<String.Index>] {
        let needle = Array(literal.utf8)
        guard !needle.isEmpty else { return [] }
        let utf8 = text.utf8
        var ranges: [Range<String.Index>] = []
        var index = utf8.startIndex
        while index < utf8.endIndex {
            if utf8[index...].starts(with: needle) {
                let end = utf8.index(index, offsetBy: needle.count)
                ranges.append(index..<end)
                index = end
            } else {
                index = utf8.index(after: index)
            }
        }
        return ranges
    }
}

/// An ICU regular expression (NSRegularExpression), which understands `\p{L}`, `(?i:...)` and lookahead
/// like the Oniguruma engine Hugging Face uses.
struct CompiledRegex: Sendable {
    private let expression: NSRegularExpression

    init(_ pattern: String, field: JSONField) throws {
        do {
            expression = try NSRegularExpression(pattern: pattern, options: [])
        } catch {
            throw field.error("is not a regular expression this platform can compile: \(pattern)")
        }
    }

    func matches(in text: String) -> [Range<String.Index>] {
        let utf16 = text.utf16
        let whole = NSRange(location: 0, length: utf16.count)
        // Convert UTF-16 offsets by walking forward from the previous match: `Range(_:in:)` returns nil
        // for ranges that end inside a Character (a letter before its combining accent), which a
        // tokenizer regex may well match.
        var cursor = utf16.startIndex
        var cursorOffset = 0
        func index(at offset: Int) -> String.Index {
            cursor = utf16.index(cursor, offsetBy: offset - cursorOffset)
            cursorOffset = offset
            return cursor
        }
        var ranges: [Range<String.Index>] = []
        for match in expression.matches(in: text, options: [], range: whole) where match.range.location != NSNotFound {
            let lower = index(at: match.range.location)
            let upper = index(at: match.range.location + match.range.length)
            ranges.append(lower..<upper)
        }
        return ranges
    }
}
