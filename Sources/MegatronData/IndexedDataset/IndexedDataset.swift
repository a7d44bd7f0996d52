import Foundation

/// Megatron's memory-mapped indexed dataset: `PREFIX.bin` holds the token ids of every sequence back
/// to back; `PREFIX.idx` is
///
///     "MMIDIDX\0\0" | version u64 = 1 | dtype code u8 | sequence count u64 | document count u64
///     | sequence lengths i32[sequences] | sequence byte offsets i64[sequences]
///     | document indices i64[documents]   (0, then the sequence count after each document)
///
/// all little-endian. Token ids are uint16 when the vocabulary is under 65,500, else int32.
public final class IndexedDataset: @unchecked Sendable {
    public enum TokenType: UInt8, Sendable {
        case int32 = 4
        case uint16 = 8

        public var size: Int { self == .uint16 ? 2 : 4 }

        /// Megatron's choice (`DType.optimal_dtype`): uint16 below 65,500 ids, else int32.
        public static func optimal(vocabularySize: Int) -> TokenType { vocabularySize < 65500 ? .uint16 : .int32 }
    }

    static let magic: [UInt8] = Array("MMIDIDX".utf8) + [0, 0]

    /// The path without .bin/.idx.
    public let prefix: String
    public let tokenType: TokenType
    public let sequenceLengths: [Int32]
    public let sequencePointers: [Int64]
    public let documentIndices: [Int64]
    let bin: Data

    /// Opens PREFIX.idx and PREFIX.bin (the .bin memory-mapped); a bad header, counts that do not fit
    /// the file lengths, or pointers outside the .bin are errors naming the file and the problem.
    public init(prefix: String) throws {
        self.prefix = prefix
        let idxPath = prefix + ".idx", binPath = prefix + ".bin"
        func fail(_ path: String, _ what: String) -> TokenizerError { TokenizerError("\(path): \(what)") }
        guard let idx = try? Data(contentsOf: URL(fileURLWithPath: idxPath), options: .alwaysMapped) else {
            throw fail(idxPath, "cannot be read")
        }
        guard let bin = try? Data(contentsOf: URL(fileURLWithPath: binPath), options: .alwaysMapped) else {
            throw fail(binPath, "cannot be read")
        }
        let headerSize = 9 + 8 + 1 + 8 + 8
        guard idx.count >= headerSize, Array(idx.prefix(9)) == Self.magic else {
            throw fail(idxPath, "not a Megatron index (no MMIDIDX header)")
        }
        func u64(_ offset: Int) -> UInt64 { idx[offset ..< offset + 8].reversed().reduce(0) { $0 << 8 | UInt64($1) } }
        guard u64(9) == 1 else { throw fail(idxPath, "index version \(u64(9)), expected 1") }
        guard let type = TokenType(rawValue: idx[17]) else {
            throw fail(idxPath, "token dtype code \(idx[17]) is not uint16 (8) or int32 (4)")
        }
        let sequences = u64(18), documents = u64(26)
        let expected = UInt64(headerSize) &+ sequences &* 12 &+ documents &* 8
        guard sequences < 1 << 40, documents < 1 << 40, expected == UInt64(idx.count) else {
            throw fail(idxPath, "\(sequences) sequences and \(documents) documents need \(expected) bytes, the file has \(idx.count) (truncated or corrupt)")
        }
        func array<T>(_ type: T.Type, at offset: Int, count: Int) -> [T] {
            idx[offset ..< offset + count * MemoryLayout<T>.size].withUnsafeBytes { Array($0.bindMemory(to: T.self)) }
        }
        let n = Int(sequences)
        sequenceLengths = array(Int32.self, at: headerSize, count: n)
        sequencePointers = array(Int64.self, at: headerSize + 4 * n, count: n)
        documentIndices = array(Int64.self, at: headerSize + 12 * n, count: Int(documents))
        tokenType = type
        self.bin = bin
        for i in 0 ..< n {
            let end = sequencePointers[i] + Int64(sequenceLengths[i]) * Int64(type.size)
            guard sequenceLengths[i] >= 0, sequencePointers[i] >= 0, end <= Int64(bin.count) else {
                throw fail(binPath, "sequence \(i) (\(sequenceLengths[i]) tokens at byte \(sequencePointers[i])) lies outside the \(bin.count)-byte file")
            }
        }
        guard documentIndices.first == 0, documentIndices.last == Int64(n),
              zip(documentIndices, documentIndices.dropFirst()).allSatisfy({ $0 <= $1 })
        else { throw fail(idxPath, "document indices must rise from 0 to the sequence count \(n)") }
    }

    public var sequenceCount: Int { sequenceLengths.count }
    public var documentCount: Int { documentIndices.count - 1 }

    /// Tokens `range` of sequence `index`.
    public func sequence(_ index: Int, tokens range: Range<Int>) -> [Int32] {
        let start = Int(sequencePointers[index]) + range.lowerBound * tokenType.size, count = range.count
        return bin.withUnsafeBytes { raw in
            let base = raw.baseAddress! + start
            switch tokenType {
            case .uint16: return (0 ..< count).map { Int32(base.loadUnaligned(fromByteOffset: 2 * $0, as: UInt16.self)) }
            case .int32: return (0 ..< count).map { base.loadUnaligned(fromByteOffset: 4 * $0, as: Int32.self) }
            }
        }
    }
}

/// Writes an indexed dataset: documents are appended to PREFIX.bin as they come; `finish()` writes
/// PREFIX.idx. Both are written under temporary names and renamed only when complete, so an
/// interrupted run leaves nothing that looks like a finished dataset; a builder dropped before
/// `finish()` (a run stopped by an error) deletes its temporary files.
public final class IndexedDatasetBuilder {
    public let prefix: String
    public let tokenType: IndexedDataset.TokenType
    private let binHandle: FileHandle
    private var sequenceLengths: [Int32] = []
    private var documentIndices: [Int64] = [0]
    private var buffer = Data()
    private var finished = false

    public init(prefix: String, tokenType: IndexedDataset.TokenType) throws {
        self.prefix = prefix
        self.tokenType = tokenType
        let temporary = prefix + ".bin.partial"
        guard FileManager.default.createFile(atPath: temporary, contents: nil),
              let handle = FileHandle(forWritingAtPath: temporary)
        else { throw TokenizerError("\(temporary): cannot be created") }
        binHandle = handle
    }

    /// Appends one document made of sequences of `lengths` tokens (Megatron: one per sentence, or a
    /// single one per document); an empty `lengths` records an empty document.
    public func addDocument(_ tokens: [Int32], lengths: [Int]) throws {
        precondition(lengths.reduce(0, +) == tokens.count, "IndexedDatasetBuilder: lengths must sum to the token count")
        let limit: Int32 = tokenType == .uint16 ? Int32(UInt16.max) : .max
        if let bad = tokens.first(where: { $0 < 0 || $0 > limit }) {
            throw TokenizerError("\(prefix): token id \(bad) does not fit the dataset's \(tokenType) tokens")
        }
        // Whole documents at once, little-endian: per-token appends to Data cost more than tokenizing.
        switch tokenType {
        case .uint16: tokens.map { UInt16(truncatingIfNeeded: $0).littleEndian }.withUnsafeBytes { buffer.append(contentsOf: $0) }
        case .int32: tokens.map(\.littleEndian).withUnsafeBytes { buffer.append(contentsOf: $0) }
        }
        if buffer.count > 1 << 24 { try flush() }
        sequenceLengths += lengths.map { Int32($0) }
        documentIndices.append(Int64(sequenceLengths.count))
    }

    private func flush() throws {
        try binHandle.write(contentsOf: buffer)
        buffer.removeAll(keepingCapacity: true)
    }

    /// Writes the index and moves both files to their final names.
    public func finish() throws {
        try flush()
        try binHandle.close()
        var idx = Data(IndexedDataset.magic)
        func append<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { idx.append(contentsOf: $0) } }
        append(UInt64(1))
        idx.append(tokenType.rawValue)
        append(UInt64(sequenceLengths.count))
        append(UInt64(documentIndices.count))
        sequenceLengths.forEach(append)
        var pointer: Int64 = 0
        for length in sequenceLengths {
            append(pointer)
            pointer += Int64(length) * Int64(tokenType.size)
        }
        documentIndices.forEach(append)
        try idx.write(to: URL(fileURLWithPath: prefix + ".idx.partial"))
        for ext in [".bin", ".idx"] where rename(prefix + ext + ".partial", prefix + ext) != 0 {
            throw TokenizerError("\(prefix + ext): could not move the written file into place (errno \(errno))")
        }
        finished = true
    }

    deinit {
        guard !finished else { return }
        try? binHandle.close()
        for ext in [".bin", ".idx"] { unlink(prefix + ext + ".partial") }
    }
}
