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

    /// Views of `parameters` and `gradients`, laid out by `layout`.
    init(layout: ParameterLayout, parameters: Tensor, gradients: Tensor) {
        self.layout = layout
        self.parameters = parameters
        self.gradients = gradients
    }

    /// Views of the two flat buffers; under 16-bit `storage`, of fp32 windows for all but the
    /// vocabulary-sized tables: one window shared by each group of alike transformer layers of
    /// `layers` (the spans of their prefixes: as large as the group's largest), and one for each
    /// non-empty span of `spans` (the small tables, norms and heads around them).
    init(layout: ParameterLayout, parameters: Tensor, gradients: Tensor, storage: ParameterStorage, layers: [[Range<Int>]],
         spans: [Range<Int>], on device: CPUDevice) throws {
        self.init(layout: layout, parameters: parameters, gradients: gradients)
        guard storage.isSixteenBit else { return }
        for group in layers {
            guard let largest = group.map(\.count).max() else { continue }
            let window = try ParameterWindow(capacity: largest, parameters: parameters, gradients: gradients, on: device)
            windows += group.map { ParameterWindow.Slot(window: window, range: $0) }
        }
        for range in spans where !range.isEmpty {
            let window = try ParameterWindow(capacity: range.count, parameters: parameters, gradients: gradients, on: device)
            windows.append(ParameterWindow.Slot(window: window, range: range))
        }
    }

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
    func window(ofPrefix prefix: String) -> ParameterWindow.Slot? { window(of: layout.range(ofPrefix: prefix)) }

    /// The window slot of exactly `range` of the flat buffers, if any.
    func window(of range: Range<Int>) -> ParameterWindow.Slot? { windows.first { $0.range == range } }
}
