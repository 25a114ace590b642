// Errors thrown while loading, parsing or rendering a chat template.

/// A chat template could not be rendered: names what went wrong and where in the template.
///
/// For example: `chat_template line 3, column 12: unsupported filter 'wordwrap'`, or, for a template
/// that calls `raise_exception`, the template's own message (`Conversation roles must alternate ...`).
public struct ChatTemplateError: Error, CustomStringConvertible, Sendable, Equatable {
    /// What kind of failure this is.
    public enum Kind: String, Sendable, Equatable {
        /// The checkpoint has no `chat_template` (tokenizer_config.json or chat_template.jinja).
        case missingTemplate
        /// The template is not valid Jinja.
        case syntax
        /// The template uses Jinja that this interpreter does not implement.
        case unsupported
        /// The template called `raise_exception(message)`; `message` is the template's text.
        case raised
        /// Rendering failed (an undefined variable used in arithmetic, a type error, ...).
        case runtime
        /// Rendering exceeded a safety limit (output size, nesting depth, loop iterations).
        case limit
    }

    /// What kind of failure this is.
    public let kind: Kind
    /// The problem; for `.raised`, exactly the message the template passed to `raise_exception`.
    public let message: String
    /// The 1-based line in the template, when the failure has a place.
    public let line: Int?
    /// The 1-based column (in Unicode scalars) in the template, when the failure has a place.
    public let column: Int?

    /// Creates an error of `kind` with `message`, optionally at a line and column of the template.
    public init(kind: Kind, message: String, line: Int? = nil, column: Int? = nil) {
        self.kind = kind
        self.message = message
        self.line = line
        self.column = column
    }

    init(_ kind: Kind, _ message: String, at position: SourcePosition?) {
        self.init(kind: kind, message: message, line: position?.line, column: position?.column)
    }

    /// One line: `chat_template line L, column C: message`.
    public var description: String {
        switch (kind, line, column) {
        case (.missingTemplate, _, _):
            return message
        case (.raised, _, _):
            return "chat_template raised an exception: \(message)"
        case (_, let line?, let column?):
            return "chat_template line \(line), column \(column): \(message)"
        default:
            return "chat_template: \(message)"
        }
    }
}
