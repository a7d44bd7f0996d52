import MegatronCore

/// One tensor of the model: its values and its gradient, views at the same offset of the model's
/// flat parameter and gradient buffers (`ParameterLayout`).
struct Parameter: Sendable {
    let value: Tensor
    let gradient: Tensor
}

/// A model's parameters by their Megatron-core names, as views of its two flat buffers, or of the
/// fp32 window of the span that holds them (16-bit storage, `ParameterWindow`).
struct ParameterViews {
    let layout: ParameterLayout
    let parameters: Tensor
    let gradients: Tensor
    /// Spans whose parameters are viewed in a window instead.
    var windows: [ParameterWindow.Slot] = []

    /// The parameter `name`, which this rank's layout must hold.
    func callAsFunction(_ name: String) throws -> Parameter {
        guard let p = try optional(name) else { throw TensorError("model: no parameter \(name)") }
        return p
    }

    /// The parameter `name`, or nil where this rank's layout has none (a bias the model goes without,
    /// a tensor of another pipeline stage).
    func optional(_ name: String) throws -> Parameter? {
        guard let e = layout.entry(name) else { return nil }
        if let slot = windows.first(where: { $0.range.contains(e.offset) }) {
            let offset = e.offset - slot.range.lowerBound
            return Parameter(value: try slot.window.values.view(offset: offset, shape: e.shape),
                             gradient: try slot.window.gradients.view(offset: offset, shape: e.shape))
        }
        return Parameter(value: try parameters.view(offset: e.offset, shape: e.shape),
                         gradient: try gradients.view(offset: e.offset, shape: e.shape))
    }

    /// The window slot of exactly the parameters under `prefix` ("decoder.layers.3."), if any.
    func window(ofPrefix prefix: String) -> ParameterWindow.Slot? {
        let range = layout.range(ofPrefix: prefix)
        return windows.first { $0.range == range }
    }
}
