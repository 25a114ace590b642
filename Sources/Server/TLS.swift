// TLS for the HTTP API: the server's certificate and key (`serve --tls-cert --tls-key`), and the
// clients (`switchyard balance|rebalance|health|generate --server https://…`), which verify the
// server's certificate against the system's CAs or the one `--ca` names. The clients use
// AsyncHTTPClient over swift-nio-ssl: URLSession on Linux (libcurl) cannot be given a CA of its own.
import AsyncHTTPClient
public import Foundation
public import HummingbirdCore
import HummingbirdTLS
import NIOCore
import NIOHTTP1
public import NIOSSL

/// The server's certificate chain and private key, read and checked at start.
public struct ServerTLS: Sendable {
    /// The configuration Hummingbird's TLS server uses.
    public let configuration: TLSConfiguration

    /// Reads a PEM certificate chain (the server's certificate first) and its PEM private key.
    /// - Throws: `TLSFileError` naming the file and what is wrong with it.
    public init(certificateFile: String, keyFile: String) throws(TLSFileError) {
        let chain: [NIOSSLCertificate]
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificateFile)
        } catch {
            throw TLSFileError("--tls-cert \(certificateFile): cannot read a PEM certificate chain (\(error))")
        }
        guard !chain.isEmpty else { throw TLSFileError("--tls-cert \(certificateFile): holds no PEM certificate") }
        let key: NIOSSLPrivateKey
        do {
            key = try NIOSSLPrivateKey(file: keyFile, format: .pem)
        } catch {
            throw TLSFileError("--tls-key \(keyFile): cannot read a PEM private key (\(error))")
        }
        configuration = .makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
    }
}

/// The HTTP server of ``makeApplication(service:configuration:logger:server:onServerRunning:)``:
/// HTTP/1.1, inside TLS when `tls` is given.
public func httpServer(tls: ServerTLS?) throws -> HTTPServerBuilder {
    guard let tls else { return .http1() }
    return try .tls(.http1(), tlsConfiguration: tls.configuration)
}

/// A certificate, key or CA file that cannot be used; the message names it.
public struct TLSFileError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// How a client reaches a Switchyard HTTP API: over http, or https verifying the server's
/// certificate against the system's CAs, or only against `caFile` when given (as curl's --cacert).
public struct APIConnection: Sendable {
    /// A PEM file of the CA certificates that sign the server's certificate (nil: the system's).
    public let caFile: String?

    /// Verifies https servers against the system's CAs.
    public init() { caFile = nil }

    /// - Throws: `ClientError` when `caFile` holds no PEM certificate.
    public init(caFile: String?) throws(ClientError) {
        if let caFile {
            let certificates: [NIOSSLCertificate]
            do {
                certificates = try NIOSSLCertificate.fromPEMFile(caFile)
            } catch {
                throw ClientError("--ca \(caFile): cannot read PEM certificates (\(error))")
            }
            guard !certificates.isEmpty else { throw ClientError("--ca \(caFile): holds no PEM certificate") }
        }
        self.caFile = caFile
    }

    /// A response whose status has arrived; its body follows in `body`.
    public struct Response: Sendable {
        public let status: Int
        /// The body as it arrives; the connection closes once it ends (or the stream is dropped).
        public let body: AsyncThrowingStream<Data, any Error>

        /// The whole body.
        public func collect() async throws -> Data {
            var data = Data()
            for try await chunk in body { data.append(chunk) }
            return data
        }
    }

    /// Sends one request and waits for its status.
    /// - Parameters:
    ///   - url: an `http://` or `https://` URL.
    ///   - headers: header fields to send.
    ///   - timeout: the whole exchange, body included.
    /// - Throws: `ClientError` naming the server when it cannot be reached or its certificate is not trusted.
    public func send(
        _ method: String, _ url: String, headers: [(String, String)] = [], body: Data? = nil, timeout: Duration
    ) async throws(ClientError) -> Response {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let caFile { tls.trustRoots = .file(caFile) }
        let client = HTTPClient(
            eventLoopGroupProvider: .singleton, configuration: HTTPClient.Configuration(tlsConfiguration: tls))
        var request = HTTPClientRequest(url: url)
        request.method = .init(rawValue: method)
        for (name, value) in headers { request.headers.add(name: name, value: value) }
        if let body { request.body = .bytes(ByteBuffer(bytes: body)) }
        let response: HTTPClientResponse
        do {
            let nanoseconds = timeout.components.seconds * 1_000_000_000 + timeout.components.attoseconds / 1_000_000_000
            response = try await client.execute(request, timeout: .nanoseconds(nanoseconds))
        } catch {
            try? await client.shutdown()
            throw ClientError(Self.explain(error, url: url, caFile: caFile))
        }
        let (stream, continuation) = AsyncThrowingStream<Data, any Error>.makeStream()
        // Forwards the body and then closes the client; ends early when the reader drops the stream.
        let forward = Task {
            do {
                for try await buffer in response.body { continuation.yield(Data(buffer.readableBytesView)) }
                continuation.finish()
            } catch {
                continuation.finish(throwing: error)
            }
            try? await client.shutdown()
        }
        continuation.onTermination = { _ in forward.cancel() }
        return Response(status: Int(response.status.code), body: stream)
    }

    /// A one-line reason for a failed request, with what to do about an untrusted certificate.
    static func explain(_ error: any Error, url: String, caFile: String?) -> String {
        let text = String(describing: error)
        if error is NIOSSLError || text.contains("certificate") || text.contains("handshake") {
            let hint =
                caFile.map { "the server's certificate is not signed by the CA in \($0)" }
                ?? "give the CA that signs the server's certificate with --ca FILE"
            return "cannot reach \(url): TLS: \(text); \(hint)"
        }
        return "cannot reach \(url): \(text); is `switchyard serve` running there?"
    }
}
