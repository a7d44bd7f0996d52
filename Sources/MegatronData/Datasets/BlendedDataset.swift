/// Megatron's BlendedDataset: samples drawn from several GPTDatasets in proportion to weights
/// (`--data-path w1 p1 w2 p2 …`). Sample i comes from the dataset whose share so far lags its
/// weight the most (the greedy rule of helpers.cpp build_blending_indices, first dataset on ties),
/// and is that dataset's next sample in its own (GPTDataset) order.
public struct BlendedDataset: Sendable {
    public let datasets: [GPTDataset]
    /// Weights normalised to sum to 1.
    public let weights: [Double]
    /// Per sample: which dataset, and which of its samples.
    public let datasetIndex: [Int]
    public let datasetSampleIndex: [Int]

    public var count: Int { datasetIndex.count }

    /// A blend of `size` samples. Each dataset must hold the samples the blend draws from it
    /// (`samplesToBuild` gives how many to build).
    public init(datasets: [GPTDataset], weights: [Double], size: Int) throws {
        guard datasets.count == weights.count, !datasets.isEmpty else {
            throw TokenizerError("blend: \(datasets.count) datasets for \(weights.count) weights")
        }
        self.datasets = datasets
        self.weights = weights
        var drawn = [Int](repeating: 0, count: datasets.count)
        var datasetIndex = [Int](repeating: 0, count: size), datasetSampleIndex = [Int](repeating: 0, count: size)
        for i in 0 ..< size {
            let at = max(Double(i), 1)
            var best = 0, bestError = weights[0] * at - Double(drawn[0])
            for d in 1 ..< datasets.count {
                let error = weights[d] * at - Double(drawn[d])
                if error > bestError { best = d; bestError = error }
            }
            datasetIndex[i] = best
            datasetSampleIndex[i] = drawn[best]
            drawn[best] += 1
        }
        for (d, dataset) in datasets.enumerated() where drawn[d] > dataset.count {
            throw TokenizerError("blend: dataset \(d) holds \(dataset.count) samples but the blend draws \(drawn[d])")
        }
        self.datasetIndex = datasetIndex
        self.datasetSampleIndex = datasetSampleIndex
    }

    public func sample(_ i: Int) -> [Int32] { datasets[datasetIndex[i]].sample(datasetSampleIndex[i]) }

    /// Megatron's sample counts for a blend of `size` samples: the blend takes ⌈size·w⌉ from each
    /// dataset (`target`, summing to the blend's size), and each dataset is built with
    /// ⌈⌈size·w⌉·(1 + surplus)⌉ (`build`; --mid-level-dataset-surplus, default 0.005).
    public static func samplesPerDataset(weights: [Double], size: Int, surplus: Double = 0.005) -> (target: [Int], build: [Int]) {
        let target = weights.map { Int((Double(size) * $0).rounded(.up)) }
        return (target, target.map { Int((Double($0) * (1 + surplus)).rounded(.up)) })
    }

    /// `--data-path` weights normalised as Megatron's (each divided by their sum).
    public static func normalize(_ weights: [Double]) -> [Double] {
        let total = weights.reduce(0, +)
        return weights.map { $0 / total }
    }
}
