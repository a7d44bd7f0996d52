import Foundation
import MegatronCore
import MegatronModels
import MegatronParallel

/// Megatron's p2p_communication: the hidden states a stage sends to the next stage and the
/// gradients it sends to the previous, around the ring of pipeline stages (the last stage's next
/// is the first: under the interleaved schedule its model chunk j feeds the first stage's chunk
/// j + 1). Each step posts its sends and receives together (`Communicator.exchange`, Megatron's
/// batched ops), so stages that post matching steps cannot deadlock on each other.
final class PipelineCommunication {
    let stage: PipelineStage
    /// The shape of every message: the hidden states of one micro-batch.
    let shape: [Int]
    let device: CPUDevice
    /// Seconds spent in `communicate` so far: the transfers and, mostly, the wait for the other
    /// stages (the pipeline bubble).
    private(set) var seconds = 0.0

    init(stage: PipelineStage, shape: [Int], device: CPUDevice) {
        self.stage = stage
        self.shape = shape
        self.device = device
    }

    private var next: Int { (stage.index + 1) % stage.count }
    private var previous: Int { (stage.index + stage.count - 1) % stage.count }

    /// Sends `toNext` (activations) to the next stage and `toPrevious` (gradients) to the previous,
    /// receiving activations from the previous stage when `receivePrevious` and gradients from the
    /// next when `receiveNext`, all at once; returns what it received.
    func communicate(toNext: Tensor? = nil, toPrevious: Tensor? = nil, receivePrevious: Bool = false,
                     receiveNext: Bool = false) throws -> (fromPrevious: Tensor?, fromNext: Tensor?) {
        let fromPrevious = receivePrevious ? try Tensor(shape: shape, on: device, zeroed: false) : nil
        let fromNext = receiveNext ? try Tensor(shape: shape, on: device, zeroed: false) : nil
        var transfers: [PeerTransfer<Float>] = []
        if let toNext { transfers.append(.send(try message(toNext), to: next, tag: MessageTag.pipelineForward)) }
        if let toPrevious { transfers.append(.send(try message(toPrevious), to: previous, tag: MessageTag.pipelineBackward)) }
        if let fromPrevious {
            transfers.append(.receive(UnsafeMutableBufferPointer(start: fromPrevious.floats, count: fromPrevious.count), from: previous,
                                      tag: MessageTag.pipelineForward))
        }
        if let fromNext {
            transfers.append(.receive(UnsafeMutableBufferPointer(start: fromNext.floats, count: fromNext.count), from: next,
                                      tag: MessageTag.pipelineBackward))
        }
        guard !transfers.isEmpty else { return (nil, nil) }
        let start = DispatchTime.now().uptimeNanoseconds
        try stage.group.exchange(transfers)
        seconds += Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        return (fromPrevious, fromNext)
    }

    /// `tensor`'s elements, checked to be one message's.
    private func message(_ tensor: Tensor) throws -> UnsafeBufferPointer<Float> {
        guard tensor.shape == shape else {
            throw TensorError("pipeline stage \(stage.index): a message of shape \(tensor.shape), expected \(shape)")
        }
        return UnsafeBufferPointer(start: tensor.floats, count: tensor.count)
    }
}
