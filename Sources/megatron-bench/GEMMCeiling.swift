import MegatronCore
import MegatronModels

/// The sgemm rate this machine reaches on a GPT model's own GEMM shapes, sampled while a benchmark
/// runs, so that the model's FLOP/s are compared with what the GEMMs could do in the same minutes.
///
/// Each linear layer [output, input] over `tokens` rows runs three GEMMs (forward Y = X·Wᵀ, data
/// gradient dX = dY·W, weight gradient dW += dYᵀ·X). `sampleLayers()` times each of the layers'
/// twelve once (tens of milliseconds in all), meant to be called after every timed step;
/// `sampleOutputLayer()` times the output layer's three (over the padded vocabulary: hundreds of MB
/// of operands, so they are timed after the steps, once peak RSS has been read). The operands are
/// allocated for each call and freed after it, from a device of their own, without a timer: they
/// neither show in a profile nor take blocks from the model's allocator, and the model's peak RSS
/// can leave them out (`ResidentPeak`).
final class GEMMCeiling {
    private struct Shape {
        let name: String
        let flops: Double
        let run: () throws -> Void
    }

    private let config: TransformerConfig
    private let tokens: Int
    private let device: CPUDevice
    /// The layers' (input, output) widths.
    private let layers: [(input: Int, output: Int)]
    /// Each shape's FLOPs and the seconds of its timings, by name ("M×N×K NT").
    private var samples: [String: (flops: Double, seconds: [Double])] = [:]

    init(_ config: TransformerConfig, tokens: Int, threads: Int) throws {
        self.config = config
        self.tokens = tokens
        device = CPUDevice(threads: threads)
        let h = config.hiddenSize
        layers = [(h, config.qkvWidth), (config.attentionWidth, h), (h, config.fc1Width), (config.ffnHiddenSize, h)]
    }

    /// One timing of each layer GEMM.
    func sampleLayers() throws {
        try sample(layers.flatMap { try shapes(input: $0.input, output: $0.output) })
        device.allocator.releaseCachedBlocks()
    }

    /// `repeats` timings of each output-layer GEMM.
    func sampleOutputLayer(repeats: Int) throws {
        let output = try shapes(input: config.hiddenSize, output: config.paddedVocabSize)
        for _ in 0 ..< repeats { try sample(output) }
    }

    /// The best shape's median GFLOP/s: what the machine's GEMMs sustain on this model's shapes.
    var bestShapeMedian: Double {
        samples.values.map { $0.flops / $0.seconds.sorted()[$0.seconds.count / 2] / 1e9 }.max() ?? .nan
    }

    /// The fastest single timing over all shapes, in GFLOP/s: the peak of a lucky moment.
    var bestTiming: Double {
        samples.values.map { $0.flops / $0.seconds.min()! / 1e9 }.max() ?? .nan
    }

    private func sample(_ shapes: [Shape]) throws {
        for shape in shapes {
            let start = Timing.now()
            try shape.run()
            samples[shape.name, default: (shape.flops, [])].seconds.append(Timing.now() - start)
        }
    }

    /// The three GEMMs of a linear layer [output, input] on zeroed operands.
    private func shapes(input: Int, output: Int) throws -> [Shape] {
        let (device, tokens) = (device, tokens)
        let x = try Tensor(shape: [tokens, input], on: device), w = try Tensor(shape: [output, input], on: device)
        let y = try Tensor(shape: [tokens, output], on: device), dw = try Tensor(shape: [output, input], on: device)
        let flops = 2 * Double(tokens * input * output)
        return [
            Shape(name: "\(tokens)×\(output)×\(input) NT", flops: flops) { try GEMM.matmul(x, w, transposeB: true, into: y, on: device) },
            Shape(name: "\(tokens)×\(input)×\(output) NN", flops: flops) { try GEMM.matmul(y, w, into: x, on: device) },
            Shape(name: "\(output)×\(input)×\(tokens) TN", flops: flops) {
                try GEMM.matmul(y, transposeA: true, x, into: dw, beta: 1, on: device)
            },
        ]
    }
}
