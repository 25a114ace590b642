import Foundation
import Models
import TestSupport
import Tensors
import Testing
import Tokenization

@testable import Coordinator

/// Parses a request-style JSON text into the schema value the grammar compiles.
private func schema(_ text: String) throws -> JSONValue {
    try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
}

/// Whether the grammar accepts `text` as a whole: every byte, then the end.
private func accepts(_ grammar: JSONGrammar, _ text: String) -> Bool {
    var state = JSONMatchState(grammar)
    for byte in text.utf8 where !state.advance(byte, grammar) { return false }
    return state.isAccepting(grammar)
}

private let personSchema = """
    {"type": "object", "properties": {
        "name": {"type": "string", "minLength": 1, "maxLength": 12},
        "age": {"type": "integer"},
        "score": {"type": "number"},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 3},
        "kind": {"enum": ["cat", "dog", 7, null]},
        "ok": {"type": "boolean"},
        "nothing": {"type": "null"}
    }, "required": ["name", "age"], "additionalProperties": false}
    """

@Suite("JSON grammar: the response_format automaton")
struct JSONGrammarTests {
    @Test(
        "a schema accepts the JSON it describes (required first, then the rest by name) and nothing else",
        arguments: [
            (#"{"name":"Ann","age":3}"#, true),
            (#"{"name":"Ann","age":-30,"kind":"dog","ok":true,"score":1.5e-3,"tags":["a","b"]}"#, true),
            (#"{"name":"A\u00e9\n","age":0,"nothing":null}"#, true),
            (#"{"name":"Ann","age":3,"kind":7}"#, true),
            (#"{"age":3,"name":"Ann"}"#, false),  // order
            (#"{"name":"Ann"}"#, false),  // age required
            (#"{"name":"","age":3}"#, false),  // minLength
            (#"{"name":"Ann","age":3.5}"#, false),  // integer
            (#"{"name":"Ann","age":01}"#, false),  // leading zero
            (#"{"name":"Ann","age":3,"kind":"cow"}"#, false),  // enum
            (#"{"name":"Ann","age":3,"tags":["a","b","c","d"]}"#, false),  // maxItems
            (#"{"name":"Ann","age":3,"extra":1}"#, false),  // additionalProperties
            (#"{"name":"Ann","age":3} "#, false),  // nothing after the value
            (#"{"name":"Ann","age":3"#, false),  // incomplete
            ("{\"name\":\"A\u{1}\",\"age\":3}", false),  // control character
        ])
    func schemaAcceptance(_ text: String, _ valid: Bool) throws {
        let grammar = try JSONGrammar.compile(schema: schema(personSchema), path: "schema")
        #expect(accepts(grammar, text) == valid)
    }

    @Test(
        "json_object accepts any JSON value and refuses what is not JSON",
        arguments: [
            (#"{"a":[1,{"b":null}],"c":"d"}"#, true), ("[]", true), ("-0.5E+12", true), ("true", true), (#""x""#, true),
            ("{a:1}", false), ("[1,]", false), ("nul", false), ("1.", false), (#"{"a" 1}"#, false),
        ])
    func anyValue(_ text: String, _ valid: Bool) {
        #expect(accepts(.anyValue, text) == valid)
    }

    @Test(
        "unsupported schema keywords and malformed schemas are refused naming the keyword's path",
        arguments: [
            (#"{"type": "string", "format": "date"}"#, "schema.format"),
            (#"{"type": "object", "properties": {"a": {"oneOf": []}}}"#, "schema.properties.a.oneOf"),
            (#"{"type": ["string", "null"]}"#, "schema.type"),
            (#"{"type": "object", "properties": {"a": {}}, "additionalProperties": true}"#, "schema.additionalProperties"),
            (#"{"type": "object", "properties": {"a": {}}, "required": ["b"]}"#, "schema.required"),
            (#"{"type": "integer", "maxLength": 3}"#, "schema.maxLength"),
            (#"{"type": "decimal"}"#, "schema.type"),
            (#"{"enum": [[1]]}"#, "schema.enum"),
        ])
    func refusals(_ text: String, _ field: String) throws {
        #expect(throws: GenerationError.self) { try JSONGrammar.compile(schema: schema(text), path: "schema") }
        do {
            _ = try JSONGrammar.compile(schema: schema(text), path: "schema")
        } catch let error as GenerationError {
            guard case .invalidRequest(let named, _) = error else {
                Issue.record("\(error)")
                return
            }
            #expect(named == field)
        }
    }

    @Test("the trie's allowed tokens equal checking every token's bytes on its own, along a document")
    func trieEqualsBruteForce() throws {
        let tokenizer = try Tokenizer(directory: TestPaths.fixtures.appendingPathComponent("models/top2"))
        let bytes = tokenizer.tokenBytes()
        let trie = VocabularyTrie(tokenBytes: bytes, vocabularySize: bytes.count)
        let grammar = try JSONGrammar.compile(schema: schema(personSchema), path: "schema")
        var state = JSONMatchState(grammar)
        for byte in Array(#"{"name":"Ann","age":-30,"kind":"dog","tags":["a"]}"#.utf8) {
            let mask = trie.allowedTokens(from: state, grammar)
            for (id, tokenBytes) in bytes.enumerated() {
                var expected = false
                if let tokenBytes, !tokenBytes.isEmpty {
                    var probe = state
                    expected = true
                    for next in tokenBytes where !probe.advance(next, grammar) {
                        expected = false
                        break
                    }
                }
                #expect((mask[id >> 6] >> UInt64(id & 63)) & 1 == (expected ? 1 : 0), "token \(id) at \(state)")
            }
            let advanced = state.advance(byte, grammar)
            #expect(advanced)
        }
    }

    @Test("greedy and sampled output of the tiny random model under a json_schema parses and follows the schema")
    func constrainedGeneration() throws {
        let directory = TestPaths.fixtures.appendingPathComponent("models/top2")
        let checkpoint = try Checkpoint(directory: directory)
        let engine = GenerationEngine(
            model: try DecoderStack(checkpoint: checkpoint), tokenizer: try Tokenizer(directory: directory))
        var local = LocalExperts(store: try ExpertStore(
            checkpoint: checkpoint,
            experts: (0..<checkpoint.shape.layerCount).flatMap { layer in
                (0..<checkpoint.shape.expertCount).map { LayerExpert(layer: LayerIndex(layer), expert: ExpertID($0)) }
            }))
        let grammar = try JSONGrammar.compile(schema: schema(personSchema), path: "schema")
        for sampling in [SamplingParameters(temperature: 0)] + (1...4).map({ SamplingParameters(temperature: 1, seed: $0) }) {
            let result = try engine.generate(
                GenerationRequest(
                    prompt: .text("Once upon a time"), maxTokens: 200, sampling: sampling,
                    adjustments: .init(grammar: grammar)),
                experts: &local)
            #expect(result.finishReason == "stop", "\(sampling): \(result.text)")
            let object = try #require(
                try JSONSerialization.jsonObject(with: Data(result.text.utf8), options: [.fragmentsAllowed]) as? [String: Any],
                "\(result.text)")
            let name = try #require(object["name"] as? String)
            #expect((1...12).contains(name.count))
            #expect(object["age"] is Int)
            let allowed: Set<String> = ["name", "age", "score", "tags", "kind", "ok", "nothing"]
            #expect(Set(object.keys).isSubset(of: allowed))
            if let tags = object["tags"] { #expect(((tags as? [String])?.count ?? 99) <= 3) }
            if let ok = object["ok"] { #expect(ok is Bool) }
            if let score = object["score"] { #expect(score is NSNumber) }
            if let kind = object["kind"] {
                #expect(["cat", "dog"].contains(kind as? String) || (kind as? Int) == 7 || kind is NSNull)
            }
            if let nothing = object["nothing"] { #expect(nothing is NSNull) }
        }
        // json_object: any JSON value, complete.
        let any = try engine.generate(
            GenerationRequest(
                prompt: .text("The quick brown fox"), maxTokens: 200, sampling: .init(temperature: 0),
                adjustments: .init(grammar: .anyValue)),
            experts: &local)
        #expect(throws: Never.self, "\(any.text)") {
            try JSONSerialization.jsonObject(with: Data(any.text.utf8), options: [.fragmentsAllowed])
        }
    }
}
