import Testing

@testable import Coordinator

@Suite("Batch planner")
struct BatchPlannerTests {
    func planner(running: Int = 8, waiting: Int = 8, kv: Int = 1000, budget: Int = 16) -> BatchPlanner {
        BatchPlanner(limits: SchedulerLimits(
            maxRunningSequences: running, maxWaitingRequests: waiting, kvCacheTokens: kv, maxTokensPerStep: budget))
    }

    @Test("decoding sequences get one token each before prefill chunks share the rest of the budget")
    func decodeFirst() throws {
        var planner = planner(budget: 10)
        try planner.enqueue(SequenceID(1), promptTokens: 3, maxTokens: 5)
        _ = planner.admit()
        planner.commit(planner.planStep())  // sequence 1 prefilled (3 tokens)
        try planner.enqueue(SequenceID(2), promptTokens: 20, maxTokens: 5)
        try planner.enqueue(SequenceID(3), promptTokens: 4, maxTokens: 5)
        #expect(planner.admit() == [SequenceID(2), SequenceID(3)])
        let step = planner.planStep()
        #expect(step.entries.map(\.id) == [SequenceID(1), SequenceID(2)])
        #expect(step.entries.map(\.tokenCount) == [1, 9])
        #expect(step.tokenCount == 10)
    }

    @Test("a long prompt is prefilled in chunks across steps")
    func chunkedPrefill() throws {
        var planner = planner(budget: 8)
        try planner.enqueue(SequenceID(1), promptTokens: 20, maxTokens: 2)
        _ = planner.admit()
        var chunks: [Int] = []
        for _ in 0..<4 {
            let step = planner.planStep()
            chunks.append(step.entries.first?.tokenCount ?? 0)
            planner.commit(step)
        }
        #expect(chunks == [8, 8, 4, 1])
    }

    @Test("admission stops when the KV reservation does not fit, and resumes when memory is freed")
    func kvBound() throws {
        var planner = planner(kv: 100)
        try planner.enqueue(SequenceID(1), promptTokens: 40, maxTokens: 20)
        try planner.enqueue(SequenceID(2), promptTokens: 30, maxTokens: 20)
        #expect(planner.admit() == [SequenceID(1)])
        #expect(planner.reservedTokens == 60)
        planner.remove(SequenceID(1))
        #expect(planner.admit() == [SequenceID(2)])
        #expect(planner.kvUsage == 0.5)
    }

    @Test("a full waiting queue and a request larger than all KV memory are refused")
    func refusals() throws {
        var planner = planner(waiting: 1, kv: 50)
        #expect(throws: BatchPlanner.Refusal.tooLarge(needed: 60, capacity: 50)) {
            try planner.enqueue(SequenceID(1), promptTokens: 40, maxTokens: 20)
        }
        try planner.enqueue(SequenceID(2), promptTokens: 5, maxTokens: 5)
        #expect(throws: BatchPlanner.Refusal.queueFull(waiting: 1)) {
            try planner.enqueue(SequenceID(3), promptTokens: 5, maxTokens: 5)
        }
    }

    @Test("the running batch never exceeds its bound")
    func runningBound() throws {
        var planner = planner(running: 2)
        for id in 1...4 { try planner.enqueue(SequenceID(UInt64(id)), promptTokens: 1, maxTokens: 1) }
        #expect(planner.admit().count == 2)
        #expect(planner.waiting.count == 2)
        planner.remove(SequenceID(2))
        #expect(planner.admit() == [SequenceID(3)])
    }
}

@Suite("Stop strings")
struct StopMatcherTests {
    @Test("text is cut before the earliest stop string, even when it arrives split over pieces")
    func splitStop() {
        var matcher = StopMatcher(stops: ["STOP", "\n\n"])
        #expect(matcher.append("Hello S") == .init(released: "Hello ", stopped: false))
        #expect(matcher.append("TO") == .init(released: "", stopped: false))
        #expect(matcher.append("P and more") == .init(released: "", stopped: true))
    }

    @Test("a held-back prefix that turns out not to be a stop string is released")
    func falseAlarm() {
        var matcher = StopMatcher(stops: ["STOP"])
        #expect(matcher.append("ST").released == "")
        #expect(matcher.append("AY") == .init(released: "STAY", stopped: false))
        #expect(matcher.append("ST").released == "")
        #expect(matcher.finish() == "ST")
    }

    @Test("without stop strings everything is released at once")
    func noStops() {
        var matcher = StopMatcher(stops: [])
        #expect(matcher.append("any text") == .init(released: "any text", stopped: false))
    }

    @Test("the earliest of several stop strings wins")
    func earliest() {
        var matcher = StopMatcher(stops: ["b", "a"])
        #expect(matcher.append("xxabyy") == .init(released: "xx", stopped: true))
    }
}
