// Run-time values of the Jinja interpreter, with Python's semantics for truth, equality and str().

/// A Python dict with string keys: insertion-ordered, as Python dicts are.
struct JinjaDictionary {
    private(set) var keys: [String] = []
    private var storage: [String: JinjaValue] = [:]

    init() {}

    init(_ pairs: [(String, JinjaValue)]) {
        for (key, value) in pairs { self[key] = value }
    }

    subscript(key: String) -> JinjaValue? {
        get { storage[key] }
        set {
            if let newValue {
                if storage.updateValue(newValue, forKey: key) == nil { keys.append(key) }
            } else if storage.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }

    var count: Int { keys.count }
    var pairs: [(key: String, value: JinjaValue)] { keys.map { ($0, storage[$0]!) } }
}

/// A `namespace()` object: attributes assigned inside loops stay visible outside them.
final class JinjaNamespace {
    var attributes = JinjaDictionary()
}

/// A `{% macro %}` definition.
struct JinjaMacro {
    let name: String
    let parameters: [MacroParameter]
    let body: [Node]
}

/// A value during rendering.
indirect enum JinjaValue {
    /// Jinja's default `Undefined`: renders as "", is falsy, iterates as empty; arithmetic on it fails.
    case undefined(name: String)
    case none
    case bool(Bool)
    case integer(Int)
    case float(Double)
    case string(String)
    /// A Python list.
    case list([JinjaValue])
    /// A Python tuple: `(a, b)` literals and the pairs of `items()`; it prints as `(a, b)`.
    case tuple([JinjaValue])
    case dict(JinjaDictionary)
    case namespace(JinjaNamespace)
    case macro(JinjaMacro)
    /// A global function (`range`, `raise_exception`, `namespace`, ...).
    case function(String)
    /// A method bound to its receiver (`message.content.strip`, `loop.cycle`).
    case method(receiver: JinjaValue, name: String)

    init(_ literal: JinjaLiteral) {
        switch literal {
        case .none: self = .none
        case .bool(let value): self = .bool(value)
        case .integer(let value): self = .integer(value)
        case .float(let value): self = .float(value)
        case .string(let value): self = .string(value)
        }
    }

    var isUndefined: Bool {
        if case .undefined = self { return true }
        return false
    }

    /// Python truthiness.
    var isTruthy: Bool {
        switch self {
        case .undefined, .none: false
        case .bool(let value): value
        case .integer(let value): value != 0
        case .float(let value): value != 0
        case .string(let value): !value.isEmpty
        case .list(let items), .tuple(let items): !items.isEmpty
        case .dict(let dictionary): dictionary.count > 0
        case .namespace, .macro, .function, .method: true
        }
    }

    /// The Python type name, for error messages.
    var typeName: String {
        switch self {
        case .undefined: "Undefined"
        case .none: "NoneType"
        case .bool: "bool"
        case .integer: "int"
        case .float: "float"
        case .string: "str"
        case .list: "list"
        case .tuple: "tuple"
        case .dict: "dict"
        case .namespace: "Namespace"
        case .macro: "Macro"
        case .function, .method: "function"
        }
    }

    /// Python `str(value)`, as `{{ value }}` outputs it.
    var text: String {
        switch self {
        case .undefined: ""
        case .string(let value): value
        default: representation
        }
    }

    /// Python `repr(value)`, used inside lists and dicts.
    var representation: String {
        switch self {
        case .undefined: ""
        case .none: "None"
        case .bool(let value): value ? "True" : "False"
        case .integer(let value): String(value)
        case .float(let value): Self.pythonFloat(value)
        case .string(let value): Self.pythonStringRepresentation(value)
        case .list(let items): "[" + items.map(\.representation).joined(separator: ", ") + "]"
        case .tuple(let items):
            "(" + items.map(\.representation).joined(separator: ", ") + (items.count == 1 ? ",)" : ")")
        case .dict(let dictionary):
            "{"
                + dictionary.pairs.map { Self.pythonStringRepresentation($0.key) + ": " + $0.value.representation }
                .joined(separator: ", ") + "}"
        case .namespace: "<Namespace>"
        case .macro(let macro): "<Macro '\(macro.name)'>"
        case .function(let name), .method(_, let name): "<function \(name)>"
        }
    }

    /// Python `repr(float)`: shortest round-trip digits, `inf`, `nan`, and always a `.0` or exponent.
    static func pythonFloat(_ value: Double) -> String {
        if value.isNaN { return "nan" }
        if value.isInfinite { return value < 0 ? "-inf" : "inf" }
        var text = value.description
        // Swift writes 1e-05 and 1e+16 as Python does, but 5e-324 / 1e+100 alike; only "x.0" needs care.
        if !text.contains(".") && !text.contains("e") && !text.contains("n") { text += ".0" }
        return text
    }

    static func pythonStringRepresentation(_ value: String) -> String {
        let quote: Character = value.contains("'") && !value.contains("\"") ? "\"" : "'"
        var result = String(quote)
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            default:
                if Character(scalar) == quote {
                    result += "\\\(quote)"
                } else if scalar.value < 0x20 || scalar.value == 0x7F {
                    result += "\\x" + (scalar.value < 0x10 ? "0" : "") + String(scalar.value, radix: 16)
                } else {
                    result.unicodeScalars.append(scalar)
                }
            }
        }
        result.append(quote)
        return result
    }

    /// Python `==`.
    static func equal(_ left: JinjaValue, _ right: JinjaValue) -> Bool {
        switch (left, right) {
        case (.undefined, .undefined), (.none, .none): return true
        case (.string(let a), .string(let b)): return a.unicodeScalars.elementsEqual(b.unicodeScalars)
        case (.list(let a), .list(let b)), (.tuple(let a), .tuple(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { equal($0, $1) }
        case (.dict(let a), .dict(let b)):
            return a.count == b.count
                && a.pairs.allSatisfy { pair in b[pair.key].map { equal(pair.value, $0) } ?? false }
        case (.namespace(let a), .namespace(let b)): return a === b
        default:
            if let a = left.number, let b = right.number { return a == b }
            return false
        }
    }

    /// The numeric value of a bool, int or float (Python treats bools as 0 and 1).
    var number: Double? {
        switch self {
        case .bool(let value): value ? 1 : 0
        case .integer(let value): Double(value)
        case .float(let value): value
        default: nil
        }
    }

    /// The elements of a list or tuple.
    var elements: [JinjaValue]? {
        switch self {
        case .list(let items), .tuple(let items): items
        default: nil
        }
    }

    /// The integer value of a bool or int.
    var integerValue: Int? {
        switch self {
        case .bool(let value): value ? 1 : 0
        case .integer(let value): value
        default: nil
        }
    }
}
