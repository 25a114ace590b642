// Jinja filters, tests and Python methods that chat templates use, with transformers' `tojson`.
import Foundation

struct JinjaBuiltins {
    let renderer: JinjaRenderer

    static let filterNames: Set<String> = [
        "abs", "capitalize", "count", "d", "default", "first", "float", "indent", "int", "items", "join", "last",
        "length", "list", "lower", "map", "max", "min", "reject", "rejectattr", "replace", "reverse", "round", "safe",
        "select", "selectattr", "sort", "string", "sum", "title", "tojson", "trim", "unique", "upper",
    ]

    static let testNames: Set<String> = [
        "boolean", "callable", "defined", "divisibleby", "eq", "equalto", "even", "false", "float", "ge", "gt",
        "in", "integer", "iterable", "le", "lower", "lt", "mapping", "ne", "none", "number", "odd", "sameas",
        "sequence", "string", "true", "undefined", "upper",
    ]

    static let stringMethods: Set<String> = [
        "strip", "lstrip", "rstrip", "split", "startswith", "endswith", "upper", "lower", "title", "capitalize",
        "replace", "find", "join", "count", "isdigit", "isspace",
    ]

    static let dictMethods: Set<String> = ["items", "keys", "values", "get"]

    /// Every method of Python's str, dict and list: `x.name` resolves to the method (as in Python) and
    /// calling one this interpreter does not implement is an "unsupported method" error.
    static let pythonStringMethods: Set<String> = stringMethods.union([
        "casefold", "center", "encode", "expandtabs", "format", "format_map", "index", "isalnum", "isalpha",
        "isascii", "isdecimal", "isidentifier", "islower", "isnumeric", "isprintable", "istitle", "isupper", "ljust",
        "maketrans", "partition", "removeprefix", "removesuffix", "rfind", "rindex", "rjust", "rpartition", "rsplit",
        "splitlines", "swapcase", "translate", "zfill",
    ])
    static let pythonDictMethods: Set<String> = dictMethods.union([
        "clear", "copy", "fromkeys", "pop", "popitem", "setdefault", "update",
    ])
    static let pythonListMethods: Set<String> = [
        "append", "clear", "copy", "count", "extend", "index", "insert", "pop", "remove", "reverse", "sort",
    ]

    private func argument(_ arguments: [JinjaValue], _ keywords: [String: JinjaValue], _ index: Int, _ name: String)
        -> JinjaValue?
    {
        index < arguments.count ? arguments[index] : keywords[name]
    }

    private func requireString(_ value: JinjaValue, _ what: String, _ position: SourcePosition)
        throws(ChatTemplateError)
        -> String
    {
        guard case .string(let text) = value else {
            if value.isUndefined, case .undefined(let hint) = value {
                throw ChatTemplateError(.runtime, hint, at: position)
            }
            throw ChatTemplateError(.runtime, "\(what) expects a string, got '\(value.typeName)'", at: position)
        }
        return text
    }

    private func sequence(_ value: JinjaValue, _ what: String, _ position: SourcePosition) throws(ChatTemplateError)
        -> [JinjaValue]
    {
        switch value {
        case .undefined: return []
        case .list(let items), .tuple(let items): return items
        case .dict(let dictionary): return dictionary.keys.map { .string($0) }
        case .string(let text): return text.unicodeScalars.map { .string(String($0)) }
        default: throw ChatTemplateError(.runtime, "\(what): '\(value.typeName)' object is not iterable", at: position)
        }
    }

    // MARK: Filters

    func filter(
        _ name: String, _ value: JinjaValue, _ arguments: [JinjaValue], _ keywords: [String: JinjaValue],
        _ position: SourcePosition
    ) throws(ChatTemplateError) -> JinjaValue {
        let first = argument(arguments, keywords, 0, "")
        switch name {
        case "safe", "string":
            if name == "safe", case .undefined = value { return value }
            return .string(value.text)
        case "trim":
            let chars = argument(arguments, keywords, 0, "chars")
            return .string(
                Self.strip(value.text, chars: chars.flatMap { if case .string(let c) = $0 { c } else { nil } }))
        case "upper":
            return .string(value.text.uppercased())
        case "lower":
            return .string(value.text.lowercased())
        case "capitalize":
            return .string(Self.capitalize(value.text))
        case "title":
            return .string(Self.jinjaTitle(value.text))
        case "length", "count":
            switch value {
            case .string(let text): return .integer(text.unicodeScalars.count)
            case .list(let items), .tuple(let items): return .integer(items.count)
            case .dict(let dictionary): return .integer(dictionary.count)
            case .undefined: return .integer(0)
            default: throw ChatTemplateError(.runtime, "object of type '\(value.typeName)' has no len()", at: position)
            }
        case "default", "d":
            let fallback = argument(arguments, keywords, 0, "default_value") ?? .string("")
            let boolean = argument(arguments, keywords, 1, "boolean")?.isTruthy ?? false
            if value.isUndefined || (boolean && !value.isTruthy) { return fallback }
            return value
        case "first":
            return try sequence(value, "first", position).first
                ?? .undefined(name: "No first item, sequence was empty.")
        case "last":
            return try sequence(value, "last", position).last ?? .undefined(name: "No last item, sequence was empty.")
        case "list":
            return .list(try sequence(value, "list", position))
        case "reverse":
            if case .string(let text) = value {
                return .string(String(text.unicodeScalars.reversed().map(Character.init)))
            }
            return .list(try sequence(value, "reverse", position).reversed())
        case "join":
            let separator = argument(arguments, keywords, 0, "d")?.text ?? ""
            var items = try sequence(value, "join", position)
            if let attribute = argument(arguments, keywords, 1, "attribute") {
                var mapped: [JinjaValue] = []
                for item in items { mapped.append(try renderer.attributeOrItem(item, attribute, position)) }
                items = mapped
            }
            return .string(items.map(\.text).joined(separator: separator))
        case "replace":
            guard let old = first, let new = argument(arguments, keywords, 1, "new") else {
                throw ChatTemplateError(.runtime, "replace needs the old and new strings", at: position)
            }
            let count = argument(arguments, keywords, 2, "count")?.integerValue
            return .string(Self.replace(value.text, old.text, new.text, count: count))
        case "items":
            switch value {
            case .undefined: return .list([])
            case .dict(let dictionary): return .list(dictionary.pairs.map { .tuple([.string($0.key), $0.value]) })
            default: throw ChatTemplateError(.runtime, "items expects a mapping, got '\(value.typeName)'", at: position)
            }
        case "tojson":
            let indent = argument(arguments, keywords, 0, "indent")
            let ensureASCII = keywords["ensure_ascii"]?.isTruthy ?? false
            let sortKeys = keywords["sort_keys"]?.isTruthy ?? false
            var separators: (String, String)?
            if let pair = keywords["separators"]?.elements, pair.count == 2 {
                separators = (pair[0].text, pair[1].text)
            }
            var indentText: String?
            switch indent {
            case .integer(let width)?: indentText = String(repeating: " ", count: max(0, min(width, 64)))
            case .string(let text)?: indentText = text
            default: indentText = nil
            }
            var output = ""
            try JSONWriter(
                indent: indentText, ensureASCII: ensureASCII, sortKeys: sortKeys,
                itemSeparator: separators?.0 ?? (indentText == nil ? ", " : ","),
                keySeparator: separators?.1 ?? ": ", position: position
            ).write(value, level: 0, into: &output)
            return .string(output)
        case "int":
            switch value {
            case .integer: return value
            case .bool(let flag): return .integer(flag ? 1 : 0)
            case .float(let number): return number.isFinite && abs(number) < 9e18 ? .integer(Int(number)) : .integer(0)
            case .string(let text):
                let trimmed = text.trimmingCharacters(in: .whitespaces)
                if let integer = Int(trimmed) { return .integer(integer) }
                if let number = Double(trimmed), number.isFinite, abs(number) < 9e18 { return .integer(Int(number)) }
                return first ?? .integer(0)
            default: return first ?? .integer(0)
            }
        case "float":
            if let number = value.number { return .float(number) }
            if case .string(let text) = value, let number = Double(text.trimmingCharacters(in: .whitespaces)) {
                return .float(number)
            }
            return first ?? .float(0)
        case "abs":
            switch value {
            case .integer(let integer) where integer != Int.min: return .integer(abs(integer))
            case .bool(let flag): return .integer(flag ? 1 : 0)
            case .float(let number): return .float(abs(number))
            default: throw ChatTemplateError(.runtime, "bad operand type for abs(): '\(value.typeName)'", at: position)
            }
        case "round":
            guard let number = value.number else {
                throw ChatTemplateError(.runtime, "round expects a number, got '\(value.typeName)'", at: position)
            }
            let precision = first?.integerValue ?? 0
            let scale = pow(10, Double(max(0, min(precision, 15))))
            // Python's round() rounds half to even.
            return .float((number * scale).rounded(.toNearestOrEven) / scale)
        case "sum":
            var total = JinjaValue.integer(0)
            for item in try sequence(value, "sum", position) {
                guard item.number != nil else {
                    throw ChatTemplateError(.runtime, "sum expects numbers, got '\(item.typeName)'", at: position)
                }
                if let a = total.integerValue, let b = item.integerValue {
                    let (result, overflowed) = a.addingReportingOverflow(b)
                    if overflowed { throw ChatTemplateError(.runtime, "integer overflow in sum", at: position) }
                    total = .integer(result)
                } else {
                    total = .float((total.number ?? 0) + (item.number ?? 0))
                }
            }
            return total
        case "min", "max", "sort", "unique":
            let items = try sequence(value, name, position)
            if name == "unique" {
                var seen: [JinjaValue] = []
                for item in items where !seen.contains(where: { JinjaValue.equal($0, item) }) { seen.append(item) }
                return .list(seen)
            }
            let reverse = keywords["reverse"]?.isTruthy ?? (name == "sort" ? (first?.isTruthy ?? false) : false)
            var sorted = items
            var failure: ChatTemplateError?
            sorted.sort { a, b in
                do throws(ChatTemplateError) {
                    return try renderer.compare(a, b, "<", position) < 0
                } catch {
                    failure = error
                    return false
                }
            }
            if let failure { throw failure }
            if reverse { sorted.reverse() }
            switch name {
            case "min": return sorted.first ?? .undefined(name: "No min item, sequence was empty.")
            case "max": return sorted.last ?? .undefined(name: "No max item, sequence was empty.")
            default: return .list(sorted)
            }
        case "indent":
            let width = argument(arguments, keywords, 0, "width")
            let padding: String
            switch width {
            case .string(let text)?: padding = text
            default: padding = String(repeating: " ", count: max(0, min(width?.integerValue ?? 4, 64)))
            }
            let indentFirst = argument(arguments, keywords, 1, "first")?.isTruthy ?? false
            let indentBlank = argument(arguments, keywords, 2, "blank")?.isTruthy ?? false
            var lines = value.text.components(separatedBy: "\n")
            for index in lines.indices where (index > 0 || indentFirst) && (indentBlank || !lines[index].isEmpty) {
                lines[index] = padding + lines[index]
            }
            return .string(lines.joined(separator: "\n"))
        case "map":
            let items = try sequence(value, "map", position)
            var mapped: [JinjaValue] = []
            if let attribute = keywords["attribute"] {
                for item in items {
                    let found = try renderer.attributeOrItem(item, attribute, position)
                    mapped.append(found.isUndefined ? (keywords["default"] ?? found) : found)
                }
            } else if case .string(let filterName)? = arguments.first {
                guard Self.filterNames.contains(filterName) else {
                    throw ChatTemplateError(.unsupported, "unsupported filter '\(filterName)' in map()", at: position)
                }
                for item in items {
                    mapped.append(try filter(filterName, item, Array(arguments.dropFirst()), [:], position))
                }
            } else {
                throw ChatTemplateError(.runtime, "map needs a filter name or attribute=", at: position)
            }
            return .list(mapped)
        case "select", "reject", "selectattr", "rejectattr":
            let byAttribute = name.hasSuffix("attr")
            let keep = name.hasPrefix("select")
            let items = try sequence(value, name, position)
            var remaining = arguments
            var attribute: JinjaValue?
            if byAttribute {
                guard !remaining.isEmpty else {
                    throw ChatTemplateError(.runtime, "\(name) needs an attribute name", at: position)
                }
                attribute = remaining.removeFirst()
            }
            var testName: String?
            if !remaining.isEmpty {
                guard case .string(let given) = remaining.removeFirst() else {
                    throw ChatTemplateError(.runtime, "\(name) needs a test name", at: position)
                }
                guard Self.testNames.contains(given) else {
                    throw ChatTemplateError(.unsupported, "unsupported test '\(given)' in \(name)()", at: position)
                }
                testName = given
            }
            var result: [JinjaValue] = []
            for item in items {
                let subject =
                    try attribute.map { (attribute) throws(ChatTemplateError) in
                        try renderer.attributeOrItem(item, attribute, position)
                    } ?? item
                let passed =
                    try testName.map { (testName) throws(ChatTemplateError) in
                        try test(testName, subject, remaining, position)
                    } ?? subject.isTruthy
                if passed == keep { result.append(item) }
            }
            return .list(result)
        default:
            throw ChatTemplateError(.unsupported, "unsupported filter '\(name)'", at: position)
        }
    }

    // MARK: Tests

    func test(_ name: String, _ value: JinjaValue, _ arguments: [JinjaValue], _ position: SourcePosition)
        throws(ChatTemplateError) -> Bool
    {
        let other = arguments.first ?? .undefined(name: "test '\(name)' needs an argument")
        switch name {
        case "defined": return !value.isUndefined
        case "undefined": return value.isUndefined
        case "none": if case .none = value { return true } else { return false }
        case "true": if case .bool(true) = value { return true } else { return false }
        case "false": if case .bool(false) = value { return true } else { return false }
        case "boolean": if case .bool = value { return true } else { return false }
        case "string": if case .string = value { return true } else { return false }
        case "integer": if case .integer = value { return true } else { return false }
        case "float": if case .float = value { return true } else { return false }
        case "number":
            switch value {
            case .integer, .float, .bool: return true
            default: return false
            }
        case "mapping": if case .dict = value { return true } else { return false }
        case "iterable":
            switch value {
            case .list, .tuple, .dict, .string, .undefined: return true
            default: return false
            }
        case "sequence":
            switch value {
            case .list, .tuple, .dict, .string: return true
            default: return false
            }
        case "callable":
            switch value {
            case .function, .method, .macro: return true
            default: return false
            }
        case "lower": if case .string(let text) = value { return text == text.lowercased() } else { return false }
        case "upper": if case .string(let text) = value { return text == text.uppercased() } else { return false }
        case "even", "odd", "divisibleby":
            guard let integer = value.integerValue else {
                throw ChatTemplateError(
                    .runtime, "test '\(name)' expects an integer, got '\(value.typeName)'", at: position)
            }
            if name == "even" { return integer % 2 == 0 }
            if name == "odd" { return integer % 2 != 0 }
            guard let divisor = other.integerValue, divisor != 0 else {
                throw ChatTemplateError(.runtime, "divisibleby needs a non-zero integer", at: position)
            }
            return divisor == -1 || integer % divisor == 0
        case "eq", "equalto": return JinjaValue.equal(value, other)
        case "ne": return !JinjaValue.equal(value, other)
        case "sameas":
            switch (value, other) {
            case (.none, .none), (.undefined, .undefined): return true
            case (.bool(let a), .bool(let b)): return a == b
            case (.namespace(let a), .namespace(let b)): return a === b
            default: return false
            }
        case "lt": return try renderer.compare(value, other, "<", position) < 0
        case "le": return try renderer.compare(value, other, "<=", position) <= 0
        case "gt": return try renderer.compare(value, other, ">", position) > 0
        case "ge": return try renderer.compare(value, other, ">=", position) >= 0
        case "in":
            switch other {
            case .list(let items), .tuple(let items): return items.contains { JinjaValue.equal($0, value) }
            case .dict(let dictionary):
                if case .string(let key) = value { return dictionary[key] != nil } else { return false }
            case .string(let text):
                if case .string(let needle) = value {
                    return needle.isEmpty || text.unicodeScalars.containsSubsequence(needle.unicodeScalars)
                }
                return false
            default: return false
            }
        default:
            throw ChatTemplateError(.unsupported, "unsupported test '\(name)'", at: position)
        }
    }

    // MARK: Methods

    func method(
        _ receiver: JinjaValue, _ name: String, _ arguments: [JinjaValue], _ keywords: [(String, JinjaValue)],
        _ position: SourcePosition
    ) throws(ChatTemplateError) -> JinjaValue {
        let named = Dictionary(keywords, uniquingKeysWith: { $1 })
        switch receiver {
        case .integer(let index) where name == "loop.cycle":
            guard !arguments.isEmpty else {
                throw ChatTemplateError(.runtime, "loop.cycle() needs arguments", at: position)
            }
            return arguments[index % arguments.count]
        case .dict(let dictionary):
            switch name {
            case "items": return .list(dictionary.pairs.map { .tuple([.string($0.key), $0.value]) })
            case "keys": return .list(dictionary.keys.map { .string($0) })
            case "values": return .list(dictionary.pairs.map(\.value))
            case "get":
                guard let key = argument(arguments, named, 0, "key") else {
                    throw ChatTemplateError(.runtime, "get() needs a key", at: position)
                }
                if case .string(let text) = key, let found = dictionary[text] { return found }
                return argument(arguments, named, 1, "default") ?? .none
            default: break
            }
        case .string(let text):
            let stringArgument = { (index: Int) -> String? in
                if index < arguments.count, case .string(let value) = arguments[index] { return value }
                return nil
            }
            switch name {
            case "strip": return .string(Self.strip(text, chars: stringArgument(0)))
            case "lstrip": return .string(Self.strip(text, chars: stringArgument(0), leading: true, trailing: false))
            case "rstrip": return .string(Self.strip(text, chars: stringArgument(0), leading: false, trailing: true))
            case "upper": return .string(text.uppercased())
            case "lower": return .string(text.lowercased())
            case "title": return .string(Self.pythonTitle(text))
            case "capitalize": return .string(Self.capitalize(text))
            case "isdigit":
                return .bool(!text.isEmpty && text.unicodeScalars.allSatisfy { $0.properties.numericType == .decimal })
            case "isspace": return .bool(!text.isEmpty && text.unicodeScalars.allSatisfy(\.properties.isWhitespace))
            case "split":
                let separator = argument(arguments, named, 0, "sep")
                let limit = argument(arguments, named, 1, "maxsplit")?.integerValue ?? -1
                if case .string(let sep)? = separator {
                    guard !sep.isEmpty else { throw ChatTemplateError(.runtime, "empty separator", at: position) }
                    return .list(Self.split(text, separator: sep, limit: limit).map { .string($0) })
                }
                return .list(Self.splitWhitespace(text, limit: limit).map { .string($0) })
            case "startswith", "endswith":
                var candidates: [String] = []
                switch arguments.first {
                case .string(let prefix)?: candidates = [prefix]
                case .list(let items)?, .tuple(let items)?:
                    candidates = items.compactMap { if case .string(let s) = $0 { s } else { nil } }
                default:
                    throw ChatTemplateError(.runtime, "\(name)() needs a string or a tuple of strings", at: position)
                }
                let scalars = Array(text.unicodeScalars)
                return .bool(
                    candidates.contains { candidate in
                        let pattern = Array(candidate.unicodeScalars)
                        guard pattern.count <= scalars.count else { return false }
                        return name == "startswith"
                            ? scalars.prefix(pattern.count).elementsEqual(pattern)
                            : scalars.suffix(pattern.count).elementsEqual(pattern)
                    })
            case "replace":
                guard let old = stringArgument(0), let new = stringArgument(1) else {
                    throw ChatTemplateError(.runtime, "replace() needs two strings", at: position)
                }
                return .string(
                    Self.replace(text, old, new, count: arguments.count > 2 ? arguments[2].integerValue : nil))
            case "find":
                guard let needle = stringArgument(0) else {
                    throw ChatTemplateError(.runtime, "find() needs a string", at: position)
                }
                let scalars = Array(text.unicodeScalars)
                let pattern = Array(needle.unicodeScalars)
                guard pattern.count <= scalars.count else { return .integer(-1) }
                for start in 0...(scalars.count - pattern.count)
                where scalars[start..<start + pattern.count].elementsEqual(pattern) {
                    return .integer(start)
                }
                return .integer(-1)
            case "count":
                guard let needle = stringArgument(0), !needle.isEmpty else {
                    throw ChatTemplateError(.runtime, "count() needs a non-empty string", at: position)
                }
                return .integer(Self.split(text, separator: needle, limit: -1).count - 1)
            case "join":
                guard let items = arguments.first else {
                    throw ChatTemplateError(.runtime, "join() needs an iterable", at: position)
                }
                var parts: [String] = []
                for item in try sequence(items, "join", position) {
                    parts.append(try requireString(item, "join", position))
                }
                return .string(parts.joined(separator: text))
            default: break
            }
        default:
            break
        }
        throw ChatTemplateError(.unsupported, "unsupported method '\(receiver.typeName).\(name)()'", at: position)
    }

    // MARK: String helpers (Python semantics, counted in Unicode scalars)

    static func strip(_ text: String, chars: String?, leading: Bool = true, trailing: Bool = true) -> String {
        let set = chars.map { Set($0.unicodeScalars) }
        let shouldStrip = { (scalar: Unicode.Scalar) -> Bool in
            set.map { $0.contains(scalar) } ?? isPythonWhitespace(scalar)
        }
        var scalars = Substring(text).unicodeScalars[...]
        if leading { scalars = scalars.drop(while: shouldStrip) }
        if trailing {
            while let last = scalars.last, shouldStrip(last) { scalars = scalars.dropLast() }
        }
        return String(String.UnicodeScalarView(scalars))
    }

    static func isPythonWhitespace(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.value {
        case 0x09...0x0D, 0x1C...0x20, 0x85, 0xA0, 0x1680, 0x2000...0x200A, 0x2028, 0x2029, 0x202F, 0x205F, 0x3000:
            return true
        default:
            return false
        }
    }

    static func capitalize(_ text: String) -> String {
        guard let first = text.unicodeScalars.first else { return text }
        let rest = String(String.UnicodeScalarView(text.unicodeScalars.dropFirst()))
        return String(first).uppercased() + rest.lowercased()
    }

    /// Jinja's `title` filter: capitalizes each piece after a run of `-`, whitespace, `(`, `{`, `[` or `<`.
    static func jinjaTitle(_ text: String) -> String {
        var result = ""
        var piece = String.UnicodeScalarView()
        var inSeparator = true
        func isSeparator(_ scalar: Unicode.Scalar) -> Bool {
            scalar == "-" || scalar == "(" || scalar == "{" || scalar == "[" || scalar == "<"
                || isPythonWhitespace(scalar)
        }
        for scalar in text.unicodeScalars {
            if isSeparator(scalar) {
                if !inSeparator {
                    result += capitalize(String(piece))
                    piece = String.UnicodeScalarView()
                }
                inSeparator = true
                result.unicodeScalars.append(scalar)
            } else {
                inSeparator = false
                piece.append(scalar)
            }
        }
        return result + capitalize(String(piece))
    }

    /// Python `str.title()`: upper-case after an uncased character, lower-case after a cased one.
    static func pythonTitle(_ text: String) -> String {
        var result = ""
        var previousCased = false
        for scalar in text.unicodeScalars {
            let string = String(scalar)
            result += previousCased ? string.lowercased() : string.uppercased()
            previousCased = scalar.properties.isCased
        }
        return result
    }

    static func replace(_ text: String, _ old: String, _ new: String, count: Int?) -> String {
        let limit = count.map { $0 < 0 ? Int.max : $0 } ?? Int.max
        if old.isEmpty {
            var result = ""
            var replaced = 0
            for scalar in text.unicodeScalars {
                if replaced < limit {
                    result += new
                    replaced += 1
                }
                result.unicodeScalars.append(scalar)
            }
            if replaced < limit { result += new }
            return result
        }
        let parts = split(text, separator: old, limit: limit == Int.max ? -1 : limit)
        return parts.joined(separator: new)
    }

    static func split(_ text: String, separator: String, limit: Int) -> [String] {
        let scalars = Array(text.unicodeScalars)
        let pattern = Array(separator.unicodeScalars)
        var parts: [String] = []
        var start = 0
        var index = 0
        while index + pattern.count <= scalars.count, limit < 0 || parts.count < limit {
            if scalars[index..<index + pattern.count].elementsEqual(pattern) {
                parts.append(String(String.UnicodeScalarView(scalars[start..<index])))
                index += pattern.count
                start = index
            } else {
                index += 1
            }
        }
        parts.append(String(String.UnicodeScalarView(scalars[start...])))
        return parts
    }

    static func splitWhitespace(_ text: String, limit: Int) -> [String] {
        let scalars = Array(text.unicodeScalars)
        var parts: [String] = []
        var index = 0
        while index < scalars.count {
            while index < scalars.count, isPythonWhitespace(scalars[index]) { index += 1 }
            guard index < scalars.count else { break }
            if limit >= 0, parts.count == limit {
                var end = scalars.count
                while end > index, isPythonWhitespace(scalars[end - 1]) { end -= 1 }
                parts.append(String(String.UnicodeScalarView(scalars[index..<end])))
                break
            }
            let start = index
            while index < scalars.count, !isPythonWhitespace(scalars[index]) { index += 1 }
            parts.append(String(String.UnicodeScalarView(scalars[start..<index])))
        }
        return parts
    }

    /// Python `datetime.strftime` for the common directives.
    static func strftime(_ format: String, _ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone.current
        let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second, .weekday], from: date)
        let dayOfYear = calendar.ordinality(of: .day, in: .year, for: date) ?? 1
        let months = [
            "January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
            "November", "December",
        ]
        let weekdays = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"]
        func padded(_ value: Int, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        let month = (parts.month ?? 1) - 1
        let weekday = (parts.weekday ?? 1) - 1
        let hour = parts.hour ?? 0
        var result = ""
        var scalars = format.unicodeScalars.makeIterator()
        while let scalar = scalars.next() {
            guard scalar == "%" else {
                result.unicodeScalars.append(scalar)
                continue
            }
            guard let directive = scalars.next() else {
                result += "%"
                break
            }
            switch directive {
            case "Y": result += String(parts.year ?? 1970)
            case "y": result += padded((parts.year ?? 1970) % 100, 2)
            case "m": result += padded(month + 1, 2)
            case "d": result += padded(parts.day ?? 1, 2)
            case "-":
                if let next = scalars.next() {
                    switch next {
                    case "d": result += String(parts.day ?? 1)
                    case "m": result += String(month + 1)
                    case "H": result += String(hour)
                    default: result += "%-" + String(next)
                    }
                }
            case "H": result += padded(hour, 2)
            case "I": result += padded(hour % 12 == 0 ? 12 : hour % 12, 2)
            case "p": result += hour < 12 ? "AM" : "PM"
            case "M": result += padded(parts.minute ?? 0, 2)
            case "S": result += padded(parts.second ?? 0, 2)
            case "B": result += months[month]
            case "b": result += String(months[month].prefix(3))
            case "A": result += weekdays[weekday]
            case "a": result += String(weekdays[weekday].prefix(3))
            case "j": result += padded(dayOfYear, 3)
            case "%": result += "%"
            default: result += "%" + String(directive)
            }
        }
        return result
    }
}

extension JinjaRenderer {
    /// `item[attribute]` for the `attribute=` arguments of filters; a dotted name walks nested attributes.
    func attributeOrItem(_ value: JinjaValue, _ attribute: JinjaValue, _ position: SourcePosition)
        throws(ChatTemplateError) -> JinjaValue
    {
        guard case .string(let path) = attribute else { return try item(of: value, attribute, position) }
        var current = value
        for part in path.split(separator: ".", omittingEmptySubsequences: false) {
            if let index = Int(part) {
                current = try item(of: current, .integer(index), position)
            } else {
                current = try item(of: current, .string(String(part)), position)
            }
        }
        return current
    }
}

/// `json.dumps` as transformers' `tojson` filter calls it (ensure_ascii=False, keys in insertion order).
struct JSONWriter {
    let indent: String?
    let ensureASCII: Bool
    let sortKeys: Bool
    let itemSeparator: String
    let keySeparator: String
    let position: SourcePosition

    func write(_ value: JinjaValue, level: Int, into output: inout String) throws(ChatTemplateError) {
        switch value {
        case .none: output += "null"
        case .bool(let flag): output += flag ? "true" : "false"
        case .integer(let integer): output += String(integer)
        case .float(let number):
            if number.isNaN {
                output += "NaN"
            } else if number.isInfinite {
                output += number < 0 ? "-Infinity" : "Infinity"
            } else {
                output += JinjaValue.pythonFloat(number)
            }
        case .string(let text): writeString(text, into: &output)
        case .list(let items), .tuple(let items):
            guard !items.isEmpty else {
                output += "[]"
                return
            }
            output += "["
            for (offset, item) in items.enumerated() {
                if offset > 0 { output += itemSeparator }
                newline(level + 1, into: &output)
                try write(item, level: level + 1, into: &output)
            }
            newline(level, into: &output)
            output += "]"
        case .dict(let dictionary):
            guard dictionary.count > 0 else {
                output += "{}"
                return
            }
            output += "{"
            let pairs =
                sortKeys
                ? dictionary.pairs.sorted { $0.key.unicodeScalars.lexicographicallyPrecedes($1.key.unicodeScalars) }
                : dictionary.pairs
            for (offset, pair) in pairs.enumerated() {
                if offset > 0 { output += itemSeparator }
                newline(level + 1, into: &output)
                writeString(pair.key, into: &output)
                output += keySeparator
                try write(pair.value, level: level + 1, into: &output)
            }
            newline(level, into: &output)
            output += "}"
        case .namespace:
            throw ChatTemplateError(.runtime, "Object of type Namespace is not JSON serializable", at: position)
        case .undefined:
            throw ChatTemplateError(.runtime, "Object of type Undefined is not JSON serializable", at: position)
        case .macro, .function, .method:
            throw ChatTemplateError(.runtime, "Object of type function is not JSON serializable", at: position)
        }
    }

    private func newline(_ level: Int, into output: inout String) {
        guard let indent else { return }
        output += "\n" + String(repeating: indent, count: level)
    }

    private func writeString(_ text: String, into output: inout String) {
        output += "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": output += "\\\""
            case "\\": output += "\\\\"
            case "\n": output += "\\n"
            case "\r": output += "\\r"
            case "\t": output += "\\t"
            case "\u{08}": output += "\\b"
            case "\u{0C}": output += "\\f"
            default:
                if scalar.value < 0x20 || (ensureASCII && scalar.value > 0x7E) {
                    if scalar.value > 0xFFFF {
                        let offset = scalar.value - 0x10000
                        output += hex(0xD800 + (offset >> 10)) + hex(0xDC00 + (offset & 0x3FF))
                    } else {
                        output += hex(scalar.value)
                    }
                } else {
                    output.unicodeScalars.append(scalar)
                }
            }
        }
        output += "\""
    }

    private func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16)
        return "\\u" + String(repeating: "0", count: max(0, 4 - digits.count)) + digits
    }
}
