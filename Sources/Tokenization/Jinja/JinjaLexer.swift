// Jinja lexer: splits a chat template into text and tags, applies whitespace control, and turns
// the inside of each tag into expression tokens.
//
// Whitespace control follows Jinja 3 as transformers configures it (`trim_blocks=True`,
// `lstrip_blocks=True`, `keep_trailing_newline=False`):
// - `{%-` / `{{-` / `{#-` remove all whitespace before the tag, `-%}` / `-}}` / `-#}` all after it;
// - a block or comment tag alone after indentation loses that indentation (lstrip_blocks), unless `{%+`;
// - the first newline after a block or comment tag is removed (trim_blocks), unless `+%}`;
// - one trailing newline at the end of the template is dropped.

/// A place in the template source, 1-based, counted in Unicode scalars as Python counts characters.
import Foundation

struct SourcePosition: Sendable, Equatable {
    var line: Int
    var column: Int
}

/// One token inside `{{ }}` or `{% %}`.
struct ExpressionToken: Sendable {
    enum Kind: Sendable, Equatable {
        case name(String)
        case string(String)
        case integer(Int)
        case float(Double)
        case symbol(String)
        case end
    }

    let kind: Kind
    let position: SourcePosition
}

/// The template after lexing: literal text, `{{ expression }}` and `{% statement %}`.
enum TemplateSegment: Sendable {
    case text(String)
    case output([ExpressionToken], SourcePosition)
    case statement([ExpressionToken], SourcePosition)
}

struct JinjaLexer {
    private enum TagKind { case output, statement, comment }
    private enum Control { case none, minus, plus }

    private enum RawSegment {
        case text(String, startOffset: Int)
        case tag(TagKind, [ExpressionToken], left: Control, right: Control, SourcePosition)
    }

    private let scalars: [Unicode.Scalar]
    private let lineStarts: [Int]

    init(source: String) {
        // Jinja normalizes newlines in template data to "\n".
        var normalized = source.replacingOccurrences(of: "\r\n", with: "\n")
        normalized = normalized.replacingOccurrences(of: "\r", with: "\n")
        scalars = Array(normalized.unicodeScalars)
        var starts = [0]
        for (offset, scalar) in scalars.enumerated() where scalar == "\n" { starts.append(offset + 1) }
        lineStarts = starts
    }

    func position(at offset: Int) -> SourcePosition {
        var low = 0
        var high = lineStarts.count - 1
        while low < high {
            let middle = (low + high + 1) / 2
            if lineStarts[middle] <= offset { low = middle } else { high = middle - 1 }
        }
        return SourcePosition(line: low + 1, column: offset - lineStarts[low] + 1)
    }

    /// The segments of the template, with whitespace control applied.
    func segments() throws(ChatTemplateError) -> [TemplateSegment] {
        var raw = try rawSegments()
        // keep_trailing_newline=False: a single trailing newline of the template is not output.
        if case .text(let text, let start)? = raw.last, text.hasSuffix("\n") {
            raw[raw.count - 1] = .text(String(text.dropLast()), startOffset: start)
        }
        var result: [TemplateSegment] = []
        for (index, segment) in raw.enumerated() {
            switch segment {
            case .text(var text, let startOffset):
                if index + 1 < raw.count, case .tag(let kind, _, let left, _, _) = raw[index + 1] {
                    if left == .minus {
                        text = String(
                            text.unicodeScalars.reversed().drop(while: isWhitespace).reversed().map(Character.init))
                    } else if left != .plus, kind != .output {
                        text = lstripBlock(text, startsLine: startOffset == 0)
                    }
                }
                if index > 0, case .tag(let kind, _, _, let right, _) = raw[index - 1] {
                    if right == .minus {
                        text = String(String.UnicodeScalarView(text.unicodeScalars.drop(while: isWhitespace)))
                    } else if right != .plus, kind != .output, text.hasPrefix("\n") {
                        text.removeFirst()
                    }
                }
                if !text.isEmpty { result.append(.text(text)) }
            case .tag(.output, let tokens, _, _, let position):
                result.append(.output(tokens, position))
            case .tag(.statement, let tokens, _, _, let position):
                result.append(.statement(tokens, position))
            case .tag(.comment, _, _, _, _):
                break
            }
        }
        return result
    }

    private func isWhitespace(_ scalar: Unicode.Scalar) -> Bool { scalar.properties.isWhitespace }

    /// Removes spaces and tabs between the last line start and a block tag (lstrip_blocks).
    private func lstripBlock(_ text: String, startsLine: Bool) -> String {
        let view = Array(text.unicodeScalars)
        let lineStart = (view.lastIndex(of: "\n").map { $0 + 1 }) ?? 0
        guard lineStart > 0 || startsLine else { return text }
        guard view[lineStart...].allSatisfy({ $0 == " " || $0 == "\t" }) else { return text }
        return String(String.UnicodeScalarView(view[..<lineStart]))
    }

    private func matches(_ literal: String, at offset: Int) -> Bool {
        var index = offset
        for scalar in literal.unicodeScalars {
            guard index < scalars.count, scalars[index] == scalar else { return false }
            index += 1
        }
        return true
    }

    private func rawSegments() throws(ChatTemplateError) -> [RawSegment] {
        var segments: [RawSegment] = []
        var textStart = 0
        var offset = 0
        func flushText(upTo end: Int) {
            segments.append(.text(String(String.UnicodeScalarView(scalars[textStart..<end])), startOffset: textStart))
        }
        while offset < scalars.count {
            guard scalars[offset] == "{", offset + 1 < scalars.count else {
                offset += 1
                continue
            }
            let opener = scalars[offset + 1]
            guard opener == "{" || opener == "%" || opener == "#" else {
                offset += 1
                continue
            }
            flushText(upTo: offset)
            let tagPosition = position(at: offset)
            var cursor = offset + 2
            var left = Control.none
            if cursor < scalars.count, scalars[cursor] == "-" {
                left = .minus
                cursor += 1
            } else if cursor < scalars.count, scalars[cursor] == "+" {
                left = .plus
                cursor += 1
            }
            if opener == "#" {
                var end = cursor
                while end + 1 < scalars.count, !(scalars[end] == "#" && scalars[end + 1] == "}") { end += 1 }
                guard end + 1 < scalars.count else {
                    throw ChatTemplateError(
                        .syntax, "the comment is not closed with '#}'", at: tagPosition)
                }
                let right: Control = end > cursor && scalars[end - 1] == "-" ? .minus : .none
                segments.append(.tag(.comment, [], left: left, right: right, tagPosition))
                offset = end + 2
                textStart = offset
                continue
            }
            let kind: TagKind = opener == "{" ? .output : .statement
            var (tokens, right, next) = try lexExpression(
                from: cursor, closer: opener == "{" ? "}}" : "%}", tag: tagPosition)
            tokens.append(ExpressionToken(kind: .end, position: position(at: max(next - 2, 0))))
            segments.append(.tag(kind, tokens, left: left, right: right, tagPosition))
            offset = next
            textStart = offset
            if kind == .statement, tokens.count == 2, case .name("raw") = tokens[0].kind {
                // {% raw %}...{% endraw %}: the text in between is output as is.
                let (body, endTag, afterEnd, endLeft, endRight) = try rawBody(from: offset, tag: tagPosition)
                segments.removeLast()
                segments.append(.tag(.comment, [], left: left, right: right, tagPosition))
                segments.append(.text(body, startOffset: offset))
                segments.append(.tag(.comment, [], left: endLeft, right: endRight, endTag))
                offset = afterEnd
                textStart = offset
            }
        }
        flushText(upTo: scalars.count)
        return segments
    }

    private func rawBody(from start: Int, tag: SourcePosition) throws(ChatTemplateError)
        -> (String, SourcePosition, Int, Control, Control)
    {
        var offset = start
        while offset + 1 < scalars.count {
            if scalars[offset] == "{", scalars[offset + 1] == "%" {
                var cursor = offset + 2
                var left = Control.none
                if cursor < scalars.count, scalars[cursor] == "-" || scalars[cursor] == "+" {
                    left = scalars[cursor] == "-" ? .minus : .plus
                    cursor += 1
                }
                while cursor < scalars.count, scalars[cursor] == " " || scalars[cursor] == "\t" { cursor += 1 }
                if matches("endraw", at: cursor) {
                    cursor += 6
                    while cursor < scalars.count, scalars[cursor] == " " || scalars[cursor] == "\t" { cursor += 1 }
                    var right = Control.none
                    if cursor < scalars.count, scalars[cursor] == "-" || scalars[cursor] == "+" {
                        right = scalars[cursor] == "-" ? .minus : .plus
                        cursor += 1
                    }
                    if matches("%}", at: cursor) {
                        var body = String(String.UnicodeScalarView(scalars[start..<offset]))
                        if left == .minus {
                            body = String(
                                body.unicodeScalars.reversed().drop(while: isWhitespace).reversed().map(Character.init))
                        }
                        return (body, position(at: offset), cursor + 2, left, right)
                    }
                }
            }
            offset += 1
        }
        throw ChatTemplateError(.syntax, "'raw' is not closed with '{% endraw %}'", at: tag)
    }

    private static let symbols = [
        "**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "<", ">", "=", "(", ")", "[", "]", "{",
        "}", ".", ",", ":", "|",
    ]

    /// Lexes expression tokens up to the tag's closer at bracket depth 0.
    private func lexExpression(from start: Int, closer: String, tag: SourcePosition) throws(ChatTemplateError)
        -> ([ExpressionToken], Control, Int)
    {
        var tokens: [ExpressionToken] = []
        var offset = start
        var depth = 0
        while true {
            while offset < scalars.count, isWhitespace(scalars[offset]) { offset += 1 }
            guard offset < scalars.count else {
                throw ChatTemplateError(.syntax, "the tag is not closed with '\(closer)'", at: tag)
            }
            if depth == 0 {
                if matches(closer, at: offset) { return (tokens, .none, offset + 2) }
                if scalars[offset] == "-" || scalars[offset] == "+", matches(closer, at: offset + 1) {
                    return (tokens, scalars[offset] == "-" ? .minus : .plus, offset + 3)
                }
            }
            let here = position(at: offset)
            let scalar = scalars[offset]
            if scalar == "'" || scalar == "\"" {
                let (value, next) = try lexString(from: offset, at: here)
                tokens.append(ExpressionToken(kind: .string(value), position: here))
                offset = next
            } else if scalar.properties.numericType != nil, ("0"..."9").contains(scalar) {
                let (kind, next) = try lexNumber(from: offset, at: here)
                tokens.append(ExpressionToken(kind: kind, position: here))
                offset = next
            } else if scalar == "_" || scalar.properties.isAlphabetic {
                var end = offset
                while end < scalars.count,
                    scalars[end] == "_" || scalars[end].properties.isAlphabetic
                        || ("0"..."9").contains(scalars[end])
                {
                    end += 1
                }
                tokens.append(
                    ExpressionToken(
                        kind: .name(String(String.UnicodeScalarView(scalars[offset..<end]))), position: here))
                offset = end
            } else if let symbol = Self.symbols.first(where: { matches($0, at: offset) }) {
                switch symbol {
                case "(", "[", "{": depth += 1
                case ")", "]", "}": depth -= 1
                default: break
                }
                tokens.append(ExpressionToken(kind: .symbol(symbol), position: here))
                offset += symbol.unicodeScalars.count
            } else {
                throw ChatTemplateError(.syntax, "unexpected character '\(scalar)'", at: here)
            }
        }
    }

    /// A quoted string literal with Python escapes (`\n`, `\t`, `\\`, `\'`, `\uXXXX`, ...); unknown
    /// escapes keep their backslash, as Python's unicode-escape codec does.
    private func lexString(from start: Int, at position: SourcePosition) throws(ChatTemplateError) -> (String, Int) {
        let quote = scalars[start]
        var value = String.UnicodeScalarView()
        var offset = start + 1
        while offset < scalars.count {
            let scalar = scalars[offset]
            if scalar == quote { return (String(value), offset + 1) }
            if scalar == "\\", offset + 1 < scalars.count {
                let escaped = scalars[offset + 1]
                offset += 2
                switch escaped {
                case "n": value.append("\n")
                case "t": value.append("\t")
                case "r": value.append("\r")
                case "\\": value.append("\\")
                case "'": value.append("'")
                case "\"": value.append("\"")
                case "a": value.append("\u{07}")
                case "b": value.append("\u{08}")
                case "f": value.append("\u{0C}")
                case "v": value.append("\u{0B}")
                case "0": value.append("\u{00}")
                case "\n": break
                case "x", "u", "U":
                    let width = escaped == "x" ? 2 : escaped == "u" ? 4 : 8
                    guard offset + width <= scalars.count,
                        let code = UInt32(
                            String(String.UnicodeScalarView(scalars[offset..<offset + width])), radix: 16),
                        let decoded = Unicode.Scalar(code)
                    else {
                        throw ChatTemplateError(
                            .syntax, "invalid \\\(escaped) escape in a string literal", at: position)
                    }
                    value.append(decoded)
                    offset += width
                default:
                    value.append("\\")
                    value.append(escaped)
                }
                continue
            }
            value.append(scalar)
            offset += 1
        }
        throw ChatTemplateError(.syntax, "the string literal is not closed", at: position)
    }

    private func lexNumber(from start: Int, at position: SourcePosition) throws(ChatTemplateError)
        -> (ExpressionToken.Kind, Int)
    {
        var offset = start
        var text = ""
        var isFloat = false
        func digits() {
            while offset < scalars.count, ("0"..."9").contains(scalars[offset]) || scalars[offset] == "_" {
                if scalars[offset] != "_" { text.unicodeScalars.append(scalars[offset]) }
                offset += 1
            }
        }
        digits()
        if offset + 1 < scalars.count, scalars[offset] == ".", ("0"..."9").contains(scalars[offset + 1]) {
            isFloat = true
            text += "."
            offset += 1
            digits()
        }
        if offset < scalars.count, scalars[offset] == "e" || scalars[offset] == "E" {
            var probe = offset + 1
            if probe < scalars.count, scalars[probe] == "+" || scalars[probe] == "-" { probe += 1 }
            if probe < scalars.count, ("0"..."9").contains(scalars[probe]) {
                isFloat = true
                text += "e"
                if scalars[offset + 1] == "-" { text += "-" }
                offset = probe
                digits()
            }
        }
        if isFloat {
            guard let value = Double(text) else {
                throw ChatTemplateError(.syntax, "invalid number '\(text)'", at: position)
            }
            return (.float(value), offset)
        }
        guard let value = Int(text) else {
            throw ChatTemplateError(.syntax, "the integer '\(text)' is too large", at: position)
        }
        return (.integer(value), offset)
    }
}
