// Requests per API key name for /metrics: who uses the API, without ever exposing a key.
import Synchronization

/// Counts /v1 requests by the name of the key that opened them, and those refused by why.
/// The labels are names from the key file and two fixed reasons, never bytes of an offered key.
final class APIKeyRequestCounter: Sendable {
    /// Why a request without a valid key was refused: the `reason` label.
    enum Refusal: String, CaseIterable, Sendable {
        case missing = "missing_key"
        case invalid = "invalid_key"
    }

    private struct Counts {
        var accepted: [String: UInt64]
        var refused: [Refusal: UInt64] = [:]
    }

    private let counts: Mutex<Counts>

    /// A counter that shows every name in `keys` from the start (at 0), so a key never used is visible.
    init(keys: [APIKey]) {
        counts = Mutex(Counts(accepted: Dictionary(keys.map { ($0.name, 0) }, uniquingKeysWith: { first, _ in first })))
    }

    func accepted(name: String) {
        counts.withLock { $0.accepted[name, default: 0] += 1 }
    }

    func refused(_ refusal: Refusal) {
        counts.withLock { $0.refused[refusal, default: 0] += 1 }
    }

    /// The two counter families in the Prometheus text format.
    func exposition() -> String {
        let snapshot = counts.withLock { $0 }
        var out = "# HELP switchyard_api_key_requests_total Requests to /v1 accepted, by the name of the API key they carried.\n"
        out += "# TYPE switchyard_api_key_requests_total counter\n"
        for name in snapshot.accepted.keys.sorted() {
            out += "switchyard_api_key_requests_total{key=\"\(PrometheusExposition.escape(name))\"} \(snapshot.accepted[name]!)\n"
        }
        out += "# HELP switchyard_api_requests_refused_total Requests to /v1 refused for want of a valid API key, by reason.\n"
        out += "# TYPE switchyard_api_requests_refused_total counter\n"
        for refusal in Refusal.allCases {
            out += "switchyard_api_requests_refused_total{reason=\"\(refusal.rawValue)\"} \(snapshot.refused[refusal, default: 0])\n"
        }
        return out
    }
}
