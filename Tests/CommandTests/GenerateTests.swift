import Foundation
import MegatronCore
import Testing

/// `megatron generate` on an imported Hugging Face model continues a prompt greedily with the tokens
/// transformers' own greedy generate chose (Tests/Fixtures/make_hf_gpt2_fixture.py).
@Suite struct GenerateTests {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/hf_gpt2_tiny")

    static func importedCheckpoint() throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("generate-\(UUID().uuidString)").path
        let imported = try PretrainFlagTests.megatron(["import-hf", "--hf-dir", Self.fixture.path, "--save", directory])
        #expect(imported.status == 0, "\(imported.output)")
        return directory
    }

    static func generate(_ load: String, prompt: String) throws -> (status: Int32, output: String) {
        try PretrainFlagTests.megatron(["generate", "--load", load, "--tokenizer-type", "NullTokenizer", "--vocab-size", "100",
                                        "--prompt", prompt, "--tokens-to-generate", "6", "--threads", "1"])
    }

    @Test func greedyGenerationIsTransformers() throws {
        let directory = try Self.importedCheckpoint()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let expected = try SafeTensors.read(Self.fixture.appendingPathComponent("expected.safetensors")).tensors["greedy"]!
        let greedy = expected.data.withUnsafeBytes { Array($0.bindMemory(to: Int32.self)) }.map(String.init).joined(separator: " ")
        let (status, output) = try Self.generate(directory, prompt: "5 17 99")
        #expect(status == 0 && output.trimmingCharacters(in: .whitespacesAndNewlines) == greedy, "\(output) vs \(greedy)")
    }

    @Test func aMissingCheckpointOrAPromptOfUnknownIdsIsRejected() throws {
        let missing = try Self.generate("/nonexistent", prompt: "5 17")
        #expect(missing.status != 0 && missing.output.contains("no checkpoint there"), "\(missing.output)")
        let directory = try Self.importedCheckpoint()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        for prompt in ["5 x", "5 100"] {
            let (status, output) = try Self.generate(directory, prompt: prompt)
            #expect(status != 0 && output.contains("--prompt \"\(prompt)\": NullTokenizer:") && output.contains("is not a token id in 0 ..< 100"), "\(prompt): \(output)")
        }
    }
}
