// Whether bytes that are not valid UTF-8 yet can still become valid once more bytes arrive: what
// the streaming decoder needs to emit U+FFFD as soon as it is final instead of holding it back.

/// Prefixes of well-formed UTF-8, by Unicode 16 §3.9 Table 3-7: a lead byte fixes the sequence's
/// length, and E0, ED, F0 and F4 narrow the range of the byte after them (no overlong forms, no
/// surrogates, nothing above U+10FFFF).
enum UTF8Prefix {
    /// How many bytes at the end of `bytes` start a character that later bytes could complete:
    /// 1 to 3, or 0 when `bytes` ends with a whole character or with bytes no continuation can
    /// make well-formed (a lone 0x80, an 0xE2 followed by 0x41, 0xC0, 0xF5...).
    static func openTailCount(_ bytes: some BidirectionalCollection<UInt8>) -> Int {
        var tail: [UInt8] = []
        for byte in bytes.reversed() {
            tail.insert(byte, at: 0)
            if byte & 0xC0 != 0x80 { break }  // the lead byte (or an ASCII byte) of the last sequence
            if tail.count == 4 { return 0 }  // four bytes with no lead: complete or ill-formed, not open
        }
        guard let lead = tail.first, let length = sequenceLength(lead: lead), tail.count < length else { return 0 }
        for (position, byte) in tail.enumerated().dropFirst() {
            guard allowedRange(lead: lead, position: position).contains(byte) else { return 0 }
        }
        return tail.count
    }

    /// Whether some continuation makes `bytes` well-formed UTF-8: everything before an open tail is.
    static func canBecomeValid(_ bytes: [UInt8]) -> Bool {
        String(validating: bytes.dropLast(openTailCount(bytes)), as: UTF8.self) != nil
    }

    /// The length of the sequence `lead` starts, or nil for a byte no sequence starts with
    /// (a continuation byte, C0, C1, F5...FF).
    private static func sequenceLength(lead: UInt8) -> Int? {
        switch lead {
        case 0x00...0x7F: 1
        case 0xC2...0xDF: 2
        case 0xE0...0xEF: 3
        case 0xF0...0xF4: 4
        default: nil
        }
    }

    /// The bytes allowed at `position` (1...3) of a sequence led by `lead`.
    private static func allowedRange(lead: UInt8, position: Int) -> ClosedRange<UInt8> {
        guard position == 1 else { return 0x80...0xBF }
        switch lead {
        case 0xE0: return 0xA0...0xBF
        case 0xED: return 0x80...0x9F
        case 0xF0: return 0x90...0xBF
        case 0xF4: return 0x80...0x8F
        default: return 0x80...0xBF
        }
    }
}
