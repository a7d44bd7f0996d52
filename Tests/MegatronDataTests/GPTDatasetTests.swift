import Foundation
import MegatronData
import Testing

/// GPTDataset against Tests/Fixtures/gpt_dataset_indices.json, which
/// Tests/Fixtures/make_gpt_dataset_fixtures.py writes with NumPy following Megatron's builders.
@Suite struct GPTDatasetTests {
    nonisolated(unsafe) static let fixture: [String: Any] = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/gpt_dataset_indices.json")
        return try! JSONSerialization.jsonObject(with: Data(contentsOf: url)) as! [String: Any]
    }()

    static func ints(_ value: Any?) -> [Int] { (value as! [NSNumber]).map(\.intValue) }

    /// Writes one single-sequence document of each size at `prefix`, document d of dataset k holding
    /// tokens (k·30000 + d·100 + position) mod 60000 (the fixture script's rule), and opens it.
    static func writeDocuments(sizes: [Int], dataset k: Int = 0, at prefix: String) throws -> IndexedDataset {
        let builder = try IndexedDatasetBuilder(prefix: prefix, tokenType: .uint16)
        for (d, size) in sizes.enumerated() {
            try builder.addDocument((0 ..< size).map { Int32((k * 30000 + d * 100 + $0) % 60000) }, lengths: [size])
        }
        try builder.finish()
        return try IndexedDataset(prefix: prefix)
    }

    @Test func mt19937MatchesNumPysRandomState() {
        var random = NumPyRandomState(seed: 1234)
        let expected = Self.ints(Self.fixture["mt19937_seed_1234_first_1000"])
        #expect((0 ..< expected.count).map { _ in Int(random.nextUInt32()) } == expected)
    }

    @Test func shuffleMatchesNumPysRandomState() {
        for case let shuffle as [String: Any] in Self.fixture["shuffles"] as! [Any] {
            let n = (shuffle["n"] as! NSNumber).intValue, seed = (shuffle["seed"] as! NSNumber).uint32Value
            var values = Array(0 ..< n), random = NumPyRandomState(seed: seed)
            random.shuffle(&values)
            #expect(Array(values.prefix(50)) == Self.ints(shuffle["head"]), "n \(n) seed \(seed)")
            let weighted = values.enumerated().reduce(0) { $0 + $1.element * ($1.offset % 97) }
            #expect(weighted == (shuffle["sum_of_squares_weighted"] as! NSNumber).intValue, "n \(n) seed \(seed)")
        }
    }

    @Test func splitsMatchMegatrons() throws {
        for case let split as [String: Any] in Self.fixture["splits"] as! [Any] {
            let count = (split["count"] as! NSNumber).intValue
            let expected = (split["bounds"] as! [Any]).map { ($0 as? [NSNumber]).map { $0[0].intValue ..< $0[1].intValue } }
            #expect(try GPTDataset.splitRanges(split["split"] as! String, count: count) == expected, "\(split)")
        }
        #expect(throws: (any Error).self) { try GPTDataset.splitRanges("0,0,0", count: 10) }
        #expect(throws: (any Error).self) { try GPTDataset.splitRanges("90,x", count: 10) }
    }

    @Test func indicesAndSamplesMatchMegatrons() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("gptdataset-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for case let c as [String: Any] in Self.fixture["cases"] as! [Any] {
            let name = c["name"] as! String
            let sizes = Self.ints(c["sizes"])
            let indexed = try Self.writeDocuments(sizes: sizes, at: dir.appendingPathComponent(name.replacingOccurrences(of: " ", with: "_")).path)
            let train = try #require(try GPTDataset.splitRanges(c["split"] as! String, count: sizes.count)[0])
            #expect([train.lowerBound, train.upperBound] == Self.ints(c["train_documents"]), "\(name)")
            let dataset = try GPTDataset(indexed, documents: train, numSamples: (c["num_samples"] as! NSNumber).intValue,
                                         sequenceLength: (c["sequence_length"] as! NSNumber).intValue,
                                         seed: (c["seed"] as! NSNumber).uint32Value)
            #expect(dataset.epochs == (c["epochs"] as! NSNumber).intValue, "\(name)")
            #expect(dataset.separateFinalEpoch == (c["separate_final_epoch"] as! Bool), "\(name)")
            #expect(dataset.documentIndex.map(Int.init) == Self.ints(c["document_index"]), "\(name): document index")
            #expect(dataset.sampleIndex.map(Int.init) == (c["sample_index"] as! [[NSNumber]]).flatMap { $0.map(\.intValue) },
                    "\(name): sample index")
            #expect(dataset.shuffleIndex == Self.ints(c["shuffle_index"]), "\(name): shuffle index")
            for (i, expected) in (c["first_samples"] as! [[NSNumber]]).enumerated() {
                #expect(dataset.sample(i).map(Int.init) == expected.map(\.intValue), "\(name): sample \(i)")
            }
        }
    }
}

/// BlendedDataset against the blends in the same fixture.
@Suite struct BlendedDatasetTests {
    @Test func blendsMatchMegatrons() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("blend-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        for case let (number, blend as [String: Any]) in (GPTDatasetTests.fixture["blends"] as! [Any]).enumerated() {
            let name = blend["name"] as! String
            let hexFloats = { (key: String) in (blend[key] as! [String]).map { Double($0)! } }
            let rawWeights = blend["weights"] is NSNull ? nil : hexFloats("weights")
            let weights = rawWeights.map(BlendedDataset.normalize)
            if rawWeights != nil { #expect(weights == hexFloats("normalized_weights"), "\(name)") }
            let size = (blend["size"] as! NSNumber).intValue
            let plan = DataBlend(prefixes: (0 ..< (blend["dataset_sizes"] as! [Any]).count).map { "dataset\($0)" }, weights: weights)
            let build = plan.samplesToBuild(size: size)
            if let weights {
                let target = BlendedDataset.samplesPerDataset(weights: weights, size: size).target
                #expect(target == GPTDatasetTests.ints(blend["target"]), "\(name)")
                #expect(build == GPTDatasetTests.ints(blend["build"]), "\(name)")
            } else {
                #expect(build.allSatisfy { $0 == nil }, "\(name): one epoch of each")
            }
            let datasets = try (blend["dataset_sizes"] as! [[NSNumber]]).enumerated().map { k, sizes in
                let indexed = try GPTDatasetTests.writeDocuments(sizes: sizes.map(\.intValue), dataset: k,
                                                                 at: dir.appendingPathComponent("blend\(number)-dataset\(k)").path)
                let train = try #require(try GPTDataset.splitRanges(blend["split"] as! String, count: sizes.count)[0])
                return try GPTDataset(indexed, documents: train, numSamples: build[k],
                                      sequenceLength: (blend["sequence_length"] as! NSNumber).intValue,
                                      seed: (blend["seed"] as! NSNumber).uint32Value)
            }
            let blended = try #require(try plan.blend(datasets, size: size))
            #expect(blended.datasetIndex == GPTDatasetTests.ints(blend["dataset_index"]), "\(name): dataset index")
            #expect(blended.datasetSampleIndex == GPTDatasetTests.ints(blend["dataset_sample_index"]), "\(name): sample index")
            for (i, expected) in (blend["first_samples"] as! [[NSNumber]]).enumerated() {
                #expect(blended.sample(i).map(Int.init) == expected.map(\.intValue), "\(name): sample \(i)")
            }
        }
    }
}

/// --data-cache-path: indices saved as .npy beside a description, loaded by a later identical request.
@Suite struct GPTDatasetCacheTests {
    @Test func indicesAreSavedAndReusedForTheSameRequestOnly() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("cache-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let indexed = try GPTDatasetTests.writeDocuments(sizes: (0 ..< 30).map { $0 % 7 + 3 }, at: dir.appendingPathComponent("data").path)
        let cache = dir.appendingPathComponent("cache").path
        let make = { (samples: Int, cacheDirectory: String?) in
            try GPTDataset(indexed, documents: 0 ..< 30, numSamples: samples, sequenceLength: 8, seed: 5, cacheDirectory: cacheDirectory)
        }
        let plain = try make(40, nil), first = try make(40, cache)
        #expect(first.documentIndex == plain.documentIndex && first.sampleIndex == plain.sampleIndex && first.shuffleIndex == plain.shuffleIndex)
        let files = try FileManager.default.contentsOfDirectory(atPath: cache).sorted()
        #expect(files.count == 4 && files.allSatisfy { $0.contains("-GPTDataset-") }, "\(files)")
        let npy = try #require(files.first { $0.hasSuffix("document_index.npy") })
        var bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: cache + "/" + npy)))
        #expect(Array(bytes[0 ..< 8]) == [0x93] + Array("NUMPY".utf8) + [1, 0] && (10 + Int(bytes[8])) % 64 == 0)
        // Swap the first two document-index entries in the file: a load must show it.
        let data = 10 + Int(bytes[8])
        for k in 0 ..< 4 { bytes.swapAt(data + k, data + 4 + k) }
        try Data(bytes).write(to: URL(fileURLWithPath: cache + "/" + npy))
        let loaded = try make(40, cache)
        #expect(loaded.documentIndex[0] == plain.documentIndex[1] && loaded.documentIndex[1] == plain.documentIndex[0])
        // A cached file whose header claims an impossible shape is rebuilt, not trusted (nor a crash).
        var header = String(decoding: bytes[10 ..< data], as: UTF8.self)
        header = header.replacingOccurrences(of: "(\(plain.documentIndex.count),)", with: "(9223372036854775807,)")
        let padded = header.utf8.count <= data - 10 ? header + String(repeating: " ", count: data - 10 - header.utf8.count) : header
        try Data(Array(bytes[0 ..< 10]) + Array(padded.utf8.prefix(data - 10)) + Array(bytes[data...]))
            .write(to: URL(fileURLWithPath: cache + "/" + npy))
        #expect(try make(40, cache).documentIndex == plain.documentIndex)
        // Another request gets its own files.
        let other = try make(90, cache)
        #expect(other.shuffleIndex == (try make(90, nil)).shuffleIndex)
        #expect(try FileManager.default.contentsOfDirectory(atPath: cache).count == 8)
    }
}

/// --data-path read as Megatron's get_blend_from_list.
@Suite struct DataBlendTests {
    @Test func prefixesAloneOrWeightPrefixPairs() throws {
        #expect(try DataBlend(dataPath: ["A"]) == DataBlend(prefixes: ["A"], weights: nil))
        #expect(try DataBlend(dataPath: ["A", "B"]) == DataBlend(prefixes: ["A", "B"], weights: nil))
        #expect(try DataBlend(dataPath: ["A", "B", "C"]) == DataBlend(prefixes: ["A", "B", "C"], weights: nil))
        #expect(try DataBlend(dataPath: ["1.0", "A"]) == DataBlend(prefixes: ["A"], weights: [1]))
        #expect(try DataBlend(dataPath: ["30", "A", "70", "B"]) == DataBlend(prefixes: ["A", "B"], weights: [0.3, 0.7]))
    }

    @Test(arguments: [(["0.5", "A", "B", "C"], "--data-path: B (before C) is not a positive weight"),
                      (["-1", "A"], "--data-path: -1 (before A) is not a positive weight"),
                      (["0", "A", "1", "B"], "--data-path: 0 (before A) is not a positive weight")])
    func badWeightsAreNamed(values: [String], message: String) {
        #expect { try DataBlend(dataPath: values) } throws: { "\($0)".hasPrefix(message) }
    }

    @Test func oneUnweightedPrefixIsItsOwnSplit() throws {
        let plan = DataBlend(prefixes: ["A"], weights: nil)
        #expect(plan.samplesToBuild(size: 40) == [40])
    }

    @Test func unweightedDatasetsTooSmallForTheRunAreAnError() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("blend-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let datasets = try (0 ..< 2).map { k in
            let indexed = try GPTDatasetTests.writeDocuments(sizes: [30, 30], dataset: k, at: dir.appendingPathComponent("d\(k)").path)
            return try GPTDataset(indexed, documents: 0 ..< 2, numSamples: nil, sequenceLength: 8, seed: 1)
        }
        #expect(datasets.map(\.count) == [7, 7], "one epoch: (60 − 1) / 8 samples")
        let plan = DataBlend(prefixes: ["d0", "d1"], weights: nil)
        #expect(try plan.blend(datasets, size: 14)?.count == 14)
        #expect { try plan.blend(datasets, size: 15) } throws: {
            "\($0)" == "--data-path: one epoch of each unweighted dataset gives 14 training samples, and the run needs 15; "
                + "give weights (w1 p1 w2 p2 …) to repeat epochs"
        }
    }
}
