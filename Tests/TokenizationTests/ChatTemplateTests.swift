// Chat templates rendered by Switchyard's Jinja interpreter against transformers' apply_chat_template
// (fixtures written by Scripts/reference/chat_template_fixtures.py), plus errors and safety limits.
import Foundation
import TestSupport
import Testing
import Tokenization

/// One recorded template: Tests/Fixtures/chat_templates/<name>.json.
struct ChatTemplateFixture: Decodable, Sendable {
    struct Case: Decodable, Sendable {
        let messages: [[String: String]]
        let addGenerationPrompt: Bool
        /// apply_chat_template's keyword arguments for this case (a request's `chat_template_kwargs`).
        let chatTemplateKwargs: [String: JSONValue]?
        let rendered: String?
        let error: Bool?
        let message: String?

        enum CodingKeys: String, CodingKey {
            case messages, rendered, error, message
            case addGenerationPrompt = "add_generation_prompt"
            case chatTemplateKwargs = "chat_template_kwargs"
        }

        var arguments: ChatTemplateArguments {
            get throws { try ChatTemplateArguments(chatTemplateKwargs ?? [:]) }
        }
    }

    let template: String
    let bosToken: String?
    let eosToken: String?
    let extraContext: [String: String]
    /// The local time strftime_now reported when the fixture was recorded (templates that print the date).
    let now: String?
    let cases: [Case]

    enum CodingKeys: String, CodingKey {
        case template, cases, now
        case bosToken = "bos_token"
        case eosToken = "eos_token"
        case extraContext = "extra_context"
    }

    /// `now` as a date in the local time zone (as Python's naive datetime), or the present.
    var renderDate: Date { now.map(localDate) ?? Date() }

    static let directory = TestPaths.fixtures.appendingPathComponent("chat_templates")

    var specialTokens: [String: String] {
        var tokens: [String: String] = [:]
        tokens["bos_token"] = bosToken
        tokens["eos_token"] = eosToken
        return tokens
    }

    static func load(_ name: String) throws -> ChatTemplateFixture {
        let data = try Data(contentsOf: directory.appendingPathComponent("\(name).json"))
        return try JSONDecoder().decode(ChatTemplateFixture.self, from: data)
    }

    static var names: [String] {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return files.filter { $0.hasSuffix(".json") }.map { String($0.dropLast(5)) }.sorted()
    }
}

/// One conversation of one fixture, as a test argument.
struct RecordedConversation: Sendable, CustomTestStringConvertible {
    let fixture: String
    let index: Int
    let template: ChatTemplateFixture
    var recorded: ChatTemplateFixture.Case { template.cases[index] }

    var testDescription: String {
        let roles = recorded.messages.map { $0["role"] ?? "?" }.joined(separator: ",")
        return "\(fixture) #\(index) [\(roles)] generation prompt: \(recorded.addGenerationPrompt)"
    }

    static let all: [RecordedConversation] = ChatTemplateFixture.names.flatMap { name -> [RecordedConversation] in
        guard let fixture = try? ChatTemplateFixture.load(name) else { return [] }
        return fixture.cases.indices.map { RecordedConversation(fixture: name, index: $0, template: fixture) }
    }

    static var rendering: [RecordedConversation] { all.filter { $0.recorded.error != true } }
    static var raising: [RecordedConversation] { all.filter { $0.recorded.error == true } }

    func render() throws -> String {
        try ChatTemplate(template.template).render(
            messages: recorded.messages, addGenerationPrompt: recorded.addGenerationPrompt,
            specialTokens: template.specialTokens, extraContext: template.extraContext,
            arguments: try recorded.arguments, now: template.renderDate)
    }
}

/// An ISO 8601 local time without a zone (`2026-01-15T12:00:00`) as a date in the current time zone,
/// the way Python's naive `datetime.now()` stands for it.
func localDate(_ iso: String) -> Date {
    let numbers = iso.split(whereSeparator: { !$0.isNumber }).compactMap { Int($0) }
    precondition(numbers.count == 6, "a fixture's time must be YYYY-MM-DDTHH:MM:SS, not \(iso)")
    var calendar = Calendar(identifier: .gregorian)
    calendar.timeZone = TimeZone.current
    let components = DateComponents(
        year: numbers[0], month: numbers[1], day: numbers[2], hour: numbers[3], minute: numbers[4], second: numbers[5])
    guard let date = calendar.date(from: components) else { preconditionFailure("\(iso) is not a date") }
    return date
}

/// The first place two strings differ, for readable failures.
private func firstDifference(_ actual: String, _ expected: String) -> String {
    let a = Array(actual.unicodeScalars)
    let b = Array(expected.unicodeScalars)
    let index = (0..<min(a.count, b.count)).first { a[$0] != b[$0] } ?? min(a.count, b.count)
    func around(_ scalars: [Unicode.Scalar]) -> String {
        String(String.UnicodeScalarView(scalars[max(0, index - 20)..<min(scalars.count, index + 20)])).debugDescription
    }
    return "first difference at scalar \(index): got \(around(a)), expected \(around(b))"
}

@Suite("Chat templates")
struct ChatTemplateTests {
    @Test("The fixtures cover every recorded template and both outcomes")
    func fixturesArePresent() throws {
        #expect(ChatTemplateFixture.names.count >= 10)
        #expect(RecordedConversation.rendering.count > 100)
        #expect(!RecordedConversation.raising.isEmpty)
    }

    @Test(
        "A chat template renders a conversation exactly as transformers' apply_chat_template does",
        arguments: RecordedConversation.rendering)
    func rendersLikeTransformers(_ conversation: RecordedConversation) throws {
        let expected = try #require(conversation.recorded.rendered)
        let actual = try conversation.render()
        #expect(actual == expected, "\(firstDifference(actual, expected))")
    }

    @Test(
        "raise_exception in a template throws a ChatTemplateError carrying the template's message",
        arguments: RecordedConversation.raising)
    func raisesTheTemplatesMessage(_ conversation: RecordedConversation) {
        #expect {
            _ = try conversation.render()
        } throws: { error in
            guard let error = error as? ChatTemplateError else { return false }
            return error.kind == .raised && error.message == conversation.recorded.message
        }
    }

    struct UnsupportedTemplate: Sendable, CustomTestStringConvertible {
        let template: String
        let construct: String
        let line: Int
        let column: Int
        var testDescription: String { construct }
    }

    static let unsupported: [UnsupportedTemplate] = [
        UnsupportedTemplate(
            template: "Hello\n  {{ name | wordwrap(10) }}", construct: "filter 'wordwrap'", line: 2, column: 13),
        UnsupportedTemplate(
            template: "{% include 'header.jinja' %}", construct: "statement '{% include %}'", line: 1, column: 1),
        UnsupportedTemplate(
            template: "a\nb {% if x is prime %}{% endif %}", construct: "test 'prime'", line: 2, column: 14),
        UnsupportedTemplate(
            template: "{% for m in messages recursive %}{% endfor %}", construct: "'for ... recursive'", line: 1,
            column: 22),
        UnsupportedTemplate(
            template: "{{ '%s!' % 'hi' }}", construct: "printf-style string formatting", line: 1, column: 10),
        UnsupportedTemplate(
            template: "\n\n   {{ 'x'.format(1) }}", construct: "method 'str.format()'", line: 3, column: 11),
    ]

    @Test(
        "A template using an unsupported construct throws an error naming the construct, line and column",
        arguments: unsupported)
    func unsupportedConstructs(_ example: UnsupportedTemplate) {
        #expect {
            _ = try ChatTemplate(example.template).render(messages: [], addGenerationPrompt: false)
        } throws: { error in
            guard let error = error as? ChatTemplateError else { return false }
            return error.kind == .unsupported && error.message.contains(example.construct) && error.line == example.line
                && error.column == example.column
                && error.description.hasPrefix("chat_template line \(example.line), column \(example.column): ")
        }
    }

    @Test("Invalid Jinja throws a syntax error with its position")
    func syntaxErrors() {
        for (template, line) in [("{% if x %}never closed", nil), ("x\n{{ 1 + }}", 2), ("{{ 'open }}", 1)]
            as [(String, Int?)]
        {
            #expect {
                _ = try ChatTemplate(template)
            } throws: { error in
                (error as? ChatTemplateError)?.kind == .syntax && (error as? ChatTemplateError)?.line == line
            }
        }
    }

    @Test(
        "Rendering stops with a limit error instead of exhausting memory, stack or time",
        arguments: [
            "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}",
            "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
            "{% set ns = namespace(v=[]) %}{% for i in range(1000) %}{% set ns.v = [ns.v] %}{% endfor %}",
            "{{ range(100000000) | length }}",
            "{% for i in range(2000) %}{% for j in range(2000) %}"
                + String(repeating: "{% if false %}{% endif %}", count: 20) + "{% endfor %}{% endfor %}",
            "{{ " + String(repeating: "(", count: 1000) + "1" + String(repeating: ")", count: 1000) + " }}",
            "{{ " + String(repeating: "not ", count: 1000) + "x }}",
            String(repeating: "{% if true %}", count: 1000),
            "{{ range(-9223372036854775807, 9223372036854775807) | length }}",
            "{{ 'ab' * 9223372036854775807 }}",
            "{% macro f(n) %}" + String(repeating: "{% if true %}", count: 60) + "{{ f(n) }}"
                + String(repeating: "{% endif %}", count: 60) + "{% endmacro %}{{ f(0) }}",
        ])
    func limits(_ template: String) {
        #expect {
            _ = try ChatTemplate(template).render(messages: [], addGenerationPrompt: false)
        } throws: { error in
            (error as? ChatTemplateError)?.kind == .limit
        }
    }

    @Test("Deep but allowed nesting renders, and integer edge cases fail cleanly instead of trapping")
    func edgeCases() throws {
        let deep = "{{ " + String(repeating: "(", count: 50) + "1" + String(repeating: ")", count: 50) + " }}"
        #expect(try ChatTemplate(deep).render(messages: [], addGenerationPrompt: false) == "1")
        let nested = String(repeating: "{% if true %}", count: 50) + "x" + String(repeating: "{% endif %}", count: 50)
        #expect(try ChatTemplate(nested).render(messages: [], addGenerationPrompt: false) == "x")
        let slices =
            "{{ 'abc'[::9223372036854775807] }}{{ 'abc'[-9223372036854775807:] }}{{ [1, 2][::-9223372036854775807] }}"
        #expect(try ChatTemplate(slices).render(messages: [], addGenerationPrompt: false) == "aabc[2]")
        for template in [
            "{{ -9223372036854775807 - 2 }}", "{{ 9223372036854775807 + 1 }}", "{{ 3037000500 * 3037000500 }}",
            "{{ 1 // 0 }}", "{{ 1 % 0 }}", "{{ 2 ** 100 }}", "{{ 99999999999999999999 }}",
        ] {
            #expect(throws: ChatTemplateError.self, "\(template)") {
                try ChatTemplate(template).render(messages: [], addGenerationPrompt: false)
            }
        }
        let minimum = try ChatTemplate("{{ (-9223372036854775807 - 1) is divisibleby(-1) }}")
        #expect(try minimum.render(messages: [], addGenerationPrompt: false) == "True")
    }

    @Test("strftime_now formats the given time, and {% generation %} renders its body")
    func transformersExtensions() throws {
        let afternoon = Date(timeIntervalSince1970: 1_722_002_400)  // 2024-07-26 14:00 UTC
        let template = try ChatTemplate("{% generation %}{{ strftime_now('%Y-%m-%d %b') }}{% endgeneration %}")
        let rendered = try template.render(messages: [], addGenerationPrompt: false, now: afternoon)
        #expect(rendered.hasPrefix("2024-07-2") && rendered.hasSuffix(" Jul"))
    }

    @Test("A checkpoint whose template is unsupported still loads; rendering reports the construct")
    func unsupportedTemplateLoads() throws {
        let directory = try tokenizerDirectory(config: ["chat_template": "{{ messages | wordcount }}"])
        defer { try? FileManager.default.removeItem(at: directory) }
        let tokenizer = try Tokenizer(directory: directory)
        #expect {
            _ = try tokenizer.applyChatTemplate([], addGenerationPrompt: false)
        } throws: { error in
            (error as? ChatTemplateError)?.kind == .unsupported
                && (error as? ChatTemplateError)?.message == "unsupported filter 'wordcount'"
        }
    }

    @Test("Mangled templates (truncated, spliced, with stray characters) fail with an error or render, never trap")
    func mangledTemplates() throws {
        let sources = try ChatTemplateFixture.names.map { try ChatTemplateFixture.load($0).template }
        let conversation: [[String: String]] = [
            ["role": "user", "content": "hi"], ["role": "assistant", "content": "yo"],
        ]
        // A fixed linear congruential sequence, so failures reproduce.
        var state: UInt64 = 0x5EED
        func next(_ bound: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int((state >> 33) % UInt64(max(bound, 1)))
        }
        let debris = [
            "{{", "}}", "{%", "%}", "{#", "-", "(", ")", "[", "]", "'", "\"", "|", ".", ",", "endfor", "if", "\\",
        ]
        for round in 0..<400 {
            var scalars = Array(sources[round % sources.count].unicodeScalars)
            for _ in 0..<(1 + next(4)) {
                switch next(3) {
                case 0: scalars = Array(scalars.prefix(next(scalars.count + 1)))
                case 1:
                    let from = next(scalars.count + 1)
                    scalars.removeSubrange(from..<min(scalars.count, from + next(40)))
                default:
                    scalars.insert(contentsOf: debris[next(debris.count)].unicodeScalars, at: next(scalars.count + 1))
                }
            }
            let template = String(String.UnicodeScalarView(scalars))
            do {
                _ = try ChatTemplate(template).render(messages: conversation, addGenerationPrompt: round % 2 == 0)
            } catch {
                #expect(!error.description.isEmpty)
            }
        }
    }

    // MARK: Through Tokenizer

    /// A tokenizer directory: the Mixtral fixture's tokenizer.json plus the given config and template file.
    private func tokenizerDirectory(config: [String: Any], jinja: String? = nil) throws -> URL {
        let directory = try TestPaths.makeTemporaryDirectory("chat-template")
        let source = TestPaths.fixtures.appendingPathComponent("tokenizers/mixtral-llama-class/tokenizer.json")
        try FileManager.default.copyItem(at: source, to: directory.appendingPathComponent("tokenizer.json"))
        let data = try JSONSerialization.data(withJSONObject: config)
        try data.write(to: directory.appendingPathComponent("tokenizer_config.json"))
        if let jinja {
            try jinja.write(
                to: directory.appendingPathComponent("chat_template.jinja"), atomically: true, encoding: .utf8)
        }
        return directory
    }

    @Test(
        "A tokenizer directory with chat_template in tokenizer_config.json renders through Tokenizer.applyChatTemplate")
    func rendersThroughTokenizer() throws {
        let fixture = try ChatTemplateFixture.load("mixtral-8x7b-instruct")
        let directory = try tokenizerDirectory(config: [
            "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
            "chat_template": fixture.template,
        ])
        defer { try? FileManager.default.removeItem(at: directory) }
        let tokenizer = try Tokenizer(directory: directory)
        #expect(tokenizer.chatTemplate == fixture.template)
        #expect(tokenizer.specialTokenStrings["bos_token"] == "<s>")
        for recorded in fixture.cases {
            if let expected = recorded.rendered {
                let actual = try tokenizer.applyChatTemplate(
                    recorded.messages, addGenerationPrompt: recorded.addGenerationPrompt)
                #expect(actual == expected)
            } else {
                #expect(throws: ChatTemplateError.self) {
                    try tokenizer.applyChatTemplate(
                        recorded.messages, addGenerationPrompt: recorded.addGenerationPrompt)
                }
            }
        }
    }

    @Test(
        "A conversation's token ids equal transformers' apply_chat_template(tokenize=True): the rendered text without added special tokens, so a template's BOS appears once",
        arguments: ReferenceFixture.withChatCases)
    func chatTokenIDs(fixture: ReferenceFixture) throws {
        let record = try fixture.loadChatRecord()
        let tokenizer = try fixture.loadTokenizer(chatTemplate: record.template)
        #expect(!record.cases.isEmpty)
        for recorded in record.cases {
            let rendered = try tokenizer.applyChatTemplate(
                recorded.messages, addGenerationPrompt: recorded.addGenerationPrompt, arguments: try recorded.arguments,
                now: record.renderDate)
            #expect(rendered == recorded.rendered, "\(fixture.rawValue) \(record.chatTemplate)")
            let ids = try tokenizer.applyChatTemplateTokenIDs(
                recorded.messages, addGenerationPrompt: recorded.addGenerationPrompt, arguments: try recorded.arguments,
                now: record.renderDate)
            let mismatch = firstMismatch(ids, recorded.ids)
            #expect(mismatch == nil, "\(fixture.rawValue) \(record.chatTemplate) \(recorded.messages): \(mismatch ?? "")")
            if let bos = tokenizer.bosTokenID, let bosText = tokenizer.token(for: bos), rendered.hasPrefix(bosText) {
                #expect(ids.first == bos && ids.dropFirst().first != bos, "\(fixture.rawValue): \(ids.prefix(4))")
            }
        }
    }

    @Test("chat_template.jinja takes precedence over tokenizer_config.json, and a template list uses its default")
    func templateSources() throws {
        let listed = try tokenizerDirectory(config: [
            "chat_template": [
                ["name": "tool_use", "template": "tools"], ["name": "default", "template": "{{ bos_token }}default"],
            ],
            "bos_token": "<s>",
        ])
        defer { try? FileManager.default.removeItem(at: listed) }
        #expect(try Tokenizer(directory: listed).applyChatTemplate([], addGenerationPrompt: false) == "<s>default")

        let file = try tokenizerDirectory(config: ["chat_template": "from config"], jinja: "from file {{ eos_token }}")
        defer { try? FileManager.default.removeItem(at: file) }
        #expect(
            try Tokenizer(directory: file).applyChatTemplate(
                [], addGenerationPrompt: false, extraContext: ["eos_token": "E"]) == "from file E")
    }

    @Test("A checkpoint without a chat template throws an error saying so")
    func missingTemplate() throws {
        let directory = try tokenizerDirectory(config: ["bos_token": "<s>"])
        defer { try? FileManager.default.removeItem(at: directory) }
        let tokenizer = try Tokenizer(directory: directory)
        #expect(tokenizer.chatTemplate == nil)
        #expect {
            _ = try tokenizer.applyChatTemplate([["role": "user", "content": "hi"]], addGenerationPrompt: true)
        } throws: { error in
            guard let error = error as? ChatTemplateError else { return false }
            return error.kind == .missingTemplate && error.description.contains("has no chat_template")
        }
    }
}
