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

    /// One rank's forward and backward of `config` over the shared test batch: what the parts of a
    /// split model are compared with.
    struct WholeModel {
        let layout: ParameterLayout
        let loss: Float
        let parameters: [Float], gradients: [Float]
        let gradNorm: Double

        init(_ config: TransformerConfig) throws {
            let whole = try GPTModel(config: config, seed: 7, on: device)
            loss = try whole.forwardBackward(MicroBatch(samples: samples(2, 8), on: device), dropout: TensorParallelTests.dropout).mean
            (layout, parameters, gradients) = (whole.layout, whole.parameters.toFloatArray(), whole.gradients.toFloatArray())
            gradNorm = try whole.wholeModelNorm(of: whole.gradients)
        }

        /// Records in `failures` where `model` (a part of the whole, after its forward and backward)
        /// does not hold its part of the initialisation, of the gradients (to 1e-5 of their largest) or
        /// the whole gradient norm.
        func check(_ model: GPTModel, rank: Int, _ failures: Failures) throws {
            let gradients = model.gradients.toFloatArray()
            for entry in model.layout.entries {
                let initial = TensorParallelTests.shard(parameters, of: entry, in: layout)
                if Array(UnsafeBufferPointer(start: model.parameters.floats + entry.offset, count: entry.count)) != initial {
                    failures.add("rank \(rank): \(entry.name) is not its part of the initialisation")
                }
                let expected = TensorParallelTests.shard(self.gradients, of: entry, in: layout)
                let actual = Array(gradients[entry.offset ..< entry.offset + entry.count])
                let scale = expected.map(abs).max()!, worst = zip(actual, expected).map { abs($0 - $1) }.max()!
                if !(worst <= 1e-5 * scale + 1e-9) {
                    failures.add("rank \(rank): \(entry.name): gradient differs by \(worst) (values up to \(scale))")
                }
            }
            let norm = try model.wholeModelNorm(of: model.gradients)
            if abs(norm - gradNorm) > 1e-5 * gradNorm { failures.add("rank \(rank): gradient norm \(norm) vs \(gradNorm)") }
        }

        /// Records a loss other than the whole model's.
        func check(loss other: Float, rank: Int, _ failures: Failures) {
            if abs(other - loss) > 1e-5 * abs(loss) { failures.add("rank \(rank): loss \(other) vs \(loss)") }
        }
    }

    static let dropout = DropoutKey(seed: 3, iteration: 1, microBatch: 0)

    final class Failures: @unchecked Sendable {
        private let lock = NSLock()
        private(set) var messages: [String] = []
        func add(_ message: String) { lock.lock(); messages.append(message); lock.unlock() }
    }

    @Test(arguments: [(0, 2, false), (1, 2, false), (2, 2, false), (0, 4, false), (0, 2, true), (0, 4, true), (2, 2, true)])
    func shardsComputeTheWholeModel(variant: Int, tensorParallelSize t: Int, sequenceParallel: Bool) throws {
        let (name, config) = GPTModelTests.variants[variant]
        let whole = try WholeModel(config)
        let failures = Failures()
        try InProcessWorld(size: t).run { group in
            let model = try GPTModel(config: config, seed: 7, groups: tensorParallelGroups(group), on: CPUDevice(threads: 1))
            model.sequenceParallel = sequenceParallel
            let batch = try MicroBatch(samples: samples(2, 8), on: model.device)
            let loss = try model.forwardBackward(batch, dropout: Self.dropout).mean
            try model.reduceSequenceParallelGradients()
            whole.check(loss: loss, rank: group.rank, failures)
            try whole.check(model, rank: group.rank, failures)
        }
        #expect(failures.messages.isEmpty,
                "\(name), tensor-parallel size \(t)\(sequenceParallel ? ", sequence parallel" : ""): \(failures.messages.prefix(5))")
    }

    /// BERT split over 2 and 4 ranks, with and without sequence parallelism and with dropout, over
    /// padded sequences: each rank computes the whole model's lm and sop losses and its shard of the
    /// whole model's gradients.
    @Test(arguments: [(2, false), (2, true), (4, true)])
    func bertShardsComputeTheWholeModel(tensorParallelSize t: Int, sequenceParallel: Bool) throws {
        let config = BertConfig(transformer: tinyConfig {
            $0.maxPositionEmbeddings = 16
            $0.hiddenDropout = 0.1
            $0.attentionDropout = 0.1
            $0.applyResidualConnectionPostLayernorm = true
        })
        let tokens = samples(2, 10).map { Array($0.dropLast()) }
        @Sendable func batch(on device: CPUDevice) throws -> BertMicroBatch {
            try BertMicroBatch(tokens: tokens, tokentypes: [[0, 0, 0, 0, 1, 1, 1, 1, 1, 1], [0, 0, 0, 1, 1, 1, 0, 0, 0, 0]],
                               paddingMask: [Array(repeating: 1, count: 10), Array(repeating: 1, count: 6) + Array(repeating: 0, count: 4)],
                               labels: tokens, lossMask: [[0, 1, 0, 0, 1, 0, 0, 0, 1, 0], [0, 0, 1, 0, 0, 1, 0, 0, 0, 0]],
                               sentenceOrder: [1, 0], on: device)
        }
        let whole = try BertModel(config: config, seed: 11, on: device)
        let wholeLoss = try whole.forwardBackward(batch(on: device), dropout: Self.dropout)
        let wholeGradients = whole.gradients.toFloatArray()
        let failures = Failures()
        try InProcessWorld(size: t).run { group in
            let model = try BertModel(config: config, seed: 11, groups: tensorParallelGroups(group), on: CPUDevice(threads: 1))
            model.sequenceParallel = sequenceParallel
            let loss = try model.forwardBackward(batch(on: model.device), dropout: Self.dropout)
            try model.reduceSequenceParallelGradients()
            if abs(loss.total - wholeLoss.total) > 1e-5 * wholeLoss.total {
                failures.add("rank \(group.rank): loss \(loss.total) vs \(wholeLoss.total)")
            }
            let gradients = model.gradients.toFloatArray()
            for entry in model.layout.entries {
                let expected = Self.shard(wholeGradients, of: entry, in: whole.layout)
                let actual = Array(gradients[entry.offset ..< entry.offset + entry.count])
                let scale = expected.map(abs).max()!, worst = zip(actual, expected).map { abs($0 - $1) }.max()!
                if !(worst <= 1e-5 * scale + 1e-9) { failures.add("rank \(group.rank): \(entry.name): differs by \(worst) of \(scale)") }
            }
        }
        #expect(failures.messages.isEmpty, "TP \(t)\(sequenceParallel ? " SP" : ""): \(failures.messages.prefix(5))")
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
            let model = try GPTModel(config: config, seed: 7, groups: tensorParallelGroups(group), on: CPUDevice(threads: 1))
            let logits = try model.logits(MicroBatch(samples: [tokens + [0]], on: model.device)).toFloatArray()
            let cached = try cachedLogits(model, tokens, prefix: 5, blockSize: 3)
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
                _ = try GPTModel(config: tinyConfig(), seed: 7, groups: groups, on: CPUDevice(threads: 1))
                failures.add("built 4 heads and 2 layers on TP=\(tp), PP=\(pp)")
            } catch {
                if !"\(error)".contains(message) { failures.add("\(error)") }
            }
        }
        #expect(failures.messages.isEmpty, "\(failures.messages)")
    }
}
