import MegatronCore

/// What a forward kept of one layer for the backward, as `ActivationRecompute` says.
enum SavedLayer {
    /// Its activations, the parts `ActivationRecompute.Module` names missing when recomputed.
    case activations(TransformerLayer.PartialActivations)
    /// The input [rows, h] of a chunk of layers recomputed together (full recomputation).
    case chunkInput(Tensor)
    /// A layer inside such a chunk.
    case insideChunk
}

extension Array where Element == TransformerLayer {
    /// What to keep of the activations `a` of layer `index` of these layers (Megatron counts the
    /// recomputed layers within each pipeline stage).
    func save(_ a: TransformerLayer.Activations, layer index: Int, recompute: ActivationRecompute) -> SavedLayer {
        switch recompute.kept(layer: index, of: count) {
        case .activations(let recomputed): return .activations(TransformerLayer.PartialActivations(a, recomputed: recomputed))
        case .chunkInput: return .chunkInput(a.attention.input)
        case .nothing: return .insideChunk
        }
    }

    /// Layer `index`'s whole activations for its backward (`saved` holding every layer's), computing
    /// again what the forward did not keep. A layer inside a chunk comes from `chunk`, which the
    /// chunk's last layer fills by running the chunk's forward again from its input.
    func restore(_ saved: [SavedLayer], layer index: Int, chunk: inout [Int: TransformerLayer.Activations],
                 pass: LayerPass) throws -> TransformerLayer.Activations {
        switch saved[index] {
        case .activations(let partial):
            return try self[index].restore(partial, pass: pass)
        case .chunkInput, .insideChunk:
            if let a = chunk.removeValue(forKey: index) { return a }
            var start = index
            while case .insideChunk = saved[start] { start -= 1 }
            guard case .chunkInput(var x) = saved[start] else {
                throw TensorError("activation recomputation: layer \(self[index].number) has no chunk input")
            }
            for i in start ... index {
                let (output, a) = try self[i].forward(x, pass: pass)
                chunk[i] = a
                x = output
            }
            return chunk.removeValue(forKey: index)!
        }
    }
}
