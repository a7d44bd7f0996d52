import CKernels

/// Where the heads of a fused QKV activation live. Rows are tokens, batch-major
/// (row b·seq + t holds token t of sequence b); head h of Q starts at column `queryOffsets[h]`,
/// key/value group g at `keyOffsets[g]` / `valueOffsets[g]`, each `headDim` wide. Query head h
/// attends with group h / (heads / groups), as grouped-query attention shares keys and values.
public struct AttentionLayout: Sendable, Equatable {
    public let batch: Int
    public let sequenceLength: Int
    public let heads: Int
    public let groups: Int
    public let headDim: Int
    /// Floats per token row of the QKV tensor.
    public let rowWidth: Int
    public let queryOffsets: [Int]
    public let keyOffsets: [Int]
    public let valueOffsets: [Int]

    /// Megatron's fused QKV layout: each row is `groups` blocks of
    /// [heads/groups query heads | one key head | one value head], each head `headDim` wide.
    public static func megatronFusedQKV(batch: Int, sequenceLength: Int, heads: Int, groups: Int,
                                        headDim: Int) throws -> AttentionLayout {
        guard heads > 0, groups > 0, heads % groups == 0 else {
            throw TensorError("attention: \(heads) heads cannot be split into \(groups) query groups")
        }
        let perGroup = heads / groups, block = (perGroup + 2) * headDim
        return AttentionLayout(
            batch: batch, sequenceLength: sequenceLength, heads: heads, groups: groups, headDim: headDim,
            rowWidth: groups * block,
            queryOffsets: (0 ..< heads).map { h in (h / perGroup) * block + (h % perGroup) * headDim },
            keyOffsets: (0 ..< groups).map { g in g * block + perGroup * headDim },
            valueOffsets: (0 ..< groups).map { g in g * block + (perGroup + 1) * headDim })
    }

    public var tokens: Int { batch * sequenceLength }

    /// The same heads over sequences of `sequenceLength` tokens.
    public func resized(sequenceLength: Int) -> AttentionLayout {
        AttentionLayout(batch: batch, sequenceLength: sequenceLength, heads: heads, groups: groups, headDim: headDim, rowWidth: rowWidth,
                        queryOffsets: queryOffsets, keyOffsets: keyOffsets, valueOffsets: valueOffsets)
    }
}

/// The attention core softmax(scale·QKᵀ + causal mask)·V with dropout on the probabilities,
/// optionally kept within documents (`firstKeys`: per token row, the first key of its sequence it
/// may see, as Megatron's --reset-attention-mask makes the mask), or, bidirectional, away from a
/// sequence's padding (`keyCounts`: per sequence, the keys before its padding, as BERT's padding
/// mask hides the keys after them; the padding's own rows attend to those keys too),
/// computed flash-attention style (Dao, 2022): a panel of `blockRows` query rows at a time, so at
/// most blockRows × seq scores exist per thread, and the backward recomputes the probabilities from
/// the saved per-row log-sum-exp instead of storing them.
public enum Attention {
    /// Which of the model's heads the layout's heads are, for their dropout masks: under tensor
    /// parallelism a rank holds heads `first ..< first + layout.heads` of `total`, and draws exactly
    /// the masks those heads get on one rank, so the parallel layout does not change the model.
    public struct DropoutHeads: Sendable {
        public let first: Int
        public let total: Int

        public init(first: Int, total: Int) {
            self.first = first
            self.total = total
        }

        /// The mask's index for local head `head` of sequence `batch`.
        func index(batch: Int, head: Int) -> Int { batch * total + first + head }
    }

    /// Query rows per panel: a multiple of the kernel's 6-row tiles whose scores and score
    /// gradients (2 × 48 × 1040 floats at 1024 tokens) fit in a 512 KiB L2 cache.
    public static let defaultBlockRows = 48

    /// qkv [tokens, rowWidth] → (context [tokens, heads·headDim] with head h at columns h·headDim,
    /// lse [batch, heads, seq]).
    public static func forward(qkv: Tensor, layout: AttentionLayout, scale: Float, causal: Bool = true,
                               firstKeys: Tensor? = nil, keyCounts: [Int]? = nil, bias: Bias? = nil, dropout p: Float = 0,
                               rng: PhiloxStream = PhiloxStream(seed: 0, stream: 0),
                               heads: DropoutHeads? = nil, blockRows: Int = defaultBlockRows,
                               on device: CPUDevice) throws -> (context: Tensor, lse: Tensor) {
        try validate(qkv, layout, p, firstKeys: firstKeys, keyCounts: keyCounts, causal: causal, blockRows: blockRows)
        try bias?.validate(heads: layout.heads, queries: layout.sequenceLength, keys: layout.sequenceLength)
        let heads = heads ?? DropoutHeads(first: 0, total: layout.heads)
        let l = layout, s = l.sequenceLength, d = l.headDim
        let context = try Tensor(shape: [l.tokens, l.heads * d], on: device, zeroed: false)
        let lse = try Tensor(shape: [l.batch, l.heads, s], on: device, zeroed: false)
        let jobs = l.batch * l.heads
        let scratchFloats = mg_attention_scratch_floats(s, d, blockRows)
        let scratch = try Tensor(shape: [device.taskCount(jobs), scratchFloats], on: device, zeroed: false)
        device.timed("attention forward") {
            device.parallelFor(jobs) { range, task in
                for job in range {
                    let b = job / l.heads, h = job % l.heads, g = h / (l.heads / l.groups)
                    let head = headPointers(qkv, context, layout: l, batch: b, head: h, group: g)
                    mg_attention_forward(head, lse.floats + job * s, s, s, keyCounts?[b] ?? s, d, scale, causal ? 1 : 0,
                                         firstKeys.map { $0.int32s + b * s }, bias.map { $0.table.floats + h * $0.bucketCount },
                                         bias?.buckets.int32s, blockRows, 1 - p, rng.seed, rng.stream, heads.index(batch: b, head: h),
                                         scratch.floats + task * scratchFloats)
                }
            }
        }
        return (context, lse)
    }

    /// Gradient of the fused QKV given the context's gradient, in a new tensor shaped like qkv; with
    /// `bias`, its table's gradient is added into `biasGradient` ([heads, buckets]).
    public static func backward(_ gradContext: Tensor, qkv: Tensor, context: Tensor, lse: Tensor,
                                layout: AttentionLayout, scale: Float, causal: Bool = true, firstKeys: Tensor? = nil,
                                keyCounts: [Int]? = nil, bias: Bias? = nil, biasGradient: Tensor? = nil,
                                dropout p: Float = 0, rng: PhiloxStream = PhiloxStream(seed: 0, stream: 0),
                                heads: DropoutHeads? = nil, blockRows: Int = defaultBlockRows, on device: CPUDevice) throws -> Tensor {
        try validate(qkv, layout, p, firstKeys: firstKeys, keyCounts: keyCounts, causal: causal, blockRows: blockRows)
        try bias?.validate(heads: layout.heads, queries: layout.sequenceLength, keys: layout.sequenceLength, gradient: biasGradient)
        let heads = heads ?? DropoutHeads(first: 0, total: layout.heads)
        let l = layout, s = l.sequenceLength, d = l.headDim
        try gradContext.expect(shape: [l.tokens, l.heads * d], "Attention.backward", "gradContext")
        try context.expect(shape: [l.tokens, l.heads * d], "Attention.backward", "context")
        try lse.expect(shape: [l.batch, l.heads, s], "Attention.backward", "lse")
        // Zeroed: the kernel accumulates into the key and value columns.
        let gradQKV = try Tensor(shape: qkv.shape, on: device)
        let jobs = l.batch * l.heads, perGroup = l.heads / l.groups
        // Under grouped-query attention several query heads add into one key/value head's gradient:
        // each (sequence, head) job then writes its own zeroed copy, [dK; dV] of 2·s·d floats, and
        // the copies are summed in head order afterwards. So every head is a job of its own (with
        // few groups, jobs per group would leave cores idle), and the result does not depend on how
        // heads are spread over threads.
        let headGrads = perGroup > 1 ? try Tensor(shape: [jobs, 2, s, d], on: device) : nil
        let scratchFloats = mg_attention_scratch_floats(s, d, blockRows)
        let scratch = try Tensor(shape: [device.taskCount(jobs), scratchFloats], on: device, zeroed: false)
        let jobBiasGradients = try bias.map { try Tensor(shape: [jobs, $0.bucketCount], on: device) }
        device.timed("attention backward") {
            device.parallelFor(jobs) { range, task in
                for job in range {
                    let b = job / l.heads, h = job % l.heads, g = h / perGroup
                    let rowBase = b * s * l.rowWidth
                    let (dk, lddk, dv, lddv) = headGrads.map { ($0.floats + job * 2 * s * d, d, $0.floats + (job * 2 + 1) * s * d, d) }
                        ?? (gradQKV.floats + rowBase + l.keyOffsets[g], l.rowWidth, gradQKV.floats + rowBase + l.valueOffsets[g], l.rowWidth)
                    mg_attention_backward(
                        headPointers(qkv, context, layout: l, batch: b, head: h, group: g), lse.floats + job * s,
                        gradContext.floats + b * s * l.heads * d + h * d,
                        gradQKV.floats + rowBase + l.queryOffsets[h], l.rowWidth, dk, lddk, dv, lddv,
                        s, s, keyCounts?[b] ?? s, d, scale, causal ? 1 : 0, firstKeys.map { $0.int32s + b * s },
                        bias.map { $0.table.floats + h * $0.bucketCount }, bias?.buckets.int32s,
                        jobBiasGradients.map { $0.floats + job * $0.columns }, blockRows, 1 - p,
                        rng.seed, rng.stream, heads.index(batch: b, head: h), scratch.floats + task * scratchFloats)
                }
            }
            if let jobBiasGradients, let biasGradient { Self.addBiasGradients(jobBiasGradients, batch: l.batch, into: biasGradient) }
            guard let headGrads else { return }
            device.parallelFor(l.batch * l.groups) { range, _ in
                for job in range {
                    let b = job / l.groups, g = job % l.groups
                    for (offset, half) in [(l.keyOffsets[g], 0), (l.valueOffsets[g], 1)] {
                        let destination = gradQKV.floats + b * s * l.rowWidth + offset
                        for h in g * perGroup ..< (g + 1) * perGroup {
                            let source = headGrads.floats + ((b * l.heads + h) * 2 + half) * s * d
                            for t in 0 ..< s {
                                for c in 0 ..< d { destination[t * l.rowWidth + c] += source[t * d + c] }
                            }
                        }
                    }
                }
            }
        }
        return gradQKV
    }

    /// An additive bias on the scaled scores (T5's relative position bias): score (i, j) of local
    /// head h gains table[h, buckets[i, j]].
    public struct Bias: Sendable {
        /// [heads, buckets]
        public let table: Tensor
        /// int32 [queries, keys], each in 0 ..< buckets.
        public let buckets: Tensor

        public init(table: Tensor, buckets: Tensor) {
            self.table = table
            self.buckets = buckets
        }

        var bucketCount: Int { table.columns }

        func validate(heads: Int, queries: Int, keys: Int, gradient: Tensor? = nil) throws {
            try table.expect(dtype: .float32, "Attention", "bias table")
            try table.expect(shape: [heads, table.columns], "Attention", "bias table")
            try gradient?.expect(shape: table.shape, "Attention", "bias gradient")
            try buckets.expect(dtype: .int32, "Attention", "bias buckets")
            try buckets.expect(shape: [queries, keys], "Attention", "bias buckets")
            let all = UnsafeBufferPointer(start: buckets.int32s, count: queries * keys)
            guard all.allSatisfy({ (0 ..< Int32(table.columns)).contains($0) }) else {
                throw TensorError("Attention: bias buckets must lie in 0 ..< \(table.columns)")
            }
        }
    }

    /// Adds each (sequence, head) job's bias-table gradient [batch·heads, buckets] into
    /// `gradient` [heads, buckets], sequences in order.
    static func addBiasGradients(_ jobs: Tensor, batch: Int, into gradient: Tensor) {
        let heads = gradient.rows, n = gradient.columns
        for h in 0 ..< heads {
            for b in 0 ..< batch {
                let source = jobs.floats + (b * heads + h) * n, destination = gradient.floats + h * n
                for c in 0 ..< n { destination[c] += source[c] }
            }
        }
    }

    private static func headPointers(_ qkv: Tensor, _ context: Tensor, layout l: AttentionLayout,
                                     batch b: Int, head h: Int, group g: Int) -> mg_attention_head {
        let rowBase = b * l.sequenceLength * l.rowWidth
        let contextWidth = l.heads * l.headDim
        return mg_attention_head(
            q: qkv.floats + rowBase + l.queryOffsets[h], ldq: l.rowWidth,
            k: qkv.floats + rowBase + l.keyOffsets[g], ldk: l.rowWidth,
            v: qkv.floats + rowBase + l.valueOffsets[g], ldv: l.rowWidth,
            out: context.floats + b * l.sequenceLength * contextWidth + h * l.headDim, ldo: contextWidth)
    }

    private static func validate(_ qkv: Tensor, _ l: AttentionLayout, _ p: Float, firstKeys: Tensor?, keyCounts: [Int]?,
                                 causal: Bool, blockRows: Int) throws {
        try qkv.expect(dtype: .float32, "Attention", "qkv")
        guard blockRows >= 1 else { throw TensorError("Attention: blockRows \(blockRows): expected at least 1 query row per panel") }
        if let firstKeys {
            try firstKeys.expect(dtype: .int32, "Attention", "firstKeys")
            try firstKeys.expect(shape: [l.tokens], "Attention", "firstKeys")
            let keys = UnsafeBufferPointer(start: firstKeys.int32s, count: l.tokens)
            guard causal, keys.indices.allSatisfy({ keys[$0] >= 0 && Int(keys[$0]) <= $0 % l.sequenceLength }) else {
                throw TensorError("Attention: firstKeys must be causal and each row's first key in 0 ... its position")
            }
        }
        if let keyCounts {
            guard firstKeys == nil, keyCounts.count == l.batch, keyCounts.allSatisfy({ (1 ... l.sequenceLength).contains($0) }) else {
                throw TensorError("Attention: keyCounts must give each of the \(l.batch) sequences 1 ... \(l.sequenceLength) keys, "
                                  + "without firstKeys; got \(keyCounts)")
            }
        }
        try qkv.expect(shape: [l.tokens, l.rowWidth], "Attention", "qkv")
        try Dropout.validate(p)
        guard l.heads % l.groups == 0, l.queryOffsets.count == l.heads, l.keyOffsets.count == l.groups,
              l.valueOffsets.count == l.groups,
              (l.queryOffsets + l.keyOffsets + l.valueOffsets).allSatisfy({ $0 >= 0 && $0 + l.headDim <= l.rowWidth })
        else { throw TensorError("Attention: layout \(l) is inconsistent") }
    }
}
