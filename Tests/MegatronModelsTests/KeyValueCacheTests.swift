import MegatronCore
import MegatronModels
import Testing

/// Incremental inference through a key/value cache computes the logits of running the whole
/// sequence: a prompt of 5 tokens at once, then 3 tokens one at a time, on every architecture variant.
@Suite struct KeyValueCacheTests {
    @Test(arguments: GPTModelTests.variants.map(\.0))
    func cachedLogitsAreTheWholeSequencesLogits(_ name: String) throws {
        var config = GPTModelTests.variants.first { $0.0 == name }!.1
        config.hiddenDropout = 0
        config.attentionDropout = 0
        let model = try GPTModel(config: config, seed: 7, on: device)
        let tokens = samples(1, 7)[0]   // 8 tokens: the whole context
        let whole = try model.logits(MicroBatch(samples: [tokens + [0]], on: device)).toFloatArray()
        let cache = try KeyValueCache(for: model)
        var cached = try model.logits(continuing: Array(tokens.prefix(5)), cache: cache).toFloatArray()
        for token in tokens.dropFirst(5) { cached += try model.logits(continuing: [token], cache: cache).toFloatArray() }
        #expect(cache.length == 8 && cached.count == whole.count)
        let scale = whole.map(abs).max()!
        let worst = zip(whole, cached).map { abs($0 - $1) }.max()!
        #expect(worst <= 1e-5 * scale, "\(name): largest difference \(worst) (logits up to \(scale))")
        #expect(throws: ConfigError.self) { try model.logits(continuing: [1], cache: cache) }
    }
}
