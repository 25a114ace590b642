// SWITCHYARD_* environment variables as command-line options, for `serve` and `worker`.
import ArgumentParser
import Foundation

/// Turns `SWITCHYARD_<LONG_NAME>` environment variables into the options a command declares
/// (`--api-key-file` ← `SWITCHYARD_API_KEY_FILE`), so a systemd unit, a container or a Slurm job can
/// configure `serve` and `worker` without a command line. swift-argument-parser reads no environment
/// (it has no such feature), so this is our own: the options come from the command's own description
/// (`_dumpHelp()`, the JSON behind `--experimental-dump-help`), so a new option is covered without
/// being listed here. An option given on the command line wins over its variable.
enum EnvironmentOptions {
    static let prefix = "SWITCHYARD_"

    /// The subcommands whose options the environment may set.
    static var commands: [String: any ParsableCommand.Type] { ["serve": Serve.self, "worker": Worker.self] }

    /// Options whose variable the command reads itself, with a meaning of its own: SWITCHYARD_API_KEY
    /// is the API key when neither --api-key nor --api-key-file is given (so it never clashes with them).
    static let readByTheCommand: Set<String> = ["api-key"]

    /// The help text's paragraph on the variables.
    static let help = """
        Every option can also be set by an environment variable: SWITCHYARD_ and the option's long name \
        upper-cased with - as _ (SWITCHYARD_THREADS=4, SWITCHYARD_API_KEY_FILE=/etc/switchyard/keys). \
        An option on the command line wins over its variable; a flag's variable takes 1 or true (set) \
        and 0 or false (not set); an empty variable counts as unset.
        """

    struct DeclaredOption: Equatable {
        var longName: String
        var names: [String]
        var isFlag: Bool

        var variable: String { EnvironmentOptions.variable(forLongName: longName) }
    }

    enum Failure: Error, CustomStringConvertible {
        case badFlag(variable: String, value: String)

        var description: String {
            switch self {
            case .badFlag(let variable, let value):
                "\(variable) is \"\(value)\", but a flag's variable must be 1, true, 0 or false"
            }
        }
    }

    static func variable(forLongName name: String) -> String {
        prefix + name.uppercased().replacingOccurrences(of: "-", with: "_")
    }

    /// The options and flags `command` declares (its option groups' too) that have a long name,
    /// leaving out hidden ones, --help and --version.
    static func declaredOptions(of command: any ParsableCommand.Type) -> [DeclaredOption] {
        struct Dump: Decodable {
            struct Command: Decodable { var arguments: [Argument]? }
            struct Argument: Decodable {
                struct Name: Decodable {
                    var kind: String
                    var name: String
                }
                var kind: String
                var shouldDisplay: Bool
                var names: [Name]?
            }
            var command: Command
        }
        // The dump is generated from the command's own declarations; failing to read it is a bug here.
        guard let dump = try? JSONDecoder().decode(Dump.self, from: Data(command._dumpHelp().utf8)) else {
            preconditionFailure("cannot read the argument parser's description of \(command)")
        }
        return (dump.command.arguments ?? []).compactMap { argument in
            guard argument.kind != "positional", argument.shouldDisplay,
                let long = argument.names?.first(where: { $0.kind == "long" })?.name,
                long != "help", long != "version"
            else { return nil }
            let names = (argument.names ?? []).map { ($0.kind == "short" ? "-" : "--") + $0.name }
            return DeclaredOption(longName: long, names: names, isFlag: argument.kind == "flag")
        }
    }

    /// `arguments` (the command line after the executable) with the options of the subcommand it
    /// names added from `environment`, before the explicit ones; other command lines unchanged.
    static func apply(to arguments: [String], environment: [String: String]) throws -> [String] {
        guard let subcommand = arguments.first, let command = commands[subcommand] else { return arguments }
        let explicit = arguments.dropFirst().prefix { $0 != "--" }
        var added: [String] = []
        for option in declaredOptions(of: command) where !readByTheCommand.contains(option.longName) {
            guard let value = environment[option.variable], !value.isEmpty else { continue }
            let given = explicit.contains { token in
                option.names.contains { token == $0 || token.hasPrefix($0 + "=") }
            }
            if given { continue }
            if option.isFlag {
                switch value.lowercased() {
                case "1", "true": added.append("--" + option.longName)
                case "0", "false": break
                default: throw Failure.badFlag(variable: option.variable, value: value)
                }
            } else {
                added.append("--" + option.longName + "=" + value)
            }
        }
        return [subcommand] + added + arguments.dropFirst()
    }
}
