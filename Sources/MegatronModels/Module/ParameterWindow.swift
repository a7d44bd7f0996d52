import MegatronCore

/// Under 16-bit parameter storage (--bf16, --fp16), the fp32 copy of one part of a model that the
/// fp32 kernels compute on: a transformer layer (every layer of a stage shares one window, being
/// alike), the position embedding, the final norm. The model's flat buffers keep the parameters in
/// 16 bits, the gradients in 16 bits or fp32 (`ParameterStorage`); a module converts its span of the
/// parameters into its window before it computes (`Slot.load`), and its backward accumulates into
/// the window's zeroed gradients and then adds them into the model's (`Slot.endBackward`). So a rank
/// holds fp32 copies of one layer and a few small tables, not of the model.
///
/// The vocabulary-sized tables (the word embedding, an untied output layer) are too large for a
/// window: their modules read and write the 16-bit buffers directly (`Embedding`, `StoredWeightGEMM`).
final class ParameterWindow: @unchecked Sendable {
    /// fp32 copies of the parameters of the span loaded, and their gradients, from element 0.
    let values: Tensor
    let gradients: Tensor
    /// The model's flat buffers.
    let storedParameters: Tensor
    let storedGradients: Tensor
    let device: CPUDevice

    /// A window of `capacity` elements over the model's buffers.
    init(capacity: Int, parameters: Tensor, gradients: Tensor, on device: CPUDevice) throws {
        values = try Tensor(shape: [capacity], on: device)
        self.gradients = try Tensor(shape: [capacity], on: device)
        storedParameters = parameters
        storedGradients = gradients
        self.device = device
    }

    /// A module's span of the flat buffers and the window it computes in.
    struct Slot {
        let window: ParameterWindow
        let range: Range<Int>

        /// The window's values ← the span's parameters in fp32. Before every forward (and
        /// recomputation): the window holds whichever module loaded last.
        func load() throws {
            try window.values.view(offset: 0, shape: [range.count])
                .assign(converting: window.storedParameters.view(offset: range.lowerBound, shape: [range.count]), on: window.device)
        }

        /// Before the module's backward: the window's gradients zeroed. Its values must be the
        /// module's already: its forward loaded them, or for a shared window (the layers') the
        /// restoring of its activations did (`Array<TransformerLayer>.restore`).
        func beginBackward() throws {
            try window.gradients.view(offset: 0, shape: [range.count]).zero()
        }

        /// After the module's backward: its gradients in the window added into the model's.
        func endBackward() throws {
            try window.storedGradients.view(offset: range.lowerBound, shape: [range.count])
                .accumulate(window.gradients.view(offset: 0, shape: [range.count]), on: window.device)
        }
    }
}
