// /tokenize and /detokenize, as vLLM serves them (at the root, outside /v1, so an API key does not
// guard them there either): the prompt ids a request would generate from, and the text of ids.
import APIRequests
import Coordinator
import Foundation
import Hummingbird
import Tokenization

extension Routes {
    /// `POST /tokenize`: `prompt` or chat `messages` in; `count`, `max_model_len`, `tokens`
    /// (and `token_strs` when `return_token_strs`) out.
    func tokenize(_ request: Request, body: RequestBody) async throws(APIError) -> Response {
        let bytes = try await readBody(body, of: request)
        // Rendering and encoding a prompt of up to a few MB take CPU time: off the cooperative pool.
        let answer = try await preparation.run { [service, modelName] () throws(APIError) -> TokenizeResponse in
            let body = try JSONObject(parsing: bytes)
            try GenerationPlan.checkModel(body, served: [modelName])
            let parsed = try TokenizeRequest.parse(
                body, contextLength: service.contextLength, tokenizer: service.tokenizer)
            let ids = try parsed.tokenIDs(service.tokenizer) { chat throws(SubmitError) in
                try service.applyChatTemplate(
                    chat.messages, tools: chat.tools, addGenerationPrompt: chat.addGenerationPrompt, arguments: chat.arguments)
            }
            return TokenizeResponse(
                count: ids.count, maxModelLength: service.contextLength, tokens: ids,
                tokenStrings: parsed.returnTokenStrings ? ids.map { service.tokenizer.token(for: $0) ?? "" } : nil)
        }
        return jsonResponse(.ok, answer)
    }

    /// `POST /detokenize`: `tokens` in, their text as `prompt` out (special tokens kept, as
    /// transformers' `decode` by default).
    func detokenize(_ request: Request, body: RequestBody) async throws(APIError) -> Response {
        let bytes = try await readBody(body, of: request)
        let answer = try await preparation.run { [service, modelName] () throws(APIError) -> DetokenizeResponse in
            let body = try JSONObject(parsing: bytes)
            try GenerationPlan.checkModel(body, served: [modelName])
            try body.refuseFields(except: RequestFields.detokenize, refused: RequestFields.refused, what: "POST /detokenize")
            let parsed = try DetokenizeRequest.parse(body, vocabularySize: service.tokenizer.vocabularySize)
            return DetokenizeResponse(prompt: service.tokenizer.decode(parsed.tokens))
        }
        return jsonResponse(.ok, answer)
    }
}
