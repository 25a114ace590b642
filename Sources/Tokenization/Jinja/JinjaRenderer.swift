// Jinja interpreter: renders parsed nodes against a context, with Python's semantics for the values
// chat templates handle (strings, numbers, lists, dicts, None) and Jinja's default `Undefined`.
import Foundation

/// Limits that keep a hostile or broken template from exhausting memory, stack or time.
struct JinjaLimits: Sendable {
    /// Largest rendered output, in UTF-8 bytes.
    var maximumOutputBytes = 8 * 1024 * 1024
    /// Deepest macro call chain.
    var maximumCallDepth = 32
    /// Deepest nesting of statements and expressions being evaluated, across macro calls.
    var maximumEvaluationDepth = 400
    /// Deepest nesting of lists and dicts a template may build.
    var maximumValueDepth = 64
    /// Most elements `range()`, `*` repetition or a built list may have.
    var maximumCollectionCount = 1_000_000
    /// Most nodes and expressions evaluated in one render.
    var maximumSteps = 2_000_000
}

/// What running a statement tells the enclosing loop.
private enum Flow {
    case normal
    case breakLoop
    case continueLoop
}

/// One rendering of a template; holds the variable scopes and the output being built.
final class JinjaRenderer {
    private var scopes: [[String: JinjaValue]]
    private var buffers: [String] = [""]
    private var steps = 0
    private var callDepth = 0
    /// Statements and expressions being evaluated, one inside another (recursion through macros included).
    private var evaluationDepth = 0
    private let limits: JinjaLimits
    private let now: Date

    init(context: [String: JinjaValue], limits: JinjaLimits, now: Date) {
        scopes = [context]
        self.limits = limits
        self.now = now
    }

    func render(_ nodes: [Node]) throws(ChatTemplateError) -> String {
        _ = try execute(nodes)
        return buffers[0]
    }

    // MARK: Statements

    private func emit(_ text: String, at position: SourcePosition?) throws(ChatTemplateError) {
        buffers[buffers.count - 1] += text
        if buffers[buffers.count - 1].utf8.count > limits.maximumOutputBytes {
            throw ChatTemplateError(
                .limit, "the rendered output exceeds \(limits.maximumOutputBytes) bytes", at: position)
        }
    }

    private func step(_ position: SourcePosition?) throws(ChatTemplateError) {
        steps += 1
        if steps > limits.maximumSteps {
            throw ChatTemplateError(.limit, "rendering takes more than \(limits.maximumSteps) steps", at: position)
        }
    }

    /// Guards the Swift stack: every nested statement or expression is one level.
    private func enter(_ position: SourcePosition?) throws(ChatTemplateError) {
        guard evaluationDepth < limits.maximumEvaluationDepth else {
            throw ChatTemplateError(
                .limit, "evaluation is nested more than \(limits.maximumEvaluationDepth) levels deep", at: position)
        }
        evaluationDepth += 1
    }

    private func execute(_ nodes: [Node]) throws(ChatTemplateError) -> Flow {
        for node in nodes {
            let flow = try execute(node)
            if case .normal = flow { continue }
            return flow
        }
        return .normal
    }

    private func execute(_ node: Node) throws(ChatTemplateError) -> Flow {
        try step(nil)
        try enter(nil)
        defer { evaluationDepth -= 1 }
        switch node {
        case .text(let text):
            try emit(text, at: nil)
        case .output(let expression):
            try emit(try evaluate(expression).text, at: expression.position)
        case .ifBlock(let branches, let otherwise):
            for branch in branches where try evaluate(branch.condition).isTruthy {
                return try execute(branch.body)
            }
            return try execute(otherwise)
        case .forLoop(let targets, let iterable, let filter, let body, let otherwise, let position):
            return try executeFor(targets, iterable, filter, body, otherwise, position)
        case .set(let target, let expression, let position):
            let value = try evaluate(expression)
            switch target {
            case .names(let names):
                try assign(names, value, position)
            case .attribute(let name, let attribute):
                guard case .namespace(let namespace) = lookup(name) else {
                    throw ChatTemplateError(
                        .runtime, "cannot assign attribute '\(attribute)' on '\(name)', which is not a namespace()",
                        at: position)
                }
                namespace.attributes[attribute] = value
            }
        case .setBlock(let name, let body):
            buffers.append("")
            _ = try execute(body)
            let captured = buffers.removeLast()
            scopes[scopes.count - 1][name] = .string(captured)
        case .macro(let name, let parameters, let body):
            scopes[scopes.count - 1][name] = .macro(JinjaMacro(name: name, parameters: parameters, body: body))
        case .with(let assignments, let body):
            var frame: [String: JinjaValue] = [:]
            for assignment in assignments { frame[assignment.name] = try evaluate(assignment.value) }
            scopes.append(frame)
            defer { scopes.removeLast() }
            return try execute(body)
        case .breakLoop:
            return .breakLoop
        case .continueLoop:
            return .continueLoop
        }
        return .normal
    }

    private func assign(_ names: [String], _ value: JinjaValue, _ position: SourcePosition) throws(ChatTemplateError) {
        if names.count == 1 {
            scopes[scopes.count - 1][names[0]] = value
            return
        }
        let items = try iterate(value, position)
        guard items.count == names.count else {
            throw ChatTemplateError(
                .runtime, "cannot unpack \(items.count) values into \(names.count) names", at: position)
        }
        for (name, item) in zip(names, items) { scopes[scopes.count - 1][name] = item }
    }

    private func executeFor(
        _ targets: [String], _ iterable: Expression, _ filter: Expression?, _ body: [Node], _ otherwise: [Node],
        _ position: SourcePosition
    ) throws(ChatTemplateError) -> Flow {
        var items = try iterate(try evaluate(iterable), iterable.position)
        if let filter {
            var kept: [JinjaValue] = []
            for item in items {
                scopes.append([:])
                defer { scopes.removeLast() }
                try assign(targets, item, position)
                if try evaluate(filter).isTruthy { kept.append(item) }
            }
            items = kept
        }
        if items.isEmpty { return try execute(otherwise) }
        let count = items.count
        for (offset, item) in items.enumerated() {
            scopes.append([:])
            defer { scopes.removeLast() }
            let loop = JinjaDictionary([
                ("index", .integer(offset + 1)), ("index0", .integer(offset)),
                ("revindex", .integer(count - offset)), ("revindex0", .integer(count - offset - 1)),
                ("first", .bool(offset == 0)), ("last", .bool(offset == count - 1)), ("length", .integer(count)),
                ("depth", .integer(1)), ("depth0", .integer(0)),
                ("previtem", offset > 0 ? items[offset - 1] : .undefined(name: "there is no previous item")),
                ("nextitem", offset + 1 < count ? items[offset + 1] : .undefined(name: "there is no next item")),
                ("cycle", .method(receiver: .integer(offset), name: "loop.cycle")),
            ])
            try step(position)
            scopes[scopes.count - 1]["loop"] = .dict(loop)
            try assign(targets, item, position)
            if case .breakLoop = try execute(body) { break }
        }
        return .normal
    }

    private func iterate(_ value: JinjaValue, _ position: SourcePosition) throws(ChatTemplateError) -> [JinjaValue] {
        switch value {
        case .undefined: return []
        case .list(let items), .tuple(let items): return items
        case .dict(let dictionary): return dictionary.keys.map { .string($0) }
        case .string(let text): return text.unicodeScalars.map { .string(String($0)) }
        case .namespace(let namespace): return namespace.attributes.keys.map { .string($0) }
        default: throw ChatTemplateError(.runtime, "'\(value.typeName)' object is not iterable", at: position)
        }
    }

    // MARK: Names

    private func lookup(_ name: String) -> JinjaValue {
        for scope in scopes.reversed() {
            if let value = scope[name] { return value }
        }
        if Self.globalFunctions.contains(name) { return .function(name) }
        return .undefined(name: "'\(name)' is undefined")
    }

    static let globalFunctions: Set<String> = ["range", "raise_exception", "namespace", "dict", "strftime_now"]

    // MARK: Expressions

    private func undefinedError(_ value: JinjaValue, _ position: SourcePosition) -> ChatTemplateError {
        if case .undefined(let hint) = value { return ChatTemplateError(.runtime, hint, at: position) }
        return ChatTemplateError(.runtime, "undefined value", at: position)
    }

    func evaluate(_ expression: Expression) throws(ChatTemplateError) -> JinjaValue {
        try step(expression.position)
        try enter(expression.position)
        defer { evaluationDepth -= 1 }
        switch expression {
        case .literal(let literal, _):
            return JinjaValue(literal)
        case .name(let name, _):
            return lookup(name)
        case .list(let items, let position), .tuple(let items, let position):
            var values: [JinjaValue] = []
            for item in items { values.append(try evaluate(item)) }
            let list: JinjaValue
            if case .tuple = expression { list = .tuple(values) } else { list = .list(values) }
            try checkDepth(list, position)
            return list
        case .dict(let pairs, let position):
            var dictionary = JinjaDictionary()
            for pair in pairs {
                let key = try evaluate(pair.key)
                guard case .string(let name) = key else {
                    throw ChatTemplateError(
                        .unsupported, "unsupported dict key of type '\(key.typeName)' (only string keys)",
                        at: pair.key.position)
                }
                dictionary[name] = try evaluate(pair.value)
            }
            try checkDepth(.dict(dictionary), position)
            return .dict(dictionary)
        case .attribute(let base, let name, let position):
            return try attribute(of: try evaluate(base), name, position)
        case .index(let base, let index, let position):
            return try item(of: try evaluate(base), try evaluate(index), position)
        case .slice(let base, let start, let stop, let stepExpression, let position):
            let value = try evaluate(base)
            func bound(_ expression: Expression?) throws(ChatTemplateError) -> Int? {
                guard let expression else { return nil }
                let value = try evaluate(expression)
                if case .none = value { return nil }
                guard let integer = value.integerValue else {
                    throw ChatTemplateError(.runtime, "slice indices must be integers or None", at: expression.position)
                }
                return integer
            }
            return try slice(value, try bound(start), try bound(stop), try bound(stepExpression), position)
        case .call(let callee, let arguments, let keywords, let position):
            let function = try evaluate(callee)
            var values: [JinjaValue] = []
            for argument in arguments { values.append(try evaluate(argument)) }
            var named: [(String, JinjaValue)] = []
            for keyword in keywords { named.append((keyword.name, try evaluate(keyword.value))) }
            // A failing method call is reported at the method's name.
            let place = if case .attribute = callee { callee.position } else { position }
            return try call(function, values, named, place)
        case .filter(let base, let name, let arguments, let keywords, let position):
            let value = try evaluate(base)
            var values: [JinjaValue] = []
            for argument in arguments { values.append(try evaluate(argument)) }
            var named: [String: JinjaValue] = [:]
            for keyword in keywords { named[keyword.name] = try evaluate(keyword.value) }
            return try JinjaBuiltins(renderer: self).filter(name, value, values, named, position)
        case .test(let base, let name, let negated, let arguments, let position):
            let value = try evaluate(base)
            var values: [JinjaValue] = []
            for argument in arguments { values.append(try evaluate(argument)) }
            let result = try JinjaBuiltins(renderer: self).test(name, value, values, position)
            return .bool(result != negated)
        case .unary(let op, let operand, let position):
            let value = try evaluate(operand)
            switch op {
            case "not":
                return .bool(!value.isTruthy)
            case "-":
                switch value {
                case .integer(let integer) where integer != Int.min: return .integer(-integer)
                case .bool(let flag): return .integer(flag ? -1 : 0)
                case .float(let number): return .float(-number)
                case .undefined: throw undefinedError(value, position)
                default:
                    throw ChatTemplateError(.runtime, "bad operand type for unary -: '\(value.typeName)'", at: position)
                }
            default:
                guard value.number != nil else {
                    if value.isUndefined { throw undefinedError(value, position) }
                    throw ChatTemplateError(.runtime, "bad operand type for unary +: '\(value.typeName)'", at: position)
                }
                if case .bool(let flag) = value { return .integer(flag ? 1 : 0) }
                return value
            }
        case .binary(let op, let left, let right, let position):
            return try binary(op, try evaluate(left), try evaluate(right), position)
        case .and(let left, let right, _):
            let value = try evaluate(left)
            return value.isTruthy ? try evaluate(right) : value
        case .or(let left, let right, _):
            let value = try evaluate(left)
            return value.isTruthy ? value : try evaluate(right)
        case .conditional(let condition, let then, let otherwise, let position):
            if try evaluate(condition).isTruthy { return try evaluate(then) }
            guard let otherwise else {
                return .undefined(name: "the inline if at line \(position.line) has no else branch")
            }
            return try evaluate(otherwise)
        }
    }

    func checkDepth(_ value: JinjaValue, _ position: SourcePosition) throws(ChatTemplateError) {
        func depth(_ value: JinjaValue, _ level: Int) -> Bool {
            guard level <= limits.maximumValueDepth else { return false }
            switch value {
            case .list(let items), .tuple(let items): return items.allSatisfy { depth($0, level + 1) }
            case .dict(let dictionary): return dictionary.pairs.allSatisfy { depth($0.value, level + 1) }
            default: return true
            }
        }
        if !depth(value, 1) {
            throw ChatTemplateError(
                .limit, "lists and dicts are nested more than \(limits.maximumValueDepth) deep", at: position)
        }
    }

    func checkCount(repeated count: Int, times: Int, _ position: SourcePosition) throws(ChatTemplateError) {
        let (total, overflowed) = count.multipliedReportingOverflow(by: max(times, 0))
        try checkCount(overflowed ? Int.max : total, position)
    }

    func checkCount(_ count: Int, _ position: SourcePosition) throws(ChatTemplateError) {
        if count > limits.maximumCollectionCount {
            throw ChatTemplateError(
                .limit, "a collection of \(count) elements exceeds the limit of \(limits.maximumCollectionCount)",
                at: position)
        }
    }

    // MARK: Attribute and item access

    /// `value.name`: Jinja tries the Python attribute (methods) first, then the item.
    func attribute(of value: JinjaValue, _ name: String, _ position: SourcePosition) throws(ChatTemplateError)
        -> JinjaValue
    {
        switch value {
        case .undefined:
            throw undefinedError(value, position)
        case .dict(let dictionary):
            if JinjaBuiltins.pythonDictMethods.contains(name) { return .method(receiver: value, name: name) }
            return dictionary[name] ?? .undefined(name: "'dict object' has no attribute '\(name)'")
        case .string:
            if JinjaBuiltins.pythonStringMethods.contains(name) { return .method(receiver: value, name: name) }
        case .list:
            if JinjaBuiltins.pythonListMethods.contains(name) { return .method(receiver: value, name: name) }
        case .namespace(let namespace):
            return namespace.attributes[name] ?? .undefined(name: "'Namespace' object has no attribute '\(name)'")
        default:
            break
        }
        return .undefined(name: "'\(value.typeName) object' has no attribute '\(name)'")
    }

    /// `value[index]`: Jinja tries the item first, then the attribute.
    func item(of value: JinjaValue, _ index: JinjaValue, _ position: SourcePosition) throws(ChatTemplateError)
        -> JinjaValue
    {
        switch (value, index) {
        case (.undefined, _):
            throw undefinedError(value, position)
        case (.dict(let dictionary), .string(let key)):
            if let found = dictionary[key] { return found }
        case (.list(let items), _), (.tuple(let items), _):
            if let offset = index.integerValue {
                let resolved = offset < 0 ? offset + items.count : offset
                if items.indices.contains(resolved) { return items[resolved] }
                return .undefined(name: "list object has no element \(offset)")
            }
        case (.string(let text), _):
            if let offset = index.integerValue {
                let scalars = Array(text.unicodeScalars)
                let resolved = offset < 0 ? offset + scalars.count : offset
                if scalars.indices.contains(resolved) { return .string(String(scalars[resolved])) }
                return .undefined(name: "str object has no element \(offset)")
            }
        default:
            break
        }
        if case .string(let name) = index { return try attribute(of: value, name, position) }
        return .undefined(name: "'\(value.typeName) object' has no element \(index.representation)")
    }

    private func slice(_ value: JinjaValue, _ start: Int?, _ stop: Int?, _ step: Int?, _ position: SourcePosition)
        throws(ChatTemplateError) -> JinjaValue
    {
        let step = step ?? 1
        guard step != 0 else { throw ChatTemplateError(.runtime, "slice step cannot be zero", at: position) }
        func indices(_ count: Int) -> [Int] {
            func clamp(_ bound: Int?, _ fallback: Int, low: Int, high: Int) -> Int {
                guard var bound else { return fallback }
                if bound < 0 { bound += count }
                return min(max(bound, low), high)
            }
            var result: [Int] = []
            if step > 0 {
                var index = clamp(start, 0, low: 0, high: count)
                let end = clamp(stop, count, low: 0, high: count)
                while index < end {
                    result.append(index)
                    let (next, overflowed) = index.addingReportingOverflow(step)
                    if overflowed { break }
                    index = next
                }
            } else {
                var index = clamp(start, count - 1, low: -1, high: count - 1)
                let end = clamp(stop, -1, low: -1, high: count - 1)
                while index > end {
                    result.append(index)
                    let (next, overflowed) = index.addingReportingOverflow(step)
                    if overflowed { break }
                    index = next
                }
            }
            return result
        }
        switch value {
        case .list(let items):
            return .list(indices(items.count).map { items[$0] })
        case .tuple(let items):
            return .tuple(indices(items.count).map { items[$0] })
        case .string(let text):
            let scalars = Array(text.unicodeScalars)
            return .string(String(String.UnicodeScalarView(indices(scalars.count).map { scalars[$0] })))
        case .undefined:
            throw undefinedError(value, position)
        default:
            throw ChatTemplateError(.runtime, "'\(value.typeName)' object is not subscriptable", at: position)
        }
    }

    // MARK: Operators

    private func binary(_ op: String, _ left: JinjaValue, _ right: JinjaValue, _ position: SourcePosition)
        throws(ChatTemplateError) -> JinjaValue
    {
        switch op {
        case "~":
            return .string(left.text + right.text)
        case "==":
            return .bool(JinjaValue.equal(left, right))
        case "!=":
            return .bool(!JinjaValue.equal(left, right))
        case "in", "not in":
            let contained = try contains(right, left, position)
            return .bool(op == "in" ? contained : !contained)
        case "<", ">", "<=", ">=":
            let order = try compare(left, right, op, position)
            switch op {
            case "<": return .bool(order < 0)
            case ">": return .bool(order > 0)
            case "<=": return .bool(order <= 0)
            default: return .bool(order >= 0)
            }
        default:
            break
        }
        if left.isUndefined { throw undefinedError(left, position) }
        if right.isUndefined { throw undefinedError(right, position) }
        func typeError() -> ChatTemplateError {
            ChatTemplateError(
                .runtime, "unsupported operand types for \(op): '\(left.typeName)' and '\(right.typeName)'",
                at: position)
        }
        func overflow() -> ChatTemplateError {
            ChatTemplateError(.runtime, "integer overflow in \(op)", at: position)
        }
        if let a = left.integerValue, let b = right.integerValue {
            switch op {
            case "+":
                let (sum, overflowed) = a.addingReportingOverflow(b)
                if overflowed { throw overflow() }
                return .integer(sum)
            case "-":
                let (difference, overflowed) = a.subtractingReportingOverflow(b)
                if overflowed { throw overflow() }
                return .integer(difference)
            case "*":
                let (product, overflowed) = a.multipliedReportingOverflow(by: b)
                if overflowed { throw overflow() }
                return .integer(product)
            case "/":
                guard b != 0 else { throw ChatTemplateError(.runtime, "division by zero", at: position) }
                return .float(Double(a) / Double(b))
            case "//", "%":
                guard b != 0 else {
                    throw ChatTemplateError(.runtime, "integer division or modulo by zero", at: position)
                }
                guard !(a == Int.min && b == -1) else { throw overflow() }
                var quotient = a / b
                var remainder = a % b
                // Python floors toward negative infinity; the remainder takes the divisor's sign.
                if remainder != 0, (remainder < 0) != (b < 0) {
                    quotient -= 1
                    remainder += b
                }
                return .integer(op == "//" ? quotient : remainder)
            case "**":
                guard b >= 0 else { return .float(pow(Double(a), Double(b))) }
                var result = 1
                for _ in 0..<min(b, 64) {
                    let (product, overflowed) = result.multipliedReportingOverflow(by: a)
                    if overflowed { throw overflow() }
                    result = product
                }
                if b > 64, abs(a) > 1 { throw overflow() }
                return .integer(b > 64 && a == -1 ? (b % 2 == 0 ? 1 : -1) : result)
            default:
                throw typeError()
            }
        }
        if let a = left.number, let b = right.number {
            switch op {
            case "+": return .float(a + b)
            case "-": return .float(a - b)
            case "*": return .float(a * b)
            case "/":
                guard b != 0 else { throw ChatTemplateError(.runtime, "float division by zero", at: position) }
                return .float(a / b)
            case "//":
                guard b != 0 else { throw ChatTemplateError(.runtime, "float floor division by zero", at: position) }
                return .float((a / b).rounded(.down))
            case "%":
                guard b != 0 else { throw ChatTemplateError(.runtime, "float modulo by zero", at: position) }
                let remainder = a - b * (a / b).rounded(.down)
                return .float(remainder)
            case "**": return .float(pow(a, b))
            default: throw typeError()
            }
        }
        switch (op, left, right) {
        case ("+", .string(let a), .string(let b)):
            return .string(a + b)
        case ("+", .list(let a), .list(let b)):
            try checkCount(a.count + b.count, position)
            return .list(a + b)
        case ("+", .tuple(let a), .tuple(let b)):
            try checkCount(a.count + b.count, position)
            return .tuple(a + b)
        case ("*", .string(let text), _), ("*", _, .string(let text)):
            guard let times = (left.integerValue ?? right.integerValue) else { throw typeError() }
            try checkCount(repeated: text.utf8.count, times: times, position)
            return .string(String(repeating: text, count: max(times, 0)))
        case ("*", .list(let items), _), ("*", _, .list(let items)):
            guard let times = (left.integerValue ?? right.integerValue) else { throw typeError() }
            try checkCount(repeated: items.count, times: times, position)
            return .list(Array(repeating: items, count: max(times, 0)).flatMap { $0 })
        case ("%", .string, _):
            throw ChatTemplateError(
                .unsupported, "unsupported construct: printf-style string formatting with %", at: position)
        default:
            throw typeError()
        }
    }

    private func contains(_ container: JinjaValue, _ element: JinjaValue, _ position: SourcePosition)
        throws(ChatTemplateError) -> Bool
    {
        switch container {
        case .undefined:
            return false
        case .string(let text):
            guard case .string(let needle) = element else {
                throw ChatTemplateError(
                    .runtime, "'in <string>' requires string as left operand, not \(element.typeName)", at: position)
            }
            return needle.isEmpty || text.unicodeScalars.containsSubsequence(needle.unicodeScalars)
        case .list(let items), .tuple(let items):
            return items.contains { JinjaValue.equal($0, element) }
        case .dict(let dictionary):
            guard case .string(let key) = element else { return false }
            return dictionary[key] != nil
        case .namespace(let namespace):
            guard case .string(let key) = element else { return false }
            return namespace.attributes[key] != nil
        default:
            throw ChatTemplateError(.runtime, "argument of type '\(container.typeName)' is not iterable", at: position)
        }
    }

    /// Python ordering: -1, 0 or 1.
    func compare(_ left: JinjaValue, _ right: JinjaValue, _ op: String, _ position: SourcePosition)
        throws(ChatTemplateError) -> Int
    {
        if let a = left.number, let b = right.number { return a < b ? -1 : a > b ? 1 : 0 }
        switch (left, right) {
        case (.string(let a), .string(let b)):
            for (x, y) in zip(a.unicodeScalars, b.unicodeScalars) where x != y { return x.value < y.value ? -1 : 1 }
            let (countA, countB) = (a.unicodeScalars.count, b.unicodeScalars.count)
            return countA < countB ? -1 : countA > countB ? 1 : 0
        case (.list(let a), .list(let b)), (.tuple(let a), .tuple(let b)):
            for (x, y) in zip(a, b) where !JinjaValue.equal(x, y) { return try compare(x, y, op, position) }
            return a.count < b.count ? -1 : a.count > b.count ? 1 : 0
        default:
            if left.isUndefined { throw undefinedError(left, position) }
            if right.isUndefined { throw undefinedError(right, position) }
            throw ChatTemplateError(
                .runtime, "'\(op)' not supported between instances of '\(left.typeName)' and '\(right.typeName)'",
                at: position)
        }
    }

    // MARK: Calls

    func call(
        _ function: JinjaValue, _ arguments: [JinjaValue], _ keywords: [(String, JinjaValue)],
        _ position: SourcePosition
    )
        throws(ChatTemplateError) -> JinjaValue
    {
        switch function {
        case .function(let name):
            return try callGlobal(name, arguments, keywords, position)
        case .method(let receiver, let name):
            return try JinjaBuiltins(renderer: self).method(receiver, name, arguments, keywords, position)
        case .macro(let macro):
            return try callMacro(macro, arguments, keywords, position)
        case .undefined:
            throw undefinedError(function, position)
        default:
            throw ChatTemplateError(.runtime, "'\(function.typeName)' object is not callable", at: position)
        }
    }

    private func callMacro(
        _ macro: JinjaMacro, _ arguments: [JinjaValue], _ keywords: [(String, JinjaValue)], _ position: SourcePosition
    ) throws(ChatTemplateError) -> JinjaValue {
        guard callDepth < limits.maximumCallDepth else {
            throw ChatTemplateError(
                .limit, "macro calls are nested more than \(limits.maximumCallDepth) deep", at: position)
        }
        guard arguments.count <= macro.parameters.count else {
            throw ChatTemplateError(
                .runtime,
                "macro '\(macro.name)' takes \(macro.parameters.count) arguments, but \(arguments.count) were given",
                at: position)
        }
        callDepth += 1
        let savedScopes = scopes
        // A macro sees the template's top-level names and its own parameters.
        scopes = [scopes[0], [:]]
        defer {
            scopes = savedScopes
            callDepth -= 1
        }
        for (offset, parameter) in macro.parameters.enumerated() {
            let value: JinjaValue
            if offset < arguments.count {
                value = arguments[offset]
            } else if let keyword = keywords.first(where: { $0.0 == parameter.name }) {
                value = keyword.1
            } else if let defaultValue = parameter.defaultValue {
                value = try evaluate(defaultValue)
            } else {
                value = .undefined(name: "'\(parameter.name)' is undefined")
            }
            scopes[1][parameter.name] = value
        }
        buffers.append("")
        _ = try execute(macro.body)
        return .string(buffers.removeLast())
    }

    private func callGlobal(
        _ name: String, _ arguments: [JinjaValue], _ keywords: [(String, JinjaValue)], _ position: SourcePosition
    ) throws(ChatTemplateError) -> JinjaValue {
        switch name {
        case "raise_exception":
            throw ChatTemplateError(.raised, arguments.first?.text ?? "", at: position)
        case "range":
            let integers = arguments.compactMap(\.integerValue)
            guard integers.count == arguments.count, (1...3).contains(integers.count) else {
                throw ChatTemplateError(.runtime, "range() takes one to three integer arguments", at: position)
            }
            let (start, stop, stride) =
                integers.count == 1
                ? (0, integers[0], 1) : (integers[0], integers[1], integers.count == 3 ? integers[2] : 1)
            guard stride != 0 else { throw ChatTemplateError(.runtime, "range() arg 3 must not be zero", at: position) }
            // Computed in Double so that huge bounds cannot overflow; anything large fails the count check.
            let span = stride > 0 ? Double(stop) - Double(start) : Double(start) - Double(stop)
            let steps = max(0, (span / Double(stride.magnitude)).rounded(.up))
            try checkCount(steps > Double(Int.max / 2) ? Int.max : Int(steps), position)
            let count = Int(steps)
            return .list((0..<count).map { .integer(start + $0 * stride) })
        case "namespace", "dict":
            var attributes = JinjaDictionary()
            for argument in arguments {
                guard case .dict(let initial) = argument else {
                    throw ChatTemplateError(.runtime, "\(name)() takes a dict or keyword arguments", at: position)
                }
                for pair in initial.pairs { attributes[pair.key] = pair.value }
            }
            for (key, value) in keywords { attributes[key] = value }
            if name == "dict" { return .dict(attributes) }
            let namespace = JinjaNamespace()
            namespace.attributes = attributes
            return .namespace(namespace)
        case "strftime_now":
            guard case .string(let format)? = arguments.first else {
                throw ChatTemplateError(.runtime, "strftime_now() takes a format string", at: position)
            }
            return .string(JinjaBuiltins.strftime(format, now))
        default:
            throw ChatTemplateError(.unsupported, "unsupported function '\(name)'", at: position)
        }
    }
}

extension String.UnicodeScalarView {
    func containsSubsequence(_ needle: String.UnicodeScalarView) -> Bool {
        let haystack = Array(self)
        let pattern = Array(needle)
        guard pattern.count <= haystack.count else { return false }
        for start in 0...(haystack.count - pattern.count)
        where haystack[start..<start + pattern.count].elementsEqual(pattern) {
            return true
        }
        return false
    }
}
