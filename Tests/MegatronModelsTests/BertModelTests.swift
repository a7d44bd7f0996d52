import Foundation
import MegatronCore
import MegatronModels
import MegatronParallel
import Testing

/// BertModel against transformers' own BERTs, from fixtures written by
/// Tests/Fixtures/make_bert_fixtures.py (float64, random weights): `BertForPreTraining` (the
/// original post-norm BERT, Megatron's --apply-residual-connection-post-layernorm) and
/// `MegatronBertForPreTraining` (Megatron's pre-norm BERT), each over padded sequences with token
/// types, masked-LM labels and sentence-order labels.
@Suite struct BertModelTests {
    static let variants = ["post_ln", "pre_ln"]
    let device = CPUDevice(threads: 1)

    struct Fixture {
        let tensors: [String: SafeTensors.Entry]
        let config: BertConfig

        init(_ variant: String) throws {
            let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("Fixtures/bert_\(variant).safetensors")
            let (tensors, metadata) = try SafeTensors.read(url)
            self.tensors = tensors
            let c = try JSONSerialization.jsonObject(with: Data(metadata["config"]!.utf8)) as! [String: Any]
            var transformer = TransformerConfig(numLayers: c["num_layers"] as! Int, hiddenSize: c["hidden_size"] as! Int,
                                                numAttentionHeads: c["num_attention_heads"] as! Int,
                                                ffnHiddenSize: c["ffn_hidden_size"] as? Int, paddedVocabSize: c["padded_vocab_size"] as! Int,
                                                maxPositionEmbeddings: c["max_position_embeddings"] as! Int)
            transformer.normEpsilon = Float(c["norm_epsilon"] as! Double)
            transformer.biasGELUFusion = c["bias_gelu_fusion"] as! Bool
            transformer.applyResidualConnectionPostLayernorm = c["apply_residual_connection_post_layernorm"] as! Bool
            transformer.hiddenDropout = 0
            transformer.attentionDropout = 0
            config = BertConfig(transformer: transformer, bertBinaryHead: c["bert_binary_head"] as! Bool)
        }

        /// A model holding the fixture's weights.
        func model(on device: CPUDevice) throws -> BertModel {
            let model = try BertModel(config: config, seed: 0, on: device)
            for entry in model.layout.entries {
                let values = try tensors[entry.name]!.floats()
                #expect(values.count == entry.count, "\(entry.name)")
                values.withUnsafeBufferPointer { (model.parameters.floats + entry.offset).update(from: $0.baseAddress!, count: entry.count) }
            }
            return model
        }

        func rows(_ name: String) -> [[Int32]] {
            let e = tensors[name]!
            let flat = e.data.withUnsafeBytes { Array($0.bindMemory(to: Int32.self)) }
            return (0 ..< e.shape[0]).map { Array(flat[$0 * e.shape[1] ..< ($0 + 1) * e.shape[1]]) }
        }

        /// Samples `range` of the fixture's batch `prefix` ("step", "train").
        func batch(_ prefix: String, _ range: Range<Int>? = nil, on device: CPUDevice) throws -> BertMicroBatch {
            let order = tensors[prefix + ".is_random"]!.data.withUnsafeBytes { Array($0.bindMemory(to: Int32.self)) }
            let range = range ?? 0 ..< order.count
            func take(_ name: String) -> [[Int32]] { Array(rows(prefix + "." + name)[range]) }
            return try BertMicroBatch(tokens: take("tokens"), tokentypes: take("types"), paddingMask: take("padding_mask"),
                                      labels: take("labels"), lossMask: take("loss_mask"), sentenceOrder: Array(order[range]), on: device)
        }
    }

    @Test(arguments: variants)
    func oneStepLossesAndGradientsMatchTransformers(variant: String) throws {
        let fixture = try Fixture(variant)
        let model = try fixture.model(on: device)
        let batch = try fixture.batch("step", on: device)
        #expect(batch.keyCounts.contains { $0 < batch.sequenceLength }, "the fixture pads some sequences")
        let loss = try model.forwardBackward(batch, dropout: .init(seed: 0, iteration: 0, microBatch: 0))
        for (name, ours) in [("lm", loss.lm.mean), ("sop", loss.sop.mean)] {
            let expected = try fixture.tensors["step.\(name)_loss"]!.floats()[0]
            #expect(abs(ours - expected) <= 1e-5 * abs(expected), "\(variant): \(name) loss \(ours), transformers \(expected)")
        }
        for entry in model.layout.entries {
            let reference = try fixture.tensors["grad." + entry.name]!.floats()
            let ours = Array(UnsafeBufferPointer(start: model.gradients.floats + entry.offset, count: entry.count))
            let scale = reference.map(abs).max()!
            let error = zip(ours, reference).map { abs($0 - $1) }.max()! / scale
            #expect(error <= 1e-5, "\(variant): \(entry.name): relative error \(error)")
        }
        let evaluation = try model.loss(batch)
        #expect(abs(evaluation.total - loss.total) <= 1e-6 * loss.total, "evaluation loss \(evaluation.total) vs \(loss.total)")
    }

    /// Split over 2 and 4 tensor-parallel ranks (in-process), with and without sequence
    /// parallelism and with dropout, each rank computes the whole model's losses and its shard of
    /// the whole model's gradients.
    @Test(arguments: [(2, false), (2, true), (4, true)])
    func tensorParallelShardsComputeTheWholeModel(tensorParallelSize t: Int, sequenceParallel: Bool) throws {
        let fixture = try Fixture("post_ln")
        var withDropout = fixture.config
        withDropout.transformer.hiddenDropout = 0.1
        withDropout.transformer.attentionDropout = 0.1
        let config = withDropout
        let dropout = DropoutKey(seed: 3, iteration: 1, microBatch: 0)
        let whole = try BertModel(config: config, seed: 11, on: device)
        let wholeLoss = try whole.forwardBackward(fixture.batch("step", 0 ..< 2, on: device), dropout: dropout)
        let failures = TensorParallelTests.Failures()
        try InProcessWorld(size: t).run { group in
            let model = try BertModel(config: config, seed: 11, groups: tensorParallelGroups(group), on: CPUDevice(threads: 1))
            model.sequenceParallel = sequenceParallel
            let loss = try model.forwardBackward(fixture.batch("step", 0 ..< 2, on: model.device), dropout: dropout)
            try model.reduceSequenceParallelGradients()
            if abs(loss.total - wholeLoss.total) > 1e-5 * wholeLoss.total {
                failures.add("rank \(group.rank): loss \(loss.total) vs \(wholeLoss.total)")
            }
            let gradients = model.gradients.toFloatArray(), wholeGradients = whole.gradients.toFloatArray()
            for entry in model.layout.entries {
                let expected = TensorParallelTests.shard(wholeGradients, of: entry, in: whole.layout)
                let actual = Array(gradients[entry.offset ..< entry.offset + entry.count])
                let scale = expected.map(abs).max()!, worst = zip(actual, expected).map { abs($0 - $1) }.max()!
                if !(worst <= 1e-5 * scale + 1e-9) { failures.add("rank \(group.rank): \(entry.name): differs by \(worst) of \(scale)") }
            }
        }
        #expect(failures.messages.isEmpty, "TP \(t)\(sequenceParallel ? " SP" : ""): \(failures.messages.prefix(5))")
    }

    @Test func paddingThatIsNotASuffixIsRefused() throws {
        #expect(throws: TensorError.self) {
            try BertMicroBatch(tokens: [[1, 2, 3]], tokentypes: [[0, 0, 1]], paddingMask: [[1, 0, 1]], labels: [[0, 0, 0]],
                               lossMask: [[0, 1, 0]], sentenceOrder: [0], on: device)
        }
    }
}
