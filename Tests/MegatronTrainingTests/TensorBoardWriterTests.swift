import Foundation
import MegatronCore
import MegatronModels
import MegatronTraining
import Testing

/// TensorBoard event files byte for byte as TensorBoard's own writer makes them
/// (Tests/Fixtures/make_tensorboard_fixture.py), and the scalars a training run writes.
struct TensorBoardWriterTests {
    static let fixture = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tensorboard_scalars.tfevents")

    /// The records of a TFRecord file, each checked against its two masked CRC-32Cs.
    static func records(_ file: Data) throws -> [Data] {
        var records: [Data] = [], at = file.startIndex
        func uint<T: FixedWidthInteger>(_ type: T.Type, _ offset: Int) -> T {
            file[offset ..< offset + MemoryLayout<T>.size].reversed().reduce(T(0)) { $0 << 8 | T($1) }
        }
        while at < file.endIndex {
            let length = Int(uint(UInt64.self, at))
            #expect(uint(UInt32.self, at + 8) == CRC32C.masked(file[at ..< at + 8]))
            let data = file[at + 12 ..< at + 12 + length]
            #expect(uint(UInt32.self, at + 12 + length) == CRC32C.masked(Data(data)))
            records.append(Data(data))
            at += 16 + length
        }
        return records
    }

    @Test func crc32cOfTheStandardCheckString() {
        #expect(CRC32C.checksum(Data("123456789".utf8)) == 0xE306_9283)
    }

    @Test func scalarsAreWhatTensorBoardsWriterWrites() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tensorboard-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let writer = try TensorBoardWriter(directory: directory, wallTime: 1_764_374_400.25)
        for (tag, value, step, wall) in [("learning-rate", 3e-4, 1, 1_764_374_401.5), ("lm loss", 10.9819, 1, 1_764_374_401.5),
                                         ("lm loss vs samples", 10.9819, 8, 1_764_374_401.5), ("grad-norm", 1.25, 2, 1_764_374_402.75),
                                         ("lm loss validation", 9.5, 0, 1_764_374_403.0), ("params-norm", -0.0625, 123_456_789, 1_764_374_404.0)] {
            writer.addScalar(tag, value, step: step, wallTime: wall)
        }
        try writer.flush()
        let ours = try Self.records(Data(contentsOf: writer.file)), theirs = try Self.records(Data(contentsOf: Self.fixture))
        #expect(ours.count == 7 && theirs.count == 7)
        // Record 0 names the format and the writer (TensorBoard's names itself, ours swift-megatron).
        for first in [ours[0], theirs[0]] {
            #expect(first.prefix(9) == Data([0x09]) + withUnsafeBytes(of: (1_764_374_400.25).bitPattern.littleEndian) { Data($0) })
            #expect(first.range(of: Data("\u{1A}\u{0D}brain.Event:2".utf8)) != nil)
        }
        #expect(Array(ours.dropFirst()) == Array(theirs.dropFirst()))
        #expect(writer.file.lastPathComponent.hasPrefix("events.out.tfevents.1764374400."))
    }

    /// A zero (a learning rate at the end of its decay) is still a value: TensorBoard ignores a
    /// scalar event without one.
    @Test func aZeroScalarKeepsItsValue() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tensorboard-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let writer = try TensorBoardWriter(directory: directory, wallTime: 1)
        writer.addScalar("learning-rate", 0, step: 3, wallTime: 2)
        try writer.flush()
        let record = try Self.records(Data(contentsOf: writer.file))[1]
        #expect(record.suffix(5) == Data([0x15, 0, 0, 0, 0]), "simple_value = 0.0 present")
    }

    /// The fields of a protocol buffer message: (field number, varint value or bytes).
    static func fields(_ message: Data) -> [(field: Int, varint: UInt64, bytes: Data)] {
        var out: [(Int, UInt64, Data)] = [], i = message.startIndex
        func varint() -> UInt64 {
            var result: UInt64 = 0, shift: UInt64 = 0
            while i < message.endIndex {
                let byte = message[i]
                i += 1
                result |= UInt64(byte & 0x7F) << shift
                shift += 7
                if byte < 0x80 { break }
            }
            return result
        }
        while i < message.endIndex {
            let key = varint(), field = Int(key >> 3)
            switch key & 7 {
            case 0: out.append((field, varint(), Data()))
            case 1: out.append((field, 0, message[i ..< i + 8])); i += 8
            case 5: out.append((field, 0, message[i ..< i + 4])); i += 4
            default: let n = Int(varint()); out.append((field, 0, message[i ..< i + n])); i += n
            }
        }
        return out
    }

    /// (tag, step) of a scalar event record (Event.step = 2, Event.summary = 5 → Summary.value = 1 → Value.tag = 1).
    static func scalar(_ record: Data) -> (tag: String, step: Int)? {
        let event = fields(record)
        guard let summary = event.first(where: { $0.field == 5 })?.bytes,
              let value = fields(summary).first(where: { $0.field == 1 })?.bytes,
              let tag = fields(value).first(where: { $0.field == 1 })?.bytes else { return nil }
        return (String(decoding: tag, as: UTF8.self), Int(event.first(where: { $0.field == 2 })?.varint ?? 0))
    }

    /// A short run writes Megatron's scalars: the training ones every iteration (at the iteration and
    /// vs samples), the timers at each log line after the first, and the validation loss.
    @Test func aTrainingRunWritesMegatronsScalars() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tensorboard-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let config = TransformerConfig(numLayers: 1, hiddenSize: 16, numAttentionHeads: 2, paddedVocabSize: 128, maxPositionEmbeddings: 8)
        let model = try GPTModel(config: config, seed: 1, on: CPUDevice(threads: 1))
        var settings = TrainingSettings(trainIters: 4, microBatchSize: 1, globalBatchSize: 2, sequenceLength: 8)
        settings.logInterval = 2
        let data = try MockData(vocabSize: 128, sequenceLength: 8, seed: 1)
        let trainer = try Trainer(model: model, optimizer: try Optimizer(model: model, settings: .init()),
                              scheduler: .init(maxLR: 1e-3, warmupSteps: 0, decaySteps: 8, decayStyle: .linear),
                              settings: settings, sample: data.sample, log: { _ in })
        trainer.evaluation = .init(interval: 2, iterations: 1, validation: data.sample, test: nil)
        var log = TensorBoardLog(writer: try TensorBoardWriter(directory: directory))
        log.logTimers = true
        trainer.tensorboard = log
        try trainer.train()
        let scalars = try Self.records(Data(contentsOf: log.writer.file)).compactMap(Self.scalar)
        let steps = { (tag: String) in scalars.filter { $0.tag == tag }.map(\.step) }
        for tag in ["learning-rate", "batch-size", "lm loss", "loss-scale", "grad-norm"] {
            #expect(steps(tag) == [1, 2, 3, 4], "\(tag)")
            #expect(steps(tag + " vs samples") == [2, 4, 6, 8], "\(tag) vs samples")
        }
        #expect(steps("iteration-time") == [2, 4] && steps("throughput").isEmpty && steps("params-norm").isEmpty)
        #expect(steps("lm loss validation") == [2, 4, 4] && steps("lm loss validation ppl").isEmpty)
    }
}
