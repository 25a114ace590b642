// A worker proves it holds the coordinator's expert weights by full-content digests: a copy with a
// single byte flipped where the sampled fingerprint does not look is refused, naming the tensor.
import Foundation
import TestSupport
import Testing

@Suite("integrity: workers register with full-content expert digests", .serialized)
struct IntegrityTests {
    /// `tensor`'s byte range in a safetensors file (read from its header).
    static func byteRange(of tensor: String, in file: URL) throws -> Range<Int> {
        let data = try Data(contentsOf: file)
        let headerCount = Int(data.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) })
        let header = try #require(
            try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + headerCount))) as? [String: Any])
        let offsets = try #require((header[tensor] as? [String: Any])?["data_offsets"] as? [Int])
        return (8 + headerCount + offsets[0])..<(8 + headerCount + offsets[1])
    }

    @Test("a worker whose copy of one expert tensor has a byte flipped outside the fingerprint's samples is refused with that tensor's name")
    func corruptedExpertRefused() throws {
        let model = try ServeTests.makeModel(seed: 31)
        let copy = TestPaths.scratch.appendingPathComponent("switchyard-integrity")
        try? FileManager.default.removeItem(at: copy)
        try FileManager.default.createDirectory(at: copy, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: copy) }
        for name in try FileManager.default.contentsOfDirectory(atPath: model.path) where !name.hasSuffix(".digests.json") {
            try FileManager.default.copyItem(at: model.appendingPathComponent(name), to: copy.appendingPathComponent(name))
        }

        // The fingerprint hashes 16 chunks of 256 bytes of a tensor over 4 KiB, the k-th at
        // (size − 256) × k ÷ 15 (Checkpoint.computeFingerprint); byte 300 of this 8 KiB matrix lies
        // between the first two chunks, so the fingerprint of the copy is unchanged: the old check
        // accepted it (ModelsTests' "Tensor digests" suite asserts that on the same kind of flip).
        let tensor = "model.layers.1.block_sparse_moe.experts.2.w2.weight"
        let weights = copy.appendingPathComponent("model.safetensors")
        let range = try Self.byteRange(of: tensor, in: weights)
        try #require(range.count == 8192)
        var bytes = try Data(contentsOf: weights)
        bytes[range.lowerBound + 300] ^= 0xFF
        try bytes.write(to: weights)

        let cluster = try ServedCluster(model: model, workers: 1)
        let corrupt = try cluster.startWorker(model: copy, name: "corrupt")
        let output = try corrupt.wait(timeout: .seconds(120))
        #expect(output.status != 0)
        #expect(output.stderr.contains("expert tensor \(tensor) differs"), "\(output.stderr)")
        let serveLog = try cluster.serve.waitForStderr { $0.contains("refused worker corrupt") }
        #expect(serveLog.contains(tensor), "\(serveLog)")
        #expect(cluster.serve.isRunning)

        // A worker on the coordinator's own directory reads the digests the coordinator cached
        // beside the weights instead of hashing again, and is accepted.
        let good = try cluster.startWorker(model: model, name: "good")
        try cluster.waitUntilServing()
        #expect(good.stderr.contains("tensor digests of model.safetensors: read from"), "\(good.stderr)")
    }
}
