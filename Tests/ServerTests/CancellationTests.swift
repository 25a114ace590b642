// A client that goes away cancels its generation, streamed or not, and a body that stops arriving
// is timed out: transport tests on 127.0.0.1 with an ephemeral port and raw sockets, bounded in time.
import Synchronization
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
        .timeLimit(.minutes(5)))
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

            // Only a cancellation counts here (a stream that ran to its end finishes instead), so the
            // wait has no deadline of its own to race: just the generous overall one.
            try await Self.eventually { service.cancelledStreams > 0 }
            #expect(service.cancelledStreams == 1)
            group.cancelAll()
        }
    }

    /// Runs the application on an ephemeral port around `body`, which gets the port.
    static func withServer(
        _ service: FakeGenerationService, requestBodyTimeout: Duration = .seconds(60),
        _ body: @Sendable (Int) async throws -> Void
    ) async throws {
        let (ports, portContinuation) = AsyncStream.makeStream(of: Int.self)
        let app = makeTestApplication(service, requestBodyTimeout: requestBodyTimeout) { port in
            portContinuation.yield(port)
        }
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.run() }
            var iterator = ports.makeAsyncIterator()
            let port = try #require(await iterator.next())
            try await body(port)
            group.cancelAll()
        }
    }

    /// Waits (at most 60 s: parallel suites can hold the threads for long) until `condition` holds.
    static func eventually(_ condition: () -> Bool) async throws {
        let deadline = ContinuousClock.now + .seconds(60)
        while !condition(), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
    }

    @Test(
        "a client that disconnects while waiting for a whole (non-streamed) response makes the engine see each of its requests cancelled",
        .timeLimit(.minutes(5)), arguments: [1, 3])
    func disconnectCancelsWholeResponse(choices: Int) async throws {
        let service = FakeGenerationService(tokenDelay: .milliseconds(30))
        try await Self.withServer(service) { port in
            let body = #"{"prompt": "x", "max_tokens": 200, "n": \#(choices)}"#
            let connection = try await RawConnection.open(port: port)
            try await connection.send(
                "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    + "Content-Length: \(body.utf8.count)\r\n\r\n\(body)")
            // Submitted first, so the cancellation is the engine's to see, not a request never made.
            try await Self.eventually { service.submitted.count == choices }
            #expect(service.submitted.count == choices)
            connection.close()

            // 200 tokens at 30 ms would take 6 s; each request must be cancelled, not run out.
            try await Self.eventually { service.cancelledStreams == choices }
            #expect(service.cancelledStreams == choices)
        }
    }

    @Test(
        "a body that stops arriving is answered 408 naming the timeout, and the connection is closed",
        .timeLimit(.minutes(5)))
    func stalledBody() async throws {
        let service = FakeGenerationService()
        try await Self.withServer(service, requestBodyTimeout: .seconds(1)) { port in
            let connection = try await RawConnection.open(port: port)
            // Headers promise 100 bytes; 10 arrive, then nothing.
            try await connection.send(
                "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                    + "Content-Length: 100\r\n\r\n{\"prompt\":")
            let (received, closed) = try await connection.receiveUntilClosed()
            connection.close()
            #expect(received.hasPrefix("HTTP/1.1 408"), "\(received)")
            #expect(received.contains("did not arrive within 1 s"), "\(received)")
            #expect(received.lowercased().contains("connection: close"), "\(received)")
            #expect(closed, "the server closes the connection after the 408")
            #expect(service.submitted.isEmpty)
        }
    }
}

/// One raw TCP connection to 127.0.0.1; each blocking call runs on a thread of its own, so it
/// never holds the cooperative pool.
final class RawConnection: Sendable {
    /// The socket, nil once closed.
    private let fd: Mutex<Int32?>

    private init(fd: Int32) { self.fd = Mutex(fd) }

    deinit { close() }

    private static func onThread<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try work() }) }.start()
        }
    }

    private var socket: Int32 {
        get throws {
            guard let fd = fd.withLock({ $0 }) else { throw RawClient.Failure(description: "the connection is closed") }
            return fd
        }
    }

    static func open(port: Int) async throws -> RawConnection {
        try await onThread {
            #if canImport(Glibc)
                let fd = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
                guard fd >= 0 else { throw RawClient.Failure(description: "socket() failed: errno \(errno)") }
                // Bounds every receive, so a server that never answers fails the test instead of hanging it.
                var timeout = timeval(tv_sec: 120, tv_usec: 0)
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
                guard connected == 0 else {
                    Glibc.close(fd)
                    throw RawClient.Failure(description: "connect to port \(port) failed: errno \(errno)")
                }
                return RawConnection(fd: fd)
            #else
                throw RawClient.Failure(description: "raw sockets are only implemented with Glibc")
            #endif
        }
    }

    func send(_ text: String) async throws {
        let fd = try socket
        try await Self.onThread {
            #if canImport(Glibc)
                let bytes = Array(text.utf8)
                guard Glibc.send(fd, bytes, bytes.count, 0) == bytes.count else {
                    throw RawClient.Failure(description: "send failed: errno \(errno)")
                }
            #endif
        }
    }

    /// Reads until the server closes the connection (true) or 120 s pass without a byte (false).
    func receiveUntilClosed() async throws -> (String, closed: Bool) {
        let fd = try socket
        return try await Self.onThread {
            var received: [UInt8] = []
            #if canImport(Glibc)
                var buffer = [UInt8](repeating: 0, count: 4096)
                while true {
                    let count = recv(fd, &buffer, buffer.count, 0)
                    if count == 0 { return (String(decoding: received, as: UTF8.self), true) }
                    if count < 0 { break }
                    received += buffer[0..<count]
                }
            #endif
            return (String(decoding: received, as: UTF8.self), false)
        }
    }

    /// Closes the socket (once): the server sees the client leave.
    func close() {
        guard let fd = fd.withLock({ fd in defer { fd = nil }; return fd }) else { return }
        #if canImport(Glibc)
            Glibc.close(fd)
        #endif
    }
}

/// A blocking HTTP/1.1 client on its own thread, so it never blocks the cooperative pool.
enum RawClient {
    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// Connects to 127.0.0.1:`port`, sends `request`, reads until `until` holds for what was read
    /// (or 120 s pass without a byte: generous, since parallel suites can hold every thread for minutes),
    /// then closes the socket.
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
            var timeout = timeval(tv_sec: 120, tv_usec: 0)
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
