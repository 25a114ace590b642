// Where a request's CPU work before it is queued runs: parsing a body of up to --max-body-bytes,
// rendering a chat template, tokenizing a prompt. Not on Swift's cooperative pool, whose few
// threads (one per core) also answer /health and stream every response: eight 4 MB prompts
// tokenized there held /health for seconds.
import APIRequests
import Dispatch

/// One serial queue, with a thread of its own, that prepares requests one at a time.
///
/// One at a time bounds the CPU that preparation takes from the engine; each preparation is bounded
/// by the body and prompt size limits, so none waits long behind another.
final class RequestPreparation: Sendable {
    private let queue = DispatchQueue(label: "switchyard.request-preparation")

    /// Runs `work` on the preparation queue and returns its result.
    ///
    /// Not cancellable once started: a request whose client left is cancelled when it is submitted.
    func run<Value: Sendable>(_ work: @escaping @Sendable () throws(APIError) -> Value) async throws(APIError) -> Value {
        let result: Result<Value, APIError> = await withCheckedContinuation { continuation in
            queue.async {
                continuation.resume(returning: Result { () throws(APIError) -> Value in try work() })
            }
        }
        return try result.get()
    }
}
