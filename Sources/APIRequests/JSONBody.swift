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

/// A JSON object read field by field. Unknown fields are ignored; `null` counts as absent, as
/// OpenAI's API treats it. `path` prefixes parameter names in errors (`stream_options.`).
package struct JSONObject {
    package let fields: [String: JSONValue]
    package let path: String

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
