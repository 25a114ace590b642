// Full-content tensor digests: they see a single flipped byte that the sampled fingerprint does not,
// and they are cached beside the file (or in the fallback directory) until the file changes.
import Foundation
import Models
import Tensors
import TestSupport
import Testing

/// A checkpoint whose expert matrices (64 × 32 f32, 8 KiB) are larger than the fingerprint's
/// 16 samples of 256 bytes, in a fresh temporary directory.
private func writeCheckpoint() throws -> URL {
    var options = MixtralCheckpointOptions()
    options.hiddenSize = 32
    options.intermediateSize = 64
    options.attentionHeadCount = 4
    options.keyValueHeadCount = 2
    options.expertCount = 4
    options.expertsPerToken = 2
    options.vocabularySize = 40
    options.seed = 21
    let directory = try TestPaths.makeTemporaryDirectory("tensor-digests")
    try MixtralCheckpointWriter.write(options, to: directory)
    return directory
}

/// The first byte of `tensor` (an offset in model.safetensors) that the fingerprint does not
/// sample. Mirrors `Checkpoint.computeFingerprint`: a tensor over 16 × 256 bytes is sampled in 16
/// chunks of 256 bytes, the k-th starting at (size − 256) × k ÷ 15.
private func unsampledByteOffset(of tensor: String, in checkpoint: Checkpoint) throws -> Int {
    let entry = try #require(checkpoint.entry(named: tensor))
    let size = entry.byteRange.count
    try #require(size > 16 * 256, "\(tensor) has \(size) bytes: hashed whole by the fingerprint")
    let sampled = (0..<16).map { k in ((size - 256) * k / 15)..<((size - 256) * k / 15 + 256) }
    let offset = try #require((0..<size).first { byte in !sampled.contains { $0.contains(byte) } })
    return entry.byteRange.lowerBound + offset
}

/// Flips every bit of the byte at `offset` of `file`, in place (the file's modification time changes).
private func flipByte(at offset: Int, of file: URL) throws {
    let handle = try FileHandle(forUpdating: file)
    defer { try? handle.close() }
    try handle.seek(toOffset: UInt64(offset))
    let byte = try #require(try handle.read(upToCount: 1)?.first)
    try handle.seek(toOffset: UInt64(offset))
    try handle.write(contentsOf: [~byte])
}

/// Runs `expertTensorDigests` on a freshly opened checkpoint and collects what it reports.
private func digests(of directory: URL, cache: DigestCache) throws -> (ExpertTensorDigests, [String]) {
    var lines: [String] = []
    let result = try Checkpoint(directory: directory).expertTensorDigests(cache: cache) { lines.append($0) }
    return (result, lines)
}

@Suite("Tensor digests")
struct TensorDigestTests {
    @Test("a byte flipped outside the fingerprint's samples leaves the fingerprint as it was, but changes that expert tensor's digest and only its")
    func flippedByteOutsideSamples() throws {
        let directory = try writeCheckpoint()
        let fallback = try TestPaths.makeTemporaryDirectory("tensor-digests-cache")
        defer { for url in [directory, fallback] { try? FileManager.default.removeItem(at: url) } }
        let cache = DigestCache(fallbackDirectory: fallback)
        let checkpoint = try Checkpoint(directory: directory)
        let (before, _) = try digests(of: directory, cache: cache)
        #expect(before.names.count == 2 * 4 * 3)
        #expect(Set(before.digests).count == before.digests.count)

        let tensor = MixtralTensorNames.expertDown(1, 2)
        let weights = directory.appendingPathComponent(Checkpoint.singleFileName)
        try flipByte(at: try unsampledByteOffset(of: tensor, in: checkpoint), of: weights)

        // The sampled fingerprint, the old registration check, accepts the corrupted copy.
        #expect(try Checkpoint(directory: directory).fingerprint == checkpoint.fingerprint)
        let (after, _) = try digests(of: directory, cache: cache)
        #expect(before.mismatches(after.digests) == [tensor])
    }

    @Test("digests are cached beside the file: a second start reads them, a changed file is hashed again")
    func cachedBesideTheFile() throws {
        let directory = try writeCheckpoint()
        let fallback = try TestPaths.makeTemporaryDirectory("tensor-digests-cache")
        defer { for url in [directory, fallback] { try? FileManager.default.removeItem(at: url) } }
        let cache = DigestCache(fallbackDirectory: fallback)
        let weights = directory.appendingPathComponent(Checkpoint.singleFileName)
        let sidecar = URL(fileURLWithPath: weights.path + DigestCache.sidecarSuffix)

        let (first, firstLines) = try digests(of: directory, cache: cache)
        #expect(firstLines.contains { $0.contains("hashed") && $0.contains("MB/s") }, "\(firstLines)")
        #expect(FileManager.default.fileExists(atPath: sidecar.path))
        let (second, secondLines) = try digests(of: directory, cache: cache)
        #expect(second == first)
        #expect(secondLines.contains { $0.contains("read from \(sidecar.path)") }, "\(secondLines)")
        #expect(!secondLines.contains { $0.contains("hashed") }, "\(secondLines)")

        let checkpoint = try Checkpoint(directory: directory)
        let tensor = MixtralTensorNames.expertGate(0, 0)
        try flipByte(at: try unsampledByteOffset(of: tensor, in: checkpoint), of: weights)
        let (third, thirdLines) = try digests(of: directory, cache: cache)
        #expect(thirdLines.contains { $0.contains("hashed") }, "\(thirdLines)")
        #expect(first.mismatches(third.digests) == [tensor])
    }

    @Test("when nothing can be written beside the file, digests are cached in the fallback directory and read from there")
    func fallbackDirectory() throws {
        let directory = try writeCheckpoint()
        let fallback = try TestPaths.makeTemporaryDirectory("tensor-digests-cache")
        defer { for url in [directory, fallback] { try? FileManager.default.removeItem(at: url) } }
        let cache = DigestCache(fallbackDirectory: fallback.appendingPathComponent("nested"))
        // A directory where the cache file would go: writing it fails even as root (for whom a
        // read-only directory is still writable).
        let weights = directory.appendingPathComponent(Checkpoint.singleFileName)
        try FileManager.default.createDirectory(
            atPath: weights.path + DigestCache.sidecarSuffix, withIntermediateDirectories: false)

        let (first, firstLines) = try digests(of: directory, cache: cache)
        #expect(firstLines.contains { $0.contains("cached in \(cache.fallbackDirectory.path)") }, "\(firstLines)")
        let (second, secondLines) = try digests(of: directory, cache: cache)
        #expect(second == first)
        #expect(secondLines.contains { $0.contains("read from \(cache.fallbackDirectory.path)") }, "\(secondLines)")
    }

    @Test("a digest is 32 bytes, written and read as 64 hex digits", arguments: [
        ("", false), (String(repeating: "0", count: 63), false), (String(repeating: "g", count: 64), false),
        (String(repeating: "aB", count: 32), true),
    ])
    func hexDigests(hex: String, valid: Bool) {
        let digest = TensorDigest(hex: hex)
        #expect((digest != nil) == valid)
        if let digest { #expect(digest.hex == hex.lowercased()) }
    }
}
