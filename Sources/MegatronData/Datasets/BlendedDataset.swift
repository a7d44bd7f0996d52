/// Megatron's BlendedDataset: samples drawn from several GPTDatasets in proportion to weights
/// (`--data-path w1 p1 w2 p2 …`). Sample i comes from the dataset whose share so far lags its
/// weight the most (the greedy rule of helpers.cpp build_blending_indices, first dataset on ties),
/// and is that dataset's next sample in its own (GPTDataset) order.
public struct BlendedDataset: Sendable {
    public let datasets: [GPTDataset]
    /// Weights normalised to sum to 1 (as Megatron: normalised again here).
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
        // Megatron's BlendedDataset normalises the (already normalised) weights once more.
        let weights = Self.normalize(weights)
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

    /// `--data-path` weights normalised as Megatron's utils.normalize: each divided by their sum,
    /// summed as numpy.sum does (the last bit matters: the greedy rule compares exactly).
    public static func normalize(_ weights: [Double]) -> [Double] {
        let total = numpySum(weights[...])
        return weights.map { $0 / total }
    }

    /// numpy's pairwise summation of float64s: a running sum below 8 values; up to 128, eight
    /// interleaved partial sums combined as ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)), then
    /// the remainder; above, the two halves (the first a multiple of 8) summed apart.
    static func numpySum(_ x: ArraySlice<Double>) -> Double {
        let n = x.count, a = x.startIndex
        if n < 8 { return x.reduce(-0.0, +) }
        if n <= 128 {
            var r = (0 ..< 8).map { x[a + $0] }
            var i = 8
            while i < n - n % 8 {
                for j in 0 ..< 8 { r[j] += x[a + i + j] }
                i += 8
            }
            var total = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
            while i < n { total += x[a + i]; i += 1 }
            return total
        }
        let half = n / 2 - (n / 2) % 8
        return numpySum(x[a ..< a + half]) + numpySum(x[(a + half)...])
    }
}
