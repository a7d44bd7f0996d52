import Foundation
import MegatronCore
import MegatronModels

extension T5Model {
    /// The model of the latest checkpoint in `directory`, whole on one rank, and its iteration.
    public static func latestCheckpoint(in directory: URL, on device: CPUDevice) throws -> (model: T5Model, iteration: Int) {
        guard let iteration = try Checkpoint.latestIteration(in: directory) else {
            throw CheckpointError("--load \(directory.path): no checkpoint there (no latest_checkpointed_iteration.txt)")
        }
        let config = try Checkpoint.progress(in: directory, iteration: iteration, architecture: T5Config.self).model
        let model = try T5Model(config: config, seed: nil, on: device)
        try Checkpoint.readParameters(from: directory, iteration: iteration, layout: model.layout, into: model.parameters)
        return (model, iteration)
    }
}
