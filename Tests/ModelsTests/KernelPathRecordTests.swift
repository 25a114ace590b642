// Which kernel paths this run exercised and which the CPU lacks, written where Scripts/test.sh
// prints it: the kernel tests are parameterised over `KernelISA.alike`, which depends on the
// host, so without a record a run on a smaller CPU passes silently having tested less.
import Foundation
import Kernels
import TestSupport
import Tensors
import Testing

@Suite("Kernel paths of this run")
struct KernelPathRecordTests {
    /// `SWITCHYARD_TEST_RECORDS`, else `.build/test-records` in the package.
    static var recordDirectory: URL {
        if let directory = ProcessInfo.processInfo.environment["SWITCHYARD_TEST_RECORDS"], !directory.isEmpty {
            return URL(fileURLWithPath: directory)
        }
        return TestPaths.packageRoot.appendingPathComponent(".build/test-records")
    }

    @Test(
        "every supported path gives the scalar path's bits for f32, bf16 (exact and fast), q8 and FP8 products; the paths run and the paths absent are recorded, and SWITCHYARD_REQUIRE_KERNEL_PATHS names paths that must be among those run"
    )
    func recordPaths() throws {
        var random = TestRandom(seed: 21)
        let (rows, inputs, outputs) = (5, 131, 67)
        let x = random.floats(rows * inputs)
        let w = random.floats(outputs * inputs)
        let bits = w.map { bfloat16Bits(from: $0) }
        let q8 = quantizeQ8(w, outputCount: outputs, inputCount: inputs)
        let fp8Block = FP8BlockSize(rows: 16, columns: 32)
        let fp8 = quantizeFP8(w, outputCount: outputs, inputCount: inputs, block: fp8Block)
        func products(_ isa: KernelISA) -> [[Float]] {
            [
                linear(x, rowCount: rows, weight: w, outputCount: outputs, isa: isa),
                linear(x, rowCount: rows, bfloat16Weight: bits, outputCount: outputs, isa: isa),
                linear(x, rowCount: rows, bfloat16Weight: bits, outputCount: outputs, arithmetic: .fast, isa: isa),
                linear(x, rowCount: rows, q8Values: q8.values, q8Scales: q8.scales, outputCount: outputs, isa: isa),
                linear(
                    x, rowCount: rows, fp8Weight: fp8.bytes, scales: fp8.scales, block: fp8Block, outputCount: outputs,
                    isa: isa),
            ]
        }
        let scalar = products(.scalar).map { $0.map(\.bitPattern) }
        var exercised: [KernelISA] = []
        for isa in KernelISA.alike {
            let results = products(isa).map { $0.map(\.bitPattern) }
            for (kind, (result, expected)) in zip(["f32", "bf16 exact", "bf16 fast", "q8", "fp8"], zip(results, scalar)) {
                #expect(result == expected, "\(isa) \(kind) differs from scalar")
            }
            exercised.append(isa)
        }
        let absent = KernelISA.allCases.filter { !$0.isSupported }
        var lines = [
            "kernel paths exercised: \(exercised.map(\.rawValue).joined(separator: " "))",
            "kernel paths absent on this CPU (not tested by this run): "
                + (absent.isEmpty ? "none" : absent.map(\.rawValue).joined(separator: " ")),
            "kernel path active by default: \(KernelISA.active)",
        ]
        if exercised == [.scalar] {
            lines.append("warning: only the scalar path ran; \"same bits on every path\" compared scalar with itself")
        }
        let text = lines.joined(separator: "\n") + "\n"
        print(text, terminator: "")
        let directory = Self.recordDirectory
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try Data(text.utf8).write(to: directory.appendingPathComponent("kernel-paths.txt"), options: .atomic)

        // A CI host known to have a path can require it, so a move to a smaller host fails loudly.
        let required = (ProcessInfo.processInfo.environment["SWITCHYARD_REQUIRE_KERNEL_PATHS"] ?? "")
            .split(whereSeparator: { $0 == "," || $0 == " " }).map(String.init)
        for name in required {
            let isa = try #require(
                KernelISA(rawValue: name),
                "SWITCHYARD_REQUIRE_KERNEL_PATHS names \(name), but the paths are \(KernelISA.allCases.map(\.rawValue))")
            #expect(exercised.contains(isa), "SWITCHYARD_REQUIRE_KERNEL_PATHS requires \(isa), but this CPU lacks it")
        }
    }
}
