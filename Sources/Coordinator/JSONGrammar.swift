// Constrained decoding for `response_format`: a JSON schema compiled to a pushdown automaton over
// bytes. `JSONGrammar` is the compiled schema; `JSONMatchState` is where the text generated so far
// stands in it. A token is allowed when the automaton accepts every byte of it
// (`VocabularyTrie.allowedTokens`), the end of sequence only where the JSON is complete.
//
// Hand-written: no Swift package in the mirror offers a JSON-schema automaton over bytes (vLLM uses
// xgrammar, llama.cpp its GBNF). The text generated is compact JSON (no whitespace between
// tokens), and object properties come in a fixed order: the schema arrives as a dictionary, so its
// declaration order is lost; the order is `required`'s, then the other properties by name.
// Numbers are bounded (at most 15 integer digits, 15 fraction digits, 3 exponent digits) so a
// number cannot run on forever.
package import Tokenization

/// A compiled JSON schema (or any JSON value, for `json_object`).
public struct JSONGrammar: Sendable, Equatable {
    enum Node: Sendable, Equatable {
        /// Any JSON value.
        case any
        /// An object with any keys and values.
        case anyObject
        /// An object whose keys are `properties`, in that order, each optional unless required.
        case object(properties: [Property])
        case string(minLength: Int32, maxLength: Int32)
        case number(integer: Bool)
        /// One of the byte strings of `literalSets[set]` (true/false/null, an enum, a const).
        case literals(set: Int32)
        case array(item: Int32, minItems: Int32, maxItems: Int32)
    }

    struct Property: Sendable, Equatable {
        /// The key as it is written, quotes included.
        let key: [UInt8]
        let node: Int32
        let required: Bool
    }

    var nodes: [Node]
    /// Sorted byte strings, so candidates sharing a prefix are neighbours.
    var literalSets: [[[UInt8]]]
    let root: Int32

    /// Node 0 is any value, node 1 an array of any values; literal set 0 is false, null, true.
    static let anyNode: Int32 = 0
    static let anyArrayNode: Int32 = 1
    static let maxIntegerDigits: UInt8 = 15
    static let maxFractionDigits: UInt8 = 15
    static let maxExponentDigits: UInt8 = 3

    private init(root: Int32, nodes: [Node], literalSets: [[[UInt8]]]) {
        self.root = root
        self.nodes = nodes
        self.literalSets = literalSets
    }

    /// Any JSON value (`response_format: {"type": "json_object"}`).
    public static var anyValue: JSONGrammar {
        JSONGrammar(root: anyNode, nodes: baseNodes, literalSets: baseLiterals)
    }

    private static let baseNodes: [Node] = [.any, .array(item: anyNode, minItems: 0, maxItems: .max)]
    private static let baseLiterals: [[[UInt8]]] = [["false", "null", "true"].map { Array($0.utf8) }]

    /// The keywords a schema may use; anything else is refused by name.
    static let supportedKeywords: Set<String> = [
        "type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems",
        "minLength", "maxLength", "enum", "const", "title", "description", "$schema",
    ]

    /// Compiles a JSON schema.
    /// - Parameter path: how the schema is named in errors (`response_format.json_schema.schema`).
    /// - Throws: `GenerationError.invalidRequest` naming the keyword or value that is not supported.
    package static func compile(schema: JSONValue, path: String) throws(GenerationError) -> JSONGrammar {
        var grammar = JSONGrammar(root: 0, nodes: baseNodes, literalSets: baseLiterals)
        let root = try grammar.add(schema, path: path)
        return JSONGrammar(root: root, nodes: grammar.nodes, literalSets: grammar.literalSets)
    }

    private mutating func add(_ schema: JSONValue, path: String) throws(GenerationError) -> Int32 {
        func refuse(_ message: String) -> GenerationError { .invalidRequest(field: path, "\(path): \(message)") }
        guard case .object(let fields) = schema else {
            if case .bool(true) = schema { return Self.anyNode }
            throw refuse("a schema must be an object, not \(schema.typeName)")
        }
        if let unknown = fields.keys.sorted().first(where: { !Self.supportedKeywords.contains($0) }) {
            throw .invalidRequest(
                field: "\(path).\(unknown)",
                "\(path): the schema keyword '\(unknown)' is not supported; supported are "
                    + Self.supportedKeywords.sorted().joined(separator: ", "))
        }
        func integer(_ name: String, default value: Int32) throws(GenerationError) -> Int32 {
            guard let field = fields[name] else { return value }
            guard case .number(let number) = field, let integer = Int32(exactly: number), integer >= 0 else {
                throw .invalidRequest(field: "\(path).\(name)", "\(path).\(name) must be an integer >= 0")
            }
            return integer
        }
        if let constant = fields["const"] {
            return try addLiterals([constant], path: "\(path).const")
        }
        if let values = fields["enum"] {
            guard case .array(let items) = values, !items.isEmpty else {
                throw .invalidRequest(field: "\(path).enum", "\(path).enum must be a non-empty array")
            }
            return try addLiterals(items, path: "\(path).enum")
        }
        let type: String
        switch fields["type"] {
        case .string(let name)?: type = name
        case nil: type = fields["properties"] != nil ? "object" : fields["items"] != nil ? "array" : "any"
        case let other?:
            throw .invalidRequest(
                field: "\(path).type", "\(path).type must be one type name (a string), not \(other.typeName)")
        }
        let node: Node
        switch type {
        case "any":
            return Self.anyNode
        case "object":
            var propertySchemas: [String: JSONValue] = [:]
            switch fields["properties"] {
            case nil: break
            case .object(let properties)?: propertySchemas = properties
            case let other?:
                throw .invalidRequest(field: "\(path).properties", "\(path).properties must be an object, not \(other.typeName)")
            }
            var required: [String] = []
            switch fields["required"] {
            case nil: break
            case .array(let names)?:
                for name in names {
                    guard case .string(let key) = name, propertySchemas[key] != nil else {
                        throw .invalidRequest(
                            field: "\(path).required", "\(path).required must list names of \(path).properties")
                    }
                    if !required.contains(key) { required.append(key) }
                }
            case let other?:
                throw .invalidRequest(field: "\(path).required", "\(path).required must be an array, not \(other.typeName)")
            }
            switch fields["additionalProperties"] {
            case nil, .bool(false)?: break
            case .bool(true)? where propertySchemas.isEmpty: break
            default:
                throw .invalidRequest(
                    field: "\(path).additionalProperties",
                    "\(path).additionalProperties is supported only as false (or absent): the object holds only its properties")
            }
            if propertySchemas.isEmpty {
                node = .anyObject
                break
            }
            let order = required + propertySchemas.keys.filter { !required.contains($0) }.sorted()
            var properties: [Property] = []
            for name in order {
                let child = try add(propertySchemas[name]!, path: "\(path).properties.\(name)")
                properties.append(Property(key: Self.encode(.string(name)), node: child, required: required.contains(name)))
            }
            node = .object(properties: properties)
        case "array":
            let item = try fields["items"].map { items throws(GenerationError) in try add(items, path: "\(path).items") }
            let minItems = try integer("minItems", default: 0)
            let maxItems = try integer("maxItems", default: .max)
            guard minItems <= maxItems else {
                throw .invalidRequest(field: "\(path).minItems", "\(path).minItems is more than maxItems")
            }
            node = .array(item: item ?? Self.anyNode, minItems: minItems, maxItems: maxItems)
        case "string":
            let minLength = try integer("minLength", default: 0)
            let maxLength = try integer("maxLength", default: .max)
            guard minLength <= maxLength else {
                throw .invalidRequest(field: "\(path).minLength", "\(path).minLength is more than maxLength")
            }
            node = .string(minLength: minLength, maxLength: maxLength)
        case "number", "integer":
            node = .number(integer: type == "integer")
        case "boolean":
            return try addLiterals([.bool(false), .bool(true)], path: path)
        case "null":
            return try addLiterals([.null], path: path)
        default:
            throw .invalidRequest(
                field: "\(path).type",
                "\(path).type is '\(type)', but must be one of object, array, string, number, integer, boolean, null")
        }
        for keyword in ["items", "minItems", "maxItems"] where type != "array" && fields[keyword] != nil {
            throw .invalidRequest(field: "\(path).\(keyword)", "\(path).\(keyword) applies to arrays, but the type is \(type)")
        }
        for keyword in ["minLength", "maxLength"] where type != "string" && fields[keyword] != nil {
            throw .invalidRequest(field: "\(path).\(keyword)", "\(path).\(keyword) applies to strings, but the type is \(type)")
        }
        nodes.append(node)
        return Int32(nodes.count - 1)
    }

    private mutating func addLiterals(_ values: [JSONValue], path: String) throws(GenerationError) -> Int32 {
        var encoded: [[UInt8]] = []
        for value in values {
            switch value {
            case .array, .object:
                throw .invalidRequest(field: path, "\(path): only strings, numbers, booleans and null are supported as values")
            default:
                encoded.append(Self.encode(value))
            }
        }
        literalSets.append(Array(Set(encoded)).sorted { $0.lexicographicallyPrecedes($1) })
        nodes.append(.literals(set: Int32(literalSets.count - 1)))
        return Int32(nodes.count - 1)
    }

    /// A scalar JSON value as compact JSON text.
    static func encode(_ value: JSONValue) -> [UInt8] {
        switch value {
        case .null: return Array("null".utf8)
        case .bool(let bool): return Array((bool ? "true" : "false").utf8)
        case .number(let number):
            if let integer = Int64(exactly: number) { return Array(String(integer).utf8) }
            return Array("\(number)".utf8)
        case .string(let text):
            var bytes: [UInt8] = [UInt8(ascii: "\"")]
            for byte in text.utf8 {
                switch byte {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"): bytes += [UInt8(ascii: "\\"), byte]
                case 0x0A: bytes += Array("\\n".utf8)
                case 0..<0x20:
                    let hex = String(byte, radix: 16)
                    bytes += Array(("\\u" + String(repeating: "0", count: 4 - hex.count) + hex).utf8)
                default: bytes.append(byte)
                }
            }
            bytes.append(UInt8(ascii: "\""))
            return bytes
        case .array, .object:
            preconditionFailure("only scalars are encoded as literals")
        }
    }
}

/// Where a text stands in a `JSONGrammar`: the innermost open construct (`top`) and those around it.
/// Kept small and hashable, so the allowed tokens of a state can be cached; `below` changes only
/// when a construct opens or closes, so most bytes copy no array.
struct JSONMatchState: Hashable, Sendable {
    enum ObjectPhase: Hashable, Sendable {
        case afterOpen
        case afterComma
        /// Inside a key: the first candidate property it can still be, and the bytes matched.
        case key(candidate: Int16, offset: Int16)
        case colon(property: Int16)
        case afterValue
    }

    enum NumberPhase: Hashable, Sendable {
        case sign, zero, integer, dot, fraction, exponent, exponentSign, exponentDigits
        var isComplete: Bool { self == .zero || self == .integer || self == .fraction || self == .exponentDigits }
    }

    enum Frame: Hashable, Sendable {
        /// The JSON is complete.
        case done
        /// Before the first byte of a value of `node`.
        case value(node: Int32)
        case object(node: Int32, next: Int16, phase: ObjectPhase)
        /// `phase` as for objects; keys are free strings.
        case anyObject(phase: ObjectPhase)
        case array(node: Int32, count: Int32, afterItem: Bool, afterOpen: Bool)
        /// Inside a string: characters so far, an escape in progress (1 after `\`, 2...5 hex digits
        /// of `\u` to come), continuation bytes of a UTF-8 character to come.
        case string(minLength: Int32, maxLength: Int32, length: Int32, escape: UInt8, continuation: UInt8)
        case number(integer: Bool, phase: NumberPhase, digits: UInt8)
        case literal(set: Int32, candidate: Int32, offset: Int32)
    }

    private(set) var top: Frame
    private var below: [Frame]

    init(_ grammar: JSONGrammar) {
        top = .value(node: grammar.root)
        below = [.done]
    }

    /// Only the end of sequence may follow.
    var isTerminal: Bool { top == .done }

    /// The text so far is a complete JSON value (a number or literal at the root may still go on).
    func isAccepting(_ grammar: JSONGrammar) -> Bool {
        guard top != .done else { return true }
        guard below == [.done] else { return false }
        switch top {
        case .number(_, let phase, _): return phase.isComplete
        case .literal(let set, let candidate, let offset): return grammar.literalSets[Int(set)][Int(candidate)].count == offset
        default: return false
        }
    }

    private mutating func pop() { top = below.removeLast() }

    private mutating func push(_ frame: Frame, resuming parent: Frame) {
        below.append(parent)
        top = frame
    }

    /// Feeds one byte. - Returns: false when the grammar does not allow it (the state is then unspecified).
    mutating func advance(_ byte: UInt8, _ grammar: JSONGrammar) -> Bool {
        switch top {
        case .done:
            return false
        case .value(let node):
            return start(node, byte, grammar)
        case .string(let minLength, let maxLength, var length, var escape, var continuation):
            if escape == 1 {
                switch byte {
                case UInt8(ascii: "u"): escape = 5
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                    UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    escape = 0
                    length += 1
                default: return false
                }
            } else if escape > 1 {
                guard byte.isHexDigit else { return false }
                escape -= 1
                if escape == 1 {
                    escape = 0
                    length += 1
                }
            } else if continuation > 0 {
                guard (0x80...0xBF).contains(byte) else { return false }
                continuation -= 1
                if continuation == 0 { length += 1 }
            } else {
                switch byte {
                case UInt8(ascii: "\""):
                    guard length >= minLength else { return false }
                    pop()
                    return true
                case 0..<0x20, 0x80...0xC1, 0xF5...0xFF:
                    return false
                default:
                    guard length < maxLength else { return false }
                    switch byte {
                    case UInt8(ascii: "\\"): escape = 1
                    case 0xC2...0xDF: continuation = 1
                    case 0xE0...0xEF: continuation = 2
                    case 0xF0...0xF4: continuation = 3
                    default: length += 1
                    }
                }
            }
            // Without a maximum, lengths past the minimum behave alike: kept equal, they make equal
            // states, so a long string reuses one cached mask.
            if maxLength == .max { length = min(length, minLength) }
            top = .string(minLength: minLength, maxLength: maxLength, length: length, escape: escape, continuation: continuation)
            return true
        case .number(let integer, let phase, let digits):
            if let next = Self.numberStep(phase, digits: digits, byte: byte, integer: integer) {
                top = .number(integer: integer, phase: next.phase, digits: next.digits)
                return true
            }
            guard phase.isComplete else { return false }
            pop()
            return advance(byte, grammar)
        case .literal(let set, let candidate, let offset):
            let candidates = grammar.literalSets[Int(set)]
            let current = candidates[Int(candidate)]
            var index = Int(candidate)
            // Sorted, so the candidates sharing the matched prefix follow `candidate`.
            while index < candidates.count, candidates[index].starts(with: current.prefix(Int(offset))) {
                if candidates[index].count > offset, candidates[index][Int(offset)] == byte {
                    top = .literal(set: set, candidate: Int32(index), offset: offset + 1)
                    return true
                }
                index += 1
            }
            guard current.count == offset else { return false }
            pop()
            return advance(byte, grammar)
        case .object(let node, let next, let phase):
            guard case .object(let properties) = grammar.nodes[Int(node)] else { preconditionFailure("object frame of \(node)") }
            // Keys may be any property from `next` up to the first required one.
            let limit = (properties[Int(next)...].firstIndex(where: \.required)).map { $0 + 1 } ?? properties.count
            let closes = !properties[Int(next)...].contains(where: \.required)
            switch phase {
            case .afterOpen, .afterComma, .key:
                let (candidate, offset): (Int, Int) =
                    if case .key(let candidate, let offset) = phase { (Int(candidate), Int(offset)) } else { (Int(next), 0) }
                if phase == .afterOpen, byte == UInt8(ascii: "}") {
                    guard closes else { return false }
                    pop()
                    return true
                }
                guard candidate < limit else { return false }
                let matched = properties[candidate].key.prefix(offset)
                for index in candidate..<limit {
                    let key = properties[index].key
                    guard key.count > offset, key.starts(with: matched), key[offset] == byte else { continue }
                    top = .object(
                        node: node, next: next,
                        phase: key.count == offset + 1
                            ? .colon(property: Int16(index)) : .key(candidate: Int16(index), offset: Int16(offset + 1)))
                    return true
                }
                return false
            case .colon(let property):
                guard byte == UInt8(ascii: ":") else { return false }
                push(
                    .value(node: properties[Int(property)].node),
                    resuming: .object(node: node, next: property + 1, phase: .afterValue))
                return true
            case .afterValue:
                if byte == UInt8(ascii: ","), Int(next) < properties.count {
                    top = .object(node: node, next: next, phase: .afterComma)
                    return true
                }
                guard byte == UInt8(ascii: "}"), closes else { return false }
                pop()
                return true
            }
        case .anyObject(let phase):
            switch phase {
            case .afterOpen, .afterComma:
                if phase == .afterOpen, byte == UInt8(ascii: "}") {
                    pop()
                    return true
                }
                guard byte == UInt8(ascii: "\"") else { return false }
                push(
                    .string(minLength: 0, maxLength: .max, length: 0, escape: 0, continuation: 0),
                    resuming: .anyObject(phase: .colon(property: 0)))
                return true
            case .colon:
                guard byte == UInt8(ascii: ":") else { return false }
                push(.value(node: JSONGrammar.anyNode), resuming: .anyObject(phase: .afterValue))
                return true
            case .afterValue:
                if byte == UInt8(ascii: ",") {
                    top = .anyObject(phase: .afterComma)
                    return true
                }
                guard byte == UInt8(ascii: "}") else { return false }
                pop()
                return true
            case .key:
                preconditionFailure("free keys are strings")
            }
        case .array(let node, let count, let afterItem, let afterOpen):
            guard case .array(let item, let minItems, let maxItems) = grammar.nodes[Int(node)] else {
                preconditionFailure("array frame of \(node)")
            }
            if afterItem {
                if byte == UInt8(ascii: ","), count < maxItems {
                    top = .array(node: node, count: count, afterItem: false, afterOpen: false)
                    return true
                }
                guard byte == UInt8(ascii: "]"), count >= minItems else { return false }
                pop()
                return true
            }
            if afterOpen, byte == UInt8(ascii: "]") {
                guard minItems == 0 else { return false }
                pop()
                return true
            }
            guard count < maxItems else { return false }
            push(.value(node: item), resuming: .array(node: node, count: count + 1, afterItem: true, afterOpen: false))
            return advance(byte, grammar)
        }
    }

    /// The first byte of a value of `node`.
    private mutating func start(_ node: Int32, _ byte: UInt8, _ grammar: JSONGrammar) -> Bool {
        switch grammar.nodes[Int(node)] {
        case .any:
            switch byte {
            case UInt8(ascii: "{"): top = .anyObject(phase: .afterOpen)
            case UInt8(ascii: "["): top = .array(node: JSONGrammar.anyArrayNode, count: 0, afterItem: false, afterOpen: true)
            case UInt8(ascii: "\""): top = .string(minLength: 0, maxLength: .max, length: 0, escape: 0, continuation: 0)
            case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return startNumber(byte, integer: false)
            default:
                top = .literal(set: 0, candidate: 0, offset: 0)
                return advance(byte, grammar)
            }
            return true
        case .anyObject:
            guard byte == UInt8(ascii: "{") else { return false }
            top = .anyObject(phase: .afterOpen)
            return true
        case .object:
            guard byte == UInt8(ascii: "{") else { return false }
            top = .object(node: node, next: 0, phase: .afterOpen)
            return true
        case .string(let minLength, let maxLength):
            guard byte == UInt8(ascii: "\"") else { return false }
            top = .string(minLength: minLength, maxLength: maxLength, length: 0, escape: 0, continuation: 0)
            return true
        case .number(let integer):
            return startNumber(byte, integer: integer)
        case .literals(let set):
            top = .literal(set: set, candidate: 0, offset: 0)
            return advance(byte, grammar)
        case .array:
            guard byte == UInt8(ascii: "[") else { return false }
            top = .array(node: node, count: 0, afterItem: false, afterOpen: true)
            return true
        }
    }

    private mutating func startNumber(_ byte: UInt8, integer: Bool) -> Bool {
        let phase: NumberPhase
        switch byte {
        case UInt8(ascii: "-"): phase = .sign
        case UInt8(ascii: "0"): phase = .zero
        case UInt8(ascii: "1")...UInt8(ascii: "9"): phase = .integer
        default: return false
        }
        top = .number(integer: integer, phase: phase, digits: phase == .integer ? 1 : 0)
        return true
    }

    /// JSON's number grammar, with the digit bounds of `JSONGrammar`.
    private static func numberStep(
        _ phase: NumberPhase, digits: UInt8, byte: UInt8, integer: Bool
    ) -> (phase: NumberPhase, digits: UInt8)? {
        let isDigit = (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte)
        let isExponent = byte == UInt8(ascii: "e") || byte == UInt8(ascii: "E")
        switch phase {
        case .sign:
            if byte == UInt8(ascii: "0") { return (.zero, 0) }
            return isDigit ? (.integer, 1) : nil
        case .zero, .integer:
            if phase == .integer, isDigit { return digits < JSONGrammar.maxIntegerDigits ? (.integer, digits + 1) : nil }
            if integer { return nil }
            if byte == UInt8(ascii: ".") { return (.dot, 0) }
            return isExponent ? (.exponent, 0) : nil
        case .dot:
            return isDigit ? (.fraction, 1) : nil
        case .fraction:
            if isDigit { return digits < JSONGrammar.maxFractionDigits ? (.fraction, digits + 1) : nil }
            return isExponent ? (.exponent, 0) : nil
        case .exponent:
            if byte == UInt8(ascii: "+") || byte == UInt8(ascii: "-") { return (.exponentSign, 0) }
            return isDigit ? (.exponentDigits, 1) : nil
        case .exponentSign:
            return isDigit ? (.exponentDigits, 1) : nil
        case .exponentDigits:
            return isDigit && digits < JSONGrammar.maxExponentDigits ? (.exponentDigits, digits + 1) : nil
        }
    }
}

extension UInt8 {
    fileprivate var isHexDigit: Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(self)
            || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(self)
    }
}
