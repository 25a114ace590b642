// Stop strings: generation ends when the text contains one of them, and the text is cut before
// it. Text that might be the start of a stop string is held back until it is known not to be.

/// Follows a sequence's generated text and decides what may be released to the client.
public struct StopMatcher: Sendable, Equatable {
    private let stops: [[Unicode.Scalar]]
    /// Text decoded so far and not yet released.
    private var pending: [Unicode.Scalar] = []

    public init(stops: [String]) {
        self.stops = stops.filter { !$0.isEmpty }.map { Array($0.unicodeScalars) }
    }

    /// The outcome of adding text.
    public struct Outcome: Equatable, Sendable {
        /// Text safe to release now.
        public let released: String
        /// True when a stop string was found; `released` ends just before it.
        public let stopped: Bool
    }

    /// Adds newly decoded text; returns what can be released.
    public mutating func append(_ text: String) -> Outcome {
        pending.append(contentsOf: text.unicodeScalars)
        if let cut = earliestMatch() {
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

    /// The start of the earliest stop string in `pending`.
    private func earliestMatch() -> Int? {
        guard !stops.isEmpty, !pending.isEmpty else { return nil }
        var best: Int?
        for stop in stops where stop.count <= pending.count {
            for start in 0...(pending.count - stop.count) where best.map({ start < $0 }) ?? true {
                if pending[start..<(start + stop.count)].elementsEqual(stop) {
                    best = start
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
