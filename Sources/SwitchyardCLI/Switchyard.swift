// The `switchyard` command: argument parsing and wiring; the logic lives in the library targets.
import ArgumentParser
import Foundation
import Server

@main
struct Switchyard: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "switchyard",
        abstract: "A distributed Mixture-of-Experts inference runtime.",
        discussion: """
            A coordinator runs the dense part of a Hugging Face MoE checkpoint (embeddings, attention, \
            router, LM head); expert workers in other processes or on other hosts hold the expert FFNs \
            and receive routed token rows over ZeroMQ.

            Quick start:
              switchyard make-model --arch mixtral --out /tmp/tiny
              switchyard generate --model /tmp/tiny --prompt "Hello" --max-tokens 32 --spawn-workers 2
            """,
        version: "switchyard \(switchyardVersion)",
        subcommands: [
            MakeModel.self, Worker.self, Serve.self, Generate.self, Launch.self, Health.self, Balance.self,
            Rebalance.self, SystemInfo.self, Keys.self,
        ]
    )

    /// Parses the command line, with `serve`'s and `worker`'s options completed from SWITCHYARD_* variables.
    static func main() async {
        let arguments: [String]
        do {
            arguments = try EnvironmentOptions.apply(
                to: Array(CommandLine.arguments.dropFirst()), environment: ProcessInfo.processInfo.environment)
        } catch {
            fail("\(error)")
        }
        await main(arguments)
    }
}
