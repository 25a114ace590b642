import ArgumentParser
import Coordinator
import Foundation
import Server

/// `switchyard balance`: the load-balance report of a running server.
struct Balance: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "balance",
        abstract: "Show a running server's expert load: hottest experts, per-layer balancedness, per-worker load and latency.",
        discussion: """
            Reads GET /v1/expert_load from a running `switchyard serve`. Prints a table (the hottest experts, \
            each MoE layer's balancedness = mean ÷ max load, max ÷ mean, coefficient of variation, normalised \
            entropy and unused experts, and each worker's rows, bytes, compute and round-trip time), or with \
            --json the endpoint's JSON, or with --csv one row per (layer, expert) and (layer, worker). --svg FILE \
            also writes a heatmap (layers × experts and layers × workers) that a browser shows. Counts are since \
            the server started; --window sets the sliding window reported next to them. --record start|stop|read \
            drives the server's per-step routing recording instead.
            """
    )

    @Option(help: "The server's HTTP API, e.g. http://127.0.0.1:8080.")
    var server: String

    @OptionGroup var tls: ClientTLSOptions

    @Option(help: "The sliding window: seconds, or with a unit (90, 60s, 5m); the server keeps 10 minutes.")
    var window: String = "60s"

    @Flag(help: "Print the server's JSON (GET /v1/expert_load) as it is.")
    var json = false

    @Flag(help: "Print CSV: period,layer,kind,name,tokens,rows,dispatches,bytes_sent,bytes_received,compute_us,round_trip_us,balancedness.")
    var csv = false

    @Option(help: "Also write an SVG heatmap to this file.")
    var svg: String?

    @Option(help: "Print this many of the hottest experts in the table.")
    var top: Int = 10

    @Option(help: "Drive the per-step routing recording: start, stop, or read (prints its JSON).")
    var record: String?

    @OptionGroup var auth: ClientAPIKeyOptions

    func validate() throws {
        if json && csv { throw ValidationError("give at most one of --json and --csv") }
        guard top >= 1 else { throw ValidationError("--top is \(top), but must be at least 1") }
        do throws(LoadWindowError) {
            _ = try ExpertLoadAccounting.parseWindow(window, maximumSeconds: 86_400)
        } catch {
            throw ValidationError("--\(error.description)")
        }
        if let record, ExpertLoadClient.RecordingAction(rawValue: record) == nil {
            throw ValidationError("--record is \"\(record)\", but must be start, stop or read")
        }
        if record != nil && (json || csv || svg != nil) {
            throw ValidationError("--record prints the recording's JSON; it takes no --json, --csv or --svg")
        }
    }

    func run() async throws {
        do {
            let client = try ExpertLoadClient(server: server, apiKey: try auth.key(), connection: try tls.connection())
            if let record, let action = ExpertLoadClient.RecordingAction(rawValue: record) {
                print(String(decoding: try await client.recording(action), as: UTF8.self))
                return
            }
            let (body, report) = try await client.report(window: window)
            if let svg {
                do {
                    try Data(LoadReportFormat.svg(report, title: "Switchyard expert load — \(client.server)").utf8)
                        .write(to: URL(fileURLWithPath: svg))
                } catch {
                    throw ClientError("cannot write the SVG to \(svg): \(error.localizedDescription)")
                }
            }
            if json {
                print(String(decoding: body, as: UTF8.self))
            } else if csv {
                FileHandle.standardOutput.write(Data(LoadReportFormat.csv(report).utf8))
            } else {
                FileHandle.standardOutput.write(Data(LoadReportFormat.table(report, hottest: top).utf8))
                if let svg { print("heatmap written to \(svg)") }
            }
        } catch {
            fail("\(error)")
        }
    }
}
