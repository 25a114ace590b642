// Preparing a request (parsing its body, rendering the chat template, tokenizing the prompt) runs
// on a queue of its own, one request at a time, so slow preparations never hold the threads that
// answer /health.
import Coordinator
import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

@Suite("Request preparation off the cooperative pool")
struct PreparationTests {
    @Test(
        "/health answers while more chat prompts than there are cores are stuck in preparation, which takes one at a time",
        .timeLimit(.minutes(1)))
    func healthWhilePreparing() async throws {
        let gate = RenderGate()
        let service = FakeGenerationService(renderGate: gate)
        // More than the cooperative pool has threads: were they prepared there, none would be left.
        let requestCount = ProcessInfo.processInfo.activeProcessorCount + 2
        try await makeTestApplication(service).test(.router) { client in
            try await withThrowingTaskGroup(of: Int.self) { group in
                for index in 0..<requestCount {
                    group.addTask {
                        let body = #"{"messages": [{"role": "user", "content": "question \#(index)"}], "max_tokens": 2}"#
                        return Int(try await client.post("/v1/chat/completions", body).status.code)
                    }
                }
                while gate.entered == 0 { try await Task.sleep(for: .milliseconds(10)) }

                let health = try await client.get("/health")
                #expect(health.status == .ok)
                #expect(gate.held == 1, "the first render is still held while /health answers, and it is the only one")
                #expect(gate.entered == 1)

                gate.open(count: requestCount)
                var statuses: [Int] = []
                for try await status in group { statuses.append(status) }
                #expect(statuses == Array(repeating: 200, count: requestCount))
            }
        }
        #expect(service.submitted.count == requestCount)
    }
}
