import CKernels

/// Where encoder–decoder attention's heads live (Megatron's CrossAttention): queries
/// [batch·queries, heads·headDim] (linear_q's output, head h at columns h·headDim) attend over keys
/// and values [batch·keys, heads·2·headDim] (linear_kv's output, head h's key at 2h·headDim and its
/// value after it), rows batch-major.
public struct CrossAttentionLayout: Sendable, Equatable {
    public let batch: Int
    public let queries: Int
    public let keys: Int
    public let heads: Int
    public let headDim: Int

    public init(batch: Int, queries: Int, keys: Int, heads: Int, headDim: Int) {
        self.batch = batch
        self.queries = queries
        self.keys = keys
        self.heads = heads
        self.headDim = headDim
    }
}

extension Attention {
    /// query [batch·queries, heads·d], keyValue [batch·keys, heads·2d] → (context [batch·queries,
    /// heads·d], lse [batch, heads, queries]): softmax(scale·QKᵀ + bias) · V with dropout on the
    /// probabilities, sequence b's queries seeing its first `keyCounts[b]` keys (the encoder's
    /// padding mask).
    public static func forward(query: Tensor, keyValue: Tensor, layout l: CrossAttentionLayout, scale: Float, keyCounts: [Int]? = nil,
                               bias: Bias? = nil, dropout p: Float = 0, rng: PhiloxStream = PhiloxStream(seed: 0, stream: 0),
                               heads: DropoutHeads? = nil, blockRows: Int = defaultBlockRows,
                               on device: CPUDevice) throws -> (context: Tensor, lse: Tensor) {
        try validate(query, keyValue, l, p, keyCounts: keyCounts, bias: bias, blockRows: blockRows)
        let heads = heads ?? DropoutHeads(first: 0, total: l.heads)
        let d = l.headDim
        let context = try Tensor(shape: [l.batch * l.queries, l.heads * d], on: device, zeroed: false)
        let lse = try Tensor(shape: [l.batch, l.heads, l.queries], on: device, zeroed: false)
        let jobs = l.batch * l.heads
        let scratchFloats = mg_attention_scratch_floats(l.keys, d, blockRows)
        let scratch = try Tensor(shape: [device.taskCount(jobs), scratchFloats], on: device, zeroed: false)
        device.timed("cross-attention forward") {
            device.parallelFor(jobs) { range, task in
                for job in range {
                    let b = job / l.heads, h = job % l.heads
                    mg_attention_forward(headPointers(query, keyValue, context, l, batch: b, head: h), lse.floats + job * l.queries,
                                         l.queries, l.keys, keyCounts?[b] ?? l.keys, d, scale, 0, nil,
                                         bias.map { $0.table.floats + h * $0.bucketCount }, bias?.buckets.int32s, blockRows, 1 - p,
                                         rng.seed, rng.stream, heads.index(batch: b, head: h), scratch.floats + task * scratchFloats)
                }
            }
        }
        return (context, lse)
    }

    /// The gradients of query and keyValue given the context's gradient; with `bias`, its table's
    /// gradient is added into `biasGradient` ([heads, buckets]).
    public static func backward(_ gradContext: Tensor, query: Tensor, keyValue: Tensor, context: Tensor, lse: Tensor,
                                layout l: CrossAttentionLayout, scale: Float, keyCounts: [Int]? = nil, bias: Bias? = nil,
                                biasGradient: Tensor? = nil, dropout p: Float = 0, rng: PhiloxStream = PhiloxStream(seed: 0, stream: 0),
                                heads: DropoutHeads? = nil, blockRows: Int = defaultBlockRows,
                                on device: CPUDevice) throws -> (query: Tensor, keyValue: Tensor) {
        try validate(query, keyValue, l, p, keyCounts: keyCounts, bias: bias, blockRows: blockRows)
        try bias?.validate(heads: l.heads, queries: l.queries, keys: l.keys, gradient: biasGradient)
        let heads = heads ?? DropoutHeads(first: 0, total: l.heads)
        let d = l.headDim, width = l.heads * d
        try gradContext.expect(shape: [l.batch * l.queries, width], "Attention.backward", "gradContext")
        try context.expect(shape: [l.batch * l.queries, width], "Attention.backward", "context")
        try lse.expect(shape: [l.batch, l.heads, l.queries], "Attention.backward", "lse")
        let gradQuery = try Tensor(shape: query.shape, on: device, zeroed: false)
        let gradKeyValue = try Tensor(shape: keyValue.shape, on: device)  // the kernel accumulates dK and dV
        let jobs = l.batch * l.heads
        let scratchFloats = mg_attention_scratch_floats(l.keys, d, blockRows)
        let scratch = try Tensor(shape: [device.taskCount(jobs), scratchFloats], on: device, zeroed: false)
        let jobBiasGradients = try bias.map { try Tensor(shape: [jobs, $0.bucketCount], on: device) }
        device.timed("cross-attention backward") {
            device.parallelFor(jobs) { range, task in
                for job in range {
                    let b = job / l.heads, h = job % l.heads
                    let kv = gradKeyValue.floats + b * l.keys * 2 * width + 2 * h * d
                    mg_attention_backward(
                        headPointers(query, keyValue, context, l, batch: b, head: h), lse.floats + job * l.queries,
                        gradContext.floats + b * l.queries * width + h * d, gradQuery.floats + b * l.queries * width + h * d, width,
                        kv, 2 * width, kv + d, 2 * width, l.queries, l.keys, keyCounts?[b] ?? l.keys, d, scale, 0, nil,
                        bias.map { $0.table.floats + h * $0.bucketCount }, bias?.buckets.int32s,
                        jobBiasGradients.map { $0.floats + job * $0.columns }, blockRows, 1 - p, rng.seed, rng.stream,
                        heads.index(batch: b, head: h), scratch.floats + task * scratchFloats)
                }
            }
            if let jobBiasGradients, let biasGradient { addBiasGradients(jobBiasGradients, batch: l.batch, into: biasGradient) }
        }
        return (gradQuery, gradKeyValue)
    }

    private static func headPointers(_ query: Tensor, _ keyValue: Tensor, _ context: Tensor, _ l: CrossAttentionLayout,
                                     batch b: Int, head h: Int) -> mg_attention_head {
        let d = l.headDim, width = l.heads * d
        let kv = keyValue.floats + b * l.keys * 2 * width + 2 * h * d
        return mg_attention_head(q: query.floats + b * l.queries * width + h * d, ldq: width, k: kv, ldk: 2 * width,
                                 v: kv + d, ldv: 2 * width, out: context.floats + b * l.queries * width + h * d, ldo: width)
    }

    private static func validate(_ query: Tensor, _ keyValue: Tensor, _ l: CrossAttentionLayout, _ p: Float, keyCounts: [Int]?,
                                 bias: Bias?, blockRows: Int) throws {
        guard l.batch >= 1, l.queries >= 1, l.keys >= 1, l.heads >= 1, l.headDim >= 1, blockRows >= 1 else {
            throw TensorError("cross-attention: layout \(l) and blockRows \(blockRows) must all be positive")
        }
        try query.expect(dtype: .float32, "Attention", "query")
        try keyValue.expect(dtype: .float32, "Attention", "keyValue")
        try query.expect(shape: [l.batch * l.queries, l.heads * l.headDim], "Attention", "query")
        try keyValue.expect(shape: [l.batch * l.keys, 2 * l.heads * l.headDim], "Attention", "keyValue")
        if let keyCounts, keyCounts.count != l.batch || !keyCounts.allSatisfy({ (1 ... l.keys).contains($0) }) {
            throw TensorError("cross-attention: keyCounts must give each of the \(l.batch) sequences 1 ... \(l.keys) keys; got \(keyCounts)")
        }
        try bias?.validate(heads: l.heads, queries: l.queries, keys: l.keys)
        try Dropout.validate(p)
    }
}
