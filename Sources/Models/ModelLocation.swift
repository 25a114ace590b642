// Where a `--model` argument points: a checkpoint directory, a Hugging Face cache folder, or a Hub
// id looked up in the local Hugging Face cache. Nothing is downloaded: a model that is not on disk
// is an error that gives the download command.
public import Foundation

/// A resolved `--model` argument.
public struct ModelLocation: Sendable, Equatable {
    /// The checkpoint directory (config.json, safetensors, tokenizer.json).
    public let directory: URL
    /// The Hub id ("org/name") when the checkpoint came from the Hugging Face cache.
    public let repositoryID: String?

    /// Resolves `argument` as a directory, a `models--org--name` cache folder or an `org/name` id
    /// looked up in the Hugging Face hub cache that `environment` selects (`HF_HUB_CACHE`, else
    /// `HF_HOME`/hub, else `XDG_CACHE_HOME`/huggingface/hub, else ~/.cache/huggingface/hub, as
    /// huggingface_hub's constants.py does).
    public static func resolve(
        _ argument: String, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws(ModelLocationError) -> ModelLocation {
        let url = URL(fileURLWithPath: argument)
        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: url.path, isDirectory: &isDirectory)
        if argument.lowercased().hasSuffix(".gguf") || (exists && !isDirectory.boolValue && startsWithGGUFMagic(url)) {
            throw .gguf(path: argument)
        }
        if exists && isDirectory.boolValue {
            if !FileManager.default.fileExists(atPath: url.appendingPathComponent("config.json").path),
                let repository = repositoryID(cacheFolderName: url.lastPathComponent)
            {
                return ModelLocation(directory: try snapshot(of: url, repository: repository), repositoryID: repository)
            }
            return ModelLocation(directory: url, repositoryID: nil)
        }
        guard !exists, isHubID(argument) else { return ModelLocation(directory: url, repositoryID: nil) }
        let cache = hubCache(environment: environment)
        let folder = cache.appendingPathComponent("models--" + argument.replacingOccurrences(of: "/", with: "--"))
        guard FileManager.default.fileExists(atPath: folder.path) else {
            throw .notDownloaded(repository: argument, looked: folder.path)
        }
        return ModelLocation(directory: try snapshot(of: folder, repository: argument), repositoryID: argument)
    }

    /// The hub cache directory huggingface_hub uses under `environment`.
    public static func hubCache(environment: [String: String]) -> URL {
        if let cache = environment["HF_HUB_CACHE"], !cache.isEmpty { return URL(fileURLWithPath: cache) }
        if let home = environment["HF_HOME"], !home.isEmpty {
            return URL(fileURLWithPath: home).appendingPathComponent("hub")
        }
        let base = environment["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : URL(fileURLWithPath: $0) }
            ?? URL(fileURLWithPath: environment["HOME"] ?? NSHomeDirectory()).appendingPathComponent(".cache")
        return base.appendingPathComponent("huggingface/hub")
    }

    /// "org/name" for a folder named "models--org--name".
    static func repositoryID(cacheFolderName name: String) -> String? {
        guard name.hasPrefix("models--") else { return nil }
        let parts = name.dropFirst("models--".count).components(separatedBy: "--")
        guard parts.count >= 2, parts.allSatisfy({ !$0.isEmpty }) else { return nil }
        return parts.joined(separator: "/")
    }

    /// A Hub model id: "name" or "org/name", each part letters, digits, '-', '_' or '.', not a path.
    static func isHubID(_ text: String) -> Bool {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2 else { return false }
        return parts.allSatisfy { part in
            !part.isEmpty && part != "." && part != ".." && !part.hasPrefix(".")
                && part.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "-_.".contains($0)) }
        }
    }

    /// The snapshot `refs/main` names in a `models--org--name` folder, or its only snapshot.
    static func snapshot(of folder: URL, repository: String) throws(ModelLocationError) -> URL {
        let snapshots = folder.appendingPathComponent("snapshots")
        let reference = folder.appendingPathComponent("refs/main")
        if let text = try? String(contentsOf: reference, encoding: .utf8) {
            let commit = text.trimmingCharacters(in: .whitespacesAndNewlines)
            // A commit hash names a folder: refuse anything that could step out of snapshots/.
            guard !commit.isEmpty, commit.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) else {
                throw .badCache(folder: folder.path, reason: "refs/main does not hold a commit hash")
            }
            let directory = snapshots.appendingPathComponent(commit)
            guard FileManager.default.fileExists(atPath: directory.path) else {
                throw .badCache(folder: folder.path, reason: "refs/main names snapshot \(commit), which is not in snapshots/")
            }
            return directory
        }
        let found = ((try? FileManager.default.contentsOfDirectory(atPath: snapshots.path)) ?? [])
            .filter { !$0.hasPrefix(".") }.sorted()
        guard found.count == 1, let only = found.first else {
            throw .badCache(
                folder: folder.path,
                reason: found.isEmpty
                    ? "no snapshot in snapshots/ (an interrupted download? run `hf download \(repository)` again)"
                    : "no refs/main and \(found.count) snapshots (\(found.joined(separator: ", "))): pass the snapshot's directory")
        }
        return snapshots.appendingPathComponent(only)
    }

    static func startsWithGGUFMagic(_ url: URL) -> Bool {
        guard let handle = try? FileHandle(forReadingFrom: url) else { return false }
        defer { try? handle.close() }
        return (try? handle.read(upToCount: 4)) == Data("GGUF".utf8)
    }
}

/// Why a `--model` argument does not lead to a checkpoint; one line that says what to do.
public enum ModelLocationError: Error, Sendable, Equatable, CustomStringConvertible {
    case gguf(path: String)
    case notDownloaded(repository: String, looked: String)
    case badCache(folder: String, reason: String)

    public var description: String {
        switch self {
        case .gguf(let path):
            "\(path) is a GGUF file; Switchyard does not read GGUF. It reads Hugging Face checkpoints (a directory with config.json, *.safetensors and tokenizer.json): download the model's original safetensors repository, e.g. `hf download ORG/NAME`, and pass --model ORG/NAME or its directory"
        case .notDownloaded(let repository, let looked):
            "\(repository) is not a directory and not in the Hugging Face cache (looked for \(looked)); download it with `hf download \(repository)` (or `huggingface-cli download \(repository)`), or set HF_HUB_CACHE or HF_HOME to the cache it is in"
        case .badCache(let folder, let reason):
            "\(folder): \(reason)"
        }
    }
}
