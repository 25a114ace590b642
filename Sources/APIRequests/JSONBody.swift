// Reading request bodies: typed readers over the JSON values the tokenizer also reads, naming the
// field and the expected type when a value is wrong, so every 400 says which parameter to fix.
import Foundation
package import Tokenization

extension JSONValue {
    /// Parses a request body.
    /// - Throws: `APIError` (400) when the body is not JSON.
    package static func parse(_ bytes: [UInt8]) throws(APIError) -> JSONValue {
        do {
            return try JSONDecoder().decode(JSONValue.self, from: Data(bytes))
        } catch {
            throw .invalidRequest(param: nil, message: "the request body is not valid JSON")
        }
    }
}

/// A JSON object read field by field; `null` counts as absent, as OpenAI's API treats it. `path`
/// prefixes parameter names in errors (`stream_options.`). Which fields a body may hold is checked
/// by ``refuseFields(except:refused:what:)``: a field is read or refused, never ignored.
package struct JSONObject {
    package let fields: [String: JSONValue]
    package let path: String
    /// The body's bytes, when this is a whole body parsed by ``init(parsing:)``: members whose key
    /// order matters (`tools`, tool-call arguments) are read from them again by ``orderedField(_:)``.
    private var source: [UInt8]?

    /// Parses a request body.
    /// - Throws: `APIError` (400) when the body is not JSON or not an object.
    package init(parsing bytes: [UInt8]) throws(APIError) {
        try self.init(JSONValue.parse(bytes))
        source = bytes
    }

    /// - Throws: `APIError` (400) when the value is not an object.
    package init(_ value: JSONValue, path: String = "") throws(APIError) {
        guard case .object(let fields) = value else {
            throw .invalidRequest(
                param: path.isEmpty ? nil : String(path.dropLast()),
                message:
                    "\(path.isEmpty ? "the request body" : String(path.dropLast())) must be a JSON object, not \(value.typeName)"
            )
        }
        self.fields = fields
        self.path = path
    }

    /// The field `name` with object members in the client's order and integers apart from floats,
    /// as Python's `json.loads` gives them to a chat template; nil when absent or null.
    /// An object not read by ``init(parsing:)`` has no order to keep: its members come sorted by name.
    package func orderedField(_ name: String) throws(APIError) -> OrderedJSON? {
        guard let value = self[name] else { return nil }
        guard let source else { return OrderedJSON(value) }
        do {
            return try OrderedJSON.parse(source)[name]
        } catch {
            // JSONDecoder read the body already; this parser refuses only what it bounds (nesting).
            throw .invalidRequest(param: param(name), message: "\(param(name)) could not be read: \(error)")
        }
    }

    /// Refuses the first field (in name order) that is neither `allowed` nor null: a field in
    /// `refused` with its reason, any other as unknown. `what` names the route in the message.
    /// - Throws: `APIError` (400) naming the field.
    package func refuseFields(except allowed: Set<String>, refused: [String: String] = [:], what: String) throws(APIError) {
        for name in fields.keys.sorted() where self[name] != nil && !allowed.contains(name) {
            if let reason = refused[name] {
                throw .invalidRequest(param: param(name), message: "\(param(name)) is not supported: \(reason); leave it out")
            }
            throw .invalidRequest(
                param: param(name),
                message: "\(param(name)) is not a field \(what) reads; unknown fields are refused rather than ignored "
                    + "(the fields it reads: \(allowed.sorted().joined(separator: ", ")))")
        }
    }

    /// The full parameter name of a field, for errors.
    package func param(_ name: String) -> String { path + name }

    package subscript(name: String) -> JSONValue? {
        switch fields[name] {
        case nil, .null?: nil
        case let value?: value
        }
    }

    package func bool(_ name: String) throws(APIError) -> Bool? {
        guard let value = self[name] else { return nil }
        guard case .bool(let bool) = value else {
            throw .wrongType(param: param(name), expected: "a boolean", got: value)
        }
        return bool
    }

    package func double(_ name: String) throws(APIError) -> Double? {
        guard let value = self[name] else { return nil }
        guard case .number(let number) = value else {
            throw .wrongType(param: param(name), expected: "a number", got: value)
        }
        return number
    }

    package func integer(_ name: String) throws(APIError) -> Int? {
        guard let value = self[name] else { return nil }
        guard case .number(let number) = value, let integer = Int(exactly: number) else {
            throw .wrongType(param: param(name), expected: "an integer", got: value)
        }
        return integer
    }

    package func string(_ name: String) throws(APIError) -> String? {
        guard let value = self[name] else { return nil }
        guard case .string(let string) = value else {
            throw .wrongType(param: param(name), expected: "a string", got: value)
        }
        return string
    }

    package func object(_ name: String) throws(APIError) -> JSONObject? {
        guard let value = self[name] else { return nil }
        return try JSONObject(value, path: param(name) + ".")
    }
}

extension OrderedJSON {
    /// `value` with object members sorted by name (it kept no order) and integral numbers as integers.
    init(_ value: JSONValue) {
        switch value {
        case .null: self = .null
        case .bool(let flag): self = .bool(flag)
        case .number(let number):
            if let integer = Int(exactly: number) { self = .integer(integer) } else { self = .float(number) }
        case .string(let text): self = .string(text)
        case .array(let items): self = .array(items.map(OrderedJSON.init))
        case .object(let members):
            self = .object(members.keys.sorted().map { .init($0, OrderedJSON(members[$0]!)) })
        }
    }
}
