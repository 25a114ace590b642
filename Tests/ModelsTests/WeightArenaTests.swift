// Weight arenas: the memory weights are copied into at load (huge pages where the kernel allows).
// A copy must hold exactly the source's bytes, stay put and apart from every other copy, and a weight
// made resident must compute exactly what it computed from the checkpoint's mapping.
import Kernels
@testable import Models
import Synchronization
import Tensors
import TestSupport
import Testing

/// Memory a test owns, standing in for a checkpoint's mapping.
private final class OwnedBytes {
    let bytes: UnsafeMutableRawBufferPointer

    init(_ count: Int, seed: UInt64) {
        bytes = .allocate(byteCount: max(1, count), alignment: 2)
        var random = TestRandom(seed: seed)
        for index in 0..<count { bytes[index] = UInt8(truncatingIfNeeded: random.next()) }
    }

    deinit { bytes.deallocate() }
}

@Suite("Weight arenas")
struct WeightArenaTests {
    @Test("copies hold their source's bytes, 64-byte aligned and apart, before and after sealing")
    func copies() throws {
        let arena = WeightArena()
        var random = TestRandom(seed: 77)
        var copies: [(OwnedBytes, UnsafeRawPointer)] = []
        for round in 0..<2 {
            for index in 0..<300 {
                let count = 1 + Int(random.next() % 70_000)
                let source = OwnedBytes(count, seed: UInt64(round * 1000 + index))
                let copy = try #require(arena.copy(source.bytes.baseAddress!, byteCount: count))
                #expect(Int(bitPattern: copy) % 64 == 0)
                copies.append((source, copy))
            }
            arena.seal()  // the first round's copies read-only; the second round goes to a new chunk
        }
        #expect(arena.byteCount >= copies.reduce(0) { $0 + $1.0.bytes.count })
        let ranges = copies.map { Int(bitPattern: $0.1)..<Int(bitPattern: $0.1) + $0.0.bytes.count }.sorted { $0.lowerBound < $1.lowerBound }
        #expect(zip(ranges, ranges.dropFirst()).allSatisfy { $0.upperBound <= $1.lowerBound })
        for (source, copy) in copies {
            #expect(Array(UnsafeRawBufferPointer(start: copy, count: source.bytes.count)) == Array(source.bytes))
        }
        #expect(arena.copy(copies[0].1, byteCount: 0) == nil)
    }

    @Test("a resident bf16 or FP8 weight, or one quantized to q8 into an arena, computes the same bits; bf16 held in an array is copied in, f32 and q8 weights stay as they are")
    func residentWeights() throws {
        var random = TestRandom(seed: 78)
        let (outputs, inputs, rows) = (24, 80, 3)
        let source = OwnedBytes(outputs * inputs * 2, seed: 5)
        let bits = source.bytes.bindMemory(to: UInt16.self)
        let values = random.floats(bits.count, scale: 0.5)
        for index in bits.indices { bits[index] = bfloat16Bits(from: values[index]) }
        let mapped = WeightTensor(
            shape: [outputs, inputs], borrowingBFloat16: UnsafePointer(bits.baseAddress!), owner: source)
        let arena = WeightArena()
        let resident = mapped.resident(in: arena)
        arena.seal()
        #expect(resident.dtype == .bf16 && resident.shape == mapped.shape)
        #expect(arena.byteCount >= outputs * inputs * 2)
        let x = random.floats(rows * inputs)
        for arithmetic in [BFloat16Arithmetic.exact, .fast] {
            #expect(
                linear(x, rowCount: rows, weight: resident, arithmetic: arithmetic).map(\.bitPattern)
                    == linear(x, rowCount: rows, weight: mapped, arithmetic: arithmetic).map(\.bitPattern))
        }
        #expect(resident.values.map(\.bitPattern) == mapped.values.map(\.bitPattern))

        let block = FP8BlockSize(rows: 8, columns: 16)
        let (fp8Bytes, scales) = quantizeFP8(random.floats(16 * 32), outputCount: 16, inputCount: 32, block: block)
        let fp8Source = OwnedBytes(fp8Bytes.count, seed: 6)
        fp8Source.bytes.copyBytes(from: fp8Bytes)
        let fp8 = WeightTensor(
            shape: [16, 32], borrowingFP8: fp8Source.bytes.baseAddress!.assumingMemoryBound(to: UInt8.self),
            scales: FloatTensor(shape: [2, 2], values: scales), block: block, owner: fp8Source)
        let residentFP8 = fp8.resident(in: arena)
        #expect(residentFP8.isFP8 && residentFP8.values.map(\.bitPattern) == fp8.values.map(\.bitPattern))

        // q8 quantized into an arena: the arena holds its values and scales, and the products' bits
        // are those of the matrix quantized into memory of its own.
        let q8Arena = WeightArena()
        let q8Resident = mapped.quantizedQ8(in: q8Arena)
        q8Arena.seal()
        let blocks = q8BlockCount(inputCount: inputs)
        #expect(q8Resident.isQ8 && q8Arena.byteCount >= outputs * blocks * (32 + 4))
        #expect(
            linear(x, rowCount: rows, weight: q8Resident).map(\.bitPattern)
                == linear(x, rowCount: rows, weight: mapped.quantizedQ8()).map(\.bitPattern))

        // bf16 held in an array (values stored unaligned) is copied in too; q8 stays where it is.
        let owned = WeightTensor(shape: [2, 3], bfloat16Bits: [1, 2, 3, 4, 5, 6])
        let before = arena.byteCount
        let residentOwned = owned.resident(in: arena)
        #expect(residentOwned.isBorrowed && !owned.isBorrowed)
        #expect(residentOwned.values.map(\.bitPattern) == owned.values.map(\.bitPattern))
        #expect(arena.byteCount >= before + 6 * 2)
        let grown = arena.byteCount
        let q8 = owned.quantizedQ8()
        #expect(q8.resident(in: arena).isQ8)
        #expect(arena.byteCount == grown)
    }
}

@Suite("Expert stores in weight arenas")
struct ExpertStoreArenaTests {
    @Test("a load reports its progress after each expert, up to the distinct experts asked for, in lines at most every interval")
    func progress() throws {
        let checkpoint = try Checkpoint(directory: BFloat16CheckpointTests.writeBFloat16Checkpoint(tie: false))
        let experts = (0..<checkpoint.shape.expertCount).map { LayerExpert(layer: LayerIndex(1), expert: ExpertID($0)) }
        var reports: [(Int, Int)] = []
        _ = try ExpertStore(checkpoint: checkpoint, experts: experts + [experts[0]], progress: { reports.append(($0, $1)) })
        #expect(reports.map(\.0) == Array(1...experts.count))
        #expect(reports.allSatisfy { $0.1 == experts.count })
        // Lines: none before the interval has passed, one per report after it, and the closing line.
        let lines = Mutex<[String]>([])
        let quiet = LoadProgress("experts", every: .seconds(3600)) { line in lines.withLock { $0.append(line) } }
        quiet.report(done: 1, total: 4)
        #expect(lines.withLock { $0 }.isEmpty)
        let every = LoadProgress("experts", every: .zero) { line in lines.withLock { $0.append(line) } }
        every.report(done: 1, total: 4)
        every.finished("4 experts")
        let emitted = lines.withLock { $0 }
        #expect(emitted.count == 2)
        #expect(emitted.first?.hasPrefix("loading experts: 25% (1 of 4) after ") == true)
        #expect(emitted.last?.hasPrefix("loaded 4 experts in ") == true)
    }

    @Test(
        "a store loaded for a new assignment shares the experts it has in common with the previous store and computes the same bits",
        arguments: [WeightQuantization.none, .q8])
    func reloadSharesCommonExperts(quantization: WeightQuantization) throws {
        let checkpoint = try Checkpoint(directory: BFloat16CheckpointTests.writeBFloat16Checkpoint(tie: false))
        let c = checkpoint.shape
        let layer = LayerIndex(1)
        let experts = (0..<c.expertCount).map { LayerExpert(layer: layer, expert: ExpertID($0)) }
        let first = try ExpertStore(checkpoint: checkpoint, experts: Array(experts.prefix(2)), quantization: quantization)
        let second = try ExpertStore(
            checkpoint: checkpoint, experts: Array(experts.dropFirst()), quantization: quantization, reusing: first)
        let fresh = try ExpertStore(checkpoint: checkpoint, experts: Array(experts.dropFirst()), quantization: quantization)
        // Expert 1 is in both: the same memory. Expert 2 is new: a copy of its own.
        #expect(second.gateAddress(of: experts[1]) != nil && second.gateAddress(of: experts[1]) == first.gateAddress(of: experts[1]))
        #expect(second.gateAddress(of: experts[2]) != fresh.gateAddress(of: experts[2]))
        #expect(second.gateAddress(of: experts[0]) == nil)
        // A store of another quantization shares nothing.
        let other = try ExpertStore(
            checkpoint: checkpoint, experts: Array(experts.dropFirst()),
            quantization: quantization == .q8 ? .none : .q8, reusing: first)
        #expect(other.gateAddress(of: experts[1]) != first.gateAddress(of: experts[1]))
        var random = TestRandom(seed: 92)
        let rows = 3
        let hidden = random.floats(rows * c.hiddenSize)
        let offsets: [UInt32] = [0, 2, 3, 5]
        let ids: [UInt32] = [1, 2, 3, 1, 3]  // 4 experts: the held ones, 1 ... 3
        let weights: [Float] = [0.5, 0.25, 1, 0.75, 0.125]
        let reused = try second.compute(
            layer: layer, hidden: hidden, rowCount: rows, rowExpertOffsets: offsets, expertIDs: ids, weights: weights)
        let loaded = try fresh.compute(
            layer: layer, hidden: hidden, rowCount: rows, rowExpertOffsets: offsets, expertIDs: ids, weights: weights)
        #expect(reused.map(\.bitPattern) == loaded.map(\.bitPattern))
    }
}
