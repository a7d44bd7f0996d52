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
    /// recomputed layers within each model chunk of a pipeline stage), its token-wide tensors in `precision` (16 bits
    /// under --bf16 and --fp16; the backward computes on them in fp32 again).
    func save(_ a: TransformerLayer.Activations, layer index: Int, recompute: ActivationRecompute,
              precision: DType) throws -> SavedLayer {
        let device = self[index].device
        switch recompute.kept(layer: index, of: count) {
        case .activations(let recomputed):
            return .activations(try TransformerLayer.PartialActivations(a, recomputed: recomputed).stored(as: precision, on: device))
        case .chunkInput: return .chunkInput(try a.attention.input.stored(as: precision, on: device))
        case .nothing: return .insideChunk
        }
    }

    /// Layer `index`'s whole activations for its backward (`saved` holding every layer's), computing
    /// again what the forward did not keep. A layer inside a chunk comes from `chunk`, which the
    /// chunk's last layer fills by running the chunk's forward again from its input. Under 16-bit
    /// storage the layer's window then holds its parameters, for its backward.
    func restore(_ saved: [SavedLayer], layer index: Int, chunk: inout [Int: TransformerLayer.Activations],
                 pass: LayerPass) throws -> TransformerLayer.Activations {
        switch saved[index] {
        case .activations(let partial):
            return try self[index].restore(partial, pass: pass)
        case .chunkInput, .insideChunk:
            if let a = chunk.removeValue(forKey: index) {
                try self[index].window?.load()
                return a
            }
            var start = index
            while case .insideChunk = saved[start] { start -= 1 }
            guard case .chunkInput(let kept) = saved[start] else {
                throw TensorError("activation recomputation: layer \(self[index].number) has no chunk input")
            }
            var x = try kept.stored(as: .float32, on: self[index].device)
            for i in start ... index {
                let (output, a) = try self[i].forward(x, pass: pass)
                chunk[i] = a
                x = output
            }
            return chunk.removeValue(forKey: index)!
        }
    }
}
