// `--log-format json`: one JSON object per log line, for log collectors (Loki, Elasticsearch, journald's JSON).
import ArgumentParser
import Foundation
import Logging
import Synchronization

/// How log lines are written to stderr.
enum LogFormat: String, CaseIterable, ExpressibleByArgument {
    case text, json

    static let help = "Log line format: text (swift-log's plain lines) or json (one object per line: timestamp, level, label, message, metadata)."
}

/// Writes each log event to stderr as one JSON object on one line:
/// `{"label":…,"level":…,"message":…,"metadata":{…},"timestamp":"2026-12-03T22:20:27.123Z"}`.
/// swift-log ships only the plain-text StreamLogHandler and the package mirror has no JSON handler,
/// so this small one is our own.
struct JSONLogHandler: LogHandler {
    let label: String
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]
    var metadataProvider: Logger.MetadataProvider?

    /// Serialises whole lines from every thread, so lines never interleave.
    private static let output = Mutex<Void>(())

    init(label: String, level: Logger.Level) {
        self.label = label
        self.logLevel = level
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    struct Line: Encodable {
        var timestamp: String
        var level: String
        var label: String
        var message: String
        var metadata: [String: Value]?
    }

    /// A metadata value as JSON: strings stay strings, lists and dictionaries nest.
    enum Value: Encodable {
        case string(String)
        case array([Value])
        case object([String: Value])

        init(_ value: Logger.Metadata.Value) {
            switch value {
            case .string(let text): self = .string(text)
            case .stringConvertible(let convertible): self = .string(convertible.description)
            case .array(let values): self = .array(values.map(Value.init))
            case .dictionary(let entries): self = .object(entries.mapValues(Value.init))
            }
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            switch self {
            case .string(let text): try container.encode(text)
            case .array(let values): try container.encode(values)
            case .object(let entries): try container.encode(entries)
            }
        }
    }

    func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let own = event.metadata { merged.merge(own) { _, new in new } }
        let line = Line(
            timestamp: Date().formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)),
            level: event.level.rawValue, label: label, message: event.message.description,
            metadata: merged.isEmpty ? nil : merged.mapValues(Value.init))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        // Encoding strings and string dictionaries cannot fail; were it to, the line is not lost.
        var bytes = (try? encoder.encode(line)) ?? Data(#"{"level":"error","message":"unencodable log line"}"#.utf8)
        bytes.append(UInt8(ascii: "\n"))
        Self.output.withLock { _ in FileHandle.standardError.write(bytes) }
    }
}
