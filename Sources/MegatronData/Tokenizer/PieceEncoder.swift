import Foundation

/// The pieces one `encode` call has met, as UTF-8 in one buffer, with a cache of their encodings
/// (words repeat, so each distinct piece is BPE-encoded once per call), backed by the tokenizer's
/// `SharedPieceCache` across calls.
struct PieceEncoder {
    private var utf8: [UInt8] = []
    private var cache = PieceCache()
    private let shared: SharedPieceCache?

    init(shared: SharedPieceCache? = nil) { self.shared = shared }

    /// Appends the ids of `piece` (scalars), from a cache or from `encode` (its UTF-8 → ids).
    mutating func encode(_ piece: ArraySlice<UInt32>, into ids: inout [Int32],
                         _ encode: (ArraySlice<UInt8>, inout [Int32]) throws -> Void) rethrows {
        let start = utf8.count
        for value in piece { UTF8.encode(Unicode.Scalar(value)!) { utf8.append($0) } }
        let bytes = start ..< utf8.count
        let hash = PieceCache.hash(utf8[bytes])
        if let known = cache.ids(of: bytes, hash: hash, in: utf8) {
            utf8.removeSubrange(bytes)
            ids += known
            return
        }
        var encoded: [Int32] = []
        if let known = shared?.ids(of: utf8[bytes], hash: hash) {
            encoded = known
        } else {
            try encode(utf8[bytes], &encoded)
            shared?.insert(utf8[bytes], hash: hash, ids: encoded)
        }
        cache.insert(bytes, hash: hash, in: utf8, ids: encoded)
        ids += encoded
    }
}

/// Encodings of pieces kept across the `encode` calls of one tokenizer and the threads that share
/// it, as `tokenizers` keeps its word cache: up to `capacity` pieces of at most 256 bytes, kept once
/// inserted (no eviction). Split into shards with a lock each, so threads seldom wait on each other.
final class SharedPieceCache: Sendable {
    private final class Shard: @unchecked Sendable {
        let lock = NSLock()
        /// Guarded by `lock`: hash → the piece's bytes (to rule out collisions) and ids.
        var table: [UInt64: (bytes: [UInt8], ids: [Int32])] = [:]
    }

    private let shards: [Shard]
    private let capacityPerShard: Int

    init(capacity: Int = 65_536, shards count: Int = 16) {
        shards = (0 ..< count).map { _ in Shard() }
        capacityPerShard = capacity / count
    }

    func ids(of bytes: ArraySlice<UInt8>, hash: UInt64) -> [Int32]? {
        let shard = shards[Int(hash >> 60) % shards.count]
        shard.lock.lock()
        defer { shard.lock.unlock() }
        guard let entry = shard.table[hash], entry.bytes.elementsEqual(bytes) else { return nil }
        return entry.ids
    }

    func insert(_ bytes: ArraySlice<UInt8>, hash: UInt64, ids: [Int32]) {
        guard bytes.count <= 256 else { return }
        let shard = shards[Int(hash >> 60) % shards.count]
        shard.lock.lock()
        defer { shard.lock.unlock() }
        if shard.table.count < capacityPerShard && shard.table[hash] == nil { shard.table[hash] = (Array(bytes), ids) }
    }
}

/// The encodings of the pieces one `encode` call has seen: an open-addressing table keyed by a
/// 64-bit FNV-1a hash of the piece's bytes (far cheaper than Dictionary's hashing of a slice),
/// each entry keeping where its bytes lie to rule out collisions.
struct PieceCache {
    private var hashes = [UInt64](repeating: 0, count: 64)   // 0: empty slot
    private var entries = [Int](repeating: 0, count: 64)
    private var pieces: [(bytes: Range<Int>, ids: Range<Int>)] = []
    private var idStore: [Int32] = []

    /// 64-bit FNV-1a of the bytes (never 0, which marks an empty slot).
    static func hash(_ bytes: ArraySlice<UInt8>) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in bytes { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        return hash == 0 ? 1 : hash
    }

    func ids(of bytes: Range<Int>, hash: UInt64, in utf8: [UInt8]) -> ArraySlice<Int32>? {
        let mask = hashes.count - 1
        var slot = Int(truncatingIfNeeded: hash) & mask
        while hashes[slot] != 0 {
            if hashes[slot] == hash {
                let piece = pieces[entries[slot]]
                if utf8[piece.bytes].elementsEqual(utf8[bytes]) { return idStore[piece.ids] }
            }
            slot = (slot + 1) & mask
        }
        return nil
    }

    mutating func insert(_ bytes: Range<Int>, hash: UInt64, in utf8: [UInt8], ids: [Int32]) {
        if 2 * (pieces.count + 1) > hashes.count { grow() }
        pieces.append((bytes, idStore.count ..< idStore.count + ids.count))
        idStore += ids
        place(hash, entry: pieces.count - 1)
    }

    private mutating func place(_ hash: UInt64, entry: Int) {
        let mask = hashes.count - 1
        var slot = Int(truncatingIfNeeded: hash) & mask
        while hashes[slot] != 0 { slot = (slot + 1) & mask }
        hashes[slot] = hash
        entries[slot] = entry
    }

    private mutating func grow() {
        let old = hashes, oldEntries = entries
        hashes = [UInt64](repeating: 0, count: 2 * old.count)
        entries = [Int](repeating: 0, count: 2 * old.count)
        for slot in old.indices where old[slot] != 0 { place(old[slot], entry: oldEntries[slot]) }
    }
}
