import Foundation
import MegatronCore
import MegatronModels
import MegatronTraining
import Testing

/// Hugging Face GPT-2 import and export against a model the transformers library wrote
/// (Tests/Fixtures/make_hf_gpt2_fixture.py): the imported model computes transformers' logits,
/// and exporting it gives back the same tensors.
struct HuggingFaceGPT2Tests {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/hf_gpt2_tiny")

    static func imported() throws -> GPTModel {
        let config = try HuggingFaceGPT2.readConfig(fixture).gptConfig()
        let model = try GPTModel(config: config, seed: nil, on: CPUDevice(threads: 1))
        try HuggingFaceGPT2.importWeights(from: fixture, config: config, into: model.parameters.floats)
        return model
    }

    @Test func theImportedModelComputesTransformersLogits() throws {
        let model = try Self.imported()
        #expect(model.config.paddedVocabSize == 128 && model.config.hiddenSize == 32 && model.config.numLayers == 2)
        let expected = try SafeTensors.read(Self.fixture.appendingPathComponent("expected.safetensors")).tensors
        try expectTransformersLogits(model, expected: expected, "hf_gpt2_tiny")
        // The padding rows of the word embedding repeat the last real one, as Megatron's converter pads.
        let embedding = model.parameters.floats + model.layout.entry("embedding.word_embeddings.weight")!.offset
        #expect((100 ..< 128).allSatisfy { row in (0 ..< 32).allSatisfy { embedding[row * 32 + $0] == embedding[99 * 32 + $0] } })
    }

    @Test func exportGivesBackTheImportedTensors() throws {
        let model = try Self.imported()
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("hf-export-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        try HuggingFaceGPT2.exportWeights(model.parameters.floats, config: model.config, vocabSize: 100, to: out)
        let original = try SafeTensors.read(Self.fixture.appendingPathComponent("model.safetensors")).tensors
        let exported = try SafeTensors.read(out.appendingPathComponent("model.safetensors")).tensors
        #expect(Set(original.keys) == Set(exported.keys))
        for (name, entry) in original {
            let values = try exported[name]?.floats(), expectedValues = try entry.floats()
            #expect(exported[name]?.shape == entry.shape && values == expectedValues, "\(name)")
        }
        let roundTrip = try HuggingFaceGPT2.readConfig(out), originalConfig = try HuggingFaceGPT2.readConfig(Self.fixture)
        #expect(roundTrip == originalConfig)
    }

    @Test func configurationsMegatronCannotExpressAreRejected() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("hf-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: Self.fixture.appendingPathComponent("config.json"))) as! [String: Any]
        for (key, value) in [("activation_function", "relu" as Any), ("n_inner", 100), ("scale_attn_by_inverse_layer_idx", true)] {
            var changed = json
            changed[key] = value
            try JSONSerialization.data(withJSONObject: changed).write(to: directory.appendingPathComponent("config.json"))
            let error = #expect(throws: CheckpointError.self) { try HuggingFaceGPT2.readConfig(directory) }
            #expect(error?.description.contains("\"\(key)\" must be") == true, "\(String(describing: error))")
        }
    }
}
