// A streaming client that goes away cancels its generation: transport test on 127.0.0.1 with an
// ephemeral port, a raw socket closed mid-stream, bounded in time.
import Coordinator
import Foundation
import Hummingbird
import Testing

#if canImport(Glibc)
    import Glibc
#endif

@Suite("Client disconnects")
struct CancellationTests {
    @Test(
        "a streaming client that disconnects mid-stream makes the engine see its request cancelled",
        .timeLimit(.minutes(1)))
    func disconnectCancels() async throws {
        let service = FakeGenerationService(tokenDelay: .milliseconds(30))
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let app = makeTestApplication(service) { port in portContinuation.yield(port) }

        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.run() }
            var iterator = ports.makeAsyncIterator()
            let port = try #require(await iterator.next())
            #expect(port > 0, "onServerRunning reports the bound ephemeral port")

            let body = #"{"prompt": "x", "max_tokens": 200, "stream": true}"#
            let received = try await RawClient.readThenClose(
                port: port,
                request: "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)",
                until: { $0.components(separatedBy: "data: ").count > 3 })
            #expect(received.hasPrefix("HTTP/1.1 200"))
            #expect(received.contains("text/event-stream"))

            // 200 tokens at 30 ms would take 6 s; cancellation must be seen long before.
            let deadline = ContinuousClock.now + .seconds(5)
            while service.cancelledStreams == 0, ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))
            }
            #expect(service.cancelledStreams == 1)
            group.cancelAll()
        }
    }
}

/// A blocking HTTP/1.1 client on its own thread, so it never blocks the cooperative pool.
enum RawClient {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// Connects to 127.0.0.1:`port`, sends `request`, reads until `until` holds for what was read
    /// (or 10 s pass), then closes the socket.
    static func readThenClose(port: Int, request: String, until: @escaping @Sendable (String) -> Bool) async throws
        -> String
    {
        try await withCheckedThrowingContinuation { continuation in
            let thread = Thread {
                continuation.resume(with: Result { try exchange(port: port, request: request, until: until) })
            }
            thread.start()
        }
    }

    private static func exchange(port: Int, request: String, until: (String) -> Bool) throws -> String {
        #if canImport(Glibc)
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard fd >= 0 else { throw Failure(description: "socket() failed: errno \(errno)") }
            defer { close(fd) }
            var timeout = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_port = in_port_t(UInt16(port).bigEndian)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            guard connected == 0 else { throw Failure(description: "connect to port \(port) failed: errno \(errno)") }
            let bytes = Array(request.utf8)
            guard send(fd, bytes, bytes.count, 0) == bytes.count else { throw Failure(description: "send failed") }
            var received: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            while !until(String(decoding: received, as: UTF8.self)) {
                let count = recv(fd, &buffer, buffer.count, 0)
                guard count > 0 else {
                    throw Failure(
                        description: "recv ended (\(count)) after: \(String(decoding: received, as: UTF8.self))")
                }
                received += buffer[0..<count]
            }
            return String(decoding: received, as: UTF8.self)
        #else
            throw Failure(description: "raw sockets are only implemented with Glibc")
        #endif
    }
}
