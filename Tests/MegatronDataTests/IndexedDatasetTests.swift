import Foundation
import MegatronData
import Testing

@Suite struct IndexedDatasetTests {
    func temporaryPrefix() throws -> (String, URL) {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("indexed-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return (dir.appendingPathComponent("data_text_document").path, dir)
    }

    /// The bytes Megatron's _IndexWriter and MMapIndexedDatasetBuilder write for three documents
    /// ([15496, 995, 50256], an empty one, [64, 275, 50256]) with uint16 tokens.
    @Test func writesMegatronsBytes() throws {
        let (prefix, dir) = try temporaryPrefix()
        defer { try? FileManager.default.removeItem(at: dir) }
        let builder = try IndexedDatasetBuilder(prefix: prefix, tokenType: .uint16)
        try builder.addDocument([15496, 995, 50256], lengths: [3])
        try builder.addDocument([], lengths: [])
        try builder.addDocument([64, 275, 50256], lengths: [3])
        #expect(!FileManager.default.fileExists(atPath: prefix + ".idx"), "nothing final before finish()")
        try builder.finish()
        var expected: [UInt8] = Array("MMIDIDX".utf8) + [0, 0]
        func le(_ v: UInt64, _ bytes: Int) { for i in 0 ..< bytes { expected.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
        le(1, 8); expected.append(8); le(2, 8); le(4, 8)   // version, dtype uint16, 2 sequences, 4 document indices
        le(3, 4); le(3, 4)                                   // sequence lengths (int32)
        le(0, 8); le(6, 8)                                   // sequence byte offsets (int64)
        le(0, 8); le(1, 8); le(1, 8); le(2, 8)               // document indices (int64)
        #expect(try Array(Data(contentsOf: URL(fileURLWithPath: prefix + ".idx"))) == expected)
        #expect(try Array(Data(contentsOf: URL(fileURLWithPath: prefix + ".bin")))
                == [0x88, 0x3C, 0xE3, 0x03, 0x50, 0xC4, 0x40, 0x00, 0x13, 0x01, 0x50, 0xC4])
        let dataset = try IndexedDataset(prefix: prefix)
        #expect(dataset.sequenceCount == 2 && dataset.documentCount == 3)
        #expect(dataset.sequence(0) == [15496, 995, 50256] && dataset.sequence(1) == [64, 275, 50256])
    }

    @Test func int32TokensRoundTrip() throws {
        let (prefix, dir) = try temporaryPrefix()
        defer { try? FileManager.default.removeItem(at: dir) }
        let builder = try IndexedDatasetBuilder(prefix: prefix, tokenType: .optimal(vocabularySize: 128_000))
        try builder.addDocument([1, 100_000, 3], lengths: [2, 1])
        try builder.finish()
        let dataset = try IndexedDataset(prefix: prefix)
        #expect(dataset.tokenType == .int32)
        #expect(dataset.sequence(0) == [1, 100_000] && dataset.sequence(1) == [3] && dataset.documentIndices == [0, 2])
        #expect(throws: TokenizerError.self) {
            let narrow = try IndexedDatasetBuilder(prefix: prefix + "2", tokenType: .uint16)
            try narrow.addDocument([70_000], lengths: [1])
        }
    }

    @Test func corruptFilesAreNamed() throws {
        let (prefix, dir) = try temporaryPrefix()
        defer { try? FileManager.default.removeItem(at: dir) }
        let builder = try IndexedDatasetBuilder(prefix: prefix, tokenType: .uint16)
        try builder.addDocument([1, 2, 3], lengths: [3])
        try builder.finish()
        let idx = try Data(contentsOf: URL(fileURLWithPath: prefix + ".idx"))
        try idx.dropLast(8).write(to: URL(fileURLWithPath: prefix + ".idx"))
        #expect { try IndexedDataset(prefix: prefix) } throws: { "\($0)".contains("truncated or corrupt") && "\($0)".hasPrefix(prefix + ".idx") }
        try Data("NOTANIDX".utf8 + idx.dropFirst(8)).write(to: URL(fileURLWithPath: prefix + ".idx"))
        #expect { try IndexedDataset(prefix: prefix) } throws: { "\($0)".contains("no MMIDIDX header") }
        try idx.write(to: URL(fileURLWithPath: prefix + ".idx"))
        try Data([1, 0]).write(to: URL(fileURLWithPath: prefix + ".bin"))  // shorter than its 3 tokens
        #expect { try IndexedDataset(prefix: prefix) } throws: { "\($0)".contains("lies outside") }
    }
}

/// Our writer against the files Tests/Fixtures/make_indexed_dataset_fixtures.py writes with NumPy
/// in the layout of Megatron's _IndexWriter, and our reader on them.
@Suite struct IndexedDatasetFixtureTests {
    static let documents: [[[Int32]]] = [[[15496, 995, 50256]], [], [[64, 275], [11, 50256]], [[318, 257, 1332, 13, 50256]]]

    @Test(arguments: [("uint16", IndexedDataset.TokenType.uint16), ("int32", .int32)])
    func writesTheBytesOfMegatronsLayout(name: String, type: IndexedDataset.TokenType) throws {
        let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/indexed_\(name)").path
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("fixture-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let prefix = dir.appendingPathComponent(name).path
        let builder = try IndexedDatasetBuilder(prefix: prefix, tokenType: type)
        for document in Self.documents { try builder.addDocument(document.flatMap { $0 }, lengths: document.map(\.count)) }
        try builder.finish()
        for suffix in [".bin", ".idx"] {
            #expect(try Data(contentsOf: URL(fileURLWithPath: prefix + suffix)) == Data(contentsOf: URL(fileURLWithPath: fixture + suffix)),
                    "\(name)\(suffix)")
        }
        let read = try IndexedDataset(prefix: fixture)
        #expect(read.tokenType == type && read.documentCount == 4 && read.sequenceCount == 4)
        #expect((0 ..< 4).map { read.sequence($0) } == Self.documents.flatMap { $0 })
    }
}
