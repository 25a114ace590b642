import Testing

// The fingerprint's SHA-256 against the FIPS 180-4 test vectors.
@testable import Models

@Suite("Fingerprint hash")
struct FingerprintHashTests {
    @Test(
        "SHA-256 matches the standard test vectors",
        arguments: [
            ("", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            ("abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            (
                "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
                "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
            ),
        ])
    func sha256(input: String, expected: String) {
        var hasher = SHA256Hasher()
        hasher.update(input)
        #expect(hasher.finalizeHex() == expected)
    }

    @Test("SHA-256 of a million 'a's spans many blocks correctly")
    func sha256Long() {
        var hasher = SHA256Hasher()
        hasher.update([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000))
        #expect(hasher.finalizeHex() == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }
}
