// Bodies the fuzz target fuzz-http-body (Fuzz/) failed on, kept as tests once fixed: found while
// writing its properties and confirmed by running it on them (the short runs had not reached them).
// Each input is also in Fuzz/corpus/fuzz-http-body/regression-*.json, so the fuzzer starts from it.
import APIRequests
import Coordinator
import Hummingbird
import Testing
import Tokenization

@Suite("Bodies fuzz-http-body failed on")
struct FuzzFindingsTests {
    let tokenizer = FakeGenerationService.sharedTokenizer

    func refusal(_ json: String, contextLength: Int) throws -> APIError? {
        let body = try JSONObject(JSONValue.parse(Array(json.utf8)))
        do {
            _ = try GenerationPlan.completions(body, tokenizer: tokenizer, contextLength: contextLength)
            return nil
        } catch {
            return error
        }
    }

    @Test(
        "a temperature or top_p that is valid as a double but not as the engine's Float is refused by name, not accepted",
        arguments: [
            (#"{"prompt": "a", "temperature": 1e300}"#, "temperature", "at most"),
            (#"{"prompt": "a", "top_p": 1e-300}"#, "top_p", "at least"),
        ])
    func samplingBeyondFloat(body: String, param: String, mentions: String) throws {
        let error = try #require(try refusal(body, contextLength: 64))
        #expect(error.status == .badRequest)
        #expect(error.param == param)
        #expect(error.message.contains(mentions), "\(error.message)")
    }

    @Test("a max_tokens near Int.max beside a long prompt is refused with the limit, not an arithmetic overflow")
    func maxTokensOverflow() throws {
        let prompt = Array(repeating: "0", count: 1100).joined(separator: ", ")
        let body = #"{"prompt": [\#(prompt)], "max_tokens": 9223372036854774784}"#
        let error = try #require(try refusal(body, contextLength: 1 << 31))
        #expect(error.status == .badRequest)
        #expect(error.param == "max_tokens")
        #expect(error.message.contains("more than \(Int.max) tokens"), "\(error.message)")
        #expect(error.message.contains("can be at most \((1 << 31) - 1100)"), "\(error.message)")
    }
}
