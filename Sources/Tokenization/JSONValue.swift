// A parsed JSON document with typed, path-aware accessors that throw `TokenizerError`.
import Foundation

/// A parsed JSON value (tokenizer.json, tokenizer_config.json, and the server's request bodies);
/// numbers are kept as `Double` (token ids and counts fit exactly below 2^53).
package enum JSONValue: Sendable, Equatable, Decodable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    /// Parses `data`, naming `file` if it is not JSON.
    static func parse(_ data: Data, file: String) throws -> JSONValue {
        do {
            return try JSONDecoder().decode(JSONValue.self, from: data)
        } catch {
            throw TokenizerError(file: file, field: "", problem: "is not valid JSON (\(error))")
        }
    }

    package init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        // Most values in tokenizer.json are strings (merges) or numbers (vocab ids): try those first,
        // because every failed attempt costs a thrown error.
        if container.decodeNil() {
            self = .null
        } else if let string = try? container.decode(String.self) {
            self = .string(string)
        } else if let number = try? container.decode(Double.self) {
            self = .number(number)
        } else if let flag = try? container.decode(Bool.self) {
            self = .bool(flag)
        } else if let elements = try? container.decode([JSONValue].self) {
            self = .array(elements)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    /// The JSON type's name, for messages ("a string", "an array", ...).
    package var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "a boolean"
        case .number: "a number"
        case .string: "a string"
        case .array: "an array"
        case .object: "an object"
        }
    }

    package var isNull: Bool {
        if case .null = self { return true }
        return false
    }
}

/// A JSON value together with where it came from, so every accessor can name the field in its error.
struct JSONField: Sendable {
    let value: JSONValue
    let file: String
    let path: String

    init(_ value: JSONValue, file: String, path: String = "") {
        self.value = value
        self.file = file
        self.path = path
    }

    func error(_ problem: String) -> TokenizerError {
        TokenizerError(file: file, field: path, problem: problem)
    }

    private func childPath(_ key: String) -> String { path.isEmpty ? key : "\(path).\(key)" }

    /// The member `key`, or a null field when absent.
    subscript(key: String) -> JSONField {
        if case .object(let members) = value, let member = members[key] {
            return JSONField(member, file: file, path: childPath(key))
        }
        return JSONField(.null, file: file, path: childPath(key))
    }

    var isNull: Bool { value.isNull }

    func object() throws -> [String: JSONField] {
        guard case .object(let members) = value else { throw error("is \(value.typeName), but must be an object") }
        var fields: [String: JSONField] = [:]
        for (key, member) in members { fields[key] = JSONField(member, file: file, path: childPath(key)) }
        return fields
    }

    func array() throws -> [JSONField] {
        guard case .array(let elements) = value else { throw error("is \(value.typeName), but must be an array") }
        return elements.enumerated().map { JSONField($0.element, file: file, path: "\(path)[\($0.offset)]") }
    }

    func string() throws -> String {
        guard case .string(let string) = value else { throw error("is \(value.typeName), but must be a string") }
        return string
    }

    func bool() throws -> Bool {
        guard case .bool(let flag) = value else { throw error("is \(value.typeName), but must be true or false") }
        return flag
    }

    func int() throws -> Int {
        guard case .number(let number) = value, number.rounded() == number, abs(number) < 1e15 else {
            throw error("is \(value.typeName), but must be an integer")
        }
        return Int(number)
    }

    func optionalString() throws -> String? { isNull ? nil : try string() }
    func bool(default fallback: Bool) throws -> Bool { isNull ? fallback : try bool() }
    func int(default fallback: Int) throws -> Int { isNull ? fallback : try int() }

    /// The `type` member of a component object.
    func typeTag() throws -> String {
        let tag = self["type"]
        guard !tag.isNull else { throw tag.error("is missing") }
        return try tag.string()
    }

    /// A special-token entry in tokenizer_config.json: either `"<s>"` or `{"content": "<s>", ...}`.
    func tokenContent() throws -> String? {
        switch value {
        case .null: return nil
        case .string(let string): return string
        case .object: return try self["content"].string()
        default: throw error("is \(value.typeName), but must be a string or an object with \"content\"")
        }
    }
}
