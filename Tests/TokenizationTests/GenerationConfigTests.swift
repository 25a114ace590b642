// generation_config.json: its eos_token_id (an integer, a list or null) loads; anything else is an
// error naming the file and the field.
import Foundation
import TestSupport
import Testing
import Tokenization

@Suite("generation_config.json")
struct GenerationConfigTests {
    @Test(
        "eos_token_id loads as an integer, a list, or null; a missing field means none",
        arguments: [
            (#"{"eos_token_id": 2}"#, [2]),
            (#"{"eos_token_id": [2, 32000, 7]}"#, [2, 32000, 7]),
            (#"{"eos_token_id": []}"#, []),
            (#"{"eos_token_id": null, "bos_token_id": 1}"#, []),
            (#"{"do_sample": true, "temperature": 0.6}"#, []),
        ] as [(String, [Int32])])
    func loadsEOS(json: String, expected: [Int32]) throws {
        #expect(try GenerationConfig(json: Data(json.utf8)).eosTokenIDs == expected)
    }

    @Test(
        "a malformed generation_config.json is an error naming the file, the field and what is valid",
        arguments: [
            (#"{"eos_token_id": "</s>"}"#, "generation_config.json: eos_token_id is a string, but must be a token id"),
            (#"{"eos_token_id": [2, "x"]}"#, "generation_config.json: eos_token_id[1] is a string, but must be a token id"),
            (#"{"eos_token_id": [2, -1]}"#, "generation_config.json: eos_token_id[1] is -1, but must be a token id between 0"),
            (#"{"eos_token_id": 2.5}"#, "generation_config.json: eos_token_id is a number, but must be an integer"),
            (#"{"eos_token_id": 4294967296}"#, "generation_config.json: eos_token_id is 4294967296, but must be a token id"),
            (#"[2]"#, "generation_config.json: is an array, but must be an object"),
            (#"{"eos_token_id": 2"#, "generation_config.json: is not valid JSON"),
        ])
    func malformed(json: String, message: String) {
        #expect {
            _ = try GenerationConfig(json: Data(json.utf8))
        } throws: { error in
            guard let error = error as? TokenizerError else { return false }
            return error.description.hasPrefix(message)
        }
    }

    @Test("a model directory without generation_config.json has no extra end-of-sequence ids; with one, they load")
    func directory() throws {
        let directory = try TestPaths.makeTemporaryDirectory("generation-config")
        defer { try? FileManager.default.removeItem(at: directory) }
        #expect(try GenerationConfig(directory: directory).eosTokenIDs == [])
        let file = directory.appendingPathComponent("generation_config.json")
        try Data(#"{"eos_token_id": [2, 9]}"#.utf8).write(to: file)
        #expect(try GenerationConfig(directory: directory).eosTokenIDs == [2, 9])
        try Data(#"{"eos_token_id": {"id": 2}}"#.utf8).write(to: file)
        #expect {
            _ = try GenerationConfig(directory: directory)
        } throws: { error in
            (error as? TokenizerError)?.description.hasPrefix("\(file.path): eos_token_id is an object") == true
        }
    }
}
