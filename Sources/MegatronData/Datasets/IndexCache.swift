import Foundation

/// Where GPTDataset keeps its indices between runs: DIRECTORY/HASH-GPTDataset-{description.txt,
/// document_index.npy, sample_index.npy, shuffle_index.npy}, HASH a 64-bit FNV-1a of the
/// description text (the dataset, documents, sample count, sequence length, seed). A cache whose
/// description differs, or whose files do not read back, is rebuilt.
struct IndexCache {
    let directory: String
    let description: String

    private var base: String {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in description.utf8 { hash = (hash ^ UInt64(byte)) &* 0x0000_0100_0000_01B3 }
        return directory + "/" + String(hash, radix: 16) + "-GPTDataset-"
    }

    func load() -> (documentIndex: [Int32], sampleIndex: [Int32], shuffleIndex: [Int])? {
        guard let text = try? String(contentsOfFile: base + "description.txt", encoding: .utf8), text == description,
              let documents = try? NumPyArrayFile.read(base + "document_index.npy"),
              let samples = try? NumPyArrayFile.read(base + "sample_index.npy"),
              let shuffle = try? NumPyArrayFile.read(base + "shuffle_index.npy")
        else { return nil }
        return (documents.map { Int32($0) }, samples.map { Int32($0) }, shuffle)
    }

    /// Writes the indices (each file complete before it appears), the description last.
    func save(documentIndex: [Int32], sampleIndex: [Int32], shuffleIndex: [Int]) throws {
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw TokenizerError("--data-cache-path \(directory): cannot be created (\(error.localizedDescription))")
        }
        try NumPyArrayFile.write(documentIndex.map(Int.init), as: .int32, to: base + "document_index.npy")
        try NumPyArrayFile.write(sampleIndex.map(Int.init), as: .int32, columns: 2, to: base + "sample_index.npy")
        let wide = (shuffleIndex.max() ?? 0) >= Int(UInt32.max) - 1
        try NumPyArrayFile.write(shuffleIndex, as: wide ? .int64 : .uint32, to: base + "shuffle_index.npy")
        let temporary = base + "description.txt.\(getpid()).\(UInt32.random(in: 0 ... .max)).partial"
        try description.write(toFile: temporary, atomically: false, encoding: .utf8)
        guard rename(temporary, base + "description.txt") == 0 else {
            throw TokenizerError("\(base)description.txt: could not move the written file into place (errno \(errno))")
        }
    }
}
