// Every architecture's port against Hugging Face transformers' float32 reference outputs
// (Tests/Fixtures/models/*/reference.json): greedy tokens, step logits, expert load, and the
// invariant that splitting the experts over several stores changes nothing.
import Foundation
import Models
import Tensors
import Testing

/// Largest accepted |logit - reference logit| (f32 compute, different summation orders).
private let logitTolerance: Float = 1e-4
/// Largest accepted difference between one expert store's combined output and the sum of the
/// partial outputs of several stores, for the same inputs. With k <= 2 they are bit-identical
/// (a + b == b + a); with k >= 3 the stores' partial sums associate the terms differently.
private let splitCombineTolerance: Float = 1e-6
/// Largest accepted |logit| difference between a whole run on one store and on split stores when
/// k >= 3: the 1-ulp combine differences above pass through every later layer.
private let splitLogitTolerance: Float = 1e-5

/// The outcome of greedily decoding one fixture case.
private struct GreedyRun {
    var tokens: [Int32] = []
    var stepLogits: [[Float]] = []
    var prefillLoad: [[Int]]
    var decodeLoad: [[Int]]

    /// Zero loads: a row per layer, empty for a dense layer (as the references write them).
    init(expertCounts: [Int]) {
        prefillLoad = expertCounts.map { Array(repeating: 0, count: $0) }
        decodeLoad = prefillLoad
    }
}

/// Prefills `prompt` and greedily decodes `count` tokens, counting the routing of every MoE layer.
private func greedyDecode(
    model: DecoderStack, prompt: [Int32], count: Int,
    experts: (LayerIndex, [Float], RoutingDecision) throws -> [Float]
) throws -> GreedyRun {
    let c = model.shape
    var run = GreedyRun(expertCounts: c.expertCounts)
    var cache = model.makeCache(capacity: prompt.count + count)
    var isPrefill = true
    func countingExperts(layer: LayerIndex, hidden: [Float], routing: RoutingDecision) throws -> [Float] {
        let load = routing.expertLoad(expertCount: c.expertCounts[layer.rawValue])
        for expert in load.indices {
            if isPrefill {
                run.prefillLoad[layer.rawValue][expert] += load[expert]
            } else {
                run.decodeLoad[layer.rawValue][expert] += load[expert]
            }
        }
        return try experts(layer, hidden, routing)
    }
    var logits = try model.forward(tokens: prompt, cache: &cache, logits: .lastToken, experts: countingExperts)
    isPrefill = false
    for step in 0..<count {
        run.stepLogits.append(logits)
        let token = Int32(argmax(logits[...]))
        run.tokens.append(token)
        // The final sampled token is not fed back (as in the reference's expert_load).
        if step + 1 < count {
            logits = try model.forward(tokens: [token], cache: &cache, logits: .lastToken, experts: countingExperts)
        }
    }
    return run
}

@Suite("Every architecture against transformers fixtures")
struct ArchitectureFixtureTests {
    @Test("Tests/Fixtures/models holds at least one fixture with a reference.json")
    func fixturesExist() {
        #expect(!Fixtures.modelNames.isEmpty, "no fixture with reference.json in \(Fixtures.modelsDirectory.path)")
    }

    @Test(
        "greedy tokens, step logits (within 1e-4) and expert load equal transformers' float32 reference",
        arguments: Fixtures.modelNames)
    func matchesReference(name: String) throws {
        let reference = try Fixtures.reference(name)
        #expect(reference.referenceDType == "float32")
        let checkpoint = try Checkpoint(directory: Fixtures.directory(name))
        let c = checkpoint.shape
        let model = try DecoderStack(checkpoint: checkpoint)
        let allExperts = c.allExperts
        let store = try ExpertStore(checkpoint: checkpoint, experts: allExperts)
        var largest: Float = 0
        for (caseIndex, testCase) in reference.cases.enumerated() {
            let run = try greedyDecode(
                model: model, prompt: testCase.promptTokenIDs, count: testCase.maxNewTokens,
                experts: { try store.compute(layer: $0, hidden: $1, routing: $2) })
            #expect(run.tokens == testCase.completionTokenIDs, "\(name) case \(caseIndex): greedy tokens differ")
            for (step, expected) in testCase.stepLogits.enumerated() where step < run.stepLogits.count {
                // Steps after a token mismatch see other inputs; only the first divergence is informative.
                guard run.tokens.prefix(step) == testCase.completionTokenIDs.prefix(step) else { break }
                let difference = Difference(run.stepLogits[step], expected, tolerance: logitTolerance)
                largest = max(largest, difference.maximum)
                #expect(difference.firstMismatch == nil, "\(name) case \(caseIndex) step \(step): \(difference)")
            }
            #expect(run.prefillLoad == testCase.expertLoad.prefill, "\(name) case \(caseIndex): prefill expert load")
            #expect(run.decodeLoad == testCase.expertLoad.decode, "\(name) case \(caseIndex): decode expert load")
        }
        print("\(name): max abs logit diff vs transformers \(largest)")
    }

    @Test("splitting the experts over three stores gives the logits of one store", arguments: Fixtures.modelNames)
    func splitStoresEqualOneStore(name: String) throws {
        let reference = try Fixtures.reference(name)
        let checkpoint = try Checkpoint(directory: Fixtures.directory(name))
        let c = checkpoint.shape
        let model = try DecoderStack(checkpoint: checkpoint)
        let allExperts = c.allExperts
        let single = try ExpertStore(checkpoint: checkpoint, experts: allExperts)
        let shards = try (0..<3).map { shard in
            try ExpertStore(checkpoint: checkpoint, experts: allExperts.filter { $0.expert.rawValue % 3 == shard })
        }
        // What the coordinator does: send each store only the rows routed to experts it holds, in
        // CSR form, and add the partial sums it returns into the combined output.
        var largestCombineDifference: Float = 0
        func splitExperts(layer: LayerIndex, hidden: [Float], routing: RoutingDecision) throws -> [Float] {
            let combined = try splitCombine(layer: layer, hidden: hidden, routing: routing)
            let whole = try single.compute(layer: layer, hidden: hidden, routing: routing)
            largestCombineDifference = max(
                largestCombineDifference, Difference(combined, whole, tolerance: splitCombineTolerance).maximum)
            return combined
        }
        func splitCombine(layer: LayerIndex, hidden: [Float], routing: RoutingDecision) throws -> [Float] {
            var combined = [Float](repeating: 0, count: hidden.count)
            for store in shards {
                var rows: [Int] = []
                var offsets: [UInt32] = [0]
                var ids: [UInt32] = []
                var weights: [Float] = []
                for token in 0..<routing.tokenCount {
                    var listed = false
                    for slot in 0..<routing.expertsPerToken {
                        let index = token * routing.expertsPerToken + slot
                        let expert = LayerExpert(layer: layer, expert: ExpertID(Int(routing.expertIDs[index])))
                        guard store.heldExperts.contains(expert) else { continue }
                        ids.append(UInt32(routing.expertIDs[index]))
                        weights.append(routing.weights[index])
                        listed = true
                    }
                    if listed {
                        rows.append(token)
                        offsets.append(UInt32(ids.count))
                    }
                }
                guard !rows.isEmpty else { continue }
                let gathered = rows.flatMap { hidden[($0 * c.hiddenSize)..<(($0 + 1) * c.hiddenSize)] }
                let partial = try store.compute(
                    layer: layer, hidden: gathered, rowCount: rows.count, rowExpertOffsets: offsets,
                    expertIDs: ids, weights: weights)
                for (slot, token) in rows.enumerated() {
                    for column in 0..<c.hiddenSize {
                        combined[token * c.hiddenSize + column] += partial[slot * c.hiddenSize + column]
                    }
                }
            }
            return combined
        }
        for testCase in reference.cases {
            let one = try greedyDecode(
                model: model, prompt: testCase.promptTokenIDs, count: testCase.maxNewTokens,
                experts: { try single.compute(layer: $0, hidden: $1, routing: $2) })
            let split = try greedyDecode(
                model: model, prompt: testCase.promptTokenIDs, count: testCase.maxNewTokens,
                experts: splitExperts)
            #expect(split.tokens == one.tokens)
            #expect(split.prefillLoad == one.prefillLoad && split.decodeLoad == one.decodeLoad)
            let logitTolerance: Float = c.expertsPerToken <= 2 ? 0 : splitLogitTolerance
            for (step, logits) in split.stepLogits.enumerated() {
                let difference = Difference(logits, one.stepLogits[step], tolerance: logitTolerance)
                #expect(difference.firstMismatch == nil, "\(name) step \(step): \(difference)")
            }
        }
        if c.expertsPerToken <= 2 {
            #expect(largestCombineDifference == 0, "\(name): combine differs by \(largestCombineDifference)")
        } else {
            #expect(
                largestCombineDifference <= splitCombineTolerance,
                "\(name): combine differs by \(largestCombineDifference)")
        }
        print("\(name): split stores vs one store, largest combine difference \(largestCombineDifference)")
    }

    @Test(
        "prefilling all at once gives the same last logits as feeding tokens one by one",
        arguments: Fixtures.modelNames)
    func incrementalEqualsPrefill(name: String) throws {
        let reference = try Fixtures.reference(name)
        let checkpoint = try Checkpoint(directory: Fixtures.directory(name))
        let c = checkpoint.shape
        let model = try DecoderStack(checkpoint: checkpoint)
        let store = try ExpertStore(
            checkpoint: checkpoint,
            experts: c.allExperts)
        let prompt = reference.cases[0].promptTokenIDs
        let experts: (LayerIndex, [Float], RoutingDecision) throws -> [Float] = {
            try store.compute(layer: $0, hidden: $1, routing: $2)
        }
        var batchCache = model.makeCache(capacity: prompt.count)
        let all = try model.forward(tokens: prompt, cache: &batchCache, logits: .allTokens, experts: experts)
        #expect(all.count == prompt.count * c.vocabularySize)
        var stepCache = model.makeCache(capacity: prompt.count)
        for (index, token) in prompt.enumerated() {
            let logits = try model.forward(tokens: [token], cache: &stepCache, logits: .lastToken, experts: experts)
            let expected = Array(all[(index * c.vocabularySize)..<((index + 1) * c.vocabularySize)])
            let difference = Difference(logits, expected, tolerance: 1e-5)
            #expect(difference.firstMismatch == nil, "\(name) position \(index): \(difference)")
        }
        #expect(stepCache.count == prompt.count && batchCache.count == prompt.count)
    }
}
