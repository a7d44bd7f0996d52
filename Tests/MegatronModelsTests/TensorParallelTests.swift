import Foundation
import MegatronCore
import MegatronModels
import MegatronParallel
import Testing

/// A model split over t tensor-parallel ranks (in-process) computes what one rank computes: each
/// rank starts from its shard of the same initialisation, and after one forward and backward its
/// loss is the whole model's and its gradients are its shard of the whole model's gradients (equal
/// up to the order of the partial sums the ranks reduce). Dropout included: each rank draws its
/// heads' masks, and under sequence parallelism its rows' masks.
@Suite struct TensorParallelTests {
    /// Whole-model values at a rank's shard of `entry`.
    static func shard(_ whole: [Float], of entry: ParameterLayout.Entry, in wholeLayout: ParameterLayout) -> [Float] {
        let base = wholeLayout.entry(entry.name)!.offset
        var values = [Float](repeating: .nan, count: entry.count)
        for piece in entry.pieces {
            for i in 0 ..< piece.count { values[piece.local + i] = whole[base + piece.whole + i] }
        }
        return values
    }

    final class Failures: @unchecked Sendable {
        private let lock = NSLock()
        private(set) var messages: [String] = []
        func add(_ message: String) { lock.lock(); messages.append(message); lock.unlock() }
    }

    @Test(arguments: [(0, 2, false), (1, 2, false), (2, 2, false), (0, 4, false), (0, 2, true), (0, 4, true), (2, 2, true)])
    func shardsComputeTheWholeModel(variant: Int, tensorParallelSize t: Int, sequenceParallel: Bool) throws {
        let (name, config) = GPTModelTests.variants[variant]
        let batch = try MicroBatch(samples: samples(2, 8), on: device)
        let key = GPTModel.DropoutKey(seed: 3, iteration: 1, microBatch: 0)
        let whole = try GPTModel(config: config, seed: 7, on: device)
        let wholeLoss = try whole.forwardBackward(batch, dropout: key).mean
        let wholeParameters = whole.parameters.toFloatArray(), wholeGradients = whole.gradients.toFloatArray()
        let wholeGradNorm = try whole.wholeModelNorm(of: whole.gradients)
        let failures = Failures()
        try InProcessWorld(size: t).run { group in
            let model = try GPTModel(config: config, seed: 7, tensorParallel: group, on: CPUDevice(threads: 1))
            model.sequenceParallel = sequenceParallel
            let batch = try MicroBatch(samples: samples(2, 8), on: model.device)
            for entry in model.layout.entries {
                let expected = Self.shard(wholeParameters, of: entry, in: whole.layout)
                let actual = Array(UnsafeBufferPointer(start: model.parameters.floats + entry.offset, count: entry.count))
                if actual != expected { failures.add("rank \(group.rank): \(entry.name) is not its shard of the initialisation") }
            }
            let loss = try model.forwardBackward(batch, dropout: key).mean
            try model.reduceSequenceParallelGradients()
            if abs(loss - wholeLoss) > 1e-5 * abs(wholeLoss) { failures.add("rank \(group.rank): loss \(loss) vs \(wholeLoss)") }
            let gradients = model.gradients.toFloatArray()
            for entry in model.layout.entries {
                let expected = Self.shard(wholeGradients, of: entry, in: whole.layout)
                let actual = Array(gradients[entry.offset ..< entry.offset + entry.count])
                let scale = expected.map(abs).max()!, worst = zip(actual, expected).map { abs($0 - $1) }.max()!
                if !(worst <= 1e-5 * scale + 1e-9) {
                    failures.add("rank \(group.rank): \(entry.name): gradient differs by \(worst) (values up to \(scale))")
                }
            }
            let gradNorm = try model.wholeModelNorm(of: model.gradients)
            if abs(gradNorm - wholeGradNorm) > 1e-5 * wholeGradNorm {
                failures.add("rank \(group.rank): gradient norm \(gradNorm) vs \(wholeGradNorm)")
            }
        }
        #expect(failures.messages.isEmpty,
                "\(name), tensor-parallel size \(t)\(sequenceParallel ? ", sequence parallel" : ""): \(failures.messages.prefix(5))")
    }

    /// Inference under tensor parallelism: every rank gets the whole logits, through the whole
    /// sequence or the key/value cache, also when the model trains sequence-parallel and the
    /// sequence does not split over the ranks.
    @Test func logitsAreWholeOnEveryRank() throws {
        let config = GPTModelTests.variants[1].1
        let tokens = samples(1, 7)[0]
        let whole = try GPTModel(config: config, seed: 7, on: device)
        let expected = try whole.logits(MicroBatch(samples: [tokens + [0]], on: device)).toFloatArray()
        let oddExpected = try whole.logits(MicroBatch(samples: [Array(tokens.prefix(6))], on: device)).toFloatArray()
        let scale = expected.map(abs).max()!
        let failures = Failures()
        try InProcessWorld(size: 2).run { group in
            let model = try GPTModel(config: config, seed: 7, tensorParallel: group, on: CPUDevice(threads: 1))
            let logits = try model.logits(MicroBatch(samples: [tokens + [0]], on: model.device)).toFloatArray()
            let cache = KeyValueCache(for: model)
            var cached = try model.logits(continuing: Array(tokens.prefix(5)), cache: cache).toFloatArray()
            for token in tokens.dropFirst(5) { cached += try model.logits(continuing: [token], cache: cache).toFloatArray() }
            model.sequenceParallel = true
            let odd = try model.logits(MicroBatch(samples: [Array(tokens.prefix(6))], on: model.device)).toFloatArray()
            if odd.count != oddExpected.count || zip(odd, oddExpected).contains(where: { abs($0 - $1) > 1e-5 * scale }) {
                failures.add("rank \(group.rank): logits of 5 tokens under sequence parallelism differ")
            }
            for (what, values) in [("logits", logits), ("cached logits", cached)] {
                let worst = zip(values, expected).map { abs($0 - $1) }.max() ?? .infinity
                if values.count != expected.count || !(worst <= 1e-5 * scale) {
                    failures.add("rank \(group.rank): \(what) differ by \(worst) (\(values.count) of \(expected.count))")
                }
            }
        }
        #expect(failures.messages.isEmpty, "\(failures.messages)")
    }

    /// Tensor-parallel ranks that cannot hold whole heads, or stages that cannot hold whole layers.
    @Test(arguments: [(3, 1, "--num-attention-heads 4 is not divisible by --tensor-model-parallel-size 3"),
                      (1, 3, "--num-layers 2 is not divisible by --pipeline-model-parallel-size 3")])
    func aLayoutThatDoesNotDivideTheModelNamesTheFlag(tensorParallelSize tp: Int, pipelineParallelSize pp: Int, message: String) throws {
        let failures = Failures()
        try InProcessWorld(size: tp * pp).run { world in
            let groups = try ProcessGroups(world: world, state: ParallelState(worldSize: tp * pp, tensorModelParallelSize: tp,
                                                                             pipelineModelParallelSize: pp))
            do {
                _ = try GPTModel(config: tinyConfig(), seed: 7, tensorParallel: groups.tensorModelParallel,
                                 pipeline: groups.pipelineModelParallel, on: CPUDevice(threads: 1))
                failures.add("built 4 heads and 2 layers on TP=\(tp), PP=\(pp)")
            } catch {
                if !"\(error)".contains(message) { failures.add("\(error)") }
            }
        }
        #expect(failures.messages.isEmpty, "\(failures.messages)")
    }
}
