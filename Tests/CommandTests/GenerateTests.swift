import Foundation
import MegatronCore
import Testing

/// `megatron generate` on an imported Hugging Face model continues a prompt greedily with the tokens
/// transformers' own greedy generate chose (Tests/Fixtures/make_hf_gpt2_fixture.py).
@Suite struct GenerateTests {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/hf_gpt2_tiny")

    @Test func greedyGenerationIsTransformers() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("generate-\(UUID().uuidString)").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let imported = try PretrainFlagTests.megatron(["import-hf", "--hf-dir", Self.fixture.path, "--save", directory])
        #expect(imported.status == 0, "\(imported.output)")
        let expected = try SafeTensors.read(Self.fixture.appendingPathComponent("expected.safetensors")).tensors["greedy"]!
        let greedy = expected.data.withUnsafeBytes { Array($0.bindMemory(to: Int32.self)) }.map(String.init).joined(separator: " ")
        let (status, output) = try PretrainFlagTests.megatron(["generate", "--load", directory, "--tokenizer-type", "NullTokenizer",
                                                                "--vocab-size", "100", "--prompt", "5 17 99", "--tokens-to-generate", "6",
                                                                "--threads", "1"])
        #expect(status == 0 && output.trimmingCharacters(in: .whitespacesAndNewlines) == greedy, "\(output) vs \(greedy)")
    }

    @Test func aPromptOfUnknownIdsIsRejected() throws {
        let (status, output) = try PretrainFlagTests.megatron(["generate", "--load", "/nonexistent", "--tokenizer-type", "NullTokenizer",
                                                                "--vocab-size", "100", "--prompt", "5 x"])
        #expect(status != 0 && output.contains("no checkpoint there"), "\(output)")
    }
}
