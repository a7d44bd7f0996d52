import MegatronCore

extension ParameterLayout {
    /// Fills `parameters`, laid out as this rank's layout, as Megatron initialises a model: weights
    /// N(0, σ), the output projections of attention and MLP (linear_proj, linear_fc2)
    /// N(0, σ/√(2·layers)), biases 0, norm weights 1, σ = --init-method-std. Each parameter draws from
    /// the stream of its index in `wholeLayout` (the same model on one rank) and a shard is cut from
    /// the whole tensor's draw, so every parallel layout starts from the same model. 16-bit
    /// `parameters` take each value rounded to nearest.
    func initialize(_ parameters: Tensor, seed: UInt64, wholeLayout: ParameterLayout, config: TransformerConfig,
                    on device: CPUDevice) throws {
        let sigma = config.initMethodStd
        let scaled = sigma / (2 * Float(config.numLayers)).squareRoot()
        let streams = Dictionary(uniqueKeysWithValues: wholeLayout.entries.enumerated().map { ($1.name, UInt64($0)) })
        for entry in entries {
            let wholeCount = entry.wholeShape.reduce(1, *), direct = !entry.isSharded && parameters.dtype == .float32
            let values = direct ? UnsafeMutableBufferPointer(start: parameters.floats + entry.offset, count: entry.count)
                : .allocate(capacity: wholeCount)
            defer { if !direct { values.deallocate() } }
            if entry.name.hasSuffix(".bias") {
                values.update(repeating: 0)
            } else if entry.name.hasSuffix("layernorm.weight") || entry.name.hasSuffix("layer_norm.weight") {
                values.update(repeating: 1)
            } else {
                let std = entry.name.hasSuffix("linear_proj.weight") || entry.name.hasSuffix("linear_fc2.weight") ? scaled : sigma
                var normal = GaussianStream(seed: seed, stream: streams[entry.name]!)
                for i in values.indices { values[i] = std * normal.next() }
            }
            guard !direct else { continue }
            for piece in entry.pieces {
                try parameters.view(offset: entry.offset + piece.local, shape: [piece.count])
                    .assign(converting: UnsafeBufferPointer(rebasing: values[piece.whole ..< piece.whole + piece.count]), on: device)
            }
        }
    }
}
