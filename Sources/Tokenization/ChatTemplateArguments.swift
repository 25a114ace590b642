// Extra variables for a chat template: vLLM's `chat_template_kwargs`, the keyword arguments
// transformers' `apply_chat_template(..., **kwargs)` adds to the template's render context
// (Qwen3's `enable_thinking`, gpt-oss's `reasoning_effort`, `model_identity`, `builtin_tools`).

/// JSON-valued variables added to a chat template's render context.
///
/// A name that would replace one of the template's own variables (`messages`, `add_generation_prompt`,
/// `tools`, the special tokens, the global functions: see `reservedNames`) is refused, so a request
/// cannot rewrite the conversation or the prompt's special tokens through the template.
///
/// JSON values become the Python values transformers would see after `json.loads`: null → None,
/// numbers → int when integral, else float, arrays → lists, objects → dicts. A parsed JSON object has
/// lost its key order, so an object's keys are in code point order (Python keeps the request's order).
public struct ChatTemplateArguments: Sendable, Equatable {
    /// The variables by name.
    package private(set) var values: [String: JSONValue]

    /// No extra variables.
    public init() {
        values = [:]
    }

    /// Checks `values` against the reserved names.
    ///
    /// - Parameter specialTokenNames: the checkpoint's named special tokens (tokenizer_config.json's
    ///   `bos_token`, `eos_token`, ...), reserved as well.
    /// - Throws: `ChatTemplateArgumentError` naming the first reserved name (in sorted order).
    package init(_ values: [String: JSONValue], specialTokenNames: [String] = []) throws(ChatTemplateArgumentError) {
        let reserved = Self.reservedNames.union(specialTokenNames)
        if let name = values.keys.sorted().first(where: reserved.contains) {
            throw ChatTemplateArgumentError(name: name)
        }
        self.values = values
    }

    /// Whether there are no variables.
    public var isEmpty: Bool { values.isEmpty }

    /// The variables' names, sorted.
    public var names: [String] { values.keys.sorted() }

    /// Names a template's own render context holds, which arguments may not replace: the variables
    /// transformers passes (`messages`, `tools`, `documents`, `add_generation_prompt`), the arguments of
    /// `apply_chat_template` itself, the standard special-token names, and the template's global
    /// functions.
    public static let reservedNames: Set<String> = [
        "messages", "tools", "documents", "add_generation_prompt", "continue_final_message", "chat_template",
        "tokenize", "bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token",
        "additional_special_tokens", "raise_exception", "strftime_now", "range", "namespace", "dict",
    ]

    /// The variables as render-context values.
    var contextValues: [String: JinjaValue] {
        values.mapValues(JinjaValue.init(json:))
    }
}

/// A chat template argument's name is reserved (`ChatTemplateArguments.reservedNames` or a special token's name).
package struct ChatTemplateArgumentError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The reserved name.
    package let name: String

    package var description: String {
        "'\(name)' is a variable of the chat template itself and cannot be replaced; "
            + "leave it out (reserved: the messages, tools, documents, add_generation_prompt, the special tokens and the template's functions)"
    }
}

extension JinjaValue {
    /// A JSON value as Python's `json.loads` gives it (object keys sorted: see `ChatTemplateArguments`).
    init(json: JSONValue) {
        switch json {
        case .null:
            self = .none
        case .bool(let flag):
            self = .bool(flag)
        case .number(let number):
            // json.loads gives an int for an integral literal; Double keeps integers exactly below 2^53.
            if number.rounded() == number, abs(number) < 9.007_199_254_740_992e15, let integer = Int(exactly: number) {
                self = .integer(integer)
            } else {
                self = .float(number)
            }
        case .string(let text):
            self = .string(text)
        case .array(let items):
            self = .list(items.map(JinjaValue.init(json:)))
        case .object(let members):
            let sorted = members.sorted { $0.key.unicodeScalars.lexicographicallyPrecedes($1.key.unicodeScalars) }
            self = .dict(JinjaDictionary(sorted.map { ($0.key, JinjaValue(json: $0.value)) }))
        }
    }
}
