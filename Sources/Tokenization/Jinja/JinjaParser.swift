// Jinja parser: turns lexed segments into statements and expressions, with Jinja 3's precedence
// (lowest first): `x if c else y`, `or`, `and`, `not`, comparisons and `in`, `+ -`, `~`, `* / // %`,
// `**`, unary `- +`, then primaries with `.attr`, `[index]`, `(call)`, `| filter` and `is test`.

struct JinjaParser {
    /// Deeper nesting than this (blocks or expressions) is refused rather than risking the stack.
    static let maximumDepth = 64

    private let segments: [TemplateSegment]
    private var index = 0
    private var depth = 0

    init(segments: [TemplateSegment]) {
        self.segments = segments
    }

    /// Parses the whole template.
    static func parse(_ source: String) throws(ChatTemplateError) -> [Node] {
        var parser = JinjaParser(segments: try JinjaLexer(source: source).segments())
        let (nodes, end) = try parser.parseBody(until: [])
        if let end {
            throw ChatTemplateError(.syntax, "unexpected '{% \(end.keyword) %}'", at: end.position)
        }
        return nodes
    }

    private struct BlockEnd {
        let keyword: String
        var tokens: TokenStream
        let position: SourcePosition
    }

    /// Parses nodes until a statement whose keyword is in `terminators` (returned) or the end.
    private mutating func parseBody(until terminators: Set<String>) throws(ChatTemplateError) -> ([Node], BlockEnd?) {
        depth += 1
        defer { depth -= 1 }
        var nodes: [Node] = []
        while index < segments.count {
            let segment = segments[index]
            index += 1
            switch segment {
            case .text(let text):
                nodes.append(.text(text))
            case .output(let tokens, let position):
                var stream = TokenStream(tokens: tokens, depth: depth)
                guard !stream.atEnd else { throw ChatTemplateError(.syntax, "empty expression '{{ }}'", at: position) }
                let expression = try stream.parseExpression()
                try stream.expectEnd()
                nodes.append(.output(expression))
            case .statement(let tokens, let position):
                var stream = TokenStream(tokens: tokens, depth: depth)
                guard case .name(let keyword) = stream.current.kind else {
                    throw ChatTemplateError(.syntax, "expected a statement name after '{%'", at: position)
                }
                stream.advance()
                if terminators.contains(keyword) {
                    return (nodes, BlockEnd(keyword: keyword, tokens: stream, position: position))
                }
                guard depth < Self.maximumDepth else {
                    throw ChatTemplateError(
                        .limit, "blocks are nested more than \(Self.maximumDepth) deep", at: position)
                }
                if let node = try parseStatement(keyword, &stream, position) { nodes.append(node) }
            }
        }
        if !terminators.isEmpty {
            let expected = terminators.sorted().map { "'\($0)'" }.joined(separator: " or ")
            throw ChatTemplateError(.syntax, "unexpected end of template, expected \(expected)", at: nil)
        }
        return (nodes, nil)
    }

    private mutating func parseStatement(_ keyword: String, _ stream: inout TokenStream, _ position: SourcePosition)
        throws(ChatTemplateError) -> Node?
    {
        switch keyword {
        case "if":
            var branches: [(condition: Expression, body: [Node])] = []
            var condition = try stream.parseExpression()
            try stream.expectEnd()
            while true {
                let (body, end) = try parseBody(until: ["elif", "else", "endif"])
                branches.append((condition, body))
                guard var end else { return nil }
                switch end.keyword {
                case "elif":
                    condition = try end.tokens.parseExpression()
                    try end.tokens.expectEnd()
                case "else":
                    try end.tokens.expectEnd()
                    let (otherwise, close) = try parseBody(until: ["endif"])
                    try close?.tokens.expectEnd()
                    return .ifBlock(branches, otherwise: otherwise)
                default:
                    try end.tokens.expectEnd()
                    return .ifBlock(branches, otherwise: [])
                }
            }
        case "for":
            var targets: [String] = [try stream.expectName()]
            while stream.skip(symbol: ",") { targets.append(try stream.expectName()) }
            try stream.expect(name: "in")
            let iterable = try stream.parseExpression(allowConditional: false)
            var filter: Expression?
            if stream.skip(name: "if") { filter = try stream.parseExpression(allowConditional: false) }
            if case .name("recursive") = stream.current.kind {
                throw ChatTemplateError(
                    .unsupported, "unsupported construct 'for ... recursive'", at: stream.current.position)
            }
            try stream.expectEnd()
            let (body, end) = try parseBody(until: ["else", "endfor"])
            var otherwise: [Node] = []
            if let end, end.keyword == "else" {
                try end.tokens.expectEnd()
                let (elseBody, close) = try parseBody(until: ["endfor"])
                try close?.tokens.expectEnd()
                otherwise = elseBody
            } else {
                try end?.tokens.expectEnd()
            }
            return .forLoop(
                targets: targets, iterable: iterable, filter: filter, body: body, otherwise: otherwise, position)
        case "set":
            let first = try stream.expectName()
            if stream.skip(symbol: ".") {
                let attribute = try stream.expectName()
                try stream.expect(symbol: "=")
                let value = try stream.parseExpression()
                try stream.expectEnd()
                return .set(.attribute(first, attribute), value, position)
            }
            var names = [first]
            while stream.skip(symbol: ",") { names.append(try stream.expectName()) }
            if stream.atEnd, names.count == 1 {
                let (body, end) = try parseBody(until: ["endset"])
                try end?.tokens.expectEnd()
                return .setBlock(first, body)
            }
            try stream.expect(symbol: "=")
            let value = try stream.parseExpression()
            try stream.expectEnd()
            return .set(.names(names), value, position)
        case "macro":
            let name = try stream.expectName()
            try stream.expect(symbol: "(")
            var parameters: [MacroParameter] = []
            while !stream.skip(symbol: ")") {
                if !parameters.isEmpty { try stream.expect(symbol: ",") }
                if stream.skip(symbol: ")") { break }
                let parameter = try stream.expectName()
                let defaultValue = stream.skip(symbol: "=") ? try stream.parseExpression() : nil
                parameters.append(MacroParameter(name: parameter, defaultValue: defaultValue))
            }
            try stream.expectEnd()
            let (body, end) = try parseBody(until: ["endmacro"])
            try end?.tokens.expectEnd()
            return .macro(name: name, parameters: parameters, body: body)
        case "with":
            var assignments: [(name: String, value: Expression)] = []
            while !stream.atEnd {
                if !assignments.isEmpty { try stream.expect(symbol: ",") }
                let name = try stream.expectName()
                try stream.expect(symbol: "=")
                assignments.append((name, try stream.parseExpression()))
            }
            let (body, end) = try parseBody(until: ["endwith"])
            try end?.tokens.expectEnd()
            return .with(assignments, body: body)
        case "break":
            try stream.expectEnd()
            return .breakLoop(position)
        case "continue":
            try stream.expectEnd()
            return .continueLoop(position)
        case "generation":
            // transformers' `{% generation %}` marks assistant text for masks; it renders its body unchanged.
            try stream.expectEnd()
            let (body, end) = try parseBody(until: ["endgeneration"])
            try end?.tokens.expectEnd()
            return .ifBlock([(.literal(.bool(true), position), body)], otherwise: [])
        default:
            throw ChatTemplateError(.unsupported, "unsupported statement '{% \(keyword) %}'", at: position)
        }
    }
}

/// The tokens of one tag, consumed by the expression parser.
struct TokenStream {
    private let tokens: [ExpressionToken]
    private var index = 0
    private var depth: Int

    init(tokens: [ExpressionToken], depth: Int) {
        self.tokens = tokens
        self.depth = depth
    }

    var current: ExpressionToken { tokens[index] }
    var atEnd: Bool { current.kind == .end }

    mutating func advance() {
        if index < tokens.count - 1 { index += 1 }
    }

    private func describe(_ kind: ExpressionToken.Kind) -> String {
        switch kind {
        case .name(let name): "'\(name)'"
        case .string(let value): "string '\(value)'"
        case .integer(let value): "'\(value)'"
        case .float(let value): "'\(value)'"
        case .symbol(let symbol): "'\(symbol)'"
        case .end: "the end of the tag"
        }
    }

    private func unexpected(_ expected: String) -> ChatTemplateError {
        ChatTemplateError(.syntax, "expected \(expected), found \(describe(current.kind))", at: current.position)
    }

    func isSymbol(_ symbol: String) -> Bool { current.kind == .symbol(symbol) }
    func isName(_ name: String) -> Bool { current.kind == .name(name) }

    mutating func skip(symbol: String) -> Bool {
        guard isSymbol(symbol) else { return false }
        advance()
        return true
    }

    mutating func skip(name: String) -> Bool {
        guard isName(name) else { return false }
        advance()
        return true
    }

    mutating func expect(symbol: String) throws(ChatTemplateError) {
        guard skip(symbol: symbol) else { throw unexpected("'\(symbol)'") }
    }

    mutating func expect(name: String) throws(ChatTemplateError) {
        guard skip(name: name) else { throw unexpected("'\(name)'") }
    }

    mutating func expectName() throws(ChatTemplateError) -> String {
        guard case .name(let name) = current.kind else { throw unexpected("a name") }
        advance()
        return name
    }

    func expectEnd() throws(ChatTemplateError) {
        guard atEnd else { throw unexpected("the end of the tag") }
    }

    private mutating func nested<T>(_ body: (inout TokenStream) throws(ChatTemplateError) -> T)
        throws(ChatTemplateError) -> T
    {
        depth += 1
        defer { depth -= 1 }
        guard depth < JinjaParser.maximumDepth else {
            throw ChatTemplateError(
                .limit, "the expression is nested more than \(JinjaParser.maximumDepth) deep", at: current.position)
        }
        return try body(&self)
    }

    // MARK: Expressions

    mutating func parseExpression(allowConditional: Bool = true) throws(ChatTemplateError) -> Expression {
        try nested { (stream: inout TokenStream) throws(ChatTemplateError) -> Expression in
            let position = stream.current.position
            let value = try stream.parseOr()
            guard allowConditional, stream.skip(name: "if") else { return value }
            let condition = try stream.parseOr()
            let otherwise = stream.skip(name: "else") ? try stream.parseExpression() : nil
            return .conditional(condition: condition, then: value, otherwise: otherwise, position)
        }
    }

    private mutating func parseOr() throws(ChatTemplateError) -> Expression {
        var left = try parseAnd()
        while isName("or") {
            let position = current.position
            advance()
            left = .or(left, try parseAnd(), position)
        }
        return left
    }

    private mutating func parseAnd() throws(ChatTemplateError) -> Expression {
        var left = try parseNot()
        while isName("and") {
            let position = current.position
            advance()
            left = .and(left, try parseNot(), position)
        }
        return left
    }

    private mutating func parseNot() throws(ChatTemplateError) -> Expression {
        if isName("not") {
            let position = current.position
            advance()
            let operand = try nested { (stream: inout TokenStream) throws(ChatTemplateError) in try stream.parseNot() }
            return .unary("not", operand, position)
        }
        return try parseCompare()
    }

    /// Comparisons chain as in Python: `a < b < c` is `a < b and b < c`.
    private mutating func parseCompare() throws(ChatTemplateError) -> Expression {
        let first = try parseMath1()
        var left = first
        var chain: Expression?
        while true {
            let position = current.position
            let op: String
            switch current.kind {
            case .symbol(let symbol) where ["==", "!=", "<", ">", "<=", ">="].contains(symbol):
                op = symbol
                advance()
            case .name("in"):
                op = "in"
                advance()
            case .name("not") where index + 1 < tokens.count && tokens[index + 1].kind == .name("in"):
                op = "not in"
                advance()
                advance()
            default:
                return chain ?? first
            }
            let right = try parseMath1()
            let comparison = Expression.binary(op, left, right, position)
            chain = chain.map { .and($0, comparison, position) } ?? comparison
            left = right
        }
    }

    private mutating func parseMath1() throws(ChatTemplateError) -> Expression {
        var left = try parseConcat()
        while case .symbol(let symbol) = current.kind, symbol == "+" || symbol == "-" {
            let position = current.position
            advance()
            left = .binary(symbol, left, try parseConcat(), position)
        }
        return left
    }

    private mutating func parseConcat() throws(ChatTemplateError) -> Expression {
        var left = try parseMath2()
        while isSymbol("~") {
            let position = current.position
            advance()
            left = .binary("~", left, try parseMath2(), position)
        }
        return left
    }

    private mutating func parseMath2() throws(ChatTemplateError) -> Expression {
        var left = try parsePow()
        while case .symbol(let symbol) = current.kind, ["*", "/", "//", "%"].contains(symbol) {
            let position = current.position
            advance()
            left = .binary(symbol, left, try parsePow(), position)
        }
        return left
    }

    private mutating func parsePow() throws(ChatTemplateError) -> Expression {
        var left = try parseUnary(withFilter: true)
        while isSymbol("**") {
            let position = current.position
            advance()
            left = .binary("**", left, try parseUnary(withFilter: true), position)
        }
        return left
    }

    private mutating func parseUnary(withFilter: Bool) throws(ChatTemplateError) -> Expression {
        let position = current.position
        var node: Expression
        if case .symbol(let symbol) = current.kind, symbol == "-" || symbol == "+" {
            advance()
            let operand = try nested { (stream: inout TokenStream) throws(ChatTemplateError) in
                try stream.parseUnary(withFilter: false)
            }
            node = .unary(symbol, operand, position)
        } else {
            node = try parsePostfix(try parsePrimary())
        }
        if withFilter { node = try parseFilters(node) }
        return node
    }

    private mutating func parsePrimary() throws(ChatTemplateError) -> Expression {
        let token = current
        let position = token.position
        switch token.kind {
        case .name(let name):
            advance()
            switch name {
            case "true", "True": return .literal(.bool(true), position)
            case "false", "False": return .literal(.bool(false), position)
            case "none", "None": return .literal(.none, position)
            default: return .name(name, position)
            }
        case .string(var value):
            advance()
            // Adjacent string literals concatenate, as in Python.
            while case .string(let more) = current.kind {
                value += more
                advance()
            }
            return .literal(.string(value), position)
        case .integer(let value):
            advance()
            return .literal(.integer(value), position)
        case .float(let value):
            advance()
            return .literal(.float(value), position)
        case .symbol("("):
            advance()
            if skip(symbol: ")") { return .tuple([], position) }
            let first = try parseExpression()
            if skip(symbol: ")") { return first }
            var items = [first]
            while skip(symbol: ",") {
                if isSymbol(")") { break }
                items.append(try parseExpression())
            }
            try expect(symbol: ")")
            return .tuple(items, position)
        case .symbol("["):
            advance()
            var items: [Expression] = []
            while !skip(symbol: "]") {
                if !items.isEmpty {
                    try expect(symbol: ",")
                    if skip(symbol: "]") { break }
                }
                items.append(try parseExpression())
            }
            return .list(items, position)
        case .symbol("{"):
            advance()
            var pairs: [(key: Expression, value: Expression)] = []
            while !skip(symbol: "}") {
                if !pairs.isEmpty {
                    try expect(symbol: ",")
                    if skip(symbol: "}") { break }
                }
                let key = try parseExpression()
                try expect(symbol: ":")
                pairs.append((key, try parseExpression()))
            }
            return .dict(pairs, position)
        default:
            throw unexpected("an expression")
        }
    }

    private mutating func parsePostfix(_ base: Expression) throws(ChatTemplateError) -> Expression {
        var node = base
        while true {
            let position = current.position
            if skip(symbol: ".") {
                switch current.kind {
                case .name(let name):
                    let namePosition = current.position
                    advance()
                    node = .attribute(node, name, namePosition)
                case .integer(let value):
                    advance()
                    node = .index(node, .literal(.integer(value), position), position)
                default:
                    throw unexpected("an attribute name after '.'")
                }
            } else if skip(symbol: "[") {
                node = try parseSubscript(node, position)
            } else if isSymbol("(") {
                let (arguments, keywords) = try parseArguments()
                node = .call(node, arguments, keywords, position)
            } else {
                return node
            }
        }
    }

    private mutating func parseSubscript(_ base: Expression, _ position: SourcePosition) throws(ChatTemplateError)
        -> Expression
    {
        var parts: [Expression?] = []
        var current: Expression? = nil
        var sawColon = false
        while true {
            if skip(symbol: "]") {
                parts.append(current)
                break
            }
            if skip(symbol: ":") {
                parts.append(current)
                current = nil
                sawColon = true
                continue
            }
            guard current == nil else { throw unexpected("':' or ']'") }
            current = try parseExpression()
        }
        if !sawColon {
            guard let index = parts[0] else { throw ChatTemplateError(.syntax, "empty subscript '[]'", at: position) }
            return .index(base, index, position)
        }
        guard parts.count <= 3 else {
            throw ChatTemplateError(.syntax, "a slice has at most three parts", at: position)
        }
        return .slice(
            base, start: parts[0], stop: parts.count > 1 ? parts[1] : nil, step: parts.count > 2 ? parts[2] : nil,
            position)
    }

    private mutating func parseArguments() throws(ChatTemplateError) -> ([Expression], [KeywordArgument]) {
        try expect(symbol: "(")
        var arguments: [Expression] = []
        var keywords: [KeywordArgument] = []
        while !skip(symbol: ")") {
            if !arguments.isEmpty || !keywords.isEmpty {
                try expect(symbol: ",")
                if skip(symbol: ")") { break }
            }
            if case .name(let name) = current.kind, index + 1 < tokens.count, tokens[index + 1].kind == .symbol("=") {
                advance()
                advance()
                keywords.append(KeywordArgument(name: name, value: try parseExpression()))
            } else {
                if isSymbol("*") || isSymbol("**") {
                    throw ChatTemplateError(
                        .unsupported, "unsupported construct '*args' in a call", at: current.position)
                }
                arguments.append(try parseExpression())
            }
        }
        return (arguments, keywords)
    }

    private mutating func parseFilters(_ base: Expression) throws(ChatTemplateError) -> Expression {
        var node = base
        while true {
            let position = current.position
            if skip(symbol: "|") {
                let namePosition = current.position
                let name = try expectName()
                guard JinjaBuiltins.filterNames.contains(name) else {
                    throw ChatTemplateError(.unsupported, "unsupported filter '\(name)'", at: namePosition)
                }
                var arguments: [Expression] = []
                var keywords: [KeywordArgument] = []
                if isSymbol("(") { (arguments, keywords) = try parseArguments() }
                node = .filter(node, name, arguments, keywords, position)
            } else if isName("is") {
                advance()
                let negated = skip(name: "not")
                let namePosition = current.position
                let name = try expectName()
                guard JinjaBuiltins.testNames.contains(name) else {
                    throw ChatTemplateError(.unsupported, "unsupported test '\(name)'", at: namePosition)
                }
                var arguments: [Expression] = []
                if isSymbol("(") {
                    let (positional, keywords) = try parseArguments()
                    guard keywords.isEmpty else {
                        throw ChatTemplateError(
                            .unsupported, "unsupported keyword arguments to test '\(name)'", at: position)
                    }
                    arguments = positional
                } else if startsBareTestArgument {
                    arguments = [try parsePostfix(try parsePrimary())]
                }
                node = .test(node, name, negated: negated, arguments, position)
            } else if isSymbol("(") {
                let (arguments, keywords) = try parseArguments()
                node = .call(node, arguments, keywords, position)
            } else {
                return node
            }
        }
    }

    /// Whether the token after a test name is its single argument without parentheses (`is divisibleby 3`).
    private var startsBareTestArgument: Bool {
        switch current.kind {
        case .name(let name): return !["else", "or", "and", "if", "in", "is", "not"].contains(name)
        case .string, .integer, .float: return true
        case .symbol("["), .symbol("{"): return true
        default: return false
        }
    }
}
