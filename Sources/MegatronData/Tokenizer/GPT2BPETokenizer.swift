import Foundation

/// GPT-2's byte-level BPE tokenizer (Megatron's `--tokenizer-type GPT2BPETokenizer` with
/// `--vocab-file gpt2-vocab.json --merge-file gpt2-merges.txt`). Text is pre-tokenised
/// (`GPT2PreTokenizer`), each piece's UTF-8 bytes start as one token each, and adjacent pairs merge
/// lowest rank first until no listed merge applies. Special tokens are not parsed out of the text
/// ("<|endoftext|>" in a document is ordinary text), as in Megatron's encoder.
public final class GPT2BPETokenizer: Sendable {
    /// The id of `<|endoftext|>`, Megatron's end-of-document token.
    public let eod: Int32
    public let vocabSize: Int
    /// The bytes each id stands for.
    let tokenBytes: [[UInt8]]
    /// (left id << 32 | right id) → (rank, merged id).
    let merges: [UInt64: (rank: Int32, merged: Int32)]
    /// The id of each single byte.
    let byteIDs: [Int32]

    /// Loads the vocabulary (JSON: token → id) and merges ("#version" line, then "left right" lines);
    /// a file that does not parse is an error naming it and the line.
    public init(vocabFile: URL, mergesFile: URL) throws {
        let decoder = ByteLevelAlphabet()
        let vocabData = try Self.read(vocabFile)
        guard let vocab = (try? JSONSerialization.jsonObject(with: vocabData)) as? [String: Int] else {
            throw TokenizerError("\(vocabFile.path): not a JSON object of token → id")
        }
        var tokenBytes = [[UInt8]](repeating: [], count: (vocab.values.max() ?? -1) + 1)
        var idOfBytes: [[UInt8]: Int32] = [:]
        for (token, id) in vocab {
            guard id >= 0, let bytes = decoder.bytes(of: token) else {
                throw TokenizerError("\(vocabFile.path): token \(token.debugDescription) (id \(id)) is not byte-level BPE text")
            }
            tokenBytes[id] = bytes
            idOfBytes[bytes] = Int32(id)
        }
        guard let eod = vocab["<|endoftext|>"] else { throw TokenizerError("\(vocabFile.path): no <|endoftext|> token") }
        let byteIDs = try (0 ..< 256).map { b -> Int32 in
            guard let id = idOfBytes[[UInt8(b)]] else { throw TokenizerError("\(vocabFile.path): no token for byte \(b)") }
            return id
        }
        guard let text = String(data: try Self.read(mergesFile), encoding: .utf8) else {
            throw TokenizerError("\(mergesFile.path): not UTF-8 text")
        }
        var merges: [UInt64: (Int32, Int32)] = [:]
        var rank: Int32 = 0
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if line.hasPrefix("#version") || line.isEmpty { continue }
            let parts = line.split(separator: " ")
            guard parts.count == 2, let left = decoder.bytes(of: String(parts[0])), let right = decoder.bytes(of: String(parts[1])),
                  let l = idOfBytes[left], let r = idOfBytes[right], let m = idOfBytes[left + right]
            else { throw TokenizerError("\(mergesFile.path):\(number + 1): expected two vocabulary tokens whose join is one, got \(line.debugDescription)") }
            merges[UInt64(UInt32(l)) << 32 | UInt64(UInt32(r))] = (rank, m)
            rank += 1
        }
        self.eod = Int32(eod)
        self.vocabSize = tokenBytes.count
        self.tokenBytes = tokenBytes
        self.merges = merges
        self.byteIDs = byteIDs
    }

    /// The file's bytes, or an error naming it and why it could not be read.
    private static func read(_ file: URL) throws -> Data {
        do { return try Data(contentsOf: file) } catch {
            throw TokenizerError("\(file.path): cannot read it (\(error.localizedDescription))")
        }
    }

    /// Token ids of `text`.
    public func encode(_ text: String) -> [Int32] {
        var ids: [Int32] = []
        let scalars = Array(text.unicodeScalars)
        var utf8: [UInt8] = []
        utf8.reserveCapacity(scalars.count)
        for s in scalars { UTF8.encode(s) { utf8.append($0) } }
        // Pieces repeat (words), so each distinct piece is encoded once.
        var cache = PieceCache()
        var byteStart = 0
        for piece in GPT2PreTokenizer.pieces(scalars) {
            var byteCount = 0
            for i in piece { byteCount += UTF8.width(scalars[i]) }
            let bytes = byteStart ..< byteStart + byteCount
            byteStart += byteCount
            if let known = cache.ids(of: bytes, in: utf8) {
                ids += known
            } else {
                let encoded = bytePairEncode(utf8[bytes])
                cache.insert(bytes, in: utf8, ids: encoded)
                ids += encoded
            }
        }
        return ids
    }

    /// The text of `ids`; byte sequences that are not valid UTF-8 decode to U+FFFD.
    public func decode(_ ids: [Int32]) -> String {
        var bytes: [UInt8] = []
        for id in ids where id >= 0 && Int(id) < tokenBytes.count { bytes += tokenBytes[Int(id)] }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// BPE over one piece: merge the lowest-ranked adjacent pair until none is listed.
    func bytePairEncode(_ bytes: ArraySlice<UInt8>) -> [Int32] {
        var parts = bytes.map { byteIDs[Int($0)] }
        while parts.count > 1 {
            var best: (rank: Int32, index: Int, merged: Int32)?
            for i in 0 ..< parts.count - 1 {
                if let m = merges[UInt64(UInt32(parts[i])) << 32 | UInt64(UInt32(parts[i + 1]))], m.rank < (best?.rank ?? .max) {
                    best = (m.rank, i, m.merged)
                }
            }
            guard let best else { break }
            parts[best.index] = best.merged
            parts.remove(at: best.index + 1)
        }
        return parts
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

/// A tokenizer input or vocabulary problem, with the file and line where there is one.
public struct TokenizerError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// GPT-2's reversible map between bytes and printable characters: the printable Latin-1 bytes
/// (! … ~, ¡ … ¬, ® … ÿ) stand for themselves, the other 68 bytes for U+0100 onwards, in byte order.
struct ByteLevelAlphabet: Sendable {
    static let shared = ByteLevelAlphabet()

    let byteOfScalar: [UInt32: UInt8]

    init() {
        var map: [UInt32: UInt8] = [:]
        var next: UInt32 = 256
        for b in 0 ..< 256 {
            let printable = (0x21 ... 0x7E).contains(b) || (0xA1 ... 0xAC).contains(b) || (0xAE ... 0xFF).contains(b)
            if printable {
                map[UInt32(b)] = UInt8(b)
            } else {
                map[next] = UInt8(b)
                next += 1
            }
        }
        byteOfScalar = map
    }

    /// The bytes a vocabulary token stands for, or nil if it has a character outside the alphabet.
    func bytes(of token: String) -> [UInt8]? {
        var out: [UInt8] = []
        for s in token.unicodeScalars {
            guard let b = byteOfScalar[s.value] else { return nil }
            out.append(b)
        }
        return out
    }
}
