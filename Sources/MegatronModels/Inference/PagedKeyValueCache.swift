import CKernels
import MegatronCore

/// The keys and values of every layer for many sequences at once, in fixed-size blocks of one pool
/// (paged, as Megatron-core's dynamic inference context and vLLM keep them): a sequence holds a
/// block table, the list of its blocks, and position p lives in row p % blockSize of block
/// table[p / blockSize]. Sequences of any lengths share the pool without fragmenting it, and a
/// finished sequence's blocks are at once another's.
public final class PagedKeyValueCache {
    /// Per layer, [blockCount · blockSize, groups/t · d]: row b·blockSize + i is slot i of block b.
    let keys: [Tensor]
    let values: [Tensor]
    /// Positions per block.
    public let blockSize: Int
    public let blockCount: Int
    private var free: [Int32]

    /// Blocks no sequence holds.
    public var freeBlockCount: Int { free.count }

    /// A pool of `blockCount` blocks of `blockSize` positions for this tensor-parallel rank's
    /// key/value heads of `model`.
    public init(for model: GPTModel, blockSize: Int, blockCount: Int) throws {
        guard blockSize >= 1, blockCount >= 1 else {
            throw ConfigError(flag: "--inference-dynamic-batching-block-size",
                              "the key/value cache needs at least one block of at least one position (block size \(blockSize), \(blockCount) blocks)")
        }
        let c = model.config, width = c.numQueryGroups / model.tensorParallel.size * c.kvChannels
        self.blockSize = blockSize
        self.blockCount = blockCount
        keys = try (0 ..< c.numLayers).map { _ in try Tensor(shape: [blockCount * blockSize, width], on: model.device, zeroed: false) }
        values = try (0 ..< c.numLayers).map { _ in try Tensor(shape: [blockCount * blockSize, width], on: model.device, zeroed: false) }
        free = (0 ..< Int32(blockCount)).reversed()
    }

    /// Bytes one block takes: keys and values of every layer, fp32.
    public static func bytesPerBlock(_ config: TransformerConfig, tensorParallelSize: Int = 1, blockSize: Int) -> Int {
        2 * config.numLayers * blockSize * config.numQueryGroups / tensorParallelSize * config.kvChannels * MemoryLayout<Float>.size
    }

    /// A free block, or nil when every block is held.
    public func allocate() -> Int32? { free.popLast() }

    /// Returns blocks a sequence held to the pool.
    public func release(_ blocks: [Int32]) { free.append(contentsOf: blocks) }

    /// Blocks that hold `positions` positions.
    public func blocks(for positions: Int) -> Int { (positions + blockSize - 1) / blockSize }
}

/// Where the token rows of one inference pass are in the paged cache: row r belongs to sequence
/// sequenceOfRow[r] and sits at position positionOfRow[r]; the sequence's block table starts at
/// tableStart[s] in `tables`. A sequence's rows are consecutive and in position order.
struct PagedRows: @unchecked Sendable {
    let cache: PagedKeyValueCache
    let positionOfRow: [Int]
    let sequenceOfRow: [Int]
    let tables: [Int32]
    let tableStart: [Int]

    /// Writes the pass's keys and values (from qkv [T, rowWidth]) into layer `layer`'s blocks, then
    /// returns the attention context [T, heads · d]: row r (position p) attends to its sequence's
    /// positions 0 ... p, softmax(scale·q·kⱼ) weighting the vⱼ.
    func attend(_ qkv: Tensor, layout: AttentionLayout, scale: Float, layer: Int, on device: CPUDevice) throws -> Tensor {
        let d = layout.headDim, groups = layout.groups, heads = layout.heads, perGroup = heads / groups
        let width = groups * d, b = cache.blockSize, rowCount = positionOfRow.count
        let keyPool = cache.keys[layer], valuePool = cache.values[layer]
        let keys = keyPool.floats, values = valuePool.floats
        for r in 0 ..< rowCount {
            let p = positionOfRow[r], block = Int(tables[tableStart[sequenceOfRow[r]] + p / b])
            let slot = (block * b + p % b) * width, source = qkv.floats + r * layout.rowWidth
            for g in 0 ..< groups {
                (keys + slot + g * d).update(from: source + layout.keyOffsets[g], count: d)
                (values + slot + g * d).update(from: source + layout.valueOffsets[g], count: d)
            }
        }
        let context = try Tensor(shape: [rowCount, heads * d], on: device, zeroed: false)
        let longest = (positionOfRow.max() ?? 0) + 1
        device.timed("paged attention") {
            device.parallelFor(rowCount * heads) { jobs, _ in
                var scores = [Float](repeating: 0, count: longest)
                for job in jobs {
                    let r = job / heads, h = job % heads, g = h / perGroup
                    tables.withUnsafeBufferPointer { table in
                        mg_paged_attention(context.floats + r * heads * d + h * d, qkv.floats + r * layout.rowWidth + layout.queryOffsets[h],
                                           d, keyPool.floats + g * d, valuePool.floats + g * d, width, table.baseAddress! + tableStart[sequenceOfRow[r]],
                                           b, positionOfRow[r] + 1, scale, &scores)
                    }
                }
            }
        }
        return context
    }
}
