// fuzz-http-body: request bodies through the server's own parsing, as the routes run it.
//
// Every input is tried as each body the API reads:
// - POST /v1/completions: `JSONValue.parse` → `JSONObject` → `GenerationPlan.completions`;
// - POST /v1/chat/completions: the same → `GenerationPlan.chat`, rendered with two chat templates
//   (one that takes every role, one that raises on roles that do not alternate, as Mixtral's);
// - POST /v1/placement: `Placement.decode`, as `Scheduler.applyPlacement` runs it.
// Each generation body is planned against a small context (64 tokens) and a large one (2^31), so
// both the "prompt too long" refusals and the arithmetic on large counts are reached.
//
// Properties checked (any failure aborts, which libFuzzer reports as a crash):
// - a refusal is a 4xx `APIError` with a message and a parameter name where one is at fault,
//   and its envelope encodes;
// - an accepted body is a well-formed plan: 1...16 choices, a non-empty prompt that leaves room for
//   max_tokens in the context, sampling parameters the engine's own check accepts, logprobs within
//   0...20, non-empty stop strings — so a request the server accepts is never one the engine traps on;
// - a placement either decodes into one that covers every expert of every MoE layer with valid,
//   sorted, distinct worker slots, and survives a round trip through its own JSON, or is refused
//   with a `PlacementError` naming the problem.
//
// The parsing is the server's own: `Routes.generate` calls these same functions of APIRequests
// (package-level, reached through `@testable import`), then submits `plan.requests` to the engine.
import Coordinator
import Foundation
import HTTPTypes
import Tensors

@testable import APIRequests
@testable import Tokenization

/// Reports a broken property and aborts, so libFuzzer saves the input as a crash.
func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition {
        FileHandle.standardError.write(Data("fuzz-http-body: property broken: \(message())\n".utf8))
        abort()
    }
}

/// The placement bodies are checked against: 4 layers, layer 2 dense, 8 experts each.
let placementExpertCounts = [8, 8, 0, 8]
let contextLengths = [64, 1 << 31]

/// A chat template that renders every role.
let everyRoleTemplate =
    "{{ bos_token }}{% for message in messages %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + eos_token + '\\n' }}"
    + "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% endif %}"
/// Mixtral-8x7B-Instruct's chat template (as `switchyard make-model` writes it): raises on roles
/// that do not alternate user/assistant.
let alternatingTemplate =
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    + "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    + "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    + "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    + "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"

/// The tokenizers (a trained 400-entry BPE vocabulary), one per chat template.
// nonisolated(unsafe): libFuzzer calls LLVMFuzzerInitialize once, before any input, on the thread
// that then runs every input; nothing else touches it.
nonisolated(unsafe) var tokenizers: [Tokenizer] = []

@_cdecl("LLVMFuzzerInitialize")
public func fuzzInitialize(
    _ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?
) -> CInt {
    do {
        let files = try TokenizerTrainer.sentencePieceBPE(vocabularySize: 400)
        tokenizers = try [everyRoleTemplate, alternatingTemplate].map { template in
            try Tokenizer(tokenizerJSON: files.tokenizerJSON, tokenizerConfigJSON: files.tokenizerConfigJSON, chatTemplateJinja: template)
        }
    } catch {
        FileHandle.standardError.write(Data("fuzz-http-body: building the tokenizer failed: \(error)\n".utf8))
        exit(1)
    }
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ start: UnsafeRawPointer?, _ count: Int) -> CInt {
    let bytes = Array(UnsafeRawBufferPointer(start: start, count: count))
    checkGenerationBodies(bytes)
    checkPlacementBody(bytes)
    return 0
}

/// The /v1/completions and /v1/chat/completions paths of `Routes.generate`, up to the plan.
func checkGenerationBodies(_ bytes: [UInt8]) {
    let body: JSONObject
    do {
        body = try JSONObject(parsing: bytes)
    } catch {
        checkRefusal(error)
        return
    }
    for contextLength in contextLengths {
        do {
            let plan = try GenerationPlan.completions(body, tokenizer: tokenizers[0], contextLength: contextLength)
            checkPlan(plan, contextLength: contextLength)
        } catch {
            checkRefusal(error)
        }
        for tokenizer in tokenizers {
            do {
                let plan = try GenerationPlan.chat(body, tokenizer: tokenizer, contextLength: contextLength) {
                    chat throws(SubmitError) in
                    try render(chat, with: tokenizer)
                }
                checkPlan(plan, contextLength: contextLength)
            } catch {
                checkRefusal(error)
            }
        }
    }
}

/// The chat rendering of the engine (`Scheduler.applyChatTemplate`).
func render(_ chat: ChatRendering, with tokenizer: Tokenizer) throws(SubmitError) -> String {
    do {
        return try tokenizer.applyChatTemplate(
            conversation: chat.messages.map(\.templateValue), tools: chat.tools, addGenerationPrompt: chat.addGenerationPrompt,
            arguments: chat.arguments)
    } catch {
        throw .invalid(field: "messages", message: "\(error)")
    }
}

/// A refusal is a client error with a message, and its envelope encodes.
func checkRefusal(_ error: APIError) {
    require((400..<500).contains(error.status.code), "a body was refused with status \(error.status.code): \(error.message)")
    require(error.type == "invalid_request_error", "a body was refused with type \(error.type)")
    require(!error.message.isEmpty, "a refusal has no message")
    require(!error.envelope.jsonBytes().isEmpty, "the envelope of \(error.message) does not encode")
}

/// An accepted body is a plan the engine accepts as it stands (`GenerationEngine.checkedPromptTokenIDs`
/// checks the same ranges; only the prompt's ids against the vocabulary are left to it).
func checkPlan(_ plan: GenerationPlan, contextLength: Int) {
    require((1...GenerationPlan.maxChoices).contains(plan.choiceCount), "n is \(plan.choiceCount)")
    require((0...GenerationPlan.maxTopLogprobs).contains(plan.topLogprobs), "top logprobs is \(plan.topLogprobs)")
    require(plan.reportsLogprobs || plan.topLogprobs == 0, "top logprobs without logprobs")
    require(plan.promptTokenCount > 0, "the prompt is empty")
    require(plan.maxTokens >= 1, "max_tokens is \(plan.maxTokens)")
    require(
        plan.maxTokens <= contextLength - plan.promptTokenCount,
        "prompt \(plan.promptTokenCount) + max_tokens \(plan.maxTokens) exceeds the context \(contextLength)")
    require(!plan.stop.contains(""), "an empty stop string")
    let requests = plan.requests
    require(requests.count == plan.choiceCount, "\(requests.count) requests for \(plan.choiceCount) choices")
    for (index, request) in requests.enumerated() {
        do {
            try request.sampling.validate()
        } catch {
            require(false, "choice \(index) has sampling the engine refuses: \(error)")
        }
        require(request.maxTokens == plan.maxTokens, "choice \(index) has max_tokens \(request.maxTokens)")
        require((0...20).contains(request.logprobs), "choice \(index) asks for \(request.logprobs) logprobs")
        if case .tokenIDs(let ids) = request.prompt {
            require(ids.count == plan.promptTokenCount, "choice \(index) has \(ids.count) prompt ids")
            require(ids.allSatisfy { $0 >= 0 }, "choice \(index) has a negative prompt id")
        }
        require(request.sampling.seed == plan.sampling.seed.map { $0 &+ UInt64(index) }, "choice \(index) has the wrong seed")
    }
}

/// `POST /v1/placement`: what `Scheduler.applyPlacement` parses before it queues the change.
func checkPlacementBody(_ bytes: [UInt8]) {
    let placement: Placement
    do {
        placement = try Placement.decode(Data(bytes), source: "placement", expertCounts: placementExpertCounts)
    } catch {
        require(!error.description.isEmpty, "a placement refusal has no description")
        return
    }
    require(placement.expertCounts == placementExpertCounts, "the placement has expert counts \(placement.expertCounts)")
    require(placement.workerCount >= 1, "the placement has no workers")
    require(Set(placement.workerNames).count == placement.workerCount, "two workers share a name")
    require(!placement.workerNames.contains(""), "a worker name is empty")
    for (layer, experts) in placement.holders.enumerated() {
        for (expert, slots) in experts.enumerated() {
            require(!slots.isEmpty, "layer \(layer) expert \(expert) has no worker")
            require(slots == slots.sorted() && Set(slots).count == slots.count, "layer \(layer) expert \(expert): \(slots)")
            require(slots.allSatisfy { (0..<placement.workerCount).contains($0) }, "layer \(layer) expert \(expert): \(slots)")
        }
    }
    let again: Placement
    do {
        again = try Placement.decode(placement.jsonData(), source: "round trip", expertCounts: placementExpertCounts)
    } catch {
        require(false, "a decoded placement does not decode from its own JSON: \(error)")
        return
    }
    require(again == placement, "the placement changed in a round trip through its JSON")
    require(
        (try? Placement(workerNames: placement.workerNames, holders: placement.holders)) == placement,
        "the decoded placement is not one Placement(workerNames:holders:) accepts")
}
