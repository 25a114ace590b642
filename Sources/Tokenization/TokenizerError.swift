// Errors thrown while loading or training a tokenizer.

/// A tokenizer file (or `generation_config.json`) could not be used: names the file, the field and
/// what would have been valid.
///
/// For example: `tokenizer.json: model.type is "WordPiece", but only "BPE" is supported`.
public struct TokenizerError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The file the problem is in (`tokenizer.json`, `tokenizer_config.json`, `generation_config.json`), or
    /// the component that failed.
    public let file: String
    /// The dotted JSON path of the offending field, e.g. `pre_tokenizer.pretokenizers[1].type`; empty for the whole file.
    public let field: String
    /// What was found and what would have been valid.
    public let problem: String

    /// Creates an error about `field` in `file`.
    public init(file: String, field: String, problem: String) {
        self.file = file
        self.field = field
        self.problem = problem
    }

    /// One line: `file: field problem`.
    public var description: String {
        field.isEmpty ? "\(file): \(problem)" : "\(file): \(field) \(problem)"
    }
}
