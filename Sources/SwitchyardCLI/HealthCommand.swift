import ArgumentParser
import Foundation
import Server

/// `switchyard health`: asks a coordinator's HTTP API whether it is ready.
struct Health: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "health",
        abstract: "Ask a coordinator's HTTP API whether it serves: exit 0 when GET /health answers 200.",
        discussion: """
            Prints the body of the last answer; a server with API keys gives its reason only to a caller \
            with a key (--api-key-file, --api-key or SWITCHYARD_API_KEY). With --wait, asks again every 0.2 s until the answer is \
            200 or the time is up (`switchyard launch` runs this on the coordinator's host).
            """
    )

    @Option(help: "The coordinator's HTTP API, e.g. http://127.0.0.1:8080.")
    var server: String

    @OptionGroup var tls: ClientTLSOptions

    @OptionGroup var auth: ClientAPIKeyOptions

    @Option(help: "Seconds to keep asking until /health answers 200 (0: ask once).")
    var wait: Double = 0

    func validate() throws {
        guard let url = URL(string: server), ["http", "https"].contains(url.scheme ?? ""), url.host != nil else {
            throw ValidationError("--server is \"\(server)\", but must be a URL like http://127.0.0.1:8080")
        }
        guard wait >= 0 else { throw ValidationError("--wait is \(wait), but must be 0 or more") }
    }

    func run() async throws {
        let url = URL(string: server.hasSuffix("/") ? server + "health" : server + "/health")!
        let deadline = Date().addingTimeInterval(wait)
        let connection: APIConnection
        let headers: [(String, String)]
        do {
            connection = try tls.connection()
            // With a key, a keyed server's answer also says why it is not ready.
            headers = try auth.key().map { [("Authorization", "Bearer \($0)")] } ?? []
        } catch { fail("\(error)") }
        var last = "no answer"
        while true {
            do {
                let response = try await connection.send("GET", url.absoluteString, headers: headers, timeout: .seconds(5))
                let body = String(decoding: try await response.collect(), as: UTF8.self)
                if response.status == 200 {
                    print(body)
                    return
                }
                last = "HTTP \(response.status): \(body)"
            } catch {
                last = "\(error)"
            }
            if Date() >= deadline { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        fail("\(url.absoluteString) is not ready: \(last)")
    }
}
