// GENERATE_REQUEST, GENERATE_RESULT <-> protobuf-c structs.
import CProtobufC

extension WireMessage.GenerateRequest {
    func cMessage(in arena: CArena) -> UnsafeMutablePointer<Switchyard__V1__GenerateRequest> {
        var c = Switchyard__V1__GenerateRequest()
        switchyard__v1__generate_request__init(&c)
        c.client_request_id = clientRequestID.rawValue
        switch prompt {
        case .text(let text):
            c.prompt = arena.string(text)
            c.has_prompt_text = 1
        case .tokenIDs(let ids):
            c.n_prompt_token_ids = ids.count
            c.prompt_token_ids = arena.array(ids)
        }
        c.max_tokens = wireUInt32(maxTokens, "GENERATE_REQUEST max_tokens")
        c.temperature = temperature
        c.top_p = topP
        c.top_k = wireUInt32(topK, "GENERATE_REQUEST top_k")
        if let seed {
            c.seed = seed
            c.has_seed = 1
        }
        c.ignore_eos = ignoreEOS ? 1 : 0
        c.logprobs = wireUInt32(logprobs, "GENERATE_REQUEST logprobs")
        return arena.box(c)
    }

    init(_ c: Switchyard__V1__GenerateRequest) throws(WireError) {
        let prompt: Prompt
        if c.has_prompt_text != 0 {
            guard c.n_prompt_token_ids == 0 else {
                throw .invalidField(
                    .generateRequest, field: "prompt_token_ids",
                    reason: "has \(c.n_prompt_token_ids) entries, but must be empty when has_prompt_text is set")
            }
            prompt = .text(swiftString(c.prompt))
        } else {
            guard swiftString(c.prompt).isEmpty else {
                throw .invalidField(
                    .generateRequest, field: "prompt", reason: "is set, but has_prompt_text is not (send one of text or token ids)")
            }
            prompt = .tokenIDs(Array(UnsafeBufferPointer(start: c.prompt_token_ids, count: c.n_prompt_token_ids)))
        }
        guard c.temperature.isFinite, c.temperature >= 0 else {
            throw .invalidField(
                .generateRequest, field: "temperature", reason: "is \(c.temperature), but must be finite and ≥ 0")
        }
        guard c.top_p.isFinite, (0...1).contains(c.top_p) else {
            throw .invalidField(.generateRequest, field: "top_p", reason: "is \(c.top_p), but must be between 0 and 1")
        }
        self.init(
            clientRequestID: ClientRequestID(c.client_request_id), prompt: prompt, maxTokens: Int(c.max_tokens),
            temperature: c.temperature, topP: c.top_p, topK: Int(c.top_k),
            seed: c.has_seed != 0 ? c.seed : nil, ignoreEOS: c.ignore_eos != 0, logprobs: Int(c.logprobs))
    }
}

extension WireMessage.GenerateResult {
    func cMessage(in arena: CArena) -> UnsafeMutablePointer<Switchyard__V1__GenerateResult> {
        var c = Switchyard__V1__GenerateResult()
        switchyard__v1__generate_result__init(&c)
        c.client_request_id = clientRequestID.rawValue
        c.result_json = arena.string(resultJSON)
        return arena.box(c)
    }

    init(_ c: Switchyard__V1__GenerateResult) {
        self.init(clientRequestID: ClientRequestID(c.client_request_id), resultJSON: swiftString(c.result_json))
    }
}
