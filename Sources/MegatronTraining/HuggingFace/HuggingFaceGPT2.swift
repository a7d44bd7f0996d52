import Foundation
import MegatronCore
import MegatronModels

/// Hugging Face GPT-2 models (a `GPT2LMHeadModel` directory: `config.json` and `model.safetensors`)
/// as Megatron-core parameters, and back.
///
/// Hugging Face's Conv1D layers store weights [in, out]; Megatron's linear layers [out, in]. Its
/// `c_attn` output is [all queries | all keys | all values], Megatron's fused QKV interleaves them
/// per head: [q₀ k₀ v₀ | q₁ k₁ v₁ | …]. The vocabulary is padded to Megatron's size with copies of the
/// last row, as Megatron's checkpoint converter pads it; export drops the padding again.
public enum HuggingFaceGPT2 {
    /// The architecture `config.json` describes.
    public struct Config: Equatable, Sendable {
        public var numLayers: Int
        public var hiddenSize: Int
        public var numAttentionHeads: Int
        public var maxPositionEmbeddings: Int
        public var vocabSize: Int
        public var normEpsilon: Float

        /// The Megatron model of this architecture (GPT-2: learned positions, LayerNorm, biases, the
        /// tanh GELU, ffn 4h, tied output layer), its vocabulary padded to a multiple of `divisibleBy`.
        public func gptConfig(makeVocabSizeDivisibleBy divisibleBy: Int = 128) throws -> TransformerConfig {
            var config = TransformerConfig(numLayers: numLayers, hiddenSize: hiddenSize, numAttentionHeads: numAttentionHeads,
                                           paddedVocabSize: TransformerConfig.paddedVocabSize(vocabSize, divisibleBy: divisibleBy),
                                           maxPositionEmbeddings: maxPositionEmbeddings)
            config.normEpsilon = normEpsilon
            try config.validate()
            return config
        }

        /// The `megatron pretrain` flags that build this model.
        public var flags: String {
            "--num-layers \(numLayers) --hidden-size \(hiddenSize) --num-attention-heads \(numAttentionHeads) "
                + "--max-position-embeddings \(maxPositionEmbeddings) --norm-epsilon \(normEpsilon)"
        }
    }

    /// The `model_type` of `directory`'s `config.json` ("gpt2", "llama", …).
    public static func modelType(_ directory: URL) throws -> String {
        let file = directory.appendingPathComponent("config.json")
        guard let json = try? JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any] else {
            throw CheckpointError("\(file.path): not a readable JSON object")
        }
        guard let type = json["model_type"] as? String else { throw CheckpointError("\(file.path): no \"model_type\"") }
        return type
    }

    /// Reads `config.json` of `directory`, rejecting what Megatron's GPT cannot express.
    public static func readConfig(_ directory: URL) throws -> Config {
        let file = directory.appendingPathComponent("config.json")
        guard let json = try? JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any] else {
            throw CheckpointError("\(file.path): not a readable JSON object")
        }
        func integer(_ key: String) throws -> Int {
            guard let value = json[key] as? Int, value > 0 else { throw CheckpointError("\(file.path): \"\(key)\" must be a positive integer") }
            return value
        }
        let config = Config(numLayers: try integer("n_layer"), hiddenSize: try integer("n_embd"), numAttentionHeads: try integer("n_head"),
                            maxPositionEmbeddings: try integer("n_positions"), vocabSize: try integer("vocab_size"),
                            normEpsilon: Float((json["layer_norm_epsilon"] as? Double) ?? 1e-5))
        let requirements: [(String, Bool, String)] = [
            ("model_type", (json["model_type"] as? String) == "gpt2", "gpt2"),
            ("activation_function", (json["activation_function"] as? String ?? "gelu_new") == "gelu_new", "gelu_new (Megatron's tanh GELU)"),
            ("n_inner", json["n_inner"] == nil || json["n_inner"] is NSNull || (json["n_inner"] as? Int) == 4 * config.hiddenSize,
             "null or 4 × n_embd"),
            ("tie_word_embeddings", (json["tie_word_embeddings"] as? Bool) ?? true, "true"),
            ("scale_attn_weights", (json["scale_attn_weights"] as? Bool) ?? true, "true"),
            ("scale_attn_by_inverse_layer_idx", !((json["scale_attn_by_inverse_layer_idx"] as? Bool) ?? false), "false"),
        ]
        if let (key, _, expected) = requirements.first(where: { !$0.1 }) {
            throw CheckpointError("\(file.path): \"\(key)\" must be \(expected) for a Megatron GPT, found \(json[key].map { "\($0)" } ?? "nothing")")
        }
        return config
    }

    /// Where a Megatron parameter lies in the Hugging Face file (`name`, without `transformer.`), and
    /// how its values move.
    struct Source {
        enum Kind {
            /// The same values (norms, biases other than QKV's, position embeddings).
            case same
            /// A Conv1D weight [in, out] of Megatron's [out, in].
            case transposed
            /// `c_attn`'s weight [h, 3h] (`isBias`: its bias [3h]) of Megatron's per-head interleaved QKV.
            case qkv(isBias: Bool)
            /// The word embeddings, padded with copies of the last row.
            case paddedRows
        }

        let name: String
        let kind: Kind

        /// The Hugging Face tensor's shape for the Megatron parameter of shape `shape` (its
        /// vocabulary `vocabularyRows` for the word embeddings).
        func shape(megatron shape: [Int], vocabularyRows: Int) -> [Int] {
            switch kind {
            case .same: shape
            case .transposed: [shape[1], shape[0]]
            case .qkv(let isBias): isBias ? [shape[0]] : [shape[1], shape[0]]
            case .paddedRows: [vocabularyRows, shape[1]]
            }
        }
    }

    static func source(of megatronName: String) throws -> Source {
        if megatronName == "embedding.word_embeddings.weight" { return Source(name: "wte.weight", kind: .paddedRows) }
        if megatronName == "embedding.position_embeddings.weight" { return Source(name: "wpe.weight", kind: .same) }
        if megatronName.hasPrefix("decoder.final_layernorm.") { return Source(name: "ln_f." + megatronName.split(separator: ".").last!, kind: .same) }
        let parts = megatronName.split(separator: ".").map(String.init)
        guard parts.count >= 5, parts[0] == "decoder", parts[1] == "layers" else {
            throw CheckpointError("no Hugging Face GPT-2 tensor holds \(megatronName)")
        }
        let layer = "h.\(parts[2]).", field = parts.last!, module = parts[3 ..< parts.count - 1].joined(separator: ".")
        switch (module, field) {
        case ("input_layernorm", _): return Source(name: layer + "ln_1." + field, kind: .same)
        case ("pre_mlp_layernorm", _): return Source(name: layer + "ln_2." + field, kind: .same)
        case ("self_attention.linear_qkv", _): return Source(name: layer + "attn.c_attn." + field, kind: .qkv(isBias: field == "bias"))
        case ("self_attention.linear_proj", "weight"): return Source(name: layer + "attn.c_proj.weight", kind: .transposed)
        case ("self_attention.linear_proj", "bias"): return Source(name: layer + "attn.c_proj.bias", kind: .same)
        case ("mlp.linear_fc1", "weight"): return Source(name: layer + "mlp.c_fc.weight", kind: .transposed)
        case ("mlp.linear_fc1", "bias"): return Source(name: layer + "mlp.c_fc.bias", kind: .same)
        case ("mlp.linear_fc2", "weight"): return Source(name: layer + "mlp.c_proj.weight", kind: .transposed)
        case ("mlp.linear_fc2", "bias"): return Source(name: layer + "mlp.c_proj.bias", kind: .same)
        default: throw CheckpointError("no Hugging Face GPT-2 tensor holds \(megatronName)")
        }
    }

    /// Megatron's fused-QKV row r (of 3h) is `c_attn` output column qkvColumn(r): row block j of
    /// 3d rows is head j's query, key and value.
    static func qkvColumn(_ row: Int, hiddenSize h: Int, headDim d: Int) -> Int {
        let head = row / (3 * d), part = row % (3 * d) / d, offset = row % d
        return part * h + head * d + offset
    }

    /// Copies the weights of the Hugging Face model in `directory` (`model.safetensors` or its
    /// shards, keys with or without the `transformer.` prefix) into `parameters`, laid out by
    /// `config`'s ParameterLayout; `config` must be `readConfig(directory).gptConfig(…)`.
    public static func importWeights(from directory: URL, config: TransformerConfig, into parameters: UnsafeMutablePointer<Float>) throws {
        let weights = try HuggingFaceWeights(directory: directory, stripPrefix: "transformer.")
        let h = config.hiddenSize, d = config.kvChannels
        for entry in ParameterLayout(config).entries {
            let source = try source(of: entry.name)
            let vocabularyRows = weights.shape(source.name)?.first ?? 0
            let values = try weights.floats(source.name, shape: source.shape(megatron: entry.shape, vocabularyRows: vocabularyRows), for: entry.name)
            let out = parameters + entry.offset
            switch source.kind {
            case .same:
                out.update(from: values, count: values.count)
            case .transposed:
                let rows = entry.shape[0], columns = entry.shape[1]
                for r in 0 ..< rows { for c in 0 ..< columns { out[r * columns + c] = values[c * rows + r] } }
            case .qkv(let isBias):
                for r in 0 ..< 3 * h {
                    let column = qkvColumn(r, hiddenSize: h, headDim: d)
                    if isBias { out[r] = values[column] } else { for c in 0 ..< h { out[r * h + c] = values[c * 3 * h + column] } }
                }
            case .paddedRows:
                try HuggingFaceWeights.padVocabulary(values, rows: vocabularyRows, into: out, shape: entry.shape, name: source.name, in: directory)
            }
        }
    }

    /// Writes `parameters` (laid out by `config`) as a Hugging Face GPT-2 directory: `config.json`
    /// for `vocabSize` tokens (the padding rows dropped) and `model.safetensors`, keys prefixed
    /// `transformer.` as GPT2LMHeadModel.save_pretrained writes them.
    public static func exportWeights(_ parameters: UnsafePointer<Float>, config: TransformerConfig, vocabSize: Int, to directory: URL) throws {
        guard config.positionEmbedding == .learnedAbsolute, config.normalization == .layerNorm, !config.swiglu,
              config.addBiasLinear, config.numQueryGroups == config.numAttentionHeads,
              config.kvChannels * config.numAttentionHeads == config.hiddenSize, config.ffnHiddenSize == 4 * config.hiddenSize,
              !config.untieEmbeddingsAndOutputWeights, config.geluApproximation == .tanh
        else {
            throw CheckpointError("only GPT-2's architecture exports to Hugging Face GPT-2 (learned positions, LayerNorm, biases, "
                              + "tanh GELU, ffn 4h, tied output layer, no grouped-query attention or --kv-channels)")
        }
        guard vocabSize >= 1, vocabSize <= config.paddedVocabSize else {
            throw CheckpointError("--vocab-size \(vocabSize): expected 1 ... \(config.paddedVocabSize) (the model's padded vocabulary)")
        }
        let h = config.hiddenSize, d = config.kvChannels
        var tensors: [String: SafeTensors.Entry] = [:]
        for entry in ParameterLayout(config).entries {
            let source = try source(of: entry.name)
            let values = parameters + entry.offset
            var out: [Float]
            switch source.kind {
            case .same:
                out = Array(UnsafeBufferPointer(start: values, count: entry.count))
            case .transposed:
                let rows = entry.shape[0], columns = entry.shape[1]
                out = [Float](repeating: 0, count: entry.count)
                for r in 0 ..< rows { for c in 0 ..< columns { out[c * rows + r] = values[r * columns + c] } }
            case .qkv(let isBias):
                out = [Float](repeating: 0, count: entry.count)
                for r in 0 ..< 3 * h {
                    let column = qkvColumn(r, hiddenSize: h, headDim: d)
                    if isBias { out[column] = values[r] } else { for c in 0 ..< h { out[c * 3 * h + column] = values[r * h + c] } }
                }
            case .paddedRows:
                out = Array(UnsafeBufferPointer(start: values, count: vocabSize * h))
            }
            tensors["transformer." + source.name] = SafeTensors.Entry(
                dtype: "F32", shape: source.shape(megatron: entry.shape, vocabularyRows: vocabSize), data: out.withUnsafeBytes { Data($0) })
        }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try SafeTensors.write(tensors, metadata: ["format": "pt"], to: directory.appendingPathComponent("model.safetensors"))
        let json: [String: Any] = [
            "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2", "activation_function": "gelu_new",
            "n_layer": config.numLayers, "n_embd": h, "n_head": config.numAttentionHeads, "n_positions": config.maxPositionEmbeddings,
            "n_inner": NSNull(), "vocab_size": vocabSize, "layer_norm_epsilon": decimal(config.normEpsilon),
            "tie_word_embeddings": true, "scale_attn_weights": true, "initializer_range": decimal(config.initMethodStd),
            "resid_pdrop": decimal(config.hiddenDropout), "embd_pdrop": decimal(config.hiddenDropout),
            "attn_pdrop": decimal(config.attentionDropout), "torch_dtype": "float32",
            // GPT-2's <|endoftext|>, the last id of its vocabulary, begins and ends its texts.
            "bos_token_id": vocabSize - 1, "eos_token_id": vocabSize - 1,
        ]
        try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
            .write(to: directory.appendingPathComponent("config.json"))
    }

    /// A Float as the shortest decimal that reads back as it (1e-05, not 9.99999974737875e-06).
    private static func decimal(_ value: Float) -> Double { Double("\(value)")! }
}
