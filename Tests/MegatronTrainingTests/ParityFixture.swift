import Foundation
import MegatronCore
import MegatronModels
import MegatronTraining
import Testing

/// A reference fixture written by one of Tests/Fixtures/make_*_fixtures.py: tensors by name (the
/// weights under Megatron-core names, "grad." + name their gradients after one step, the batches as
/// int32) and JSON objects in the metadata ("config", "train").
struct ParityFixture {
    let tensors: [String: SafeTensors.Entry]
    let config: [String: Any]
    let train: [String: Any]

    /// Tests/Fixtures/`file`.
    init(_ file: String) throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/\(file)")
        let (tensors, metadata) = try SafeTensors.read(url)
        self.tensors = tensors
        func object(_ key: String) throws -> [String: Any] {
            try JSONSerialization.jsonObject(with: Data(metadata[key]!.utf8)) as! [String: Any]
        }
        config = try object("config")
        train = try object("train")
    }

    /// Copies the fixture's weights into `parameters`, laid out as `layout`.
    func copyWeights(into parameters: Tensor, layout: ParameterLayout) throws {
        for entry in layout.entries {
            let values = try tensors[entry.name]!.floats()
            #expect(values.count == entry.count, "\(entry.name)")
            values.withUnsafeBufferPointer { (parameters.floats + entry.offset).update(from: $0.baseAddress!, count: entry.count) }
        }
    }

    /// The int32 tensor `name`, flat.
    func int32s(_ name: String) -> [Int32] {
        tensors[name]!.data.withUnsafeBytes { Array($0.bindMemory(to: Int32.self)) }
    }

    /// The rows of the int32 matrix `name`.
    func rows(_ name: String) -> [[Int32]] {
        let flat = int32s(name), width = tensors[name]!.shape[1]
        return stride(from: 0, to: flat.count, by: width).map { Array(flat[$0 ..< $0 + width]) }
    }

    /// Expects every gradient in `gradients` (laid out as `layout`) within 1e-5 of the largest of
    /// the reference's `prefix` + name.
    func expectGradients(_ gradients: Tensor, layout: ParameterLayout, _ label: String, prefix: String = "grad.") throws {
        for entry in layout.entries {
            let reference = try tensors[prefix + entry.name]!.floats()
            let ours = Array(UnsafeBufferPointer(start: gradients.floats + entry.offset, count: entry.count))
            let error = zip(ours, reference).map { abs($0 - $1) }.max()! / reference.map(abs).max()!
            #expect(error <= 1e-5, "\(label): \(entry.name): relative error \(error)")
        }
    }

    /// A Trainer running the fixture's "train" iterations (train_adamw in make_gpt_fixtures.py:
    /// AdamW, no decay on 1-D parameters, clipping, Megatron's warm-up and cosine decay in samples)
    /// over `model` and `samples`, logging every line to `log`.
    func trainer<Model: PretrainingModel>(_ model: Model, samples: [Model.Sample], sequenceLength: Int,
                                          log: @escaping (String) -> Void = { _ in }) throws -> Trainer<Model> {
        let iters = train["train_iters"] as! Int, gbs = train["global_batch_size"] as! Int
        var settings = TrainingSettings(trainIters: iters, microBatchSize: train["micro_batch_size"] as! Int, globalBatchSize: gbs,
                                        sequenceLength: sequenceLength)
        settings.logInterval = iters
        var optimizer = Optimizer.Settings()
        optimizer.weightDecay = Float(train["weight_decay"] as! Double)
        optimizer.clipGrad = Float(train["clip_grad"] as! Double)
        let scheduler = OptimizerParamScheduler(maxLR: train["lr"] as! Double, minLR: train["min_lr"] as! Double,
                                                warmupSteps: Double((train["lr_warmup_iters"] as! Int) * gbs), decaySteps: iters * gbs,
                                                decayStyle: .cosine)
        return try Trainer(model: model, optimizer: try Optimizer(model: model, settings: optimizer), scheduler: scheduler,
                           settings: settings, sample: { samples[$0] }, log: log)
    }
}
