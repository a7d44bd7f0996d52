import Foundation
import MegatronData
import Testing

/// `megatron preprocess-data` against what Megatron's tools/preprocess_data.py writes for the same
/// input: a list of strings under a JSON key is one sequence per non-empty string, all in one
/// document; --append-eod ends a non-empty document's last sequence; an empty document adds a
/// document boundary and no sequence.
@Suite struct PreprocessDataTests {
    @Test func listsAreSequencesOfOneDocument() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("preprocess-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("input.jsonl")
        try """
            {"text": ["1 2 3", "", "4 5"]}
            {"text": "6 7"}
            {"text": ""}
            {"text": ["8"]}

            """.write(to: input, atomically: true, encoding: .utf8)
        let prefix = dir.appendingPathComponent("out").path
        let (status, output) = try PretrainFlagTests.megatron(
            ["preprocess-data", "--input", input.path, "--output-prefix", prefix, "--tokenizer-type", "NullTokenizer",
             "--vocab-size", "10", "--append-eod", "--workers", "1"])
        #expect(status == 0, "\(output)")
        let dataset = try IndexedDataset(prefix: prefix + "_text_document")
        // NullTokenizer's end of document is its last id, 9.
        #expect((0 ..< dataset.sequenceCount).map(dataset.sequence) == [[1, 2, 3], [4, 5, 9], [6, 7, 9], [8, 9]])
        #expect(dataset.documentIndices == [0, 2, 3, 3, 4])
    }
}

/// `megatron preprocess-data-nmt` writes each line as one sequence and one document, as Megatron's
/// tools/preprocess_data_nmt.py, and names a line without tokens.
@Suite struct PreprocessDataNMTTests {
    @Test func eachLineIsASequenceAndADocument() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nmt-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let input = dir.appendingPathComponent("source.txt")
        try "1 2 3\n4\n5 6\n".write(to: input, atomically: true, encoding: .utf8)
        let prefix = dir.appendingPathComponent("source").path
        let run = try PretrainFlagTests.megatron(["preprocess-data-nmt", "--input", input.path, "--output-prefix", prefix,
                                                  "--tokenizer-type", "NullTokenizer", "--vocab-size", "10", "--workers", "2"])
        #expect(run.status == 0 && run.output.contains("3 sentences"), "\(run.output)")
        let dataset = try IndexedDataset(prefix: prefix)
        #expect((0 ..< dataset.sequenceCount).map(dataset.sequence) == [[1, 2, 3], [4], [5, 6]])
        #expect(dataset.documentIndices == [0, 1, 2, 3])
        try "1 2\n\n3\n".write(to: input, atomically: true, encoding: .utf8)
        let empty = try PretrainFlagTests.megatron(["preprocess-data-nmt", "--input", input.path, "--output-prefix", prefix,
                                                    "--tokenizer-type", "NullTokenizer", "--vocab-size", "10"])
        #expect(empty.status != 0 && empty.output.contains("source.txt:2"), "\(empty.output)")
    }
}
