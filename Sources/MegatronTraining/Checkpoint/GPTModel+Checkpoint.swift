import Foundation
import MegatronCore
import MegatronModels

extension GPTModel {
    /// The whole model of the latest checkpoint in `directory` (a training run's of any layout, or
    /// one `import-hf` wrote), its architecture read from the checkpoint, on one process: what
    /// `generate`, `serve` and `export-hf` run.
    public static func latestCheckpoint(in directory: URL, on device: CPUDevice) throws -> (model: GPTModel, iteration: Int) {
        guard let iteration = try Checkpoint.latestIteration(in: directory) else {
            throw CheckpointError("--load \(directory.path): no checkpoint there (no latest_checkpointed_iteration.txt)")
        }
        let config = try Checkpoint.progress(in: directory, iteration: iteration).model
        let model = try GPTModel(config: config, seed: nil, on: device)
        try Checkpoint.readParameters(from: directory, iteration: iteration, layout: model.layout, into: model.parameters)
        return (model, iteration)
    }
}
