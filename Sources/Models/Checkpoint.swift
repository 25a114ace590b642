// Vocabulary: a checkpoint is a model directory: config.json plus model.safetensors or shards
// listed by model.safetensors.index.json. Tensors stay memory-mapped: f32, bf16 and FP8 weights are
// used in place (bf16 and FP8 widened by the kernels on the fly; FP8 as FP8Weights.swift describes);
// f16 is converted to f32 when a model or expert store loads it.
public import Foundation
public import Tensors

/// A read-only, memory-mapped model checkpoint whose configuration and tensor shapes have been validated.
public final class Checkpoint: Sendable {
    /// The model directory.
    public let directory: URL
    /// The architecture config.json names.
    public let architecture: Architecture
    /// The validated hyper-parameters, of the architecture's own configuration type.
    public let configuration: any ArchitectureConfiguration
    /// The architecture-neutral shape of the model.
    public let shape: ModelShape
    /// Hex SHA-256 over config.json and every tensor's name, dtype, shape and a sample of its bytes:
    /// equal for the same files, different for other weights; fast on big checkpoints.
    public let fingerprint: String
    /// config.json's FP8 `quantization_config`, nil when the checkpoint declares none.
    public let fp8Quantization: FP8Quantization?
    /// The safetensors files, in file-name order.
    let files: [SafetensorsFile]
    /// Tensor name → (file index, entry).
    let tensors: [String: (file: Int, entry: SafetensorsEntry)]

    /// The name of a single-file checkpoint's weights.
    public static let singleFileName = "model.safetensors"
    /// The name of a sharded checkpoint's index.
    public static let indexFileName = "model.safetensors.index.json"

    /// Reads config.json and the safetensors headers (not the weights) and checks that every tensor
    /// the configuration implies exists with the right shape and a supported dtype.
    /// - Throws: `ModelError` naming the file, field or tensor at fault.
    public init(directory: URL) throws {
        self.directory = directory
        let configURL = directory.appendingPathComponent("config.json")
        let configData: Data
        do {
            configData = try Data(contentsOf: configURL)
        } catch {
            throw ModelError.unreadableFile(file: "config.json", reason: "missing or unreadable in \(directory.path)")
        }
        let (architecture, configuration) = try Self.decodeConfiguration(configData)
        self.architecture = architecture
        self.configuration = configuration
        fp8Quantization = try FP8Quantization.decode(configData)

        files = try Self.openSafetensors(directory: directory)
        var tensors: [String: (file: Int, entry: SafetensorsEntry)] = [:]
        for (index, file) in files.enumerated() {
            for (name, entry) in file.entries {
                if let existing = tensors[name] {
                    throw ModelError.invalidSafetensors(
                        file: file.displayName, message: "tensor \(name) is also in \(files[existing.file].displayName)"
                    )
                }
                tensors[name] = (index, entry)
            }
        }
        self.tensors = tensors
        // Check the tensor count the configuration implies before listing the names: a config.json
        // claiming 10⁹ layers must fail here, not after building 10⁹ names.
        let c = configuration
        let perLayer = c.expertCountPerLayer.multipliedReportingOverflow(by: 3)
        guard !perLayer.overflow, perLayer.partialValue <= tensors.count, c.layerCount <= tensors.count else {
            throw ModelError.invalidConfiguration(
                file: "config.json",
                message: "num_hidden_layers (\(c.layerCount)) and the expert count (\(c.expertCountPerLayer)) need "
                    + "more tensors than the \(tensors.count) in \(files.map(\.displayName).joined(separator: ", "))")
        }
        shape = configuration.shape
        var fp8Weights: [(name: String, shape: [Int], file: String)] = []
        for (name, shape) in configuration.tensorShapes() {
            guard let (fileIndex, entry) = tensors[name] else {
                throw ModelError.missingTensor(name: name, searched: files.map(\.displayName))
            }
            let fileName = files[fileIndex].displayName
            let isFP8 = entry.dtypeName == FP8Quantization.dtypeName
            guard entry.dtype != nil || isFP8 || (entry.dtypeName == "U8" && configuration.storesBytes(name)) else {
                throw ModelError.unsupportedTensorDType(file: fileName, name: name, dtype: entry.dtypeName)
            }
            guard entry.shape == shape else {
                throw ModelError.tensorShapeMismatch(file: fileName, name: name, shape: entry.shape, expected: shape)
            }
            if isFP8 { fp8Weights.append((name, shape, fileName)) }
        }
        fingerprint = Self.computeFingerprint(config: configData, files: files, tensors: tensors)
        for weight in fp8Weights { _ = try checkFP8Weight(weight.name, shape: weight.shape, file: weight.file) }
    }

    /// The names of every tensor in the checkpoint, sorted.
    public var tensorNames: [String] { tensors.keys.sorted() }

    /// The header entry of tensor `name`, or nil.
    public func entry(named name: String) -> SafetensorsEntry? { tensors[name]?.entry }

    /// Tensor `name` converted to f32 (an FP8 one dequantized with its scales, as the kernels do).
    /// - Returns: [shape of the tensor, flattened row-major], f32.
    /// - Throws: `ModelError.missingTensor` or `.unsupportedTensorDType`.
    public func floats(named name: String) throws(ModelError) -> [Float] {
        guard let (fileIndex, entry) = tensors[name] else {
            throw .missingTensor(name: name, searched: files.map(\.displayName))
        }
        if entry.dtypeName == FP8Quantization.dtypeName {
            return try fp8Weight(named: name, file: fileIndex, entry: entry).values
        }
        guard let dtype = entry.dtype else {
            throw .unsupportedTensorDType(file: files[fileIndex].displayName, name: name, dtype: entry.dtypeName)
        }
        let bytes = files[fileIndex].bytes(of: entry)
        let count = entry.elementCount
        return [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            if count > 0, let source = bytes.baseAddress, let destination = buffer.baseAddress {
                convertToFloat(source, dtype: dtype, count: count, into: destination)
            }
            initialized = count
        }
    }

    /// Tensor `name` as f32, borrowed in place from the memory map when it is stored as aligned
    /// little-endian f32 (no copy), otherwise converted into an owned array.
    /// - Returns: the tensor with its checkpoint shape, f32.
    /// - Throws: `ModelError.missingTensor` or `.unsupportedTensorDType`.
    public func tensor(named name: String) throws(ModelError) -> FloatTensor {
        guard let (fileIndex, entry) = tensors[name] else {
            throw .missingTensor(name: name, searched: files.map(\.displayName))
        }
        #if _endian(little)
            let bytes = files[fileIndex].bytes(of: entry)
            if entry.dtype == .f32, entry.elementCount > 0, let base = bytes.baseAddress,
                Int(bitPattern: base) % MemoryLayout<Float>.alignment == 0
            {
                return FloatTensor(
                    shape: entry.shape, borrowing: base.assumingMemoryBound(to: Float.self),
                    owner: files[fileIndex].mapping)
            }
        #endif
        return FloatTensor(shape: entry.shape, values: try floats(named: name))
    }

    /// The bytes of U8 tensor `name` (MXFP4 blocks or scales) in place in the memory map, and the
    /// mapping that keeps them readable.
    /// - Throws: `ModelError.missingTensor`, or `.unsupportedTensorDType` when it is not U8.
    public func bytes(named name: String) throws(ModelError) -> (bytes: UnsafeRawBufferPointer, owner: any AnyObject) {
        guard let (fileIndex, entry) = tensors[name] else {
            throw .missingTensor(name: name, searched: files.map(\.displayName))
        }
        guard entry.dtypeName == "U8" else {
            throw .unsupportedTensorDType(file: files[fileIndex].displayName, name: name, dtype: entry.dtypeName)
        }
        return (files[fileIndex].bytes(of: entry), files[fileIndex].mapping)
    }

    /// Drops the checkpoint files' mapped pages from this process's page tables: once the weights read
    /// every token are copied into weight arenas (``WeightArena``), the pages the copy read would
    /// otherwise count a second time in the resident size. They stay in the page cache, and tensors
    /// still read in place (the embedding, norms, routers) fault their pages back in on use.
    public func releaseMappedPages() {
        for file in files { file.mapping.releasePages() }
    }

    /// Tensor `name` as the kernels read it: bf16 kept as stored (borrowed in place from the memory
    /// map when 2-byte aligned and the host is little-endian, else copied as bit patterns, never
    /// widened); FP8 kept as stored (its bytes borrowed in place, with its `_scale_inv` block scales);
    /// f32 as ``tensor(named:)`` gives it; f16 converted to f32.
    /// - Returns: the tensor with its checkpoint shape, f32, bf16 or FP8.
    /// - Throws: `ModelError.missingTensor` or `.unsupportedTensorDType`; for FP8, what
    ///   ``FP8Quantization`` requires of the weight and its scales.
    public func weight(named name: String) throws(ModelError) -> WeightTensor {
        guard let (fileIndex, entry) = tensors[name] else {
            throw .missingTensor(name: name, searched: files.map(\.displayName))
        }
        if entry.dtypeName == FP8Quantization.dtypeName {
            return try fp8Weight(named: name, file: fileIndex, entry: entry)
        }
        guard entry.dtype == .bf16 else { return WeightTensor(try tensor(named: name)) }
        let bytes = files[fileIndex].bytes(of: entry)
        let count = entry.elementCount
        #if _endian(little)
            if count > 0, let base = bytes.baseAddress, Int(bitPattern: base) % MemoryLayout<UInt16>.alignment == 0 {
                return WeightTensor(
                    shape: entry.shape, borrowingBFloat16: base.assumingMemoryBound(to: UInt16.self),
                    owner: files[fileIndex].mapping)
            }
        #endif
        let bits = (0..<count).map { UInt16(littleEndian: bytes.loadUnaligned(fromByteOffset: $0 * 2, as: UInt16.self)) }
        return WeightTensor(shape: entry.shape, bfloat16Bits: bits)
    }

    // MARK: Loading

    private static func decodeConfiguration(_ data: Data) throws(ModelError) -> (
        Architecture, any ArchitectureConfiguration
    ) {
        struct ArchitectureFields: Decodable {
            var modelType: String?
            var architectures: [String]?
            enum CodingKeys: String, CodingKey {
                case modelType = "model_type"
                case architectures
            }
        }
        let fields = try Architecture.decodeJSON(ArchitectureFields.self, from: data)
        let architecture = try Architecture.resolve(modelType: fields.modelType, architectures: fields.architectures)
        return (architecture, try architecture.configuration(from: data))
    }

    private static func openSafetensors(directory: URL) throws(ModelError) -> [SafetensorsFile] {
        let indexURL = directory.appendingPathComponent(indexFileName)
        guard FileManager.default.fileExists(atPath: indexURL.path) else {
            let single = directory.appendingPathComponent(singleFileName)
            guard FileManager.default.fileExists(atPath: single.path) else {
                throw .unreadableFile(
                    file: singleFileName, reason: "neither it nor \(indexFileName) exists in \(directory.path)")
            }
            return [try SafetensorsFile(url: single, displayName: singleFileName)]
        }
        guard let data = try? Data(contentsOf: indexURL) else {
            throw .unreadableFile(file: indexFileName, reason: "cannot be read")
        }
        struct Index: Decodable {
            var weightMap: [String: String]
            enum CodingKeys: String, CodingKey { case weightMap = "weight_map" }
        }
        let index: Index
        do {
            index = try JSONDecoder().decode(Index.self, from: data)
        } catch {
            throw .invalidConfiguration(file: indexFileName, message: describeDecodingError(error))
        }
        let shardNames = Set(index.weightMap.values).sorted()
        guard !shardNames.isEmpty else {
            throw .invalidConfiguration(file: indexFileName, message: "weight_map is empty")
        }
        var files: [SafetensorsFile] = []
        for shard in shardNames {
            // Shards are plain file names in the model directory; anything else could escape it.
            guard !shard.isEmpty, !shard.contains("/"), !shard.contains("\\"), shard != ".", shard != ".." else {
                throw .invalidConfiguration(
                    file: indexFileName,
                    message: "weight_map names shard \"\(shard)\", expected a file name in the model directory")
            }
            files.append(try SafetensorsFile(url: directory.appendingPathComponent(shard), displayName: shard))
        }
        for (name, shard) in index.weightMap.sorted(by: { $0.key < $1.key }) {
            guard let file = files.first(where: { $0.displayName == shard }), file.entries[name] != nil else {
                throw .invalidSafetensors(
                    file: shard, message: "has no tensor \(name), which \(indexFileName) places there")
            }
        }
        return files
    }

    // MARK: Fingerprint

    /// Bytes hashed per tensor: all of a small tensor, else `sampleCount` evenly spaced chunks.
    private static let sampleChunkByteCount = 256
    private static let sampleCount = 16

    private static func computeFingerprint(
        config: Data, files: [SafetensorsFile], tensors: [String: (file: Int, entry: SafetensorsEntry)]
    ) -> String {
        var hasher = SHA256Hasher()
        hasher.update("config.json\n")
        hasher.update(config)
        // By content, not by file: a sharded and a single-file copy of the same weights agree.
        for name in tensors.keys.sorted() {
            guard let (fileIndex, entry) = tensors[name] else { continue }
            hasher.update("\n\(name) \(entry.dtypeName) \(entry.shape)\n")
            let bytes = files[fileIndex].bytes(of: entry)
            let wholeLimit = sampleChunkByteCount * sampleCount
            if bytes.count <= wholeLimit {
                hasher.update(bytes)
            } else {
                let lastStart = bytes.count - sampleChunkByteCount
                for sample in 0..<sampleCount {
                    let start = lastStart * sample / (sampleCount - 1)
                    hasher.update(UnsafeRawBufferPointer(rebasing: bytes[start..<(start + sampleChunkByteCount)]))
                }
            }
        }
        return hasher.finalizeHex()
    }
}
