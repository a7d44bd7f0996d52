import MegatronCore

extension ParameterLayout {
    /// Fills `parameters`, laid out as this rank's layout, as Megatron initialises a model: weights
    /// N(0, σ), the output projections of attention and MLP (linear_proj, linear_fc2)
    /// N(0, σ/√(2·layers)), biases 0, norm weights 1, σ = --init-method-std. Each parameter draws from
    /// the stream of its index in `wholeLayout` (the same model on one rank) and a shard is cut from
    /// the whole tensor's draw, so every parallel layout starts from the same model.
    func initialize(_ parameters: Tensor, seed: UInt64, wholeLayout: ParameterLayout, config: TransformerConfig) {
        let sigma = config.initMethodStd
        let scaled = sigma / (2 * Float(config.numLayers)).squareRoot()
        let streams = Dictionary(uniqueKeysWithValues: wholeLayout.entries.enumerated().map { ($1.name, UInt64($0)) })
        for entry in entries {
            let wholeCount = entry.wholeShape.reduce(1, *)
            let values = entry.isSharded ? .allocate(capacity: wholeCount)
                : UnsafeMutableBufferPointer(start: parameters.floats + entry.offset, count: entry.count)
            defer {
                if entry.isSharded {
                    for piece in entry.pieces {
                        (parameters.floats + entry.offset + piece.local).update(from: values.baseAddress! + piece.whole, count: piece.count)
                    }
                    values.deallocate()
                }
            }
            if entry.name.hasSuffix(".bias") {
                values.update(repeating: 0)
            } else if entry.name.hasSuffix("layernorm.weight") || entry.name.hasSuffix("layer_norm.weight") {
                values.update(repeating: 1)
            } else {
                let std = entry.name.hasSuffix("linear_proj.weight") || entry.name.hasSuffix("linear_fc2.weight") ? scaled : sigma
                var normal = GaussianStream(seed: seed, stream: streams[entry.name]!)
                for i in values.indices { values[i] = std * normal.next() }
            }
        }
    }
}
