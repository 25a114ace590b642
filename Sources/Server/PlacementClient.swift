// A client of a running coordinator's load and placement routes (`switchyard rebalance`):
// reads the expert load and the placement, and applies a new placement.
public import Coordinator
import Foundation

/// Reads expert load and placement from a server and applies placements.
public struct PlacementClient: Sendable {
    /// The server's base URL, e.g. `http://127.0.0.1:8080`.
    public let server: String
    public let apiKey: String?
    /// How https servers are verified.
    public let connection: APIConnection

    public init(server: String, apiKey: String?, connection: APIConnection = APIConnection()) throws(ClientError) {
        var base = server
        while base.hasSuffix("/") { base.removeLast() }
        guard base.hasPrefix("http://") || base.hasPrefix("https://"), URL(string: base + "/v1/placement") != nil else {
            throw ClientError("--server is \"\(server)\", but must be a URL like http://127.0.0.1:8080")
        }
        self.server = base
        self.apiKey = apiKey
        self.connection = connection
    }

    /// Tokens routed per expert since the server started, `[layer][expert]`: `tokens_per_expert` of
    /// `GET /v1/expert_load`, or, on a server without that route, `switchyard_expert_tokens_total` of `/metrics`.
    public func expertLoad() async throws -> [[Double]] {
        let (status, body) = try await request("GET", "/v1/expert_load")
        if status == 200 {
            guard let object = try? JSONSerialization.jsonObject(with: body) as? [String: Any],
                let rows = object["tokens_per_expert"] as? [[Any]]
            else {
                throw ClientError("\(server)/v1/expert_load: the answer has no \"tokens_per_expert\": [[count per expert] per layer]")
            }
            return try rows.enumerated().map { layer, row in
                try row.enumerated().map { expert, value in
                    guard let number = value as? NSNumber, number.doubleValue >= 0 else {
                        throw ClientError("\(server)/v1/expert_load: tokens_per_expert[\(layer)][\(expert)] is not a count")
                    }
                    return number.doubleValue
                }
            }
        }
        guard status == 404 else { throw error(status: status, body: body, path: "/v1/expert_load") }
        let (metricsStatus, text) = try await request("GET", "/metrics")
        guard metricsStatus == 200 else { throw error(status: metricsStatus, body: text, path: "/metrics") }
        return try Self.expertTokens(fromMetrics: String(decoding: text, as: UTF8.self))
    }

    /// The placement in effect (`GET /v1/placement`).
    public func placement() async throws -> PlacementFile {
        let (status, body) = try await request("GET", "/v1/placement")
        guard status == 200 else { throw error(status: status, body: body, path: "/v1/placement") }
        return try decodePlacement(body, path: "/v1/placement")
    }

    /// Applies `placement` (`POST /v1/placement`); returns once the server uses it.
    public func apply(_ placement: PlacementFile) async throws -> PlacementFile {
        let (status, body) = try await request("POST", "/v1/placement", body: try JSONEncoder().encode(placement))
        guard status == 200 else { throw error(status: status, body: body, path: "/v1/placement") }
        return try decodePlacement(body, path: "/v1/placement")
    }

    /// `switchyard_expert_tokens_total{layer="L",expert="E"} N` lines as `[layer][expert]`.
    static func expertTokens(fromMetrics text: String) throws -> [[Double]] {
        var counts: [[Double]] = []
        for line in text.split(separator: "\n") where line.hasPrefix("switchyard_expert_tokens_total{") {
            let parts = line.split(separator: " ")
            guard parts.count == 2, let value = Double(parts[1]),
                let layer = Self.label("layer", in: parts[0]), let expert = Self.label("expert", in: parts[0]),
                layer < 4096, expert < 65536
            else { throw ClientError("/metrics: cannot read \"\(line)\"") }
            while counts.count <= layer { counts.append([]) }
            while counts[layer].count <= expert { counts[layer].append(0) }
            counts[layer][expert] = value
        }
        guard !counts.isEmpty else {
            throw ClientError("/metrics has no switchyard_expert_tokens_total yet: run some requests first")
        }
        return counts
    }

    private static func label(_ name: String, in series: Substring) -> Int? {
        guard let range = series.range(of: "\(name)=\"") else { return nil }
        return Int(series[range.upperBound...].prefix { $0 != "\"" })
    }

    private func decodePlacement(_ body: Data, path: String) throws -> PlacementFile {
        do { return try JSONDecoder().decode(PlacementFile.self, from: body) } catch {
            throw ClientError("\(server)\(path): the answer is not a placement (\(error))")
        }
    }

    private func error(status: Int, body: Data, path: String) -> ClientError {
        let message = (try? JSONSerialization.jsonObject(with: body) as? [String: Any])
            .flatMap { $0["error"] as? [String: Any] }?["message"] as? String
        return ClientError("\(server)\(path) answered \(status): \(message ?? String(decoding: body, as: UTF8.self))")
    }

    private func request(_ method: String, _ path: String, body: Data? = nil) async throws -> (Int, Data) {
        var headers: [(String, String)] = []
        if body != nil { headers.append(("content-type", "application/json")) }
        if let apiKey { headers.append(("authorization", "Bearer \(apiKey)")) }
        let response = try await connection.send(method, server + path, headers: headers, body: body, timeout: .seconds(600))
        do {
            return (response.status, try await response.collect())
        } catch {
            throw ClientError("\(server) broke off its answer to \(method) \(path): \(error)")
        }
    }
}
