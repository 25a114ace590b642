import ArgumentParser
import Foundation
import Server

/// The API key the commands that talk to a server's HTTP API send as `Authorization: Bearer KEY`:
/// `--api-key`, the first key of `--api-key-file` (the file `serve --api-key-file` reads), or
/// SWITCHYARD_API_KEY, in that order.
struct ClientAPIKeyOptions: ParsableArguments {
    @Option(
        name: .customLong("api-key"),
        help: "The server's API key. Visible to every user in `ps`: prefer --api-key-file or SWITCHYARD_API_KEY.")
    var apiKey: String?

    @Option(
        name: .customLong("api-key-file"),
        help: "Send the first key of this file (NAME:KEY or KEY lines, as `serve --api-key-file` reads).")
    var apiKeyFile: String?

    func validate() throws {
        if apiKey != nil && apiKeyFile != nil { throw ValidationError("give --api-key or --api-key-file, not both") }
    }

    /// The key to send, or nil to send none.
    func key() throws -> String? {
        if let apiKeyFile { return try APIKeyFile.read(apiKeyFile)[0].key }
        if let apiKey { return apiKey }
        if let key = ProcessInfo.processInfo.environment["SWITCHYARD_API_KEY"], !key.isEmpty { return key }
        return nil
    }
}
