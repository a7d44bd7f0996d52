import Foundation
import MegatronCore
import MegatronModels

/// Hugging Face Llama-family models (`LlamaForCausalLM`, `MistralForCausalLM`, `Qwen2ForCausalLM`:
/// `config.json` and `model.safetensors` or its shards) as Megatron-core parameters, and back.
///
/// The family is Megatron's GPT with rotary positions (rotate-half, as Hugging Face stores q and k),
/// RMSNorm, SwiGLU and grouped-query attention. Hugging Face keeps q, k and v apart,
/// [heads·d, h], [groups·d, h], [groups·d, h]; Megatron fuses them per query group:
/// [q of the group's heads | k | v] for group 0, then group 1, …. Its fc1 is [gate; up]
/// (SiLU on the gate half), Hugging Face's `gate_proj` and `up_proj`. Other linear weights are
/// [out, in] on both sides. Vocabulary matrices are padded as for GPT-2.
public enum HuggingFaceLlama {
    public enum Family: String, Sendable, CaseIterable {
        case llama, mistral, qwen2

        var architecture: String {
            switch self {
            case .llama: "LlamaForCausalLM"
            case .mistral: "MistralForCausalLM"
            case .qwen2: "Qwen2ForCausalLM"
            }
        }

        /// transformers' default for a config.json without `num_key_value_heads`.
        func defaultKeyValueHeads(heads: Int) -> Int {
            switch self {
            case .llama: heads
            case .mistral: 8
            case .qwen2: 32
            }
        }
    }

    /// The architecture `config.json` describes, in Megatron's terms.
    public struct Config: Equatable, Sendable {
        public var family: Family
        public var numLayers: Int
        public var hiddenSize: Int
        public var ffnHiddenSize: Int
        public var numAttentionHeads: Int
        public var numQueryGroups: Int
        public var kvChannels: Int
        public var maxPositionEmbeddings: Int
        public var vocabSize: Int
        public var normEpsilon: Float
        public var rotaryBase: Float
        /// Llama 3.1's rotary scaling factor (rope type "llama3"), nil when unscaled.
        public var ropeScalingFactor: Float?
        public var tiedEmbeddings: Bool
        /// Biases on every linear layer (Llama's attention_bias with mlp_bias).
        public var addBiasLinear: Bool
        /// Biases on q, k and v only (Qwen2).
        public var addQKVBias: Bool

        /// The Megatron model of this architecture, its vocabulary padded to a multiple of `divisibleBy`.
        public func gptConfig(makeVocabSizeDivisibleBy divisibleBy: Int = 128) throws -> TransformerConfig {
            var config = TransformerConfig(numLayers: numLayers, hiddenSize: hiddenSize, numAttentionHeads: numAttentionHeads,
                                           numQueryGroups: numQueryGroups, kvChannels: kvChannels, ffnHiddenSize: ffnHiddenSize,
                                           paddedVocabSize: TransformerConfig.paddedVocabSize(vocabSize, divisibleBy: divisibleBy),
                                           maxPositionEmbeddings: maxPositionEmbeddings)
            config.positionEmbedding = .rope
            config.rotaryBase = rotaryBase
            config.ropeScalingFactor = ropeScalingFactor
            config.normalization = .rmsNorm
            config.normEpsilon = normEpsilon
            config.swiglu = true
            config.addBiasLinear = addBiasLinear
            config.addQKVBias = addQKVBias
            config.untieEmbeddingsAndOutputWeights = !tiedEmbeddings
            config.hiddenDropout = 0
            config.attentionDropout = 0
            try config.validate()
            return config
        }

        /// The `megatron pretrain` flags that build this model (Megatron's examples/llama spelling).
        public var flags: String {
            var flags = "--num-layers \(numLayers) --hidden-size \(hiddenSize) --ffn-hidden-size \(ffnHiddenSize) "
                + "--num-attention-heads \(numAttentionHeads) --group-query-attention --num-query-groups \(numQueryGroups) "
                + "--kv-channels \(kvChannels) --max-position-embeddings \(maxPositionEmbeddings) "
                + "--position-embedding-type rope --rotary-base \(Self.decimal(rotaryBase)) --normalization RMSNorm "
                + "--norm-epsilon \(normEpsilon) --swiglu --attention-dropout 0 --hidden-dropout 0"
            if let ropeScalingFactor { flags += " --use-rope-scaling --rope-scaling-factor \(Self.decimal(ropeScalingFactor))" }
            if !addBiasLinear { flags += " --disable-bias-linear" }
            if addQKVBias { flags += " --add-qkv-bias" }
            if !tiedEmbeddings { flags += " --untie-embeddings-and-output-weights" }
            return flags
        }

        static func decimal(_ value: Float) -> String { value == value.rounded() && abs(value) < 1e15 ? String(Int(value)) : "\(value)" }
    }

    /// Reads `config.json` of `directory`, refusing (with the field's name) what Megatron's GPT does
    /// not compute: rope scaling, sliding-window attention, mixtures of experts, other activations,
    /// biases on only some linear layers.
    public static func readConfig(_ directory: URL) throws -> Config {
        let file = directory.appendingPathComponent("config.json")
        guard let json = try? JSONSerialization.jsonObject(with: Data(contentsOf: file)) as? [String: Any] else {
            throw CheckpointError("\(file.path): not a readable JSON object")
        }
        func refuse(_ key: String, _ expected: String) -> CheckpointError {
            CheckpointError("\(file.path): \"\(key)\" must be \(expected) for a Megatron GPT, found \(json[key].map { "\($0)" } ?? "nothing")")
        }
        func present(_ key: String) -> Any? { json[key].flatMap { $0 is NSNull ? nil : $0 } }
        func integer(_ key: String, default value: Int? = nil) throws -> Int {
            guard let found = present(key) else {
                if let value { return value }
                throw CheckpointError("\(file.path): \"\(key)\" must be a positive integer, found nothing")
            }
            guard let integer = found as? Int, integer > 0 else { throw refuse(key, "a positive integer") }
            return integer
        }
        func number(_ key: String, in object: [String: Any]? = nil, default value: Double) throws -> Double {
            guard let found = (object ?? json)[key], !(found is NSNull) else { return value }
            guard let number = (found as? NSNumber)?.doubleValue, number > 0 else { throw refuse(key, "a positive number") }
            return number
        }
        func flag(_ key: String, default value: Bool) throws -> Bool {
            guard let found = present(key) else { return value }
            guard let flag = found as? Bool else { throw refuse(key, "true or false") }
            return flag
        }

        guard let family = (json["model_type"] as? String).flatMap(Family.init(rawValue:)) else {
            throw refuse("model_type", Family.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ") + " or \"gpt2\"")
        }
        for key in ["num_local_experts", "num_experts", "num_experts_per_tok", "moe_intermediate_size"] where present(key) != nil {
            throw refuse(key, "absent (mixture-of-experts layers are not built)")
        }
        guard ["silu", "swish"].contains(json["hidden_act"] as? String ?? "silu") else { throw refuse("hidden_act", "\"silu\"") }

        // Rotary embedding: transformers 5 writes rope_parameters {rope_theta, rope_type}; 4.x writes
        // rope_theta and rope_scaling {type or rope_type, …} at the top level.
        var ropeTheta = try number("rope_theta", default: 10000), ropeScalingFactor: Float?
        for key in ["rope_parameters", "rope_scaling"] {
            guard let value = present(key) else { continue }
            guard let rope = value as? [String: Any] else { throw refuse(key, "an object") }
            let kind = (rope["rope_type"] ?? rope["type"]) as? String ?? "default"
            switch kind {
            case "default":
                break
            case "llama3":
                // Megatron's --use-rope-scaling fixes the frequency bands at Llama 3.1's.
                for (field, expected) in [("low_freq_factor", 1.0), ("high_freq_factor", 4.0), ("original_max_position_embeddings", 8192.0)] {
                    guard (rope[field] as? NSNumber)?.doubleValue == expected else {
                        throw CheckpointError("\(file.path): \"\(key)\".\"\(field)\" must be \(expected) (Llama 3.1's, as Megatron's "
                                              + "--use-rope-scaling), found \(rope[field].map { "\($0)" } ?? "nothing")")
                    }
                }
                ropeScalingFactor = Float(try number("factor", in: rope, default: 8))
            default:
                throw CheckpointError("\(file.path): \"\(key)\" of type \"\(kind)\" is not implemented (only \"default\" and Llama 3.1's \"llama3\")")
            }
            if let factor = rope["partial_rotary_factor"], (factor as? NSNumber)?.doubleValue != 1 {
                throw CheckpointError("\(file.path): \"\(key)\".\"partial_rotary_factor\" must be 1 (all of each head rotates), found \(factor)")
            }
            ropeTheta = try number("rope_theta", in: rope, default: ropeTheta)
        }
        if let factor = present("partial_rotary_factor"), (factor as? NSNumber)?.doubleValue != 1 { throw refuse("partial_rotary_factor", "1") }

        let maxPositions = try integer("max_position_embeddings")
        switch family {
        case .mistral:
            // transformers' MistralConfig slides a 4096-token window when the key is absent; a window
            // no shorter than the context changes nothing.
            let window = json.keys.contains("sliding_window") ? present("sliding_window") : 4096
            if let window, ((window as? Int) ?? 0) < maxPositions {
                throw refuse("sliding_window", "null or at least max_position_embeddings \(maxPositions) (sliding-window attention is not built)")
            }
        case .qwen2:
            if try flag("use_sliding_window", default: false) { throw refuse("use_sliding_window", "false (sliding-window attention is not built)") }
            if let types = json["layer_types"] as? [String], types.contains(where: { $0 != "full_attention" }) {
                throw refuse("layer_types", "only \"full_attention\" (sliding-window attention is not built)")
            }
        case .llama:
            break
        }

        let attentionBias = try flag("attention_bias", default: false), mlpBias = try flag("mlp_bias", default: false)
        if family == .llama, attentionBias != mlpBias {
            throw refuse(attentionBias ? "mlp_bias" : "attention_bias",
                         "\(attentionBias) as \(attentionBias ? "attention_bias" : "mlp_bias") (Megatron biases all linear layers or none but QKV)")
        }
        let heads = try integer("num_attention_heads"), hidden = try integer("hidden_size")
        return Config(family: family, numLayers: try integer("num_hidden_layers"), hiddenSize: hidden,
                      ffnHiddenSize: try integer("intermediate_size"), numAttentionHeads: heads,
                      numQueryGroups: try integer("num_key_value_heads", default: family.defaultKeyValueHeads(heads: heads)),
                      kvChannels: try integer("head_dim", default: hidden / heads), maxPositionEmbeddings: maxPositions,
                      vocabSize: try integer("vocab_size"), normEpsilon: Float(try number("rms_norm_eps", default: 1e-6)),
                      rotaryBase: Float(ropeTheta), ropeScalingFactor: ropeScalingFactor, tiedEmbeddings: try flag("tie_word_embeddings", default: false),
                      addBiasLinear: family == .llama && attentionBias, addQKVBias: family == .qwen2)
    }

    /// How one Megatron parameter is made of Hugging Face tensors.
    enum Source {
        /// One tensor, the same values.
        case same(String)
        /// One vocabulary matrix, padded to Megatron's rows.
        case paddedRows(String)
        /// q, k and v (weights or biases) fused per query group.
        case qkv(q: String, k: String, v: String)
        /// Two tensors stacked along rows: fc1's [gate; up].
        case stacked(String, String)
    }

    static func source(of megatronName: String) throws -> Source {
        switch megatronName {
        case "embedding.word_embeddings.weight": return .paddedRows("model.embed_tokens.weight")
        case "output_layer.weight": return .paddedRows("lm_head.weight")
        case "decoder.final_layernorm.weight": return .same("model.norm.weight")
        default: break
        }
        let parts = megatronName.split(separator: ".").map(String.init)
        guard parts.count >= 5, parts[0] == "decoder", parts[1] == "layers" else {
            throw CheckpointError("no Hugging Face Llama tensor holds \(megatronName)")
        }
        let layer = "model.layers.\(parts[2]).", field = parts.last!, module = parts[3 ..< parts.count - 1].joined(separator: ".")
        switch module {
        case "input_layernorm": return .same(layer + "input_layernorm." + field)
        case "pre_mlp_layernorm": return .same(layer + "post_attention_layernorm." + field)
        case "self_attention.linear_qkv":
            let a = layer + "self_attn."
            return .qkv(q: a + "q_proj." + field, k: a + "k_proj." + field, v: a + "v_proj." + field)
        case "self_attention.linear_proj": return .same(layer + "self_attn.o_proj." + field)
        case "mlp.linear_fc1": return .stacked(layer + "mlp.gate_proj." + field, layer + "mlp.up_proj." + field)
        case "mlp.linear_fc2": return .same(layer + "mlp.down_proj." + field)
        default: throw CheckpointError("no Hugging Face Llama tensor holds \(megatronName)")
        }
    }

    /// Row r of Megatron's fused QKV (of (heads + 2·groups)·d) as (0 q, 1 k, 2 v; row in that tensor).
    static func qkvSource(_ row: Int, _ config: TransformerConfig) -> (part: Int, row: Int) {
        let d = config.kvChannels, headsPerGroup = config.numAttentionHeads / config.numQueryGroups
        let perGroup = (headsPerGroup + 2) * d, group = row / perGroup, offset = row % perGroup
        if offset < headsPerGroup * d { return (0, group * headsPerGroup * d + offset) }
        if offset < (headsPerGroup + 1) * d { return (1, group * d + offset - headsPerGroup * d) }
        return (2, group * d + offset - (headsPerGroup + 1) * d)
    }

    /// Copies the weights of the model in `directory` into `parameters`, laid out by `config`'s
    /// ParameterLayout; `config` must be `readConfig(directory).gptConfig(…)`.
    public static func importWeights(from directory: URL, config: TransformerConfig, into parameters: UnsafeMutablePointer<Float>) throws {
        let weights = try HuggingFaceWeights(directory: directory)
        let d = config.kvChannels, columns = { (entry: ParameterLayout.Entry) in entry.shape.dropFirst().reduce(1, *) }
        for entry in ParameterLayout(config).entries {
            let out = parameters + entry.offset, inner = columns(entry)
            switch try source(of: entry.name) {
            case .same(let name):
                out.update(from: try weights.floats(name, shape: entry.shape, for: entry.name), count: entry.count)
            case .paddedRows(let name):
                let rows = weights.shape(name)?.first ?? 0
                let values = try weights.floats(name, shape: [rows, config.hiddenSize], for: entry.name)
                try HuggingFaceWeights.padVocabulary(values, rows: rows, into: out, shape: entry.shape, name: name, in: directory)
            case .qkv(let q, let k, let v):
                let tail = Array(entry.shape.dropFirst())
                let parts = [try weights.floats(q, shape: [config.attentionWidth] + tail, for: entry.name),
                             try weights.floats(k, shape: [config.numQueryGroups * d] + tail, for: entry.name),
                             try weights.floats(v, shape: [config.numQueryGroups * d] + tail, for: entry.name)]
                for row in 0 ..< entry.shape[0] {
                    let (part, source) = qkvSource(row, config)
                    parts[part].withUnsafeBufferPointer { (out + row * inner).update(from: $0.baseAddress! + source * inner, count: inner) }
                }
            case .stacked(let gate, let up):
                let half = [config.ffnHiddenSize] + entry.shape.dropFirst()
                let gateValues = try weights.floats(gate, shape: half, for: entry.name)
                out.update(from: gateValues, count: gateValues.count)
                (out + gateValues.count).update(from: try weights.floats(up, shape: half, for: entry.name), count: gateValues.count)
            }
        }
    }

    /// Writes `parameters` (laid out by `config`) as a Hugging Face model of `family`: `config.json`
    /// for `vocabSize` tokens (the padding rows dropped) and `model.safetensors` (fp32), the
    /// tensors transformers' `from_pretrained` loads.
    public static func exportWeights(_ parameters: UnsafePointer<Float>, config: TransformerConfig, family: Family, vocabSize: Int,
                                     to directory: URL) throws {
        try checkExportable(config, as: family)
        guard vocabSize >= 1, vocabSize <= config.paddedVocabSize else {
            throw CheckpointError("--vocab-size \(vocabSize): expected 1 ... \(config.paddedVocabSize) (the model's padded vocabulary)")
        }
        let d = config.kvChannels
        var tensors: [String: SafeTensors.Entry] = [:]
        func put(_ name: String, _ shape: [Int], _ values: UnsafePointer<Float>) {
            tensors[name] = SafeTensors.Entry(dtype: "F32", shape: shape,
                                              data: Data(bytes: values, count: shape.reduce(1, *) * MemoryLayout<Float>.size))
        }
        for entry in ParameterLayout(config).entries {
            let values = parameters + entry.offset, tail = Array(entry.shape.dropFirst()), inner = tail.reduce(1, *)
            switch try source(of: entry.name) {
            case .same(let name): put(name, entry.shape, values)
            case .paddedRows(let name): put(name, [vocabSize] + tail, values)
            case .qkv(let q, let k, let v):
                var parts = [[Float](repeating: 0, count: config.attentionWidth * inner),
                             [Float](repeating: 0, count: config.numQueryGroups * d * inner),
                             [Float](repeating: 0, count: config.numQueryGroups * d * inner)]
                for row in 0 ..< entry.shape[0] {
                    let (part, target) = qkvSource(row, config)
                    for c in 0 ..< inner { parts[part][target * inner + c] = values[row * inner + c] }
                }
                for (name, part) in zip([q, k, v], parts) { put(name, [part.count / inner] + tail, part) }
            case .stacked(let gate, let up):
                put(gate, [config.ffnHiddenSize] + tail, values)
                put(up, [config.ffnHiddenSize] + tail, values + config.ffnHiddenSize * inner)
            }
        }
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try SafeTensors.write(tensors, metadata: ["format": "pt"], to: directory.appendingPathComponent("model.safetensors"))
        var json: [String: Any] = [
            "architectures": [family.architecture], "model_type": family.rawValue, "hidden_act": "silu",
            "num_hidden_layers": config.numLayers, "hidden_size": config.hiddenSize, "intermediate_size": config.ffnHiddenSize,
            "num_attention_heads": config.numAttentionHeads, "num_key_value_heads": config.numQueryGroups,
            "max_position_embeddings": config.maxPositionEmbeddings, "vocab_size": vocabSize,
            "rms_norm_eps": Double("\(config.normEpsilon)")!, "rope_theta": Double("\(config.rotaryBase)")!,
            "rope_scaling": config.ropeScalingFactor.map { factor -> Any in
                ["rope_type": "llama3", "factor": Double("\(factor)")!, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                 "original_max_position_embeddings": 8192]
            } ?? NSNull(),
            "tie_word_embeddings": !config.untieEmbeddingsAndOutputWeights, "attention_dropout": 0.0,
            "initializer_range": Double("\(config.initMethodStd)")!, "torch_dtype": "float32", "use_cache": true,
        ]
        if config.kvChannels * config.numAttentionHeads != config.hiddenSize || family != .qwen2 { json["head_dim"] = config.kvChannels }
        switch family {
        case .llama: (json["attention_bias"], json["mlp_bias"]) = (config.addBiasLinear, config.addBiasLinear)
        case .mistral: json["sliding_window"] = NSNull()
        case .qwen2: (json["use_sliding_window"], json["sliding_window"]) = (false, NSNull())
        }
        try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
            .write(to: directory.appendingPathComponent("config.json"))
    }

    /// Throws naming what keeps `config` from being a model of `family`.
    static func checkExportable(_ config: TransformerConfig, as family: Family) throws {
        let biases: (all: Bool, qkvOnly: Bool) = switch family {
        case .llama: (config.addBiasLinear, false)
        case .mistral: (false, false)
        case .qwen2: (false, true)
        }
        let mismatches = [
            (config.positionEmbedding == .rope, "--position-embedding-type rope"), (config.rotaryPercent >= 1, "--rotary-percent 1"),
            (config.normalization == .rmsNorm, "--normalization RMSNorm"), (config.swiglu, "--swiglu"),
            (config.addBiasLinear == biases.all, biases.all ? "biases on linear layers" : "--disable-bias-linear"),
            (config.addQKVBias == biases.qkvOnly || config.addBiasLinear, biases.qkvOnly ? "--add-qkv-bias" : "no --add-qkv-bias"),
        ].filter { !$0.0 }.map(\.1)
        guard mismatches.isEmpty else {
            throw CheckpointError("the checkpoint is not a \(family.architecture): it needs \(mismatches.joined(separator: ", "))")
        }
    }

    /// The family a checkpoint's architecture exports as: Qwen2 with QKV-only biases, else Llama.
    public static func family(of config: TransformerConfig) -> Family { config.addQKVBias && !config.addBiasLinear ? .qwen2 : .llama }
}
