// `chat_template_kwargs` (vLLM's request field, on /v1/chat/completions and /tokenize): variables
// added to the chat template's render context, as transformers' `apply_chat_template(**kwargs)`.
package import Tokenization

extension GenerationPlan {
    /// `chat_template_kwargs`: an object of JSON values, checked against the names the template's own
    /// context holds (`ChatTemplateArguments.reservedNames` and the checkpoint's special tokens).
    /// - Throws: `APIError` (400) naming `chat_template_kwargs` when it is not an object, or
    ///   `chat_template_kwargs.<name>` for a reserved name.
    package static func parseChatTemplateArguments(
        _ body: JSONObject, tokenizer: Tokenizer
    ) throws(APIError) -> ChatTemplateArguments {
        guard let value = body["chat_template_kwargs"] else { return ChatTemplateArguments() }
        guard case .object(let members) = value else {
            throw .wrongType(param: "chat_template_kwargs", expected: "an object of template variables", got: value)
        }
        do {
            return try ChatTemplateArguments(members, specialTokenNames: Array(tokenizer.specialTokenStrings.keys))
        } catch {
            throw .invalidRequest(param: "chat_template_kwargs.\(error.name)", message: "chat_template_kwargs: \(error)")
        }
    }

    /// The bytes of text in the arguments (names and strings), counted with the messages against
    /// `maxPromptBytes`: a template may write them into the prompt.
    package static func textByteCount(_ arguments: ChatTemplateArguments) -> Int {
        func count(_ value: JSONValue) -> Int {
            switch value {
            case .string(let text): text.utf8.count
            case .array(let items): items.reduce(0) { $0 + count($1) }
            case .object(let members): members.reduce(0) { $0 + $1.key.utf8.count + count($1.value) }
            case .null, .bool, .number: 8
            }
        }
        return arguments.values.reduce(0) { $0 + $1.key.utf8.count + count($1.value) }
    }
}
