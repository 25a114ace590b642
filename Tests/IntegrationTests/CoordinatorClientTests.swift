// `generate --coordinator` to an endpoint where no coordinator answers: it gives up after
// --connect-timeout with one line saying where it tried and what should run there.
import Foundation
import TestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A TCP socket on 127.0.0.1 with an ephemeral port; closed when this is released.
final class LoopbackPort {
    let port: Int
    private let fd: Int32

    /// Binds port 0 and, if `listening`, listens without ever accepting: the kernel completes
    /// connections, but nothing ever speaks on them. Not listening, connections are refused.
    init(listening: Bool) throws {
        #if canImport(Glibc)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw TestProcessError(description: "socket() failed: errno \(errno)") }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = 0
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0
                }
            }
            guard bound, !listening || listen(fd, 16) == 0 else {
                close(fd)
                throw TestProcessError(description: "binding a loopback port failed: errno \(errno)")
            }
            self.fd = fd
            port = Int(UInt16(bigEndian: address.sin_port))
        #else
            throw TestProcessError(description: "loopback sockets are only implemented with Glibc")
        #endif
    }

    deinit {
        #if canImport(Glibc)
            close(fd)
        #endif
    }
}

@Suite("generate --coordinator: nobody answering")
struct CoordinatorClientTests {
    @Test(
        "with nothing answering at the endpoint, generate fails after --connect-timeout naming the endpoint and `serve --bind`",
        arguments: [false, true])
    func connectDeadline(listening: Bool) throws {
        // Bound and not listening, connections are refused, as at a free port (which the socket
        // keeps from being taken meanwhile); listening, they are accepted by the kernel and ignored.
        let loopback = try LoopbackPort(listening: listening)
        let endpoint = "tcp://127.0.0.1:\(loopback.port)"
        let output = try runSwitchyard(
            ["generate", "--coordinator", endpoint, "--insecure", "--prompt-token-ids", "1,2", "--max-tokens", "2",
             "--connect-timeout", "1"],
            timeout: .seconds(60))
        withExtendedLifetime(loopback) {}
        #expect(output.status == 1)
        #expect(
            output.stderr
                == "error: nobody answered at \(endpoint) within 1 s; is `switchyard serve --bind \(endpoint)` running there? (`serve --workers 0` binds no ZeroMQ socket: reach it with `generate --server http://HOST:PORT`)\n",
            "stderr: \(output.stderr)")
    }

    @Test("--connect-timeout and --timeout must be positive numbers of seconds", arguments: ["--connect-timeout", "--timeout"])
    func invalidTimeouts(flag: String) throws {
        let output = try runSwitchyard(
            ["generate", "--coordinator", "tcp://127.0.0.1:1", "--insecure", "--prompt-token-ids", "1", flag, "0"])
        #expect(output.status != 0)
        #expect(output.stderr.contains("\(flag) is 0.0, but must be a positive number of seconds"), "stderr: \(output.stderr)")
    }
}
