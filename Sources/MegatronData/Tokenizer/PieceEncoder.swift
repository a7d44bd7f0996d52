/// The pieces one `encode` call has met, as UTF-8 in one buffer, with a cache of their encodings
/// (words repeat, so each distinct piece is BPE-encoded once per call).
struct PieceEncoder {
    private var utf8: [UInt8] = []
    private var cache = PieceCache()

    /// Appends the ids of `piece` (scalars), from the cache or from `encode` (its UTF-8 → ids).
    mutating func encode(_ piece: ArraySlice<UInt32>, into ids: inout [Int32],
                         _ encode: (ArraySlice<UInt8>, inout [Int32]) throws -> Void) rethrows {
        let start = utf8.count
        for value in piece { UTF8.encode(Unicode.Scalar(value)!) { utf8.append($0) } }
        let bytes = start ..< utf8.count
        if let known = cache.ids(of: bytes, in: utf8) {
            utf8.removeSubrange(bytes)
            ids += known
        } else {
            var encoded: [Int32] = []
            try encode(utf8[bytes], &encoded)
            cache.insert(bytes, in: utf8, ids: encoded)
            ids += encoded
        }
    }
}

/// The encodings of the pieces one `encode` call has seen: an open-addressing table keyed by a
/// 64-bit FNV-1a hash of the piece's bytes (far cheaper than Dictionary's hashing of a slice),
/// each entry keeping where its bytes lie to rule out collisions.
struct PieceCache {
    private var hashes = [UInt64](repeating: 0, count: 1024)   // 0: empty slot
    private var entries = [Int](repeating: 0, count: 1024)
    private var pieces: [(bytes: Range<Int>, ids: Range<Int>)] = []
    private var idStore: [Int32] = []

    private static func hash(_ bytes: Range<Int>, _ utf8: [UInt8]) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for i in bytes { hash = (hash ^ UInt64(utf8[i])) &* 0x0000_0100_0000_01B3 }
        return hash == 0 ? 1 : hash
    }

    func ids(of bytes: Range<Int>, in utf8: [UInt8]) -> ArraySlice<Int32>? {
        let hash = Self.hash(bytes, utf8), mask = hashes.count - 1
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

    mutating func insert(_ bytes: Range<Int>, in utf8: [UInt8], ids: [Int32]) {
        if 2 * (pieces.count + 1) > hashes.count { grow() }
        pieces.append((bytes, idStore.count ..< idStore.count + ids.count))
        idStore += ids
        place(Self.hash(bytes, utf8), entry: pieces.count - 1)
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
