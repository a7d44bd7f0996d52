import Foundation
import MegatronData
import Testing

struct PreprocessingInputTests {
    @Test func plainTextDocumentsAreBlankLineSeparatedParagraphs() {
        let text = "First paragraph\nline two\n\n\n  \t\nSecond one\r\n\r\nThird"
        let data = Data(text.utf8)
        let documents = InputDocuments.paragraphs(of: data).map { String(decoding: data[$0], as: UTF8.self) }
        #expect(documents == ["First paragraph\nline two", "Second one\r", "Third"])
        #expect(InputDocuments.paragraphs(of: Data("\n\n".utf8)).isEmpty)
        #expect(InputDocuments.lines(of: Data("a\nbc\n".utf8)) == [0 ..< 1, 2 ..< 4])
    }

    @Test func nullTokenizerReadsDecimalIdsAndRejectsOthers() throws {
        let tokenizer = try NullTokenizer(vocabSize: 10)
        #expect(try tokenizer.encode("1 2 9") == [1, 2, 9] && tokenizer.eod == 9)
        #expect(try tokenizer.encode("") == [])
        #expect(tokenizer.decode([3, 4]) == "3 4")
        for bad in ["1  2", "10", "-1", "a", "1 2 "] {
            #expect(throws: TokenizerError.self, "\(bad)") { try tokenizer.encode(bad) }
        }
    }

    @Test func aBuilderDroppedBeforeFinishLeavesNoFiles() throws {
        let prefix = FileManager.default.temporaryDirectory.appendingPathComponent("dropped-\(UUID().uuidString)").path
        do {
            let builder = try IndexedDatasetBuilder(prefix: prefix, tokenType: .uint16)
            try builder.addDocument([1, 2, 3], lengths: [3])
            #expect(FileManager.default.fileExists(atPath: prefix + ".bin.partial"))
        }
        #expect(!FileManager.default.fileExists(atPath: prefix + ".bin.partial"))
        #expect(!FileManager.default.fileExists(atPath: prefix + ".bin"))
    }
}
