// Helpers shared by the Models tests: a deterministic random source, difference reports, and the
// reference.json fixture format (spec/model-fixtures.md).
import Foundation
import Models
import TestSupport
import Tensors

/// A deterministic generator for test inputs (SplitMix64).
struct TestRandom {
    private var source: SplitMix64
    init(seed: UInt64) { source = SplitMix64(seed: seed) }

    mutating func next() -> UInt64 { source.next() }

    /// Uniform in [-1, 1), never exactly 0.
    mutating func nonZeroFloat() -> Float {
        while true {
            let value = Float(Double(next() >> 11) / 9_007_199_254_740_992 * 2 - 1)
            if value != 0 { return value }
        }
    }

    mutating func floats(_ count: Int, scale: Float = 1) -> [Float] {
        (0..<count).map { _ in nonZeroFloat() * scale }
    }
}

/// The largest absolute difference between two equally long arrays and where it first exceeds `tolerance`.
struct Difference: CustomStringConvertible {
    var maximum: Float = 0
    var maximumIndex = -1
    var firstMismatch: (index: Int, actual: Float, expected: Float)?

    init(_ actual: [Float], _ expected: [Float], tolerance: Float) {
        precondition(actual.count == expected.count, "compared arrays differ in length")
        for index in actual.indices {
            let difference = abs(actual[index] - expected[index])
            if difference > maximum || difference.isNaN {
                maximum = difference.isNaN ? .infinity : difference
                maximumIndex = index
            }
            if firstMismatch == nil, !(difference <= tolerance) {
                firstMismatch = (index, actual[index], expected[index])
            }
        }
    }

    var description: String {
        var text = "max abs diff \(maximum) at index \(maximumIndex)"
        if let firstMismatch {
            text +=
                "; first mismatch at index \(firstMismatch.index): \(firstMismatch.actual) vs expected \(firstMismatch.expected)"
        }
        return text
    }
}

/// reference.json of one model fixture.
struct ModelReference: Decodable {
    struct Case: Decodable {
        struct ExpertLoad: Decodable {
            /// [layers][experts] prompt tokens routed to each expert.
            var prefill: [[Int]]
            /// [layers][experts] decode-step tokens routed to each expert.
            var decode: [[Int]]
        }
        var prompt: String
        var promptTokenIDs: [Int32]
        var maxNewTokens: Int
        var completionTokenIDs: [Int32]
        /// [maxNewTokens][vocabularySize] f32 logits that chose each completion token.
        var stepLogits: [[Float]]
        var expertLoad: ExpertLoad

        enum CodingKeys: String, CodingKey {
            case prompt
            case promptTokenIDs = "prompt_token_ids"
            case maxNewTokens = "max_new_tokens"
            case completionTokenIDs = "completion_token_ids"
            case stepLogits = "step_logits"
            case expertLoad = "expert_load"
        }
    }
    var referenceDType: String
    var storedDType: String
    var cases: [Case]

    enum CodingKeys: String, CodingKey {
        case referenceDType = "reference_dtype"
        case storedDType = "stored_dtype"
        case cases
    }
}

enum Fixtures {
    /// `Tests/Fixtures/models`.
    static let modelsDirectory = TestPaths.fixtures.appendingPathComponent("models")

    /// Every fixture directory under `Tests/Fixtures/models` that has a reference.json, sorted.
    static let modelNames: [String] = {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: modelsDirectory.path)) ?? []
        return names.filter {
            FileManager.default.fileExists(atPath: modelsDirectory.appendingPathComponent("\($0)/reference.json").path)
        }.sorted()
    }()

    static func directory(_ name: String) -> URL { modelsDirectory.appendingPathComponent(name) }

    static func reference(_ name: String) throws -> ModelReference {
        let data = try Data(contentsOf: directory(name).appendingPathComponent("reference.json"))
        return try JSONDecoder().decode(ModelReference.self, from: data)
    }
}

/// The index of the largest value (lowest index on ties), as greedy decoding picks.
func argmax(_ values: ArraySlice<Float>) -> Int {
    var best = values.startIndex
    for index in values.indices where values[index] > values[best] { best = index }
    return best - values.startIndex
}

/// Runs `body` and returns the `ModelError` it throws, or nil if it throws nothing or another error.
func modelError(_ body: () throws -> Void) -> ModelError? {
    do {
        try body()
        return nil
    } catch let error as ModelError {
        return error
    } catch {
        return nil
    }
}
