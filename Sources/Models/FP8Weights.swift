// FP8 checkpoints as DeepSeek-V3 ships them (also MiniMax-M2's and the other `quant_method: fp8` ones):
// config.json's `quantization_config` {quant_method: "fp8", fmt: "e4m3" (MiniMax-M2: "float8_e4m3fn"),
// activation_scheme: "dynamic", weight_block_size: [128, 128]} (`modules_to_not_convert` is not needed:
// the safetensors dtype of each tensor says whether it is FP8); linear weights stored as safetensors
// `F8_E4M3` (float8_e4m3fn) and, beside each, `<name>_scale_inv` [⌈rows / 128⌉, ⌈columns / 128⌉] f32:
// the weight the model means is e4m3 · scale_inv of its block (DeepSeek's weight_dequant, whose grid is
// ceil-divided: edge blocks are partial). Norms, embeddings, the router and lm_head stay bf16 in those
// checkpoints; any matrix may be FP8 here. The weights are used as stored (1 byte a weight plus the
// scales, memory mapped); activations stay f32 (the dequantized reference's arithmetic; "dynamic" names
// activation quantization at run time, which a dequantized run does not do either).
import Foundation
public import Tensors

/// The `quantization_config` of an FP8 checkpoint.
public struct FP8Quantization: Sendable, Equatable {
    /// The weights that share one scale (`weight_block_size`).
    public var block: FP8BlockSize

    /// The safetensors dtype of FP8 weights.
    public static let dtypeName = "F8_E4M3"
    /// The suffix of a weight's scale tensor (`…weight` → `…weight_scale_inv`).
    public static let scaleSuffix = "_scale_inv"

    /// The FP8 quantization config.json declares, nil when it declares none or another method (which
    /// the architecture judges: gpt-oss reads mxfp4).
    /// - Throws: `ModelError.invalidConfiguration` naming the field for an FP8 config Switchyard cannot run.
    static func decode(_ data: Data, file: String = "config.json") throws(ModelError) -> FP8Quantization? {
        func fail(_ message: String) -> ModelError { .invalidConfiguration(file: file, message: message) }
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let config = object["quantization_config"] as? [String: Any],
            config["quant_method"] as? String == "fp8"
        else { return nil }
        // DeepSeek-V3 spells it e4m3, MiniMax-M2 float8_e4m3fn.
        if let format = config["fmt"], !["e4m3", "float8_e4m3fn"].contains(format as? String ?? "") {
            throw fail(
                "quantization_config.fmt is \(format), but only e4m3 (float8_e4m3fn, as DeepSeek-V3 and MiniMax-M2 "
                    + "store their weights) is supported")
        }
        if let scheme = config["activation_scheme"], scheme as? String != "dynamic" {
            throw fail(
                "quantization_config.activation_scheme is \(scheme), but only dynamic is supported "
                    + "(activations are computed in f32; no activation scales are read)")
        }
        // transformers' FineGrainedFP8Config defaults to [128, 128] when the field is absent.
        let sizes: Any = config["weight_block_size"] ?? [128, 128]
        guard let pair = sizes as? [Any], pair.count == 2,
            let rows = (pair[0] as? NSNumber).flatMap(exactInteger),
            let columns = (pair[1] as? NSNumber).flatMap(exactInteger)
        else {
            let shown =
                (try? JSONSerialization.data(withJSONObject: sizes, options: [.fragmentsAllowed]))
                .map { String(decoding: $0, as: UTF8.self) } ?? "\(sizes)"
            throw fail(
                "quantization_config.weight_block_size is \(shown), but must be [rows, columns] of positive "
                    + "integers (per-block scales; per-tensor FP8 is not supported)")
        }
        guard rows >= 1, columns >= 1, columns % 16 == 0 else {
            throw fail(
                "quantization_config.weight_block_size is [\(rows), \(columns)], but needs rows ≥ 1 and columns a "
                    + "positive multiple of 16 (DeepSeek's is [128, 128])")
        }
        return FP8Quantization(block: FP8BlockSize(rows: rows, columns: columns))
    }

    /// An integer JSON number (not a fraction).
    private static func exactInteger(_ number: NSNumber) -> Int? {
        let value = number.doubleValue
        guard value.rounded() == value, abs(value) < 1e9 else { return nil }
        return Int(value)
    }
}

extension Checkpoint {
    /// Checks FP8 weight `name` (shape `shape`) of `file`: config.json declares FP8, the weight is a matrix,
    /// and its scale tensor exists in a float dtype with the shape the block size implies.
    /// - Returns: the block size.
    /// - Throws: `ModelError` naming the tensor and what would be valid.
    func checkFP8Weight(_ name: String, shape: [Int], file: String) throws(ModelError) -> FP8BlockSize {
        guard let fp8 = fp8Quantization else {
            throw .invalidSafetensors(
                file: file,
                message: "tensor \(name) is \(FP8Quantization.dtypeName), but config.json has no quantization_config "
                    + "with quant_method fp8 (and weight_block_size) to say how it is scaled")
        }
        guard shape.count == 2, shape[0] > 0, shape[1] > 0 else {
            throw .invalidSafetensors(
                file: file,
                message: "tensor \(name) is \(FP8Quantization.dtypeName) with shape \(shape), but only non-empty "
                    + "matrices (linear weights) may be FP8")
        }
        let scaleName = name + FP8Quantization.scaleSuffix
        guard let (scaleFile, scaleEntry) = tensors[scaleName] else {
            throw .missingTensor(name: scaleName, searched: files.map(\.displayName))
        }
        guard scaleEntry.dtype != nil else {
            throw .unsupportedTensorDType(
                file: files[scaleFile].displayName, name: scaleName, dtype: scaleEntry.dtypeName)
        }
        let expected = fp8.block.scaleShape(forWeight: shape)
        guard scaleEntry.shape == expected else {
            throw .tensorShapeMismatch(
                file: files[scaleFile].displayName, name: scaleName, shape: scaleEntry.shape, expected: expected)
        }
        return fp8.block
    }

    /// FP8 weight `name` as stored: its bytes borrowed from the memory map, its scales as
    /// ``tensor(named:)`` reads them (borrowed when stored as aligned f32).
    func fp8Weight(named name: String, file fileIndex: Int, entry: SafetensorsEntry) throws(ModelError)
        -> WeightTensor
    {
        let block = try checkFP8Weight(name, shape: entry.shape, file: files[fileIndex].displayName)
        let scales = try tensor(named: name + FP8Quantization.scaleSuffix)
        let bytes = files[fileIndex].bytes(of: entry)
        guard let base = bytes.baseAddress, bytes.count == entry.elementCount else {
            throw .invalidSafetensors(
                file: files[fileIndex].displayName,
                message: "tensor \(name) has \(bytes.count) bytes for shape \(entry.shape)")
        }
        return WeightTensor(
            shape: entry.shape, borrowingFP8: base.assumingMemoryBound(to: UInt8.self), scales: scales, block: block,
            owner: files[fileIndex].mapping)
    }
}
