// Stop strings: generation ends when the text contains one of them, and the text is cut before
// it (or just after it, with vLLM's `include_stop_str_in_output`). Text that might be the start of
// a stop string is held back until it is known not to be.

/// Follows a sequence's generated text and decides what may be released to the client.
public struct StopMatcher: Sendable, Equatable {
    private let stops: [[Unicode.Scalar]]
    /// Whether released text ends with the matched stop string rather than before it.
    private let includesStop: Bool
    /// Text decoded so far and not yet released.
    private var pending: [Unicode.Scalar] = []

    /// - Parameter includesStop: keep the matched stop string at the end of the text (vLLM's
    ///   `include_stop_str_in_output`).
    public init(stops: [String], includesStop: Bool = false) {
        self.stops = stops.filter { !$0.isEmpty }.map { Array($0.unicodeScalars) }
        self.includesStop = includesStop
    }

    /// The outcome of adding text.
    public struct Outcome: Equatable, Sendable {
        /// Text safe to release now.
        public let released: String
        /// True when a stop string was found; `released` ends just before it (or with it, when included).
        public let stopped: Bool
    }

    /// Adds newly decoded text; returns what can be released.
    public mutating func append(_ text: String) -> Outcome {
        pending.append(contentsOf: text.unicodeScalars)
        if let match = earliestMatch() {
            let cut = includesStop ? match.start + match.length : match.start
            let released = String(String.UnicodeScalarView(pending[..<cut]))
            pending.removeAll()
            return Outcome(released: released, stopped: true)
        }
        let keep = heldBackCount()
        let releasedCount = pending.count - keep
        let released = String(String.UnicodeScalarView(pending[..<releasedCount]))
        pending.removeFirst(releasedCount)
        return Outcome(released: released, stopped: false)
    }

    /// Releases whatever is held back (the sequence ended for another reason).
    public mutating func finish() -> String {
        defer { pending.removeAll() }
        return String(String.UnicodeScalarView(pending))
    }

    /// The start and length of the earliest stop string in `pending` (the first listed, of those
    /// starting there).
    private func earliestMatch() -> (start: Int, length: Int)? {
        guard !stops.isEmpty, !pending.isEmpty else { return nil }
        var best: (start: Int, length: Int)?
        for stop in stops where stop.count <= pending.count {
            for start in 0...(pending.count - stop.count) where best.map({ start < $0.start }) ?? true {
                if pending[start..<(start + stop.count)].elementsEqual(stop) {
                    best = (start, stop.count)
                    break
                }
            }
        }
        return best
    }

    /// The longest suffix of `pending` that is a proper prefix of some stop string.
    private func heldBackCount() -> Int {
        var longest = 0
        for stop in stops {
            let maximum = min(stop.count - 1, pending.count)
            guard maximum > longest else { continue }
            for length in stride(from: maximum, to: longest, by: -1)
            where pending[(pending.count - length)...].elementsEqual(stop[..<length]) {
                longest = length
                break
            }
        }
        return longest
    }
}
