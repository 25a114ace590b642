// A client of a running coordinator (`switchyard generate --coordinator ENDPOINT`).
public import Foundation
import Transport
import Wire

/// Submits one generation job to a coordinator over ZeroMQ and waits for its result.
public enum GenerateClient {
    /// - Returns: the result JSON the coordinator built (the same object `generate --json` prints).
    /// - Throws: `GenerationError` with the coordinator's message when it refuses or fails the job.
    public static func submit(
        _ request: GenerationRequest, to endpoint: String, timeout: Duration, shouldStop: () -> Bool
    ) throws -> Data {
        let id = ClientRequestID(UInt64.random(in: 1...UInt64.max))
        let socket = try DealerSocket(context: ZMQContext(), connect: endpoint, identity: PeerIdentity("client-\(id.rawValue)"))
        let prompt: WireMessage.GenerateRequest.Prompt = switch request.prompt {
        case .text(let text): .text(text)
        case .tokenIDs(let ids): .tokenIDs(ids.map { UInt32(bitPattern: $0) })
        }
        let message = WireMessage.generateRequest(.init(
            clientRequestID: id, prompt: prompt, maxTokens: request.maxTokens,
            temperature: request.sampling.temperature, topP: request.sampling.topP, topK: request.sampling.topK,
            seed: request.sampling.seed, ignoreEOS: request.ignoreEOS, logprobs: request.logprobs))
        try socket.send(frames: WireCodec.encode(message))

        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            if shouldStop() { throw GenerationError.unavailable("interrupted while waiting for \(endpoint)") }
            guard let frames = try socket.receive(timeout: .milliseconds(200)) else { continue }
            switch try WireCodec.decode(frames) {
            case .generateResult(let result) where result.clientRequestID == id:
                return Data(result.resultJSON.utf8)
            case .error(let report):
                throw GenerationError.unavailable("the coordinator at \(endpoint) refused the job: \(report.message)")
            default:
                continue
            }
        }
        throw GenerationError.unavailable(
            "no answer from the coordinator at \(endpoint) within \(timeout); is `switchyard serve` running there?")
    }
}
