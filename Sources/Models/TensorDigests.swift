// Full-content SHA-256 digests of a checkpoint's tensors. The fingerprint samples 16 × 256 bytes a
// tensor, enough to tell models apart but not to notice a corrupted copy; a worker proves it holds
// the coordinator's expert weights with these instead. Hashing a large checkpoint takes a while
// (hundreds of MB/s), so each safetensors file's digests are computed once and cached in a small JSON
// file beside it, or under a cache directory when the model directory cannot be written, keyed by
// the file's size and modification time: a second start reads them back without hashing.
import Crypto
public import Foundation
public import Tensors

/// Where tensor digests are cached: beside each safetensors file (`<file>.digests.json`), else in
/// `fallbackDirectory` under a name derived from the file's resolved path.
public struct DigestCache: Sendable {
    /// Used when the file beside the weights cannot be written (a read-only model directory).
    public var fallbackDirectory: URL

    public init(fallbackDirectory: URL) {
        self.fallbackDirectory = fallbackDirectory
    }

    /// `$SWITCHYARD_CACHE_DIR/tensor-digests`, else `$XDG_CACHE_HOME/switchyard/tensor-digests`, else
    /// `~/.cache/switchyard/tensor-digests`.
    public static func standard(environment: [String: String] = ProcessInfo.processInfo.environment) -> DigestCache {
        let base: URL
        if let directory = environment["SWITCHYARD_CACHE_DIR"], !directory.isEmpty {
            base = URL(fileURLWithPath: directory)
        } else if let directory = environment["XDG_CACHE_HOME"], !directory.isEmpty {
            base = URL(fileURLWithPath: directory).appendingPathComponent("switchyard")
        } else {
            base = FileManager.default.homeDirectoryForCurrentUser.appendingPathComponent(".cache/switchyard")
        }
        return DigestCache(fallbackDirectory: base.appendingPathComponent("tensor-digests"))
    }

    /// The suffix of the cache file written beside a safetensors file.
    public static let sidecarSuffix = ".digests.json"
}

/// The digests of a model's expert tensors, in the order they travel in HELLO.
public struct ExpertTensorDigests: Sendable, Equatable {
    /// Expert tensor names: MoE layers ascending, experts ascending, then gate, up, down.
    public let names: [String]
    /// `digests[i]` is the SHA-256 of the bytes of `names[i]`.
    public let digests: [TensorDigest]

    public init(names: [String], digests: [TensorDigest]) {
        precondition(names.count == digests.count, "one digest per expert tensor name")
        self.names = names
        self.digests = digests
    }

    /// The tensors whose digest in `other` (in the same order) differs from this one's, by name.
    /// - Returns: nil when `other` has another count (it describes another list of tensors).
    public func mismatches(_ other: [TensorDigest]) -> [String]? {
        guard other.count == digests.count else { return nil }
        return names.indices.filter { digests[$0] != other[$0] }.map { names[$0] }
    }
}

extension Checkpoint {
    /// The names of every expert tensor, in the order of ``ExpertTensorDigests``.
    public var expertTensorNames: [String] {
        let spec = configuration.expertSpec
        return shape.allExperts.flatMap { layerExpert in
            let names = spec.tensorNames(layer: layerExpert.layer.rawValue, expert: layerExpert.expert.rawValue)
            return [names.gate, names.up, names.down].flatMap(storedTensorNames)
        }
    }

    /// The tensors that hold the expert weight `name`: itself (and its `_scale_inv` when it is FP8:
    /// the scales are as much the weight as its bytes), or, when the checkpoint stores it quantized as
    /// MXFP4 (gpt-oss), its `_blocks` and `_scales` (the name alone when neither is there, so that the
    /// missing-tensor error names what the architecture expects).
    private func storedTensorNames(_ name: String) -> [String] {
        if let entry = tensors[name]?.entry {
            let scales = name + FP8Quantization.scaleSuffix
            return entry.dtypeName == FP8Quantization.dtypeName && tensors[scales] != nil ? [name, scales] : [name]
        }
        let quantized = [name + "_blocks", name + "_scales"]
        return quantized.allSatisfy { tensors[$0] != nil } ? quantized : [name]
    }

    /// The SHA-256 of every expert tensor's bytes, read from the cache when a file's size and
    /// modification time match it, else computed (and cached).
    /// - Parameter report: receives a line per file: hashed (with bytes and bytes/s), or read from
    ///   the cache, and why a cache could not be used or written.
    /// - Throws: `ModelError.missingTensor` if an expert tensor is absent (the initializer checked
    ///   they are not).
    public func expertTensorDigests(cache: DigestCache, report: (String) -> Void) throws(ModelError)
        -> ExpertTensorDigests
    {
        let names = expertTensorNames
        let neededFiles = Set(names.compactMap { tensors[$0]?.file })
        var byFile: [Int: [String: TensorDigest]] = [:]
        for index in neededFiles.sorted() {
            byFile[index] = Self.digests(of: files[index], cache: cache, report: report)
        }
        var digests: [TensorDigest] = []
        digests.reserveCapacity(names.count)
        for name in names {
            guard let location = tensors[name], let digest = byFile[location.file]?[name] else {
                throw .missingTensor(name: name, searched: files.map(\.displayName))
            }
            digests.append(digest)
        }
        return ExpertTensorDigests(names: names, digests: digests)
    }

    // MARK: one file

    /// The cache file's content.
    private struct CacheRecord: Codable {
        static let currentFormat = "switchyard tensor digests 1"
        var format: String
        var file: String
        var sizeBytes: Int
        var modifiedNanoseconds: Int64
        /// Tensor name → lowercase hex SHA-256 of its bytes.
        var sha256: [String: String]

        enum CodingKeys: String, CodingKey {
            case format, file, sha256
            case sizeBytes = "size_bytes"
            case modifiedNanoseconds = "modified_ns"
        }
    }

    /// The largest cache file read: a digest and a name per tensor is a few MB for the largest
    /// checkpoints; anything bigger is not one of ours.
    private static let maximumCacheBytes = 64 << 20

    /// Every tensor of `file`, from a cache that matches the file or hashed now.
    private static func digests(
        of file: SafetensorsFile, cache: DigestCache, report: (String) -> Void
    ) -> [String: TensorDigest] {
        let path = URL(fileURLWithPath: file.mapping.path)
        let sidecar = URL(fileURLWithPath: file.mapping.path + DigestCache.sidecarSuffix)
        let fallback = cache.fallbackDirectory.appendingPathComponent(fallbackName(for: path))
        for location in [sidecar, fallback] {
            if let digests = cachedDigests(at: location, of: file) {
                report("tensor digests of \(file.displayName): read from \(location.path) (size and modification time match)")
                return digests
            }
        }

        let clock = ContinuousClock()
        let start = clock.now
        var digests: [String: TensorDigest] = [:]
        var hashedBytes = 0
        for (name, entry) in file.entries {
            let bytes = file.bytes(of: entry)
            digests[name] = TensorDigest(bytes: Array(SHA256.hash(data: bytes)))
            hashedBytes += bytes.count
        }
        let seconds = max((clock.now - start) / .seconds(1), 1e-9)
        report(
            "tensor digests of \(file.displayName): hashed \(file.entries.count) tensors, \(hashedBytes) bytes in "
                + String(format: "%.2f s (%.0f MB/s)", seconds, Double(hashedBytes) / seconds / 1e6))

        let record = CacheRecord(
            format: CacheRecord.currentFormat, file: file.displayName, sizeBytes: file.mapping.byteCount,
            modifiedNanoseconds: file.mapping.modifiedNanoseconds, sha256: digests.mapValues(\.hex))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        guard let data = try? encoder.encode(record) else { return digests }
        var failures: [String] = []
        for location in [sidecar, fallback] {
            do {
                try FileManager.default.createDirectory(
                    at: location.deletingLastPathComponent(), withIntermediateDirectories: true)
                try data.write(to: location, options: .atomic)
                report("tensor digests of \(file.displayName): cached in \(location.path)")
                return digests
            } catch {
                failures.append("\(location.path): \(error.localizedDescription)")
            }
        }
        report(
            "tensor digests of \(file.displayName): not cached (\(failures.joined(separator: "; "))); "
                + "the next start hashes the file again")
        return digests
    }

    /// The digests of a cache file that describes `file` as it is now (same name, size and
    /// modification time, every tensor present), else nil.
    private static func cachedDigests(at location: URL, of file: SafetensorsFile) -> [String: TensorDigest]? {
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: location.path),
            let size = attributes[.size] as? Int, size <= maximumCacheBytes,
            let data = try? Data(contentsOf: location),
            let record = try? JSONDecoder().decode(CacheRecord.self, from: data),
            record.format == CacheRecord.currentFormat, record.file == file.displayName,
            record.sizeBytes == file.mapping.byteCount, record.modifiedNanoseconds == file.mapping.modifiedNanoseconds,
            record.sha256.count == file.entries.count
        else { return nil }
        var digests: [String: TensorDigest] = [:]
        for name in file.entries.keys {
            guard let hex = record.sha256[name], let digest = TensorDigest(hex: hex) else { return nil }
            digests[name] = digest
        }
        return digests
    }

    /// A file name for `path`'s digests in the fallback directory: the hex SHA-256 of its resolved
    /// path (two checkpoints never share one; a symlinked view of the same file does).
    private static func fallbackName(for path: URL) -> String {
        let resolved = path.resolvingSymlinksInPath().path
        return TensorDigest(bytes: Array(SHA256.hash(data: Data(resolved.utf8))))!.hex + ".json"
    }
}
