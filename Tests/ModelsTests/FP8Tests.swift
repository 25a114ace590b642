// FP8 weights as DeepSeek-V3 ships them (float8_e4m3fn with f32 block scales `weight_scale_inv`): the
// e4m3 values and rounding, the products on every kernel path, the checkpoint's checks of
// quantization_config and of the scale tensors, weights held as stored, and a whole FP8 model run
// bitwise as the f32 model of its dequantized weights.
import Foundation
import Kernels
import Models
import TestSupport
import Tensors
import Testing

/// An FP8 product's operands: x [rows, inputs], a random FP8 weight [outputs, inputs] with its scales,
/// and the weight dequantized as the format defines it (e4m3 value · block scale, one f32 product).
private struct FP8Operands {
    let rows: Int, inputs: Int, outputs: Int
    let block: FP8BlockSize
    let x: [Float]
    let bytes: [UInt8]
    let scales: [Float]
    let dequantized: [Float]

    init(rows: Int, inputs: Int, outputs: Int, block: FP8BlockSize, seed: UInt64) {
        var random = TestRandom(seed: seed)
        (self.rows, self.inputs, self.outputs, self.block) = (rows, inputs, outputs, block)
        x = random.floats(rows * inputs)
        // Every finite code (0x7F and 0xFF are NaN).
        bytes = (0..<(outputs * inputs)).map { _ in
            let byte = UInt8(truncatingIfNeeded: random.next())
            return byte & 0x7F == 0x7F ? byte ^ 1 : byte
        }
        let scaleShape = block.scaleShape(forWeight: [outputs, inputs])
        scales = random.floats(scaleShape[0] * scaleShape[1], scale: 0.01)
        var dequantized = [Float](repeating: 0, count: outputs * inputs)
        for row in 0..<outputs {
            for column in 0..<inputs {
                let scale = scales[(row / block.rows) * scaleShape[1] + column / block.columns]
                dequantized[row * inputs + column] = floatFromFloat8E4M3(bytes[row * inputs + column]) * scale
            }
        }
        self.dequantized = dequantized
    }

    func product(isa: KernelISA?, rowCount: Int? = nil) -> [Float] {
        let count = rowCount ?? rows
        return linear(
            Array(x[0..<(count * inputs)]), rowCount: count, fp8Weight: bytes, scales: scales, block: block,
            outputCount: outputs, isa: isa)
    }
}

/// The format's definition of an e4m3fn byte, in Double.
private func definedValue(_ byte: UInt8) -> Double {
    let exponent = Int(byte >> 3) & 15, mantissa = Double(byte & 7)
    if byte & 0x7F == 0x7F { return .nan }
    let magnitude = exponent == 0 ? mantissa / 8 * 0x1p-6 : (1 + mantissa / 8) * pow(2, Double(exponent - 7))
    return byte & 0x80 == 0 ? magnitude : -magnitude
}

@Suite("FP8 weights")
struct FP8Tests {
    @Test(
        "e4m3 bytes widen to the format's values (exact, NaN for 0x7F/0xFF) the same in Tensors and the kernels, and every value rounds back to its byte"
    )
    func values() {
        for byte in UInt8.min...UInt8.max {
            let swift = floatFromFloat8E4M3(byte), kernel = fp8E4M3Value(byte), defined = definedValue(byte)
            if defined.isNaN {
                #expect(swift.isNaN && kernel.isNaN, "0x\(String(byte, radix: 16))")
                #expect(fp8E4M3Byte(swift) == byte, "NaN keeps its sign: 0x\(String(byte, radix: 16))")
                continue
            }
            #expect(swift.bitPattern == kernel.bitPattern, "0x\(String(byte, radix: 16)): \(swift) vs \(kernel)")
            #expect(Double(swift) == defined && swift.sign == (byte & 0x80 == 0 ? .plus : .minus))
            #expect(fp8E4M3Byte(swift) == byte, "0x\(String(byte, radix: 16)) rounds back to itself")
        }
        #expect(fp8E4M3Value(0x7E) == 448 && fp8E4M3Value(0x01) == 0x1p-9 && fp8E4M3Value(0x08) == 0x1p-6)
    }

    @Test("rounding to e4m3 is to the nearest value, ties to the even byte, saturated at ±448")
    func rounding() {
        #expect(fp8E4M3Byte(464) == 0x7E && fp8E4M3Byte(1e9) == 0x7E && fp8E4M3Byte(-.infinity) == 0xFE)
        // 1.0625 is halfway between 1 (0x38, even) and 1.125 (0x39): the even byte; 1.1875 between 0x39 and 0x3A.
        #expect(fp8E4M3Byte(1.0625) == 0x38 && fp8E4M3Byte(1.1875) == 0x3A && fp8E4M3Byte(1.07) == 0x39)
        // Subnormal: 2^-10 is halfway between 0 and 2^-9: 0; 3 · 2^-10 between 0x01 and 0x02: 0x02.
        #expect(fp8E4M3Byte(0x1p-10) == 0x00 && fp8E4M3Byte(3 * 0x1p-10) == 0x02 && fp8E4M3Byte(-0x1p-8) == 0x82)
        var random = TestRandom(seed: 8)
        for _ in 0..<2000 {
            let value = random.nonZeroFloat() * Float(1 << Int(random.next() % 10)) * 0.5
            let byte = fp8E4M3Byte(value)
            // The nearest finite byte of the value's sign, by search; ties to the even byte.
            let candidates = (0...0x7E).map { UInt8($0) | (value < 0 ? 0x80 : 0) }
            let distances = candidates.map { abs(Double(fp8E4M3Value($0)) - Double(value)) }
            let best = distances.min()!
            let nearest = zip(candidates, distances).filter { $0.1 == best }.map(\.0)
            let expected = nearest.count == 1 ? nearest[0] : nearest.first { $0 & 1 == 0 }!
            #expect(byte == expected, "\(value) → 0x\(String(byte, radix: 16)), expected 0x\(String(expected, radix: 16))")
        }
    }

    @Test(
        "quantizeFP8 quantizes as DeepSeek: scale = amax / 448 per block (partial at the edges), each block's largest weight becomes ±448, the rest within half an e4m3 step"
    )
    func quantization() {
        var random = TestRandom(seed: 5)
        let (outputs, inputs) = (40, 70)
        let block = FP8BlockSize(rows: 16, columns: 32)
        let weight = random.floats(outputs * inputs, scale: 0.05)
        let (bytes, scales) = quantizeFP8(weight, outputCount: outputs, inputCount: inputs, block: block)
        #expect(block.scaleShape(forWeight: [outputs, inputs]) == [3, 3] && scales.count == 9)
        for blockRow in 0..<3 {
            for blockColumn in 0..<3 {
                let rows = (blockRow * 16)..<min(blockRow * 16 + 16, outputs)
                let columns = (blockColumn * 32)..<min(blockColumn * 32 + 32, inputs)
                let indices = rows.flatMap { row in columns.map { row * inputs + $0 } }
                let largest = indices.map { abs(weight[$0]) }.max()!
                let scale = scales[blockRow * 3 + blockColumn]
                #expect(scale == largest / 448)
                for index in indices {
                    let restored = fp8E4M3Value(bytes[index]) * scale
                    // e4m3 has 3 mantissa bits: half a step is 2^-4 of the value (2^-10 · scale when subnormal).
                    #expect(abs(restored - weight[index]) <= max(abs(weight[index]) / 16, scale * 0x1p-10) * 1.0001)
                    if abs(weight[index]) == largest { #expect(bytes[index] & 0x7F == 0x7E) }
                }
            }
        }
    }

    @Test(
        "an FP8 checkpoint's linear weights are held as stored (1 byte a weight plus the scales, borrowed from the mapping); embeddings and routers are not FP8; expert digests cover the scales"
    )
    func heldAsStored() throws {
        let directory = try FP8Models.write(.deepseekV3)
        defer { try? FileManager.default.removeItem(at: directory) }
        let checkpoint = try Checkpoint(directory: directory)
        #expect(checkpoint.fp8Quantization?.block == FP8Models.block)
        for name in [
            "model.layers.0.self_attn.q_a_proj.weight", "model.layers.0.self_attn.kv_b_proj.weight",
            "model.layers.0.mlp.down_proj.weight", "model.layers.1.mlp.shared_experts.up_proj.weight",
            "model.layers.1.mlp.experts.3.gate_proj.weight",
        ] {
            let weight = try checkpoint.weight(named: name)
            #expect(weight.isFP8 && weight.isBorrowed, "\(name)")
            let scaleCount = FP8Models.block.scaleShape(forWeight: weight.shape).reduce(1, *)
            #expect(weight.storedByteCount == weight.count + 4 * scaleCount, "\(name)")
            #expect(checkpoint.entry(named: name)?.dtypeName == "F8_E4M3")
        }
        for name in ["model.embed_tokens.weight", "lm_head.weight", "model.layers.1.mlp.gate.weight"] {
            #expect(try !checkpoint.weight(named: name).isFP8, "\(name)")
        }
        let expertNames = checkpoint.expertTensorNames
        #expect(expertNames.contains("model.layers.1.mlp.experts.3.gate_proj.weight_scale_inv"))
        #expect(expertNames.filter { $0.hasSuffix("_scale_inv") }.count * 2 == expertNames.count)
    }

    @Test(
        "an FP8 checkpoint gives bitwise the logits of the f32 checkpoint holding its dequantized weights",
        arguments: [FP8Models.Family.deepseekV3, .minimaxM2])
    func modelEqualsDequantized(family: FP8Models.Family) throws {
        let directory = try FP8Models.write(family)
        let dequantized = directory.appendingPathExtension("f32")
        defer {
            try? FileManager.default.removeItem(at: directory)
            try? FileManager.default.removeItem(at: dequantized)
        }
        try FP8Models.writeDequantized(of: directory, to: dequantized)
        let prompt: [Int32] = [1, 7, 300, 42, 9, 123, 5]
        var logits: [[Float]] = []
        for folder in [directory, dequantized] {
            let checkpoint = try Checkpoint(directory: folder)
            let model = try DecoderStack(checkpoint: checkpoint)
            let store = try ExpertStore(checkpoint: checkpoint, experts: checkpoint.shape.allExperts)
            var cache = model.makeCache(capacity: prompt.count + 1)
            let experts: (LayerIndex, [Float], RoutingDecision) throws -> [Float] = {
                try store.compute(layer: $0, hidden: $1, routing: $2)
            }
            var run = try model.forward(tokens: prompt, cache: &cache, logits: .allTokens, experts: experts)
            run += try model.forward(tokens: [11], cache: &cache, logits: .lastToken, experts: experts)
            logits.append(run)
        }
        #expect(try Checkpoint(directory: dequantized).fp8Quantization == nil)
        #expect(logits[0].map(\.bitPattern) == logits[1].map(\.bitPattern), "\(Difference(logits[0], logits[1], tolerance: 0))")
        #expect(logits[0].contains { $0 != 0 })
    }

    @Test("quantization_config, the FP8 tensors and their scales are checked, each refusal naming what is wrong")
    func refusals() throws {
        let base = try FP8Models.write(.deepseekV3)
        defer { try? FileManager.default.removeItem(at: base) }
        let weight = "model.layers.0.self_attn.o_proj.weight"
        let cases: [(String, (inout String, inout [SafetensorsWriter.Tensor]) -> Void)] = [
            ("tensor \(weight)_scale_inv is missing", { _, tensors in tensors.removeAll { $0.name == weight + "_scale_inv" } }),
            ("tensor \(weight)_scale_inv has shape [3, 2], expected [3, 3]", { _, tensors in
                let index = tensors.firstIndex { $0.name == weight + "_scale_inv" }!
                tensors[index] = SafetensorsWriter.Tensor(
                    name: tensors[index].name, shape: [3, 2], values: [Float](repeating: 1, count: 6), storedAs: .f32)
            }),
            ("tensor \(weight)_scale_inv has dtype U8", { _, tensors in
                let index = tensors.firstIndex { $0.name == weight + "_scale_inv" }!
                tensors[index] = SafetensorsWriter.Tensor(name: tensors[index].name, shape: [3, 3], u8: Array(repeating: 1, count: 9))
            }),
            ("has no quantization_config with quant_method fp8", { config, _ in
                config = FP8Models.replacingQuantization(in: config, with: nil)
            }),
            ("weight_block_size is [16, 24], but needs rows ≥ 1 and columns a positive multiple of 16", { config, _ in
                config = FP8Models.replacingQuantization(
                    in: config, with: #"{"quant_method": "fp8", "weight_block_size": [16, 24]}"#)
            }),
            ("weight_block_size is null, but must be [rows, columns]", { config, _ in
                config = FP8Models.replacingQuantization(
                    in: config, with: #"{"quant_method": "fp8", "weight_block_size": null}"#)
            }),
            ("quantization_config.fmt is e5m2, but only e4m3", { config, _ in
                config = FP8Models.replacingQuantization(
                    in: config, with: #"{"quant_method": "fp8", "fmt": "e5m2", "weight_block_size": [16, 16]}"#)
            }),
            ("quantization_config.activation_scheme is static, but only dynamic", { config, _ in
                config = FP8Models.replacingQuantization(
                    in: config,
                    with: #"{"quant_method": "fp8", "activation_scheme": "static", "weight_block_size": [16, 16]}"#)
            }),
            ("tensor model.norm.weight is F8_E4M3 with shape [40], but only non-empty matrices", { _, tensors in
                let index = tensors.firstIndex { $0.name == "model.norm.weight" }!
                tensors[index] = SafetensorsWriter.Tensor(name: "model.norm.weight", shape: [40], fp8E4M3: Array(repeating: 0x38, count: 40))
                tensors.append(
                    SafetensorsWriter.Tensor(name: "model.norm.weight_scale_inv", shape: [1], values: [1], storedAs: .f32))
            }),
        ]
        for (message, change) in cases {
            let directory = try FP8Models.rewrite(base) { config, tensors in change(&config, &tensors) }
            defer { try? FileManager.default.removeItem(at: directory) }
            do {
                _ = try Checkpoint(directory: directory)
                Issue.record("accepted a checkpoint that should fail with: \(message)")
            } catch {
                #expect("\(error)".contains(message), "\(error)")
            }
        }
    }
}

/// The FP8 products among the kernels' path checks.
extension KernelTests {
    @Test(
        "an FP8 product is bitwise the f32 product on the dequantized weights, on every kernel path and for every row count, block edges partial",
        arguments: [
            (1, 37, 29, FP8BlockSize(rows: 16, columns: 16)), (5, 130, 67, FP8BlockSize(rows: 128, columns: 128)),
            (9, 200, 150, FP8BlockSize(rows: 5, columns: 48)), (3, 300, 260, FP8BlockSize(rows: 128, columns: 128)),
        ])
    func productEqualsDequantized(shape: (rows: Int, inputs: Int, outputs: Int, block: FP8BlockSize)) {
        let operands = FP8Operands(
            rows: shape.rows, inputs: shape.inputs, outputs: shape.outputs, block: shape.block, seed: 17)
        let expected = linear(
            operands.x, rowCount: shape.rows, weight: operands.dequantized, outputCount: shape.outputs, isa: .scalar)
        for isa in KernelISA.alike {
            let actual = operands.product(isa: isa)
            #expect(actual.map(\.bitPattern) == expected.map(\.bitPattern), "\(isa) differs from f32 on the dequantized weights")
            let first = operands.product(isa: isa, rowCount: 1)
            #expect(first.map(\.bitPattern) == Array(expected[0..<shape.outputs]).map(\.bitPattern), "\(isa): row 0 alone")
        }
        #expect(operands.product(isa: nil).map(\.bitPattern) == expected.map(\.bitPattern), "the active path")
    }

    @Test("every path widens an FP8 row to the scalar path's bits, subnormal products and partial blocks included")
    func widening() {
        let row = (0..<300).map { UInt8(truncatingIfNeeded: $0 * 7) }
        for (count, blockColumns) in [(1, 16), (37, 16), (300, 32), (129, 128)] {
            let bytes = Array(row[0..<count])
            let scales = (0..<((count + blockColumns - 1) / blockColumns)).map { $0 % 2 == 0 ? Float(0x1p-140) : 0.37 }
            let scalar = dequantizeFP8Row(bytes, scales: scales, blockColumns: blockColumns, isa: .scalar)
            for isa in KernelISA.alike {
                let widened = dequantizeFP8Row(bytes, scales: scales, blockColumns: blockColumns, isa: isa)
                #expect(
                    zip(widened, scalar).allSatisfy { $0.bitPattern == $1.bitPattern || ($0.isNaN && $1.isNaN) },
                    "\(isa), \(count) bytes in blocks of \(blockColumns)")
            }
            let swift = bytes.indices.map { floatFromFloat8E4M3(bytes[$0]) * scales[$0 / blockColumns] }
            #expect(zip(swift, scalar).allSatisfy { $0.bitPattern == $1.bitPattern || ($0.isNaN && $1.isNaN) })
        }
    }
}

/// Small random FP8 checkpoints (RandomCheckpointWriter with an FP8 block of 16: several blocks per
/// matrix, partial at the edges of the 40-wide hidden size), and their dequantized f32 copies.
enum FP8Models {
    enum Family: Sendable, CustomTestStringConvertible {
        case deepseekV3, minimaxM2
        var testDescription: String { self == .deepseekV3 ? "deepseek_v3" : "minimax_m2" }
    }

    static let block = FP8BlockSize(rows: 16, columns: 16)

    static func write(_ family: Family) throws -> URL {
        var options = RandomModelOptions()
        options.hiddenSize = 40
        options.layerCount = 2
        options.attentionHeadCount = 4
        options.expertCount = 6
        options.expertsPerToken = 2
        options.vocabularySize = 320
        options.intermediateSize = 56
        options.expertIntermediateSize = 24
        options.initializerRange = 0.2
        options.seed = family == .deepseekV3 ? 31 : 32
        options.fp8Block = block
        let architecture: Architecture
        switch family {
        case .deepseekV3:
            architecture = .deepseekV3
            options.keyValueHeadCount = 4
            options.denseLayers = [0]
        case .minimaxM2:
            architecture = .minimaxM2
            options.keyValueHeadCount = 2
            options.headDimension = 16
        }
        let directory = try TestPaths.makeTemporaryDirectory("fp8-\(family.testDescription)")
        try RandomCheckpointWriter.write(options, architecture: architecture, to: directory)
        return directory
    }

    /// The tensors of a single-file checkpoint as written (name, dtype, shape, bytes), in file order.
    static func tensors(of directory: URL) throws -> [SafetensorsWriter.Tensor] {
        let data = try Data(contentsOf: directory.appendingPathComponent(Checkpoint.singleFileName))
        let headerCount = Int(data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        let header = try #require(try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + headerCount))) as? [String: Any])
        var tensors: [(Int, SafetensorsWriter.Tensor)] = []
        for (name, value) in header where name != "__metadata__" {
            let fields = try #require(value as? [String: Any])
            let dtype = try #require(fields["dtype"] as? String)
            let shape = try #require(fields["shape"] as? [Int])
            let offsets = try #require(fields["data_offsets"] as? [Int])
            let bytes = [UInt8](data.subdata(in: (8 + headerCount + offsets[0])..<(8 + headerCount + offsets[1])))
            let tensor =
                dtype == "F8_E4M3"
                ? SafetensorsWriter.Tensor(name: name, shape: shape, fp8E4M3: bytes)
                : SafetensorsWriter.Tensor(name: name, dtype: try #require(DType(safetensorsName: dtype)), shape: shape, bytes: bytes)
            tensors.append((offsets[0], tensor))
        }
        return tensors.sorted { $0.0 < $1.0 }.map(\.1)
    }

    /// config.json's text (as RandomCheckpointWriter renders it: one sorted key a line) with its
    /// quantization_config object replaced by `replacement` (JSON text), or removed when nil.
    /// (Text, not a JSONSerialization round trip: on Linux that may write the integers 0 and 1 as booleans.)
    static func replacingQuantization(in config: String, with replacement: String?) -> String {
        guard let range = config.range(of: #""quantization_config": \{[^}]*\},\n"#, options: .regularExpression) else {
            preconditionFailure("config.json has no quantization_config line: \(config)")
        }
        return config.replacingCharacters(
            in: range, with: replacement.map { "\"quantization_config\": \($0),\n" } ?? "")
    }

    /// A copy of `directory` with config.json's text and the tensors changed by `change`.
    static func rewrite(
        _ directory: URL, _ change: (inout String, inout [SafetensorsWriter.Tensor]) throws -> Void
    ) throws -> URL {
        var config = try String(contentsOf: directory.appendingPathComponent("config.json"), encoding: .utf8)
        var tensors = try tensors(of: directory)
        try change(&config, &tensors)
        let copy = try TestPaths.makeTemporaryDirectory("fp8-changed")
        try Data(config.utf8).write(to: copy.appendingPathComponent("config.json"))
        try SafetensorsWriter.write(tensors, to: copy.appendingPathComponent(Checkpoint.singleFileName))
        return copy
    }

    /// `directory`'s model with every FP8 weight replaced by its dequantized f32 values (as the
    /// checkpoint computes them), the scales dropped and quantization_config removed.
    static func writeDequantized(of directory: URL, to destination: URL) throws {
        let checkpoint = try Checkpoint(directory: directory)
        let copy = try rewrite(directory) { config, tensors in
            config = replacingQuantization(in: config, with: nil)
            tensors = try tensors.compactMap { tensor in
                if tensor.name.hasSuffix("_scale_inv") { return nil }
                guard tensor.isBytes else { return tensor }
                let values = try checkpoint.weight(named: tensor.name).values
                return SafetensorsWriter.Tensor(name: tensor.name, shape: tensor.shape, values: values, storedAs: .f32)
            }
        }
        try FileManager.default.moveItem(at: copy, to: destination)
    }
}
