// What `switchyard system-info` and the benchmark header say about the CPU, from /proc/cpuinfo texts.
import Kernels
import Testing

@Suite("CPU description")
struct CPUDescriptionTests {
    @Test("x86: the model name and only the vector features a kernel path uses, from the first processor")
    func x86() {
        let text = """
            processor\t: 0
            vendor_id\t: AuthenticAMD
            model name\t: AMD EPYC 7B13 64-Core Processor
            flags\t\t: fpu vme sse2 avx avx2 fma bmi2 sha_ni

            processor\t: 1
            model name\t: Another Model
            flags\t\t: avx512f avx512_bf16

            """
        let cpu = CPUDescription.parse(text)
        #expect(cpu.model == "AMD EPYC 7B13 64-Core Processor")
        #expect(cpu.features == ["avx2", "fma"])
    }

    @Test("ARM: implementer and part stand for the model; dot-product and bf16 features are listed")
    func arm() {
        let text = """
            processor\t: 0
            BogoMIPS\t: 243.75
            Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs bf16 i8mm
            CPU implementer\t: 0x41
            CPU part\t: 0xd40

            """
        let cpu = CPUDescription.parse(text)
        #expect(cpu.model == "ARM implementer 0x41, part 0xd40")
        #expect(cpu.features == ["asimd", "asimddp", "bf16", "i8mm"])
    }

    @Test("an unreadable file is named, not a crash")
    func unreadable() {
        let cpu = CPUDescription.read(path: "/nonexistent/cpuinfo")
        #expect(cpu.model.contains("/nonexistent/cpuinfo"))
        #expect(cpu.features.isEmpty)
    }
}
