import MegatronCore

/// Views of one flat buffer (the parameters, or their gradients at the same offsets) as the tensors
/// of a GPT model, or of one pipeline stage of it.
struct GPTWeights: Sendable {
    struct Layer: Sendable {
        let inputNormWeight: Tensor, inputNormBias: Tensor?
        let qkvWeight: Tensor, qkvBias: Tensor?
        let projWeight: Tensor, projBias: Tensor?
        let mlpNormWeight: Tensor, mlpNormBias: Tensor?
        let fc1Weight: Tensor, fc1Bias: Tensor?
        let fc2Weight: Tensor, fc2Bias: Tensor?
    }

    /// The word embedding: on the first stage, and the last stage's copy under tied embeddings.
    let wordEmbedding: Tensor?
    let positionEmbedding: Tensor?
    /// This stage's layers, the first being layer `firstLayer` of the model.
    let layers: [Layer]
    let firstLayer: Int
    /// On the last stage.
    let finalNormWeight: Tensor?, finalNormBias: Tensor?
    /// The output layer's weight, on the last stage: the word embedding (or its copy) unless untied.
    let outputWeight: Tensor?

    init(buffer: Tensor, layout: ParameterLayout, config: GPTConfig) throws {
        func view(_ name: String) throws -> Tensor {
            guard let e = layout.entry(name) else { throw TensorError("GPT model: no parameter \(name)") }
            return try buffer.view(offset: e.offset, shape: e.shape)
        }
        func optional(_ name: String) throws -> Tensor? { layout.entry(name) == nil ? nil : try view(name) }
        wordEmbedding = try optional("embedding.word_embeddings.weight")
        positionEmbedding = try optional("embedding.position_embeddings.weight")
        let stageLayers = PipelineStage.layers(config, stage: layout.pipelineStage, of: layout.pipelineStages)
        firstLayer = stageLayers.lowerBound
        layers = try stageLayers.map { i in
            let p = "decoder.layers.\(i)."
            return Layer(
                inputNormWeight: try view(p + "input_layernorm.weight"), inputNormBias: try optional(p + "input_layernorm.bias"),
                qkvWeight: try view(p + "self_attention.linear_qkv.weight"), qkvBias: try optional(p + "self_attention.linear_qkv.bias"),
                projWeight: try view(p + "self_attention.linear_proj.weight"), projBias: try optional(p + "self_attention.linear_proj.bias"),
                mlpNormWeight: try view(p + "pre_mlp_layernorm.weight"), mlpNormBias: try optional(p + "pre_mlp_layernorm.bias"),
                fc1Weight: try view(p + "mlp.linear_fc1.weight"), fc1Bias: try optional(p + "mlp.linear_fc1.bias"),
                fc2Weight: try view(p + "mlp.linear_fc2.weight"), fc2Bias: try optional(p + "mlp.linear_fc2.bias"))
        }
        finalNormWeight = try optional("decoder.final_layernorm.weight")
        finalNormBias = try optional("decoder.final_layernorm.bias")
        outputWeight = finalNormWeight == nil ? nil : try optional("output_layer.weight") ?? wordEmbedding
    }

    /// Layer `layer` of the model (which this stage must hold).
    func layer(_ layer: Int) -> Layer { layers[layer - firstLayer] }
}
