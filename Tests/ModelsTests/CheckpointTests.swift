// Loading checkpoints: malformed files and configs give specific errors (never a crash); the random
// checkpoint writer produces loadable, deterministic checkpoints with stable fingerprints.
import Foundation
import Models
import Tensors
import TestSupport
import Testing

/// A small valid checkpoint in a fresh temporary directory.
private func writeSmallCheckpoint(seed: UInt64 = 7, dtype: DType = .f32, tie: Bool = false) throws -> URL {
    var options = MixtralCheckpointOptions()
    options.hiddenSize = 16
    options.intermediateSize = 24
    options.attentionHeadCount = 4
    options.keyValueHeadCount = 2
    options.expertCount = 4
    options.expertsPerToken = 2
    options.vocabularySize = 40
    options.slidingWindow = 6
    options.seed = seed
    options.dtype = dtype
    options.tieWordEmbeddings = tie
    let directory = try TestPaths.makeTemporaryDirectory("models-test")
    try MixtralCheckpointWriter.write(options, to: directory)
    return directory
}

/// Rewrites model.safetensors of `directory` after `transform` edits its tensor list.
private func rewriteTensors(
    in directory: URL, _ transform: (inout [SafetensorsWriter.Tensor]) -> Void
) throws {
    let checkpoint = try Checkpoint(directory: directory)
    var tensors = try checkpoint.tensorNames.map { name in
        let entry = checkpoint.entry(named: name)!
        return SafetensorsWriter.Tensor(
            name: name, shape: entry.shape, values: try checkpoint.floats(named: name), storedAs: entry.dtype!)
    }
    transform(&tensors)
    try SafetensorsWriter.write(tensors, to: directory.appendingPathComponent("model.safetensors"))
}

/// Edits config.json of `directory` as a JSON object.
private func editConfig(in directory: URL, _ edit: (inout [String: Any]) -> Void) throws {
    let url = directory.appendingPathComponent("config.json")
    var object = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
    edit(&object)
    try JSONSerialization.data(withJSONObject: object).write(to: url)
}

private func editSafetensorsBytes(in directory: URL, _ edit: (inout [UInt8]) -> Void) throws {
    let url = directory.appendingPathComponent("model.safetensors")
    var bytes = [UInt8](try Data(contentsOf: url))
    edit(&bytes)
    try Data(bytes).write(to: url)
}

/// A header-only safetensors file with the given JSON header and `dataByteCount` zero bytes of data.
private func rawSafetensors(header: String, dataByteCount: Int) -> [UInt8] {
    let headerBytes = Array(header.utf8)
    let length = UInt64(headerBytes.count)
    return (0..<8).map { UInt8(truncatingIfNeeded: length >> UInt64($0 * 8)) } + headerBytes
        + [UInt8](repeating: 0, count: dataByteCount)
}

@Suite("Checkpoint loading")
struct CheckpointTests {
    @Test("a written random checkpoint loads back, and its fingerprint is stable and seed-dependent")
    func writerRoundTrip() throws {
        let first = try writeSmallCheckpoint(seed: 7)
        let again = try writeSmallCheckpoint(seed: 7)
        let other = try writeSmallCheckpoint(seed: 8)
        defer { for url in [first, again, other] { try? FileManager.default.removeItem(at: url) } }
        let checkpoint = try Checkpoint(directory: first)
        #expect(checkpoint.shape.hiddenSize == 16)
        #expect((checkpoint.configuration as! MixtralConfiguration).slidingWindow == 6)
        #expect(checkpoint.architecture == .mixtral)
        #expect(checkpoint.fingerprint.count == 64)
        #expect(try Checkpoint(directory: first).fingerprint == checkpoint.fingerprint)
        #expect(try Checkpoint(directory: again).fingerprint == checkpoint.fingerprint)
        #expect(try Checkpoint(directory: other).fingerprint != checkpoint.fingerprint)
        let firstBytes = try Data(contentsOf: first.appendingPathComponent("model.safetensors"))
        #expect(try Data(contentsOf: again.appendingPathComponent("model.safetensors")) == firstBytes)
        // Weights look like HF's init: norms 1, matrices ~ N(0, 0.02).
        #expect(try checkpoint.floats(named: MixtralTensorNames.finalNorm) == [Float](repeating: 1, count: 16))
        let embedding = try checkpoint.floats(named: MixtralTensorNames.embedding)
        let deviation = (embedding.map { Double($0 * $0) }.reduce(0, +) / Double(embedding.count)).squareRoot()
        #expect(deviation > 0.015 && deviation < 0.025)
    }

    @Test("the written config.json keeps float fields floats, as transformers' strict config validation requires")
    func writtenConfigFloats() throws {
        let directory = try writeSmallCheckpoint()
        defer { try? FileManager.default.removeItem(at: directory) }
        let text = try String(contentsOf: directory.appendingPathComponent("config.json"), encoding: .utf8)
        for fragment in [
            #""router_jitter_noise": 0.0"#, #""attention_dropout": 0.0"#, #""rope_theta": 1000000.0"#,
            #""rms_norm_eps": 1e-05"#, #""model_type": "mixtral""#, #""architectures": ["MixtralForCausalLM"]"#,
            #""sliding_window": 6"#, #""dtype": "float32""#,
        ] {
            #expect(text.contains(fragment), "config.json lacks \(fragment)")
        }
    }

    @Test("a checkpoint re-sharded with an index loads with the same fingerprint and logits")
    func shardedEqualsSingleFile() throws {
        let directory = try writeSmallCheckpoint()
        let sharded = try TestPaths.makeTemporaryDirectory("models-test-sharded")
        defer { for url in [directory, sharded] { try? FileManager.default.removeItem(at: url) } }
        let single = try Checkpoint(directory: directory)
        let tensors = try single.tensorNames.map { name in
            SafetensorsWriter.Tensor(
                name: name, shape: single.entry(named: name)!.shape, values: try single.floats(named: name),
                storedAs: .f32)
        }
        let halves = [Array(tensors.prefix(tensors.count / 2)), Array(tensors.dropFirst(tensors.count / 2))]
        var weightMap: [String: String] = [:]
        for (index, half) in halves.enumerated() {
            let file = "model-0000\(index + 1)-of-00002.safetensors"
            try SafetensorsWriter.write(half, to: sharded.appendingPathComponent(file))
            for tensor in half { weightMap[tensor.name] = file }
        }
        try JSONSerialization.data(withJSONObject: ["metadata": [:], "weight_map": weightMap])
            .write(to: sharded.appendingPathComponent("model.safetensors.index.json"))
        try FileManager.default.copyItem(
            at: directory.appendingPathComponent("config.json"), to: sharded.appendingPathComponent("config.json"))
        let reloaded = try Checkpoint(directory: sharded)
        #expect(reloaded.fingerprint == single.fingerprint)
        let tokens: [Int32] = [1, 4, 9, 16, 25]
        func logits(_ checkpoint: Checkpoint) throws -> [Float] {
            let model = try DecoderStack(checkpoint: checkpoint)
            let store = try ExpertStore(
                checkpoint: checkpoint,
                experts: (0..<2).flatMap { l in (0..<4).map { LayerExpert(layer: LayerIndex(l), expert: ExpertID($0)) }
                })
            var cache = model.makeCache(capacity: tokens.count)
            return try model.forward(tokens: tokens, cache: &cache, logits: .allTokens) {
                try store.compute(layer: $0, hidden: $1, routing: $2)
            }
        }
        #expect(try logits(reloaded) == logits(single))
    }

    @Test(
        "written bf16 and tied checkpoints load and run", arguments: [(DType.bf16, false), (.f16, true), (.f32, true)])
    func writerOptions(dtype: DType, tie: Bool) throws {
        let directory = try writeSmallCheckpoint(dtype: dtype, tie: tie)
        defer { try? FileManager.default.removeItem(at: directory) }
        let checkpoint = try Checkpoint(directory: directory)
        #expect(checkpoint.entry(named: MixtralTensorNames.embedding)?.dtype == dtype)
        #expect((checkpoint.entry(named: MixtralTensorNames.lmHead) == nil) == tie)
        // f32 weights are used in place from the memory map; 16-bit ones are converted.
        let embedding = try checkpoint.tensor(named: MixtralTensorNames.embedding)
        #expect(embedding.isBorrowed == (dtype == .f32))
        #expect(embedding.values == (try checkpoint.floats(named: MixtralTensorNames.embedding)))
        let model = try DecoderStack(checkpoint: checkpoint)
        let store = try ExpertStore(
            checkpoint: checkpoint,
            experts: (0..<2).flatMap { l in (0..<4).map { LayerExpert(layer: LayerIndex(l), expert: ExpertID($0)) } })
        var cache = model.makeCache(capacity: 8)
        let logits = try model.forward(tokens: [1, 5, 9], cache: &cache, logits: .lastToken) {
            try store.compute(layer: $0, hidden: $1, routing: $2)
        }
        #expect(logits.count == 40 && logits.allSatisfy(\.isFinite))
    }

    @Test("a truncated safetensors file is rejected naming the tensor outside the data")
    func truncatedFile() throws {
        let directory = try writeSmallCheckpoint()
        defer { try? FileManager.default.removeItem(at: directory) }
        try editSafetensorsBytes(in: directory) { $0.removeLast($0.count / 3) }
        let error = modelError { _ = try Checkpoint(directory: directory) }
        guard case .invalidSafetensors(let file, let message) = error else {
            Issue.record("expected invalidSafetensors, got \(String(describing: error))")
            return
        }
        #expect(file == "model.safetensors")
        #expect(message.contains("outside the") && message.contains("data section"), "\(message)")
    }

    @Test(
        "a header length beyond the file, a short file and a non-JSON header are rejected",
        arguments: [
            "length", "short", "json",
        ])
    func badHeader(kind: String) throws {
        let directory = try writeSmallCheckpoint()
        defer { try? FileManager.default.removeItem(at: directory) }
        try editSafetensorsBytes(in: directory) { bytes in
            switch kind {
            case "length": for index in 0..<8 { bytes[index] = index == 5 ? 1 : 0 }
            case "short": bytes = [1, 2, 3]
            default: bytes[8] = UInt8(ascii: "[")
            }
        }
        let error = modelError { _ = try Checkpoint(directory: directory) }
        guard case .invalidSafetensors(_, let message) = error else {
            Issue.record("expected invalidSafetensors, got \(String(describing: error))")
            return
        }
        let expected = ["length": "exceeds", "short": "shorter than the 8-byte header", "json": "not"][kind]!
        #expect(message.contains(expected), "\(message)")
    }

    @Test(
        "overlapping offsets, wrong byte counts and unknown dtypes in a header are rejected",
        arguments: [
            (
                #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
                "overlapping"
            ),
            (#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, "needs 12"),
            (#"{"a":{"dtype":"Q4","shape":[2],"data_offsets":[0,8]}}"#, "unknown dtype"),
            (#"{"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}}"#, "non-negative"),
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#, "outside"),
        ])
    func badEntries(header: String, expected: String) throws {
        let directory = try writeSmallCheckpoint()
        defer { try? FileManager.default.removeItem(at: directory) }
        try Data(rawSafetensors(header: header, dataByteCount: 16))
            .write(to: directory.appendingPathComponent("model.safetensors"))
        let error = modelError { _ = try Checkpoint(directory: directory) }
        guard case .invalidSafetensors(_, let message) = error else {
            Issue.record("expected invalidSafetensors, got \(String(describing: error))")
            return
        }
        #expect(message.contains(expected), "\(message)")
    }

    @Test("a tensor of the wrong shape is rejected naming it and the expected shape")
    func wrongShape() throws {
        let directory = try writeSmallCheckpoint()
        defer { try? FileManager.default.removeItem(at: directory) }
        let name = MixtralTensorNames.query(0)
        try rewriteTensors(in: directory) { tensors in
            let index = tensors.firstIndex { $0.name == name }!
            tensors[index].shape = [8, 32]
        }
        let error = modelError { _ = try Checkpoint(directory: directory) }
        #expect(
            error == .tensorShapeMismatch(file: "model.safetensors", name: name, shape: [8, 32], expected: [16, 16]))
        #expect(error?.description == "model.safetensors: tensor \(name) has shape [8, 32], expected [16, 16]")
    }

    @Test("a missing tensor is rejected naming it")
    func missingTensor() throws {
        let directory = try writeSmallCheckpoint()
        defer { try? FileManager.default.removeItem(at: directory) }
        let name = MixtralTensorNames.expertDown(1, 3)
        try rewriteTensors(in: directory) { tensors in tensors.removeAll { $0.name == name } }
        let error = modelError { _ = try Checkpoint(directory: directory) }
        #expect(error == .missingTensor(name: name, searched: ["model.safetensors"]))
    }

    @Test(
        "bad config.json values are rejected naming the field and the valid range",
        arguments: [
            ("num_experts_per_tok", "9", "num_experts_per_tok is 9, but must be between 1 and num_local_experts (4)"),
            ("num_experts_per_tok", "0", "num_experts_per_tok is 0, but must be between 1 and num_local_experts (4)"),
            ("num_key_value_heads", "3", "num_key_value_heads is 3, but must divide num_attention_heads (4)"),
            ("hidden_size", "-16", "hidden_size is -16, but must be at least 1"),
            ("rms_norm_eps", "0.0", "rms_norm_eps is 0.0, but must be a positive number"),
            ("sliding_window", "0", "sliding_window is 0, but must be null or at least 1"),
            ("hidden_act", "\"gelu\"", "hidden_act is gelu, but only silu is supported"),
            ("vocab_size", "\"many\"", "field vocab_size is not a valid Int"),
            ("num_local_experts", "null", "field num_local_experts is null, expected Int"),
            (
                "num_hidden_layers", "1000000000",
                "num_hidden_layers (1000000000) and the expert count (4) need more tensors"
            ),
            ("rope_parameters", #"{"rope_theta": "big"}"#, "field rope_parameters.rope_theta is not a valid Double"),
        ])
    func badConfigValue(field: String, jsonValue: String, expected: String) throws {
        let directory = try writeSmallCheckpoint()
        defer { try? FileManager.default.removeItem(at: directory) }
        let value = try JSONSerialization.jsonObject(with: Data(jsonValue.utf8), options: .fragmentsAllowed)
        try editConfig(in: directory) { $0[field] = value }
        let error = modelError { _ = try Checkpoint(directory: directory) }
        #expect(error?.description.hasPrefix("config.json: ") == true, "\(String(describing: error))")
        #expect(error?.description.contains(expected) == true, "\(String(describing: error))")
    }

    @Test("a missing config field and unsupported architectures are clear errors")
    func missingFieldAndArchitecture() throws {
        let directory = try writeSmallCheckpoint()
        defer { try? FileManager.default.removeItem(at: directory) }
        try editConfig(in: directory) { $0["num_hidden_layers"] = nil }
        #expect(
            modelError { _ = try Checkpoint(directory: directory) }?.description
                == "config.json: field num_hidden_layers is missing")
        try editConfig(in: directory) {
            $0["num_hidden_layers"] = 2
            $0["model_type"] = "llama"
        }
        #expect(
            modelError { _ = try Checkpoint(directory: directory) }?.description
                == "config.json: architecture model_type llama is not supported; supported: mixtral (MixtralForCausalLM), "
                + "qwen3_moe (Qwen3MoeForCausalLM), qwen2_moe (Qwen2MoeForCausalLM), olmoe (OlmoeForCausalLM), "
                + "glm4_moe (Glm4MoeForCausalLM), deepseek_v3 (DeepseekV3ForCausalLM), deepseek_v2 (DeepseekV2ForCausalLM), "
                + "minimax_m2 (MiniMaxM2ForCausalLM), gpt_oss (GptOssForCausalLM)"
        )
        try editConfig(in: directory) { $0["model_type"] = nil }
        #expect(try Checkpoint(directory: directory).architecture == .mixtral)
        try Data("[1, 2]".utf8).write(to: directory.appendingPathComponent("config.json"))
        #expect(
            modelError { _ = try Checkpoint(directory: directory) }?.description == "config.json: is not a JSON object")
        try Data("{".utf8).write(to: directory.appendingPathComponent("config.json"))
        #expect(
            modelError { _ = try Checkpoint(directory: directory) }?.description == "config.json: is not valid JSON")
    }

    @Test("config.json in the older layout (top-level rope_theta, eos list, no head_dim) decodes")
    func olderConfigLayout() throws {
        let json = """
            {"model_type": "mixtral", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
             "num_attention_heads": 4, "num_key_value_heads": 4, "num_local_experts": 2, "num_experts_per_tok": 1,
             "vocab_size": 10, "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "sliding_window": null,
             "max_position_embeddings": 64, "eos_token_id": [2, 3], "torch_dtype": "bfloat16"}
            """
        let configuration = try JSONDecoder().decode(MixtralConfiguration.self, from: Data(json.utf8))
        #expect(configuration.ropeTheta == 10_000)
        #expect(configuration.headDimension == 8)
        #expect(configuration.eosTokenIDs == [2, 3])
        #expect(configuration.slidingWindow == nil)
        #expect(configuration.tieWordEmbeddings == false)
        try configuration.validate()
        let reencoded = try JSONDecoder().decode(
            MixtralConfiguration.self, from: JSONEncoder().encode(configuration))
        #expect(reencoded == configuration)
    }

    @Test("a sharded index naming a shard outside the directory or a misplaced tensor is rejected")
    func badShardIndex() throws {
        let directory = try writeSmallCheckpoint()
        defer { try? FileManager.default.removeItem(at: directory) }
        let index = directory.appendingPathComponent("model.safetensors.index.json")
        try Data(#"{"weight_map": {"model.norm.weight": "../model.safetensors"}}"#.utf8).write(to: index)
        guard
            case .invalidConfiguration(let file, let message) = modelError({ _ = try Checkpoint(directory: directory) })
        else {
            Issue.record("expected invalidConfiguration")
            return
        }
        #expect(file == "model.safetensors.index.json" && message.contains("../model.safetensors"))
        try Data(#"{"weight_map": {"no.such.tensor": "model.safetensors"}}"#.utf8).write(to: index)
        #expect(
            modelError { _ = try Checkpoint(directory: directory) }
                == .invalidSafetensors(
                    file: "model.safetensors",
                    message: "has no tensor no.such.tensor, which model.safetensors.index.json places there"))
    }
}

@Suite("Dense model and expert store contracts")
struct ModelContractTests {
    @Test("forward rejects bad tokens and a full cache, and leaves the cache unchanged when experts throw")
    func forwardErrors() throws {
        struct Unavailable: Error {}
        let directory = try writeSmallCheckpoint()
        defer { try? FileManager.default.removeItem(at: directory) }
        let checkpoint = try Checkpoint(directory: directory)
        let model = try DecoderStack(checkpoint: checkpoint)
        let store = try ExpertStore(
            checkpoint: checkpoint,
            experts: (0..<2).flatMap { l in (0..<4).map { LayerExpert(layer: LayerIndex(l), expert: ExpertID($0)) } })
        let experts: (LayerIndex, [Float], RoutingDecision) throws -> [Float] = {
            try store.compute(layer: $0, hidden: $1, routing: $2)
        }
        var cache = model.makeCache(capacity: 4)
        #expect(
            modelError { _ = try model.forward(tokens: [40], cache: &cache, logits: .lastToken, experts: experts) }
                == .invalidInput("forward: token id 40 at index 0 is outside the vocabulary (0 ..< 40)"))
        #expect(
            modelError { _ = try model.forward(tokens: [], cache: &cache, logits: .lastToken, experts: experts) } != nil
        )
        _ = try model.forward(tokens: [1, 2, 3], cache: &cache, logits: .lastToken, experts: experts)
        #expect(cache.count == 3)
        #expect(throws: Unavailable.self) {
            _ = try model.forward(tokens: [4], cache: &cache, logits: .lastToken) { _, _, _ in throw Unavailable() }
        }
        #expect(cache.count == 3)
        #expect(
            modelError { _ = try model.forward(tokens: [1, 2], cache: &cache, logits: .lastToken, experts: experts) }
                == .invalidInput("forward: KV cache holds 3 of 4 tokens; 2 more do not fit"))
        #expect(
            modelError {
                _ = try model.forward(tokens: [1], cache: &cache, logits: .lastToken) { _, h, _ in Array(h.dropLast()) }
            }
                == .invalidInput("experts of layer 0 returned 15 values, expected [1, 16]"))
    }

    @Test("routing weights sum to 1 per token and follow the top-k order")
    func routingIsRenormalised() throws {
        let directory = try writeSmallCheckpoint()
        defer { try? FileManager.default.removeItem(at: directory) }
        let model = try DecoderStack(checkpoint: try Checkpoint(directory: directory))
        var cache = model.makeCache(capacity: 5)
        var routings: [RoutingDecision] = []
        _ = try model.forward(tokens: [1, 7, 3, 9, 11], cache: &cache, logits: .allTokens) { _, hidden, routing in
            routings.append(routing)
            return [Float](repeating: 0, count: hidden.count)
        }
        #expect(routings.count == 2)
        for routing in routings {
            #expect(routing.tokenCount == 5 && routing.expertsPerToken == 2)
            for token in 0..<5 {
                let weights = routing.weights[(token * 2)..<(token * 2 + 2)]
                #expect(abs(weights.reduce(0, +) - 1) < 1e-6)
                #expect(weights.first! >= weights.last!)
                #expect(Set(routing.experts(ofToken: token)).count == 2)
            }
        }
    }

    @Test(
        "the expert store rejects experts it does not hold and malformed CSR batches",
        arguments: [
            ("not held", 16, 1, [0, 1] as [UInt32], [3] as [UInt32], [1] as [Float]),
            ("offsets count", 16, 1, [0] as [UInt32], [0] as [UInt32], [1] as [Float]),
            ("offsets end", 16, 1, [0, 2] as [UInt32], [0] as [UInt32], [1] as [Float]),
            ("decreasing", 32, 2, [0, 2, 1] as [UInt32], [0] as [UInt32], [1] as [Float]),
            ("weights", 16, 1, [0, 1] as [UInt32], [0] as [UInt32], [] as [Float]),
            ("hidden size", 15, 1, [0, 1] as [UInt32], [0] as [UInt32], [1] as [Float]),
            ("expert range", 16, 1, [0, 1] as [UInt32], [9] as [UInt32], [1] as [Float]),
        ] as [(String, Int, Int, [UInt32], [UInt32], [Float])])
    func expertStoreErrors(
        kind: String, hiddenCount: Int, rowCount: Int, offsets: [UInt32], ids: [UInt32], weights: [Float]
    ) throws {
        let directory = try writeSmallCheckpoint()
        defer { try? FileManager.default.removeItem(at: directory) }
        let checkpoint = try Checkpoint(directory: directory)
        let store = try ExpertStore(
            checkpoint: checkpoint, experts: [LayerExpert(layer: LayerIndex(0), expert: ExpertID(0))])
        #expect(store.heldExperts == [LayerExpert(layer: LayerIndex(0), expert: ExpertID(0))])
        let error = modelError {
            _ = try store.compute(
                layer: LayerIndex(0), hidden: [Float](repeating: 0.5, count: hiddenCount), rowCount: rowCount,
                rowExpertOffsets: offsets, expertIDs: ids, weights: weights)
        }
        if kind == "not held" {
            #expect(error == .expertNotHeld(LayerExpert(layer: LayerIndex(0), expert: ExpertID(3))))
        } else {
            guard case .invalidInput = error else {
                Issue.record("\(kind): expected invalidInput, got \(String(describing: error))")
                return
            }
        }
        #expect(
            modelError {
                _ = try ExpertStore(
                    checkpoint: checkpoint, experts: [LayerExpert(layer: LayerIndex(2), expert: ExpertID(0))])
            } != nil)
    }
}
