// CurveZMQ keys on disk and the options that name them: `switchyard keys generate`, the
// coordinator's `--key`/`--allow-keys`, a worker's or client's `--key`/`--coordinator-key`, and
// `--insecure` for plaintext.
//
// Files: NAME.key holds the secret key (40 characters of Z85, mode 0600), NAME.pub the public key.
// An allow-list is a directory of .pub files (each key named after its file) or a file of keys,
// one a line, `NAME KEY` or just `KEY` (a line starting with # is a comment).
import ArgumentParser
import Foundation
import Server
import Transport

/// `switchyard keys`: CurveZMQ key pairs for coordinators, workers and clients.
struct Keys: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keys",
        abstract: "Make CurveZMQ key pairs: the links between coordinator, workers and clients are encrypted and authenticated with them.",
        subcommands: [Generate.self])

    /// `switchyard keys generate --out DIR --name NAME`.
    struct Generate: ParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "generate",
            abstract: "Write a new key pair: DIR/NAME.key (the secret key, mode 0600) and DIR/NAME.pub (the public key).",
            discussion: """
                Give the coordinator its pair with `serve --key DIR/NAME.key` and every worker and client \
                the coordinator's public key with --coordinator-key. Each worker and client gets a pair of \
                its own (--key); the coordinator accepts the public keys listed by --allow-keys (a \
                directory of .pub files or a file of keys). Existing files are never overwritten.
                """)

        @Option(help: "The directory to write the key files into (created if missing, mode 0700).")
        var out: String

        @Option(help: "The key pair's name: the file names, and the name the coordinator logs for it.")
        var name: String = "switchyard"

        func validate() throws {
            guard !name.isEmpty, name.allSatisfy({ $0.isLetter || $0.isNumber || "-_.".contains($0) }), !name.hasPrefix(".")
            else { throw ValidationError("--name is \"\(name)\", but must be letters, digits, '-', '_' or '.', not starting with '.'") }
        }

        func run() throws {
            do {
                let pair = try CurveKeyPair.generate()
                let directory = URL(fileURLWithPath: out)
                try FileManager.default.createDirectory(
                    at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
                let secret = directory.appendingPathComponent("\(name).key")
                let `public` = directory.appendingPathComponent("\(name).pub")
                for file in [secret, `public`] where FileManager.default.fileExists(atPath: file.path) {
                    throw KeyFileError("\(file.path) exists; refusing to overwrite a key (remove it first, or choose another --name)")
                }
                try writeExclusive(secret, text: "\(pair.secretKey.z85)\n", mode: 0o600)
                try writeExclusive(`public`, text: "\(pair.publicKey.z85)\n", mode: 0o644)
                print("wrote \(secret.path) (secret, mode 0600) and \(`public`.path): \(pair.publicKey.z85)")
            } catch {
                fail("\(error)")
            }
        }

        /// Creates `file` (failing if it exists, even if it appeared since the check) with `mode` from the start.
        private func writeExclusive(_ file: URL, text: String, mode: mode_t) throws {
            let descriptor = open(file.path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
            guard descriptor >= 0 else {
                throw KeyFileError("cannot create \(file.path): \(String(cString: strerror(errno)))")
            }
            defer { close(descriptor) }
            let bytes = Array(text.utf8)
            guard write(descriptor, bytes, bytes.count) == bytes.count else {
                throw KeyFileError("cannot write \(file.path): \(String(cString: strerror(errno)))")
            }
        }
    }
}

/// A key file or allow-list that cannot be used.
struct KeyFileError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

enum KeyFiles {
    /// Environment variables through which `generate --spawn-workers` hands its workers fresh keys
    /// (the environment of a process is readable only by its user, unlike its arguments).
    static let secretKeyVariable = "SWITCHYARD_CURVE_SECRET_KEY"
    static let coordinatorKeyVariable = "SWITCHYARD_CURVE_COORDINATOR_KEY"

    /// The `WORD REST` lines on standard input up to the first blank line (or its end), by WORD.
    /// Read a byte at a time, so that nothing after the blank line is consumed (the rest of the
    /// stream is `--exit-with-stdin`'s).
    static func standardInputKeys() throws -> [String: [String]] {
        var bytes: [UInt8] = []
        var byte: UInt8 = 0
        while bytes.count < 1 << 20 {
            let count = read(STDIN_FILENO, &byte, 1)
            if count < 0, errno == EINTR { continue }
            if count <= 0 { break }
            if byte == UInt8(ascii: "\n"), bytes.last == UInt8(ascii: "\n") { break }
            bytes.append(byte)
        }
        var entries: [String: [String]] = [:]
        for line in String(decoding: bytes, as: UTF8.self).split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            guard parts.count == 2 else { throw KeyFileError("--keys-from-stdin: a line is `WORD VALUE`, not \"\(parts.first ?? "")…\"") }
            entries[String(parts[0]), default: []].append(String(parts[1]))
        }
        return entries
    }

    /// The lines of `path` without blank lines and comment lines (starting with #; only whole lines,
    /// since Z85 keys and API keys may contain #), with their 1-based numbers.
    static func lines(_ path: String) throws -> [(number: Int, text: String)] {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw KeyFileError("\(path): cannot read the file")
        }
        return text.split(separator: "\n", omittingEmptySubsequences: false).enumerated().compactMap { index, line in
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
            return trimmed.isEmpty || trimmed.hasPrefix("#") ? nil : (index + 1, trimmed)
        }
    }

    /// The key pair whose secret key is in `path` (the public key is derived from it).
    static func secretKey(_ path: String) throws -> CurveKeyPair {
        try checkPrivate(path)
        let lines = try lines(path)
        guard lines.count == 1 else {
            throw KeyFileError("\(path): a secret key file holds one key (40 characters of Z85), but this one has \(lines.count) lines")
        }
        do {
            return try CurveKeyPair(secretKey: CurveKey(z85: lines[0].text))
        } catch {
            throw KeyFileError("\(path):\(lines[0].number): \(error)")
        }
    }

    /// Refuses a secret key file that its group or others may read, write or run, as ssh does with
    /// a private key: such a key may already be someone else's. `stat` follows symbolic links, so
    /// a Kubernetes Secret (a link into `..data/`) is judged by the file it names.
    static func checkPrivate(_ path: String) throws {
        var status = stat()
        guard stat(path, &status) == 0 else {
            throw KeyFileError("\(path): cannot read the file: \(String(cString: strerror(errno)))")
        }
        let mode = status.st_mode & 0o777
        guard mode & 0o077 == 0 else {
            throw KeyFileError(
                "\(path): the secret key file has mode \(String(mode, radix: 8)), so others on this host can read it; "
                    + "refusing to use it. Make it private with: chmod 600 \(path)")
        }
    }

    /// The public key in `path`.
    static func publicKey(_ path: String) throws -> CurveKey {
        let lines = try lines(path)
        guard lines.count == 1 else {
            throw KeyFileError("\(path): a public key file holds one key (40 characters of Z85), but this one has \(lines.count) lines")
        }
        do {
            return try CurveKey(z85: lines[0].text)
        } catch {
            throw KeyFileError("\(path):\(lines[0].number): \(error)")
        }
    }

    /// The keys `path` allows, each with its name: a directory of NAME.pub files, or a file of
    /// `NAME KEY` / `KEY` lines (a bare key is named after its first 8 characters).
    static func allowList(_ path: String) throws -> [CurveKey: String] {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw KeyFileError("--allow-keys \(path): no such file or directory")
        }
        var allowed: [CurveKey: String] = [:]
        if isDirectory.boolValue {
            let files = try FileManager.default.contentsOfDirectory(atPath: path).filter { $0.hasSuffix(".pub") }.sorted()
            for file in files {
                allowed[try publicKey((path as NSString).appendingPathComponent(file))] = String(file.dropLast(4))
            }
            guard !allowed.isEmpty else {
                throw KeyFileError("--allow-keys \(path): the directory has no .pub files (make them with `switchyard keys generate`)")
            }
        } else {
            for line in try lines(path) {
                let fields = line.text.split(whereSeparator: \.isWhitespace)
                guard (1...2).contains(fields.count) else {
                    throw KeyFileError("\(path):\(line.number): expected `NAME KEY` or `KEY`, but found \(fields.count) fields")
                }
                do {
                    let key = try CurveKey(z85: String(fields[fields.count - 1]))
                    allowed[key] = fields.count == 2 ? String(fields[0]) : String(key.z85.prefix(8))
                } catch {
                    throw KeyFileError("\(path):\(line.number): \(error)")
                }
            }
            guard !allowed.isEmpty else { throw KeyFileError("--allow-keys \(path): the file lists no keys") }
        }
        return allowed
    }
}

/// `serve`'s CURVE options: its key pair and the allow-list, or `--insecure`.
struct CoordinatorSecurityOptions: ParsableArguments {
    @Option(
        name: .customLong("key"),
        help: ArgumentHelp(
            "The coordinator's secret key file (from `switchyard keys generate`); workers and clients get its .pub as --coordinator-key.",
            valueName: "FILE"))
    var keyFile: String?

    @Option(
        name: .customLong("allow-keys"),
        help: ArgumentHelp(
            "The public keys of the workers and `generate --coordinator` clients that may connect: a directory of .pub files, or a file with one `NAME KEY` per line. Any other peer is refused and logged with its key and address.",
            valueName: "DIR|FILE"))
    var allowKeys: String?

    @Flag(help: "Speak plaintext to anyone who reaches --bind: no encryption, no authentication (logged loudly). Workers and clients must pass --insecure too.")
    var insecure = false

    @Flag(
        name: .customLong("keys-from-stdin"),
        help: "Read the key pair and allow-list from standard input (`secret KEY`, `allow NAME KEY` lines, then a blank line) instead of --key and --allow-keys: how `switchyard launch` hands out keys.")
    var keysFromStdin = false

    /// Checked by the command when it uses the link (ArgumentParser's `validate` would demand keys
    /// from commands that do not connect at all).
    func check() throws {
        if insecure {
            if keyFile != nil || allowKeys != nil || keysFromStdin {
                throw ValidationError("give --insecure, or --key and --allow-keys, not both")
            }
            return
        }
        if keysFromStdin {
            if keyFile != nil || allowKeys != nil { throw ValidationError("give --keys-from-stdin, or --key and --allow-keys, not both") }
            return
        }
        guard keyFile != nil, allowKeys != nil else {
            throw ValidationError(
                "the worker endpoint is encrypted and authenticated with CURVE keys: make them with `switchyard keys generate --out keys/coordinator --name coordinator` and `switchyard keys generate --out keys/workers --name w0` (one per worker and client), then pass --key keys/coordinator/coordinator.key --allow-keys keys/workers; or pass --insecure for plaintext on a network you trust"
            )
        }
    }

    /// The keys to use, or nil for `--insecure`.
    func serverKeys() throws -> CurveServerKeys? {
        if insecure { return nil }
        if keysFromStdin {
            let input = try KeyFiles.standardInputKeys()
            guard let secret = input["secret"]?.first, input["allow"]?.isEmpty == false else {
                throw KeyFileError("--keys-from-stdin: expected a `secret KEY` line and at least one `allow NAME KEY` line")
            }
            var allowed: [CurveKey: String] = [:]
            for entry in input["allow"] ?? [] {
                let fields = entry.split(separator: " ")
                guard fields.count == 2 else { throw KeyFileError("--keys-from-stdin: `allow` takes NAME KEY, not \(fields.count) fields") }
                allowed[try CurveKey(z85: String(fields[1]))] = String(fields[0])
            }
            return CurveServerKeys(server: try CurveKeyPair(secretKey: CurveKey(z85: secret)), allowed: allowed)
        }
        guard let keyFile, let allowKeys else { return nil }
        return CurveServerKeys(server: try KeyFiles.secretKey(keyFile), allowed: try KeyFiles.allowList(allowKeys))
    }
}

/// A worker's or `generate --coordinator` client's CURVE options: its key pair and the
/// coordinator's public key, or `--insecure`.
struct ClientSecurityOptions: ParsableArguments {
    @Option(
        name: .customLong("key"),
        help: ArgumentHelp(
            "This process's secret key file (from `switchyard keys generate`); its .pub must be on the coordinator's --allow-keys.",
            valueName: "FILE"))
    var keyFile: String?

    @Option(
        name: .customLong("coordinator-key"),
        help: ArgumentHelp("The coordinator's public key file (the .pub of its --key).", valueName: "FILE"))
    var coordinatorKey: String?

    @Flag(help: "Connect in plaintext, to a coordinator started with --insecure: no encryption, no authentication.")
    var insecure = false

    @Flag(
        name: .customLong("keys-from-stdin"),
        help: "Read the key pair and the coordinator's public key from standard input (`secret KEY`, `coordinator KEY`, then a blank line): how `switchyard launch` hands out keys.")
    var keysFromStdin = false

    /// Checked by the command when it uses the link (ArgumentParser's `validate` would demand keys
    /// from commands that do not connect at all).
    func check() throws {
        if insecure {
            if keyFile != nil || coordinatorKey != nil || keysFromStdin {
                throw ValidationError("give --insecure, or --key and --coordinator-key, not both")
            }
            return
        }
        if keysFromStdin {
            if keyFile != nil || coordinatorKey != nil {
                throw ValidationError("give --keys-from-stdin, or --key and --coordinator-key, not both")
            }
            return
        }
        let environment = ProcessInfo.processInfo.environment
        if keyFile == nil && coordinatorKey == nil && environment[KeyFiles.secretKeyVariable] != nil
            && environment[KeyFiles.coordinatorKeyVariable] != nil
        {
            return
        }
        guard keyFile != nil, coordinatorKey != nil else {
            throw ValidationError(
                "the link to the coordinator is encrypted and authenticated with CURVE keys: make a key pair with `switchyard keys generate --out DIR --name NAME`, add DIR/NAME.pub to the coordinator's --allow-keys, and pass --key DIR/NAME.key --coordinator-key COORDINATOR.pub (the .pub of the coordinator's --key); or pass --insecure if the coordinator runs --insecure"
            )
        }
    }

    /// The security to connect with.
    func security() throws -> DealerSecurity {
        if insecure { return .plaintext }
        if keysFromStdin {
            let input = try KeyFiles.standardInputKeys()
            guard let secret = input["secret"]?.first, let server = input["coordinator"]?.first else {
                throw KeyFileError("--keys-from-stdin: expected a `secret KEY` line and a `coordinator KEY` line")
            }
            return .curve(client: try CurveKeyPair(secretKey: CurveKey(z85: secret)), serverKey: try CurveKey(z85: server))
        }
        if let keyFile, let coordinatorKey {
            return .curve(client: try KeyFiles.secretKey(keyFile), serverKey: try KeyFiles.publicKey(coordinatorKey))
        }
        // Keys handed down by `generate --spawn-workers`.
        let environment = ProcessInfo.processInfo.environment
        guard let secret = environment[KeyFiles.secretKeyVariable], let server = environment[KeyFiles.coordinatorKeyVariable]
        else { throw ValidationError("--key and --coordinator-key are required (or --insecure)") }
        do {
            return .curve(client: try CurveKeyPair(secretKey: CurveKey(z85: secret)), serverKey: try CurveKey(z85: server))
        } catch {
            throw KeyFileError("\(KeyFiles.secretKeyVariable) / \(KeyFiles.coordinatorKeyVariable): \(error)")
        }
    }
}

/// `serve --api-key-file`: API keys, one a line, `NAME:KEY` or `KEY` (named key1, key2, … by position).
enum APIKeyFile {
    static func read(_ path: String) throws -> [APIKey] {
        var keys: [APIKey] = []
        for line in try KeyFiles.lines(path) {
            let parts = line.text.split(separator: ":", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            let (name, key) = parts.count == 2 ? (parts[0], parts[1]) : ("key\(keys.count + 1)", parts[0])
            // The key is never echoed: the message names the line only.
            guard !name.isEmpty, !key.isEmpty else {
                throw ValidationError("--api-key-file \(path):\(line.number): expected NAME:KEY or KEY, with neither empty")
            }
            guard !keys.contains(where: { $0.name == name }) else {
                throw ValidationError("--api-key-file \(path):\(line.number): the name \(name) is used twice; each key needs its own")
            }
            keys.append(APIKey(name: name, key: key))
        }
        guard !keys.isEmpty else { throw ValidationError("--api-key-file \(path): the file lists no keys") }
        return keys
    }
}
