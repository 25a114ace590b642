// JSON as Python's `json.loads` reads it: object members in the order they were written, integers
// apart from floats. Chat templates print values back with `tojson`, so a request's `tools` and
// tool-call arguments must keep the client's key order and number forms to render the prompt
// transformers renders (`JSONValue` keeps neither).

/// A JSON value with object members in document order and integers kept apart from floats.
public indirect enum OrderedJSON: Sendable, Equatable {
    case null
    case bool(Bool)
    case integer(Int)
    case float(Double)
    case string(String)
    case array([OrderedJSON])
    /// Members in document order; a repeated key keeps its first place and its last value, as a Python dict.
    case object([Member])

    /// One member of an object.
    public struct Member: Sendable, Equatable {
        public let key: String
        public var value: OrderedJSON
        public init(_ key: String, _ value: OrderedJSON) {
            self.key = key
            self.value = value
        }
    }

    /// The member `key` of an object; nil for other values or an absent key.
    public subscript(key: String) -> OrderedJSON? {
        guard case .object(let members) = self else { return nil }
        return members.first { $0.key == key }?.value
    }

    /// The deepest nesting of arrays and objects accepted; deeper documents are refused, not recursed into.
    public static let maxDepth = 256

    /// Parses a JSON document.
    /// - Throws: `OrderedJSONError` naming the byte offset of the first problem.
    public static func parse(_ bytes: [UInt8]) throws(OrderedJSONError) -> OrderedJSON {
        var parser = OrderedJSONParser(bytes: bytes)
        parser.skipWhitespace()
        let value = try parser.value(depth: 0)
        parser.skipWhitespace()
        guard parser.offset == bytes.count else { throw parser.error("unexpected data after the JSON value") }
        return value
    }

    /// Parses JSON text.
    public static func parse(_ text: String) throws(OrderedJSONError) -> OrderedJSON {
        try parse(Array(text.utf8))
    }

    /// Python's `json.dumps(value, ensure_ascii=False)`: `, ` and `: ` separators, members in order.
    public var pythonJSON: String {
        var output = ""
        do {
            try JSONWriter(
                indent: nil, ensureASCII: false, sortKeys: false, itemSeparator: ", ", keySeparator: ": ",
                position: SourcePosition(line: 1, column: 1)
            ).write(jinjaValue, level: 0, into: &output)
        } catch {
            preconditionFailure("a parsed JSON value always serialises: \(error)")
        }
        return output
    }

    /// The value as a chat template sees it (a Python object from `json.loads`).
    var jinjaValue: JinjaValue {
        switch self {
        case .null: .none
        case .bool(let flag): .bool(flag)
        case .integer(let integer): .integer(integer)
        case .float(let number): .float(number)
        case .string(let text): .string(text)
        case .array(let items): .list(items.map(\.jinjaValue))
        case .object(let members): .dict(JinjaDictionary(members.map { ($0.key, $0.value.jinjaValue) }))
        }
    }
}

/// A JSON document could not be parsed.
public struct OrderedJSONError: Error, Sendable, Equatable, CustomStringConvertible {
    public let offset: Int
    public let problem: String
    public var description: String { "\(problem) at byte \(offset)" }
}

/// Recursive descent over UTF-8 bytes, bounded by `OrderedJSON.maxDepth`.
private struct OrderedJSONParser {
    let bytes: [UInt8]
    var offset = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    func error(_ problem: String) -> OrderedJSONError { OrderedJSONError(offset: offset, problem: problem) }

    mutating func skipWhitespace() {
        while offset < bytes.count {
            switch bytes[offset] {
            case 0x20, 0x09, 0x0A, 0x0D: offset += 1
            default: return
            }
        }
    }

    mutating func expect(_ literal: String, _ value: OrderedJSON) throws(OrderedJSONError) -> OrderedJSON {
        let utf8 = Array(literal.utf8)
        guard offset + utf8.count <= bytes.count, Array(bytes[offset..<(offset + utf8.count)]) == utf8 else {
            throw error("invalid literal")
        }
        offset += utf8.count
        return value
    }

    mutating func value(depth: Int) throws(OrderedJSONError) -> OrderedJSON {
        guard offset < bytes.count else { throw error("unexpected end of input") }
        switch bytes[offset] {
        case UInt8(ascii: "{"):
            guard depth < OrderedJSON.maxDepth else { throw error("nested deeper than \(OrderedJSON.maxDepth) levels") }
            offset += 1
            var members: [OrderedJSON.Member] = []
            skipWhitespace()
            if offset < bytes.count, bytes[offset] == UInt8(ascii: "}") {
                offset += 1
                return .object(members)
            }
            while true {
                skipWhitespace()
                guard offset < bytes.count, bytes[offset] == UInt8(ascii: "\"") else { throw error("expected a member name") }
                let key = try string()
                skipWhitespace()
                guard offset < bytes.count, bytes[offset] == UInt8(ascii: ":") else { throw error("expected ':'") }
                offset += 1
                skipWhitespace()
                let member = try value(depth: depth + 1)
                if let index = members.firstIndex(where: { $0.key == key }) {
                    members[index].value = member
                } else {
                    members.append(.init(key, member))
                }
                skipWhitespace()
                guard offset < bytes.count else { throw error("unexpected end of input") }
                if bytes[offset] == UInt8(ascii: ",") {
                    offset += 1
                    continue
                }
                guard bytes[offset] == UInt8(ascii: "}") else { throw error("expected ',' or '}'") }
                offset += 1
                return .object(members)
            }
        case UInt8(ascii: "["):
            guard depth < OrderedJSON.maxDepth else { throw error("nested deeper than \(OrderedJSON.maxDepth) levels") }
            offset += 1
            var items: [OrderedJSON] = []
            skipWhitespace()
            if offset < bytes.count, bytes[offset] == UInt8(ascii: "]") {
                offset += 1
                return .array(items)
            }
            while true {
                skipWhitespace()
                items.append(try value(depth: depth + 1))
                skipWhitespace()
                guard offset < bytes.count else { throw error("unexpected end of input") }
                if bytes[offset] == UInt8(ascii: ",") {
                    offset += 1
                    continue
                }
                guard bytes[offset] == UInt8(ascii: "]") else { throw error("expected ',' or ']'") }
                offset += 1
                return .array(items)
            }
        case UInt8(ascii: "\""):
            return .string(try string())
        case UInt8(ascii: "t"): return try expect("true", .bool(true))
        case UInt8(ascii: "f"): return try expect("false", .bool(false))
        case UInt8(ascii: "n"): return try expect("null", .null)
        default:
            return try number()
        }
    }

    /// A number: an integer when it has no fraction or exponent and fits an `Int`, else a float.
    mutating func number() throws(OrderedJSONError) -> OrderedJSON {
        let start = offset
        var isFloat = false
        if offset < bytes.count, bytes[offset] == UInt8(ascii: "-") { offset += 1 }
        let digitsStart = offset
        while offset < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[offset]) { offset += 1 }
        guard offset > digitsStart else { throw error("invalid value") }
        guard bytes[digitsStart] != UInt8(ascii: "0") || offset - digitsStart == 1 else { throw error("leading zero in a number") }
        if offset < bytes.count, bytes[offset] == UInt8(ascii: ".") {
            isFloat = true
            offset += 1
            let fraction = offset
            while offset < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[offset]) { offset += 1 }
            guard offset > fraction else { throw error("expected digits after '.'") }
        }
        if offset < bytes.count, bytes[offset] == UInt8(ascii: "e") || bytes[offset] == UInt8(ascii: "E") {
            isFloat = true
            offset += 1
            if offset < bytes.count, bytes[offset] == UInt8(ascii: "+") || bytes[offset] == UInt8(ascii: "-") { offset += 1 }
            let exponent = offset
            while offset < bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[offset]) { offset += 1 }
            guard offset > exponent else { throw error("expected digits in the exponent") }
        }
        let text = String(decoding: bytes[start..<offset], as: UTF8.self)
        if !isFloat, let integer = Int(text) { return .integer(integer) }
        // Python keeps integers of any size; one beyond 64 bits is read as the nearest float here.
        guard let number = Double(text) else { throw error("invalid number") }
        return .float(number)
    }

    /// A string, its escapes decoded; the opening quote is at `offset`.
    mutating func string() throws(OrderedJSONError) -> String {
        offset += 1
        var scalars = String.UnicodeScalarView()
        var run = offset
        func flush(_ end: Int) throws(OrderedJSONError) {
            guard end > run else { return }
            guard let text = String(validating: bytes[run..<end], as: UTF8.self) else { throw error("invalid UTF-8 in a string") }
            scalars.append(contentsOf: text.unicodeScalars)
        }
        while true {
            guard offset < bytes.count else { throw error("unterminated string") }
            let byte = bytes[offset]
            if byte == UInt8(ascii: "\"") {
                try flush(offset)
                offset += 1
                return String(scalars)
            }
            guard byte >= 0x20 else { throw error("control character in a string") }
            guard byte == UInt8(ascii: "\\") else {
                offset += 1
                continue
            }
            try flush(offset)
            offset += 1
            guard offset < bytes.count else { throw error("unterminated string") }
            let escape = bytes[offset]
            offset += 1
            switch escape {
            case UInt8(ascii: "\""): scalars.append("\"")
            case UInt8(ascii: "\\"): scalars.append("\\")
            case UInt8(ascii: "/"): scalars.append("/")
            case UInt8(ascii: "b"): scalars.append("\u{08}")
            case UInt8(ascii: "f"): scalars.append("\u{0C}")
            case UInt8(ascii: "n"): scalars.append("\n")
            case UInt8(ascii: "r"): scalars.append("\r")
            case UInt8(ascii: "t"): scalars.append("\t")
            case UInt8(ascii: "u"):
                var code = try hex4()
                if (0xD800..<0xDC00).contains(code) {
                    guard offset + 1 < bytes.count, bytes[offset] == UInt8(ascii: "\\"), bytes[offset + 1] == UInt8(ascii: "u")
                    else { throw error("unpaired surrogate escape") }
                    offset += 2
                    let low = try hex4()
                    guard (0xDC00..<0xE000).contains(low) else { throw error("unpaired surrogate escape") }
                    code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                }
                guard let scalar = Unicode.Scalar(code) else { throw error("unpaired surrogate escape") }
                scalars.append(scalar)
            default:
                throw error("invalid escape")
            }
            run = offset
        }
    }

    mutating func hex4() throws(OrderedJSONError) -> UInt32 {
        guard offset + 4 <= bytes.count, bytes[offset..<(offset + 4)].allSatisfy({ Character(Unicode.Scalar($0)).isHexDigit }),
            let code = UInt32(String(decoding: bytes[offset..<(offset + 4)], as: UTF8.self), radix: 16)
        else { throw error("invalid \\u escape") }
        offset += 4
        return code
    }
}
