import Foundation

/// A tokenizer.json BPE `model`: vocabulary (token → id) and merges, applied to one piece at a
/// time. A piece starts as one symbol per byte (after a ByteLevel pre-tokenizer, whose alphabet
/// the vocabulary is written in) or per character; a character missing from the vocabulary becomes
/// its UTF-8 bytes as `<0xHH>` tokens (`byte_fallback`) or the unknown token (runs of them one
/// token with `fuse_unk`). With `ignore_merges` a piece that is itself a token is that token.
struct BPEModel: Sendable {
    let byteLevel: Bool
    /// The id of each token, keyed by the bytes it stands for (byte level: the bytes its alphabet
    /// characters encode; otherwise its UTF-8).
    let idOfBytes: [[UInt8]: Int32]
    /// The id of each single byte (byte level) or of each single-character token (otherwise).
    let byteIDs: [Int32]
    let characterIDs: [UInt32: Int32]
    /// The ids of `<0x00>` … `<0xFF>` when `byte_fallback` is on.
    let fallbackByteIDs: [Int32]?
    let unknown: Int32?
    let fuseUnknown: Bool
    let ignoreMerges: Bool
    let merges: BytePairMerges
    /// Each id's token text (largest id + 1 of them), and each token's id.
    let tokens: [String]
    let vocabulary: [String: Int32]
    /// Whether a piece may be cut before each "▁" that follows another character with the same
    /// result: true for a character-level vocabulary none of whose tokens has "▁" after another
    /// character (SentencePiece's, where "▁" only starts a word), as then no merge can span such a
    /// cut. SentencePiece-style files have no pre-tokenizer, so without these cuts a whole text is
    /// one piece; with them its words are pieces, encoded once each.
    let cutsBeforeWordMarker: Bool

    static let wordMarker: UInt32 = 0x2581

    init(json value: Any?, byteLevel: Bool) throws {
        let fields = try JSONFields(value, "model")
        guard fields.type == nil || fields.type == "BPE" else {
            throw TokenizerError("model: type \(fields.type!.debugDescription) is not supported (BPE is)")
        }
        if let prefix = try fields.optionalString("continuing_subword_prefix"), !prefix.isEmpty {
            throw TokenizerError("model: continuing_subword_prefix \(prefix.debugDescription) is not supported")
        }
        if let suffix = try fields.optionalString("end_of_word_suffix"), !suffix.isEmpty {
            throw TokenizerError("model: end_of_word_suffix \(suffix.debugDescription) is not supported")
        }
        if !fields.isNull("dropout"), let dropout = fields.object["dropout"] as? Double, dropout > 0 {
            throw TokenizerError("model: dropout \(dropout) is not supported (encoding must be deterministic)")
        }
        guard let vocab = fields.object["vocab"] as? [String: Int] else { throw TokenizerError("model: field \"vocab\" must map tokens to ids") }
        let alphabet = ByteLevelAlphabet()
        var tokens = [String](repeating: "", count: (vocab.values.max() ?? -1) + 1)
        var idOfBytes: [[UInt8]: Int32] = [:]
        var characterIDs: [UInt32: Int32] = [:]
        for (token, id) in vocab {
            guard id >= 0 else { throw TokenizerError("model: token \(token.debugDescription) has negative id \(id)") }
            tokens[id] = token
            let bytes = byteLevel ? alphabet.bytes(of: token) : Array(token.utf8)
            if let bytes { idOfBytes[bytes] = Int32(id) }
            if !byteLevel, token.unicodeScalars.count == 1 { characterIDs[token.unicodeScalars.first!.value] = Int32(id) }
        }
        self.byteLevel = byteLevel
        self.tokens = tokens
        vocabulary = vocab.mapValues(Int32.init)
        cutsBeforeWordMarker = !byteLevel && !vocab.keys.contains { token in
            var previous: UInt32?
            for scalar in token.unicodeScalars {
                if scalar.value == Self.wordMarker, let previous, previous != Self.wordMarker { return true }
                previous = scalar.value
            }
            return false
        }
        self.idOfBytes = idOfBytes
        self.characterIDs = characterIDs
        byteIDs = byteLevel ? (0 ..< 256).map { idOfBytes[[UInt8($0)]] ?? -1 } : []
        if try fields.bool("byte_fallback", default: false) {
            fallbackByteIDs = (0 ..< 256).map { vocab[String(format: "<0x%02X>", $0)].map(Int32.init) ?? -1 }
        } else {
            fallbackByteIDs = nil
        }
        if let unknownToken = try fields.optionalString("unk_token") {
            guard let id = vocab[unknownToken] else { throw TokenizerError("model: unk_token \(unknownToken.debugDescription) is not in the vocabulary") }
            unknown = Int32(id)
        } else {
            unknown = nil
        }
        fuseUnknown = try fields.bool("fuse_unk", default: false)
        ignoreMerges = try fields.bool("ignore_merges", default: false)

        var merges = BytePairMerges()
        for (rank, entry) in try fields.array("merges").enumerated() {
            let pair: [String]
            if let line = entry as? String {
                pair = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            } else {
                pair = entry as? [String] ?? []
            }
            guard pair.count == 2, let left = vocab[pair[0]], let right = vocab[pair[1]], let merged = vocab[pair[0] + pair[1]] else {
                throw TokenizerError("model: merge \(rank) \(String(describing: entry).debugDescription) is not two vocabulary tokens whose join is one")
            }
            merges.add(Int32(left), Int32(right), rank: Int32(rank), merged: Int32(merged))
        }
        self.merges = merges
    }

    /// Appends the ids of one piece (its UTF-8 `bytes`).
    func encode(_ bytes: ArraySlice<UInt8>, into ids: inout [Int32]) throws {
        if ignoreMerges, let id = idOfBytes[Array(bytes)] {
            ids.append(id)
            return
        }
        var parts: [Int32] = []
        parts.reserveCapacity(bytes.count)
        if byteLevel {
            for byte in bytes {
                let id = byteIDs[Int(byte)]
                guard id >= 0 else { throw TokenizerError("model: the vocabulary has no token for byte \(byte)") }
                parts.append(id)
            }
        } else {
            appendCharacterSymbols(bytes, to: &parts)
        }
        merges.apply(&parts)
        ids += parts
    }

    /// One symbol per character: its token, else its bytes' `<0xHH>` tokens, else the unknown token
    /// (dropped when there is none). As in `tokenizers`, an unknown token waits for the next known
    /// character (so it lands after any byte tokens between) and, with `fuse_unk`, absorbs the
    /// unknown characters that follow it.
    private func appendCharacterSymbols(_ bytes: ArraySlice<UInt8>, to parts: inout [Int32]) {
        var i = bytes.startIndex
        var pendingUnknown: Int32?
        while i < bytes.endIndex {
            let end = min(i + UTF8.width(startingWith: bytes[i]), bytes.endIndex)
            let scalar = String(decoding: bytes[i ..< end], as: UTF8.self).unicodeScalars.first!.value
            defer { i = end }
            if let id = characterIDs[scalar] {
                if let pending = pendingUnknown { parts.append(pending) }
                pendingUnknown = nil
                parts.append(id)
            } else if let fallback = fallbackByteIDs, !bytes[i ..< end].contains(where: { fallback[Int($0)] < 0 }) {
                parts += bytes[i ..< end].map { fallback[Int($0)] }
            } else if let unknown {
                if pendingUnknown != nil && !fuseUnknown { parts.append(unknown) }
                pendingUnknown = unknown
            }
        }
        if let pending = pendingUnknown { parts.append(pending) }
    }
}

extension UTF8 {
    /// The length of the UTF-8 sequence a lead byte starts (1 for a stray continuation byte).
    static func width(startingWith lead: UInt8) -> Int {
        lead < 0xC0 ? 1 : lead < 0xE0 ? 2 : lead < 0xF0 ? 3 : 4
    }
}
