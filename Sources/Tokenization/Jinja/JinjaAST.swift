// The parsed form of a chat template: statements (nodes) and expressions.

/// A constant written in the template.
enum JinjaLiteral: Sendable {
    case none
    case bool(Bool)
    case integer(Int)
    case float(Double)
    case string(String)
}

/// A keyword argument in a call, filter or test: `name=value`.
struct KeywordArgument: Sendable {
    let name: String
    let value: Expression
}

/// An expression with the place it starts in the template.
indirect enum Expression: Sendable {
    case literal(JinjaLiteral, SourcePosition)
    case name(String, SourcePosition)
    case list([Expression], SourcePosition)
    case tuple([Expression], SourcePosition)
    case dict([(key: Expression, value: Expression)], SourcePosition)
    /// `object.name`
    case attribute(Expression, String, SourcePosition)
    /// `object[index]`
    case index(Expression, Expression, SourcePosition)
    /// `object[start:stop:step]`
    case slice(Expression, start: Expression?, stop: Expression?, step: Expression?, SourcePosition)
    case call(Expression, [Expression], [KeywordArgument], SourcePosition)
    /// `value | name(arguments)`
    case filter(Expression, String, [Expression], [KeywordArgument], SourcePosition)
    /// `value is [not] name(arguments)`
    case test(Expression, String, negated: Bool, [Expression], SourcePosition)
    /// `not`, unary `-` and `+`.
    case unary(String, Expression, SourcePosition)
    /// Arithmetic, `~`, comparisons, `in` and `not in`.
    case binary(String, Expression, Expression, SourcePosition)
    case and(Expression, Expression, SourcePosition)
    case or(Expression, Expression, SourcePosition)
    /// `then if condition else otherwise`
    case conditional(condition: Expression, then: Expression, otherwise: Expression?, SourcePosition)

    var position: SourcePosition {
        switch self {
        case .literal(_, let p), .name(_, let p), .list(_, let p), .tuple(_, let p), .dict(_, let p),
            .attribute(_, _, let p), .index(_, _, let p), .slice(_, _, _, _, let p), .call(_, _, _, let p),
            .filter(_, _, _, _, let p), .test(_, _, _, _, let p), .unary(_, _, let p), .binary(_, _, _, let p),
            .and(_, _, let p), .or(_, _, let p), .conditional(_, _, _, let p):
            return p
        }
    }
}

/// What `{% set %}` assigns to.
enum SetTarget: Sendable {
    case names([String])
    /// `ns.attribute = ...` on a namespace.
    case attribute(String, String)
}

/// A parameter of a macro, with its default value.
struct MacroParameter: Sendable {
    let name: String
    let defaultValue: Expression?
}

/// A statement or piece of output.
indirect enum Node: Sendable {
    case text(String)
    case output(Expression)
    case ifBlock([(condition: Expression, body: [Node])], otherwise: [Node])
    case forLoop(
        targets: [String], iterable: Expression, filter: Expression?, body: [Node], otherwise: [Node], SourcePosition)
    case set(SetTarget, Expression, SourcePosition)
    case setBlock(String, [Node])
    case macro(name: String, parameters: [MacroParameter], body: [Node])
    /// `{% with a = 1, b = 2 %}...{% endwith %}`: assignments visible only inside the block.
    case with([(name: String, value: Expression)], body: [Node])
    case breakLoop(SourcePosition)
    case continueLoop(SourcePosition)
}
