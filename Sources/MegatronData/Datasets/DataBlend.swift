/// `--data-path` as Megatron's get_blend_from_list reads it: either dataset prefixes alone
/// (`A` or `A B C`), or weight-prefix pairs (`0.3 A 0.7 B`, also `1.0 A`), the weights normalised.
///
/// The two build different things (BlendedMegatronDatasetBuilder): one unweighted prefix is a
/// GPTDataset of exactly the samples asked for; several unweighted prefixes are one epoch of each,
/// blended in proportion to their sizes; weighted prefixes, even a single one, are each built with
/// the blend's share of the samples plus a 0.5 % surplus, then blended by weight.
public struct DataBlend: Sendable, Equatable {
    public let prefixes: [String]
    /// Normalised weights; nil when the prefixes came without.
    public let weights: [Double]?

    public init(prefixes: [String], weights: [Double]?) {
        self.prefixes = prefixes
        self.weights = weights
    }

    /// From --data-path's values: pairs when their count is even and every first of a pair is a
    /// number; prefixes alone when the count is odd or none of them is.
    public init(dataPath values: [String]) throws {
        guard !values.isEmpty else { throw TokenizerError("--data-path: expected a dataset prefix or weight-prefix pairs") }
        let firsts = stride(from: 0, to: values.count, by: 2).map { values[$0] }
        let numbers = firsts.map { Double($0) }
        if values.count % 2 == 1 || numbers.allSatisfy({ $0 == nil }) {
            self.init(prefixes: values, weights: nil)
            return
        }
        var weights: [Double] = []
        for (i, number) in numbers.enumerated() {
            guard let weight = number, weight > 0, weight.isFinite else {
                throw TokenizerError("--data-path: \(firsts[i]) (before \(values[2 * i + 1])) is not a positive weight; "
                                     + "give weight-prefix pairs (w1 p1 w2 p2 …) or prefixes alone")
            }
            weights.append(weight)
        }
        self.init(prefixes: stride(from: 1, to: values.count, by: 2).map { values[$0] }, weights: BlendedDataset.normalize(weights))
    }

    /// GPTDataset samples to build from each dataset for a split of `size` samples: exactly `size`
    /// for one unweighted prefix, one epoch (nil) each for several, ⌈⌈size·w⌉·1.005⌉ when weighted.
    public func samplesToBuild(size: Int) -> [Int?] {
        if let weights { return BlendedDataset.samplesPerDataset(weights: weights, size: size).build }
        return prefixes.count == 1 ? [size] : Array(repeating: nil, count: prefixes.count)
    }

    /// The split's `size` samples blended from `datasets` (built as `samplesToBuild` says), or nil for
    /// one unweighted prefix, whose dataset is the split itself. Weighted: ⌈size·w⌉ from each, by
    /// weight. Unweighted: in proportion to the datasets' sizes, at most all of their samples; an
    /// error when that is fewer than `size`, as a run would run out of data.
    public func blend(_ datasets: [GPTDataset], size: Int, split: String = "training") throws -> BlendedDataset? {
        if let weights {
            let target = BlendedDataset.samplesPerDataset(weights: weights, size: size).target
            return try BlendedDataset(datasets: datasets, weights: weights, size: target.reduce(0, +))
        }
        if datasets.count == 1 { return nil }
        let available = datasets.reduce(0) { $0 + $1.count }
        guard available >= size else {
            throw TokenizerError("--data-path: one epoch of each unweighted dataset gives \(available) \(split) samples, "
                                 + "and the run needs \(size); give weights (w1 p1 w2 p2 …) to repeat epochs")
        }
        return try BlendedDataset(datasets: datasets, weights: datasets.map { Double($0.count) }, size: size)
    }
}
