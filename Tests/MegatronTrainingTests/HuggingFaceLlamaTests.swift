import Foundation
import MegatronCore
import MegatronModels
import MegatronTraining
import Testing

/// Llama-family import and export against models the transformers library wrote
/// (Tests/Fixtures/make_hf_llama_fixtures.py): Llama with grouped-query attention, a non-default
/// rope theta and SwiGLU width, untied, in two safetensors shards; Mistral with one key/value head;
/// Qwen2 with QKV biases and tied embeddings; Llama 3.1's scaled rotary frequencies. The imported model computes transformers' logits and
/// greedy continuation; exporting gives back the same tensors.
struct HuggingFaceLlamaTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures")

    static func imported(_ name: String) throws -> GPTModel {
        let directory = fixtures.appendingPathComponent(name)
        let config = try HuggingFaceLlama.readConfig(directory).gptConfig()
        let model = try GPTModel(config: config, seed: nil, on: CPUDevice(threads: 1))
        try HuggingFaceLlama.importWeights(from: directory, config: config, into: model.parameters.floats)
        return model
    }

    static func expected(_ name: String) throws -> [String: SafeTensors.Entry] {
        try SafeTensors.read(fixtures.appendingPathComponent(name).appendingPathComponent("expected.safetensors")).tensors
    }

    @Test(arguments: ["hf_llama_tiny", "hf_mistral_tiny", "hf_qwen2_tiny", "hf_llama31_tiny"])
    func theImportedModelComputesTransformersLogitsAndGreedyTokens(fixture: String) throws {
        let model = try Self.imported(fixture)
        let expected = try Self.expected(fixture)
        try expectTransformersLogits(model, expected: expected, fixture)

        let greedy = expected["greedy"]!.data.withUnsafeBytes { Array($0.bindMemory(to: Int32.self)) }
        let engine = try DynamicInferenceEngine.single(model: model, vocabularySize: 100, positions: greedy.count)
        final class Tokens: @unchecked Sendable { var values: [Int32] = [] }
        let tokens = Tokens()
        try engine.add(InferenceRequest(prompt: Array(greedy.prefix(3)), sampling: .greedy(greedy.count - 3))) { event in
            if case .token(let token, _, _) = event { tokens.values.append(token) }
        }
        while engine.step() {}
        #expect(Array(greedy.prefix(3)) + tokens.values == greedy, "\(fixture)")
    }

    @Test(arguments: ["hf_llama_tiny", "hf_mistral_tiny", "hf_qwen2_tiny", "hf_llama31_tiny"])
    func exportGivesBackTheImportedTensorsAndConfig(fixture: String) throws {
        let model = try Self.imported(fixture)
        let source = Self.fixtures.appendingPathComponent(fixture)
        let original = try HuggingFaceLlama.readConfig(source)
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("hf-export-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: out) }
        #expect(HuggingFaceLlama.family(of: model.config) == (original.family == .qwen2 ? .qwen2 : .llama))
        try HuggingFaceLlama.exportWeights(model.parameters.floats, config: model.config, family: original.family, vocabSize: 100, to: out)
        #expect(try HuggingFaceLlama.readConfig(out) == original)
        // Every tensor of the original files (shards or one file), bit for bit, and no other.
        let originals = try FileManager.default.contentsOfDirectory(atPath: source.path)
            .filter { $0.hasPrefix("model") && $0.hasSuffix(".safetensors") }
            .flatMap { try SafeTensors.read(source.appendingPathComponent($0)).tensors }
        let exported = try SafeTensors.read(out.appendingPathComponent("model.safetensors")).tensors
        #expect(Set(originals.map(\.key)) == Set(exported.keys), "\(fixture)")
        for (name, entry) in originals {
            #expect(exported[name]?.shape == entry.shape && exported[name]?.data == entry.data, "\(fixture): \(name)")
        }
        // And it imports again to the same parameters.
        let again = try GPTModel(config: model.config, seed: nil, on: CPUDevice(threads: 1))
        try HuggingFaceLlama.importWeights(from: out, config: model.config, into: again.parameters.floats)
        #expect(again.parameters.toFloatArray() == model.parameters.toFloatArray(), "\(fixture)")
    }

    /// 16-bit checkpoints (most published ones) import widened exactly.
    @Test func bf16AndFP16TensorsWidenExactly() throws {
        let values: [Float] = [1, -2.5, 0.15625, 65504, -0]
        let bf16 = values.map { UInt16(truncatingIfNeeded: $0.bitPattern >> 16) }
        let fp16 = values.map { Float16($0).bitPattern }
        #expect(try SafeTensors.Entry(dtype: "BF16", shape: [5], data: bf16.withUnsafeBytes { Data($0) }).floats() == values.map {
            Float(bitPattern: $0.bitPattern & 0xFFFF_0000)
        })
        #expect(try SafeTensors.Entry(dtype: "F16", shape: [5], data: fp16.withUnsafeBytes { Data($0) }).floats() == values)
    }

    @Test func configurationsMegatronCannotComputeAreRefusedByName() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("hf-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        func config(_ fixture: String) throws -> [String: Any] {
            try JSONSerialization.jsonObject(with: Data(contentsOf: Self.fixtures.appendingPathComponent("\(fixture)/config.json"))) as! [String: Any]
        }
        let cases: [(String, [String: Any], String)] = [
            ("hf_llama_tiny", ["rope_parameters": ["rope_type": "yarn", "factor": 8.0, "rope_theta": 500000.0]], "\"rope_parameters\" of type \"yarn\""),
            ("hf_llama31_tiny", ["rope_parameters": ["rope_type": "llama3", "factor": 8.0, "rope_theta": 500000.0, "low_freq_factor": 2.0,
                                                    "high_freq_factor": 4.0, "original_max_position_embeddings": 8192]],
             "\"rope_parameters\".\"low_freq_factor\" must be 1.0"),
            ("hf_llama_tiny", ["rope_scaling": ["type": "linear", "factor": 2.0]], "\"rope_scaling\" of type \"linear\""),
            ("hf_llama_tiny", ["hidden_act": "gelu"], "\"hidden_act\" must be"),
            ("hf_llama_tiny", ["attention_bias": true], "\"mlp_bias\" must be"),
            ("hf_llama_tiny", ["num_local_experts": 8], "\"num_local_experts\" must be absent"),
            ("hf_llama_tiny", ["model_type": "gemma"], "\"model_type\" must be"),
            ("hf_llama_tiny", ["num_hidden_layers": 0], "\"num_hidden_layers\" must be a positive integer"),
            ("hf_mistral_tiny", ["sliding_window": 16], "\"sliding_window\" must be null or at least"),
            ("hf_qwen2_tiny", ["use_sliding_window": true], "\"use_sliding_window\" must be false"),
        ]
        for (fixture, changes, message) in cases {
            let changed = try config(fixture).merging(changes) { $1 }
            try JSONSerialization.data(withJSONObject: changed).write(to: directory.appendingPathComponent("config.json"))
            let error = #expect(throws: CheckpointError.self) { try HuggingFaceLlama.readConfig(directory) }
            #expect(error?.description.contains(message) == true, "\(changes): \(String(describing: error))")
        }
        // A Mistral config without sliding_window means transformers' 4096-token window: longer than
        // a 32-position context is harmless, so only the explicit short one above is refused.
        var mistral = try config("hf_mistral_tiny")
        mistral["sliding_window"] = nil
        try JSONSerialization.data(withJSONObject: mistral).write(to: directory.appendingPathComponent("config.json"))
        #expect(try HuggingFaceLlama.readConfig(directory).family == .mistral)
    }
}
