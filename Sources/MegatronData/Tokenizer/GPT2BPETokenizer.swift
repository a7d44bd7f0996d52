import Foundation

/// GPT-2's byte-level BPE tokenizer (Megatron's `--tokenizer-type GPT2BPETokenizer` with
/// `--vocab-file gpt2-vocab.json --merge-file gpt2-merges.txt`). Text is pre-tokenised
/// (`GPT2PreTokenizer`), each piece's UTF-8 bytes start as one token each, and adjacent pairs merge
/// lowest rank first until no listed merge applies. Special tokens are not parsed out of the text
/// ("<|endoftext|>" in a document is ordinary text), as in Megatron's encoder.
public final class GPT2BPETokenizer: TextTokenizer, Sendable {
    /// The id of `<|endoftext|>`, Megatron's end-of-document token.
    public let eod: Int32
    public let vocabSize: Int
    /// The bytes each id stands for.
    let tokenBytes: [[UInt8]]
    let merges: BytePairMerges
    /// The id of each single byte.
    let byteIDs: [Int32]
    let pieceCache = SharedPieceCache()

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
        var merges = BytePairMerges()
        var rank: Int32 = 0
        for (number, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            if line.hasPrefix("#version") || line.isEmpty { continue }
            let parts = line.split(separator: " ")
            guard parts.count == 2, let left = decoder.bytes(of: String(parts[0])), let right = decoder.bytes(of: String(parts[1])),
                  let l = idOfBytes[left], let r = idOfBytes[right], let m = idOfBytes[left + right]
            else { throw TokenizerError("\(mergesFile.path):\(number + 1): expected two vocabulary tokens whose join is one, got \(line.debugDescription)") }
            merges.add(l, r, rank: rank, merged: m)
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
        let scalars = Array(text.unicodeScalars)
        let values = scalars.map(\.value)
        var ids: [Int32] = []
        var pieces = PieceEncoder(shared: pieceCache)
        for piece in GPT2PreTokenizer.pieces(scalars) {
            pieces.encode(values[piece], into: &ids) { bytes, ids in ids += bytePairEncode(bytes) }
        }
        return ids
    }

    /// The text of `ids`; byte sequences that are not valid UTF-8 decode to U+FFFD.
    public func decode(_ ids: [Int32]) -> String {
        var bytes: [UInt8] = []
        for id in ids where id >= 0 && Int(id) < tokenBytes.count { bytes += tokenBytes[Int(id)] }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// BPE over one piece's bytes.
    func bytePairEncode(_ bytes: ArraySlice<UInt8>) -> [Int32] {
        var parts = bytes.map { byteIDs[Int($0)] }
        merges.apply(&parts)
        return parts
    }
}
