// The access log: one info line per HTTP request, and the periodic throughput line while busy.
public import Coordinator
import Foundation
import Hummingbird
public import Logging
import Synchronization

/// The token counts of the request being answered, filled in by the generation routes and read by
/// ``AccessLogMiddleware`` once the response is written (the counts of a streamed response are only
/// known after its last event).
final class RequestTokenCounts: Sendable {
    @TaskLocal static var current: RequestTokenCounts?

    private let counts = Mutex<(prompt: Int, completion: Int)?>(nil)
    private let userID = Mutex<String?>(nil)

    func record(_ usage: UsageJSON) { counts.withLock { $0 = (usage.promptTokens, usage.completionTokens) } }

    /// The request's `user` field (OpenAI's end-user id), logged so an operator can tell users apart.
    func record(user: String) { userID.withLock { $0 = user } }

    var recorded: (prompt: Int, completion: Int)? { counts.withLock { $0 } }
    var user: String? { userID.withLock { $0 } }
}

/// Logs `METHOD ROUTE STATUS DURATION [prompt_tokens=P completion_tokens=C] [user="U"]` at info level
/// once a response has been written (or failed), as vLLM's and most web servers' access logs do. It
/// names the route and the request's `user` field, never the query, the body or the prompt text. Outermost, so it sees the status the
/// client got, 404s and refusals included.
struct AccessLogMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws
        -> Response
    {
        let start = ContinuousClock.now
        let tokens = RequestTokenCounts()
        let logger = context.logger
        let method = request.method
        do {
            var response = try await RequestTokenCounts.$current.withValue(tokens) { try await next(request, context) }
            let status = response.status.code
            let route = Self.route(request, context)
            let body = response.body
            response.body = ResponseBody(contentLength: body.contentLength) { writer in
                do {
                    try await body.write(writer)
                } catch {
                    Self.log(logger, method, route, status, start, tokens, note: "client went away")
                    throw error
                }
                Self.log(logger, method, route, status, start, tokens)
            }
            return response
        } catch {
            let status = (error as? any HTTPResponseError)?.status.code ?? 500
            Self.log(logger, method, Self.route(request, context), status, start, tokens)
            throw error
        }
    }

    /// The matched route's pattern; an unknown route (Hummingbird's "NotFound") by its path, cut short
    /// (it is the client's text).
    static func route(_ request: Request, _ context: Context) -> String {
        if let path = context.endpointPath, path != "NotFound" { return path }
        return String(request.uri.path.prefix(120))
    }

    static func log(
        _ logger: Logger, _ method: HTTPRequest.Method, _ route: String, _ status: Int, _ start: ContinuousClock.Instant,
        _ tokens: RequestTokenCounts, note: String? = nil
    ) {
        let elapsed = (ContinuousClock.now - start) / .milliseconds(1) / 1000
        var line = "\(method) \(route) \(status) \(String(format: "%.3f", elapsed)) s"
        if let counts = tokens.recorded {
            line += " prompt_tokens=\(counts.prompt) completion_tokens=\(counts.completion)"
        }
        if let user = tokens.user { line += " user=\(quoted(user))" }
        if let note { line += " (\(note))" }
        logger.info("\(line)")
    }
}

/// `text` in double quotes with `"`, `\` and control characters escaped, so a client's text cannot
/// forge or break a log line.
func quoted(_ text: String) -> String {
    var result = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": result += "\\\""
        case "\\": result += "\\\\"
        default:
            if scalar.value < 0x20 || scalar.value == 0x7F || (0x80..<0xA0).contains(scalar.value) {
                result += "\\u{\(String(scalar.value, radix: 16))}"
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
    }
    return result + "\""
}

/// vLLM's periodic engine line: `Avg prompt throughput: X tokens/s, Avg generation throughput:
/// Y tokens/s, Running: N reqs, Waiting: M reqs, KV cache usage: U%`, every `interval` while the
/// engine is busy (requests running or waiting, or tokens processed since the last line).
public enum ThroughputLog {
    /// The line for the interval from `previous` to `current`, `seconds` long; nil when idle.
    public static func line(previous: EngineMetrics, current: EngineMetrics, seconds: Double) -> String? {
        let prompt = current.promptTokensTotal &- previous.promptTokensTotal
        let generated = current.generationTokensTotal &- previous.generationTokensTotal
        guard prompt > 0 || generated > 0 || current.runningRequests > 0 || current.waitingRequests > 0,
            seconds > 0
        else { return nil }
        func oneDecimal(_ value: Double) -> String { String(format: "%.1f", value) }
        return "Avg prompt throughput: \(oneDecimal(Double(prompt) / seconds)) tokens/s, "
            + "Avg generation throughput: \(oneDecimal(Double(generated) / seconds)) tokens/s, "
            + "Running: \(current.runningRequests) reqs, Waiting: \(current.waitingRequests) reqs, "
            + "KV cache usage: \(oneDecimal(current.kvCacheUsage * 100))%"
    }

    /// Logs ``line(previous:current:seconds:)`` every `interval` until the task is cancelled.
    public static func run(service: some GenerationService, interval: Duration, logger: Logger) async {
        var previous = service.metrics()
        var previousTime = ContinuousClock.now
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { return }
            let current = service.metrics()
            let now = ContinuousClock.now
            if let line = line(previous: previous, current: current, seconds: (now - previousTime) / .milliseconds(1) / 1000) {
                logger.info("\(line)")
            }
            (previous, previousTime) = (current, now)
        }
    }
}
