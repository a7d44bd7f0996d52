import MegatronCore

/// Views of one flat buffer (the parameters, or their gradients at the same offsets) as the tensors
/// of a GPT model.
struct GPTWeights: Sendable {
    struct Layer: Sendable {
        let inputNormWeight: Tensor, inputNormBias: Tensor?
        let qkvWeight: Tensor, qkvBias: Tensor?
        let projWeight: Tensor, projBias: Tensor?
        let mlpNormWeight: Tensor, mlpNormBias: Tensor?
        let fc1Weight: Tensor, fc1Bias: Tensor?
        let fc2Weight: Tensor, fc2Bias: Tensor?
    }

    let wordEmbedding: Tensor
    let positionEmbedding: Tensor?
    let layers: [Layer]
    let finalNormWeight: Tensor, finalNormBias: Tensor?
    /// The output layer's weight: the word embedding itself unless untied.
    let outputWeight: Tensor

    init(buffer: Tensor, layout: ParameterLayout, config: GPTConfig) throws {
        func view(_ name: String) throws -> Tensor {
            guard let e = layout.entry(name) else { throw TensorError("GPT model: no parameter \(name)") }
            return try buffer.view(offset: e.offset, shape: e.shape)
        }
        func optional(_ name: String) throws -> Tensor? { layout.entry(name) == nil ? nil : try view(name) }
        wordEmbedding = try view("embedding.word_embeddings.weight")
        positionEmbedding = try optional("embedding.position_embeddings.weight")
        layers = try (0 ..< config.numLayers).map { i in
            let p = "decoder.layers.\(i)."
            return Layer(
                inputNormWeight: try view(p + "input_layernorm.weight"), inputNormBias: try optional(p + "input_layernorm.bias"),
                qkvWeight: try view(p + "self_attention.linear_qkv.weight"), qkvBias: try optional(p + "self_attention.linear_qkv.bias"),
                projWeight: try view(p + "self_attention.linear_proj.weight"), projBias: try optional(p + "self_attention.linear_proj.bias"),
                mlpNormWeight: try view(p + "pre_mlp_layernorm.weight"), mlpNormBias: try optional(p + "pre_mlp_layernorm.bias"),
                fc1Weight: try view(p + "mlp.linear_fc1.weight"), fc1Bias: try optional(p + "mlp.linear_fc1.bias"),
                fc2Weight: try view(p + "mlp.linear_fc2.weight"), fc2Bias: try optional(p + "mlp.linear_fc2.bias"))
        }
        finalNormWeight = try view("decoder.final_layernorm.weight")
        finalNormBias = try optional("decoder.final_layernorm.bias")
        outputWeight = try optional("output_layer.weight") ?? wordEmbedding
    }
}
