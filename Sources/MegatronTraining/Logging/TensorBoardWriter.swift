import Foundation

/// A TensorBoard event file, as torch.utils.tensorboard.SummaryWriter writes one: a sequence of
/// TFRecord records (length, masked CRC-32C of the length, an `Event` protocol buffer, its masked
/// CRC-32C), the first naming the format ("brain.Event:2"), each other holding one scalar:
///
///     Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5;
///               SourceMetadata source_metadata = 10 }
///     Summary { repeated Value value = 1 }   Value { string tag = 1; float simple_value = 2 }
///
/// The file is `events.out.tfevents.<seconds>.<host>.<pid>.0` in `directory`; records are buffered
/// and written by `flush()` (call it after each log interval) and on deinit.
public final class TensorBoardWriter {
    public let file: URL
    private let handle: FileHandle
    private var pending = Data()

    /// Creates the event file in `directory` (made if missing); `wallTime` stamps its first record.
    public init(directory: URL, wallTime: Double = Date().timeIntervalSince1970) throws {
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let host = ProcessInfo.processInfo.hostName
        file = directory.appendingPathComponent("events.out.tfevents.\(Int(wallTime)).\(host).\(getpid()).0")
        guard FileManager.default.createFile(atPath: file.path, contents: nil) else {
            throw TrainingLogError("--tensorboard-dir: could not create \(file.path)")
        }
        handle = try FileHandle(forWritingTo: file)
        var event = ProtocolBuffer()
        event.double(1, wallTime)
        event.string(3, "brain.Event:2")
        var source = ProtocolBuffer()
        source.string(1, "swift-megatron")
        event.message(10, source)
        record(event.bytes)
        try flush()
    }

    deinit { try? flush() }

    /// Adds `value` under `tag` at `step` (as SummaryWriter.add_scalar: stored as a 32-bit float).
    public func addScalar(_ tag: String, _ value: Double, step: Int, wallTime: Double = Date().timeIntervalSince1970) {
        var scalar = ProtocolBuffer()
        scalar.string(1, tag)
        scalar.float(2, Float(value))
        var summary = ProtocolBuffer()
        summary.message(1, scalar)
        var event = ProtocolBuffer()
        event.double(1, wallTime)
        event.int64(2, Int64(step))
        event.message(5, summary)
        record(event.bytes)
    }

    /// Writes the records added so far.
    public func flush() throws {
        guard !pending.isEmpty else { return }
        do {
            try handle.write(contentsOf: pending)
        } catch {
            throw TrainingLogError("\(file.path): writing TensorBoard events failed (\(error))")
        }
        pending.removeAll(keepingCapacity: true)
    }

    private func record(_ data: Data) {
        let length = withUnsafeBytes(of: UInt64(data.count).littleEndian) { Data($0) }
        pending.append(length)
        pending.append(contentsOf: withUnsafeBytes(of: CRC32C.masked(length).littleEndian) { Array($0) })
        pending.append(data)
        pending.append(contentsOf: withUnsafeBytes(of: CRC32C.masked(data).littleEndian) { Array($0) })
    }
}

/// An error of the training logs (TensorBoard files).
public struct TrainingLogError: Error, CustomStringConvertible {
    public let description: String
    init(_ description: String) { self.description = description }
}

/// The protocol buffer wire format for the few field kinds an event uses. Plain fields equal to
/// proto3's defaults (0, empty) are omitted, as protobuf's serialisers omit them; a member of a
/// `oneof` (Value's simple_value) is written whatever its value.
struct ProtocolBuffer {
    private(set) var bytes = Data()

    private mutating func varint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            bytes.append(UInt8(v & 0x7F) | 0x80)
            v >>= 7
        }
        bytes.append(UInt8(v))
    }

    private mutating func key(_ field: Int, _ wireType: UInt64) { varint(UInt64(field) << 3 | wireType) }

    mutating func double(_ field: Int, _ value: Double) {
        guard value != 0 else { return }
        key(field, 1)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }

    /// A `oneof` member: written even when 0.
    mutating func float(_ field: Int, _ value: Float) {
        key(field, 5)
        withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes.append(contentsOf: $0) }
    }

    mutating func int64(_ field: Int, _ value: Int64) {
        guard value != 0 else { return }
        key(field, 0)
        varint(UInt64(bitPattern: value))
    }

    mutating func string(_ field: Int, _ value: String) { data(field, Data(value.utf8)) }

    mutating func message(_ field: Int, _ value: ProtocolBuffer) { data(field, value.bytes) }

    private mutating func data(_ field: Int, _ value: Data) {
        guard !value.isEmpty else { return }
        key(field, 2)
        varint(UInt64(value.count))
        bytes.append(value)
    }
}

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), and TFRecord's masking of it.
public enum CRC32C {
    static let table: [UInt32] = (0 ..< 256).map { n in
        (0 ..< 8).reduce(UInt32(n)) { c, _ in c & 1 != 0 ? 0x82F6_3B78 ^ (c >> 1) : c >> 1 }
    }

    public static func checksum(_ data: Data) -> UInt32 {
        ~data.reduce(~UInt32(0)) { crc, byte in table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8) }
    }

    /// TFRecord's mask: rotate right by 15 and add a constant, so CRCs of CRCs stay well-distributed.
    public static func masked(_ data: Data) -> UInt32 {
        let crc = checksum(data)
        return ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
    }
}
