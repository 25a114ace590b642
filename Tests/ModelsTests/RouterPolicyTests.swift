import Foundation
import Testing
import Tensors
import TestSupport

@testable import Models

/// One case of Tests/Fixtures/routing/deepseek_routers.json (Scripts/reference/router_fixtures.py).
private struct RouterCase: Decodable {
    struct Token: Decodable {
        let experts: [Int]
        let weights: [Float]
    }
    let name: String
    let scoring: String
    let groupCount: Int?
    let keptGroups: Int
    let groupScore: String
    let topK: Int
    let renormalize: Bool
    let epsilon: Float
    let scale: Float
    let expertCount: Int
    let hidden: [Float]
    let tokenCount: Int
    let routerWeight: [Float]
    let choiceBias: [Float]?
    let tokens: [Token]

    enum CodingKeys: String, CodingKey {
        case name, scoring, hidden, tokens, epsilon, scale
        case groupCount = "group_count", keptGroups = "kept_groups", groupScore = "group_score", topK = "top_k"
        case renormalize, expertCount = "expert_count", tokenCount = "token_count", routerWeight = "router_weight"
        case choiceBias = "choice_bias"
    }

    var router: Router {
        Router(
            weight: WeightTensor(FloatTensor(shape: [expertCount, hidden.count / tokenCount], values: routerWeight)),
            expertCount: expertCount, expertsPerToken: topK,
            policy: RoutingPolicy(
                renormalize: renormalize, scoring: scoring == "sigmoid" ? .sigmoid : .softmax,
                groupLimit: groupCount.map {
                    .init(groupCount: $0, keptGroups: keptGroups, score: groupScore == "best" ? .best : .sumOfBestTwo)
                },
                choiceBias: choiceBias, renormalizeEpsilon: epsilon, scale: scale))
    }
}

private let routerCases: [RouterCase] = {
    struct File: Decodable { let cases: [RouterCase] }
    let url = TestPaths.fixtures.appendingPathComponent("routing/deepseek_routers.json")
    return (try? JSONDecoder().decode(File.self, from: Data(contentsOf: url)).cases) ?? []
}()

@Suite("Routing policies of the DeepSeek family against transformers")
struct RouterPolicyTests {
    @Test("the fixture holds the four routers (V2 greedy and group-limited, V3 noaux_tc with and without renormalisation)")
    func fixtureLoads() {
        #expect(routerCases.map(\.name) == [
            "v2-greedy", "v2-group_limited_greedy", "v3-noaux_tc-norm1", "v3-noaux_tc-norm0",
        ])
    }

    @Test(
        "each token gets transformers' experts, and its weights within 1e-6 (sigmoid or softmax, groups, bias for the choice only, scaling)",
        arguments: routerCases.map(\.name))
    func matchesTransformers(_ name: String) throws {
        let reference = try #require(routerCases.first { $0.name == name })
        let decision = reference.router.route(reference.hidden, tokenCount: reference.tokenCount)
        for (token, expected) in reference.tokens.enumerated() {
            let range = (token * reference.topK)..<((token + 1) * reference.topK)
            let pairs = zip(decision.expertIDs[range], decision.weights[range]).sorted { $0.0 < $1.0 }
            #expect(pairs.map { Int($0.0) } == expected.experts, "token \(token) of \(name)")
            for (got, want) in zip(pairs.map(\.1), expected.weights) {
                #expect(abs(got - want) <= 1e-6 * max(1, abs(want)), "token \(token) of \(name): weight \(got), transformers \(want)")
            }
        }
    }

    @Test("the choice bias changes which experts are chosen but never their weights")
    func biasChoosesOnly() throws {
        let reference = try #require(routerCases.first { $0.name == "v3-noaux_tc-norm0" })
        var unbiased = reference.router
        unbiased = Router(weight: unbiased.weight, expertCount: unbiased.expertCount, expertsPerToken: unbiased.expertsPerToken,
                          policy: { var policy = unbiased.policy; policy.choiceBias = nil; return policy }())
        let biased = reference.router.route(reference.hidden, tokenCount: reference.tokenCount)
        let plain = unbiased.route(reference.hidden, tokenCount: reference.tokenCount)
        #expect(biased.expertIDs != plain.expertIDs)
        // Where both chose an expert, its weight is the same: the bias only ranks.
        for token in 0..<reference.tokenCount {
            for slot in 0..<reference.topK {
                let expert = biased.expertIDs[token * reference.topK + slot]
                if let other = (0..<reference.topK).first(where: { plain.expertIDs[token * reference.topK + $0] == expert }) {
                    #expect(biased.weights[token * reference.topK + slot] == plain.weights[token * reference.topK + other])
                }
            }
        }
    }
}
