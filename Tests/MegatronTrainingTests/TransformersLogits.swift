import Foundation
import MegatronCore
import MegatronModels
import Testing

/// Checks `model`'s logits against those transformers computed in a fixture's `expected.safetensors`
/// (two sequences of 16 token ids, `input_ids`, and their `logits` [2, 16, 100]): the largest
/// difference within 1e-5 of the largest logit.
func expectTransformersLogits(_ model: GPTModel, expected: [String: SafeTensors.Entry], _ fixture: String,
                              sourceLocation: SourceLocation = #_sourceLocation) throws {
    let ids = expected["input_ids"]!.data.withUnsafeBytes { Array($0.bindMemory(to: Int32.self)) }
    let reference = try expected["logits"]!.floats()
    let vocabulary = model.config.paddedVocabSize
    // A sample is 17 tokens (inputs and the next-token labels): the labels do not affect the logits.
    let batch = try MicroBatch(samples: [Array(ids[0 ..< 16]) + [0], Array(ids[16 ..< 32]) + [0]], boundaries: nil, on: model.device)
    let logits = try model.logits(batch).toFloatArray()   // [32, padded vocabulary]
    var worst: Float = 0
    for row in 0 ..< 32 {
        for token in 0 ..< 100 { worst = max(worst, abs(logits[row * vocabulary + token] - reference[row * 100 + token])) }
    }
    let scale = reference.map(abs).max()!
    #expect(worst <= 1e-5 * scale, "\(fixture): largest logit difference \(worst) (logits up to \(scale))", sourceLocation: sourceLocation)
}
