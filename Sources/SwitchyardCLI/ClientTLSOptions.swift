import ArgumentParser
import Server

/// `--ca FILE` of the commands that talk to a server's HTTP API over https.
struct ClientTLSOptions: ParsableArguments {
    @Option(
        name: .customLong("ca"),
        help: "With an https:// --server: a PEM file of the CA certificate(s) that sign the server's certificate, trusted instead of the system's CAs.")
    var caFile: String?

    /// How the client verifies the server.
    func connection() throws -> APIConnection {
        guard let caFile else { return APIConnection() }
        return try APIConnection(caFile: caFile)
    }
}
