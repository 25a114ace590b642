// The request fields that change the logits before sampling, read as vLLM's OpenAI server reads
// them: the penalties, `logit_bias`, `min_tokens` and `response_format`.
import Coordinator
import HTTPTypes
import Tokenization

extension GenerationPlan {
    /// Reads `presence_penalty`, `frequency_penalty`, `repetition_penalty`, `logit_bias`,
    /// `min_tokens`, `allowed_token_ids` and `response_format`.
    /// - Throws: `APIError` (400) naming the field and its valid values.
    static func parseAdjustments(
        _ body: JSONObject, maxTokens: Int, ignoreEOS: Bool
    ) throws(APIError) -> LogitsAdjustments {
        var adjustments = LogitsAdjustments()
        for (name, range) in [("presence_penalty", -2.0...2.0), ("frequency_penalty", -2.0...2.0)] {
            guard let value = try body.double(name) else { continue }
            guard range.contains(value) else { throw .outOfRange(param: name, value: "\(value)", valid: "in [-2, 2]") }
            if name == "presence_penalty" { adjustments.presencePenalty = Float(value) } else { adjustments.frequencyPenalty = Float(value) }
        }
        if let value = try body.double("repetition_penalty") {
            guard value > 0, Float(value).isFinite, Float(value) > 0 else {
                throw .outOfRange(param: "repetition_penalty", value: "\(value)", valid: "greater than 0 (1 changes nothing)")
            }
            adjustments.repetitionPenalty = Float(value)
        }
        if let minTokens = try body.integer("min_tokens") {
            guard (0...maxTokens).contains(minTokens) else {
                throw .outOfRange(
                    param: "min_tokens", value: "\(minTokens)", valid: "between 0 and max_tokens (\(maxTokens))")
            }
            adjustments.minTokens = minTokens
        }
        if let bias = try body.object("logit_bias") {
            for (key, value) in bias.fields {
                guard let id = Int32(key), id >= 0 else {
                    throw .invalidRequest(
                        param: "logit_bias", message: "logit_bias key '\(key)' is not a token id (an integer >= 0 as a string)")
                }
                guard case .number(let number) = value, number.isFinite else {
                    throw .wrongType(param: "logit_bias.\(key)", expected: "a number", got: value)
                }
                // As vLLM (and OpenAI's documented range): clamped to [-100, 100].
                adjustments.logitBias[id] = Float(min(100, max(-100, number)))
            }
        }
        if body["allowed_token_ids"] != nil {
            let allowed = try parseTokenIDs(body, "allowed_token_ids")
            guard !allowed.isEmpty else {
                throw .invalidRequest(param: "allowed_token_ids", message: "allowed_token_ids is empty; give at least one token id")
            }
            adjustments.allowedTokenIDs = allowed
        }
        if let format = try body.object("response_format") {
            adjustments.grammar = try parseResponseFormat(format)
            if adjustments.grammar != nil {
                // The JSON ends the completion; these would ask it to go on past its end.
                if ignoreEOS {
                    throw .invalidRequest(param: "ignore_eos", message: "ignore_eos cannot be combined with a JSON response_format")
                }
                if adjustments.minTokens > 0 {
                    throw .invalidRequest(param: "min_tokens", message: "min_tokens cannot be combined with a JSON response_format")
                }
            }
        }
        return adjustments
    }

    /// `response_format`: `text`, `json_object`, or `json_schema` with `json_schema.schema`.
    private static func parseResponseFormat(_ format: JSONObject) throws(APIError) -> JSONGrammar? {
        let types = "text, json_object, json_schema"
        try format.refuseFields(except: ["type", "json_schema"], what: "response_format")
        guard let type = try format.string("type") else {
            throw .invalidRequest(param: format.param("type"), message: "\(format.param("type")) is required: one of \(types)")
        }
        switch type {
        case "text":
            return nil
        case "json_object":
            return .anyValue
        case "json_schema":
            guard let spec = try format.object("json_schema") else {
                throw .invalidRequest(
                    param: format.param("json_schema"), message: "\(format.param("json_schema")) is required for type json_schema")
            }
            // `strict` is honoured whatever its value: the output is always constrained to the schema.
            try spec.refuseFields(except: ["name", "description", "schema", "strict"], what: "response_format.json_schema")
            _ = try spec.bool("strict")
            guard let schema = spec["schema"] else {
                throw .invalidRequest(
                    param: spec.param("schema"), message: "\(spec.param("schema")) is required: the JSON schema to follow")
            }
            do {
                return try JSONGrammar.compile(schema: schema, path: spec.param("schema"))
            } catch {
                guard case .invalidRequest(let field, let message) = error else {
                    throw .invalidRequest(param: spec.param("schema"), message: "\(error)")
                }
                throw .invalidRequest(param: field, message: message)
            }
        default:
            throw .invalidRequest(
                param: format.param("type"), message: "\(format.param("type")) is '\(type)', but must be one of \(types)")
        }
    }

    /// `model`: absent, or a name the server serves; otherwise 404 with vLLM's message.
    package static func checkModel(_ body: JSONObject, served: [String]) throws(APIError) {
        guard let model = try body.string("model"), !model.isEmpty else { return }
        guard served.contains(model) else {
            throw APIError(
                status: .notFound, type: "NotFoundError", param: "model", message: "The model `\(model)` does not exist.",
                code: "404")
        }
    }
}
