// The periodic throughput line's arithmetic and its silence when idle.
import Coordinator
import Server
import Testing

@Suite("throughput log line")
struct ThroughputLogTests {
    static func metrics(prompt: UInt64, generated: UInt64, running: Int = 0, waiting: Int = 0, kv: Double = 0) -> EngineMetrics {
        var metrics = EngineMetrics()
        metrics.promptTokensTotal = prompt
        metrics.generationTokensTotal = generated
        metrics.runningRequests = running
        metrics.waitingRequests = waiting
        metrics.kvCacheUsage = kv
        return metrics
    }

    @Test("tokens per second over the interval, with the running and waiting requests and the KV cache use")
    func busy() {
        let line = ThroughputLog.line(
            previous: Self.metrics(prompt: 100, generated: 40),
            current: Self.metrics(prompt: 600, generated: 90, running: 3, waiting: 2, kv: 0.125), seconds: 5)
        #expect(
            line
                == "Avg prompt throughput: 100.0 tokens/s, Avg generation throughput: 10.0 tokens/s, Running: 3 reqs, Waiting: 2 reqs, KV cache usage: 12.5%"
        )
    }

    @Test("silent when nothing ran or waited in the interval; one line for the interval a request finished in")
    func idle() {
        let idle = Self.metrics(prompt: 600, generated: 90)
        #expect(ThroughputLog.line(previous: idle, current: idle, seconds: 5) == nil)
        let finishing = ThroughputLog.line(previous: Self.metrics(prompt: 600, generated: 80), current: idle, seconds: 2)
        #expect(finishing?.hasPrefix("Avg prompt throughput: 0.0 tokens/s, Avg generation throughput: 5.0 tokens/s, Running: 0 reqs") == true)
        #expect(ThroughputLog.line(previous: idle, current: Self.metrics(prompt: 600, generated: 90, waiting: 1), seconds: 5) != nil)
    }
}
