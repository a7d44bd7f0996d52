import CKernels
import Foundation

/// Reading and writing the safetensors format (Hugging Face): an 8-byte little-endian header
/// length, a JSON header mapping each tensor name to its dtype, shape and byte range
/// (`data_offsets`, relative to the data section), then the raw little-endian data.
public enum SafeTensors {
    /// One tensor as stored: its dtype name ("F32", "F16", "BF16", "I32", …), shape and bytes.
    public struct Entry: Sendable, Equatable {
        public let dtype: String
        public let shape: [Int]
        public let data: Data

        public init(dtype: String, shape: [Int], data: Data) {
            self.dtype = dtype
            self.shape = shape
            self.data = data
        }

        /// The values of an "F32" entry, or of an "F16"/"BF16" one widened to fp32 (exactly).
        public func floats() throws -> [Float] {
            guard let stored = DType(safetensorsName: dtype), [.float32, .float16, .bfloat16].contains(stored) else {
                throw TensorError("safetensors: tensor is \(dtype), expected F32, F16 or BF16")
            }
            let count = data.count / stored.size
            return try [Float](unsafeUninitializedCapacity: count) { out, initialized in
                try data.withUnsafeBytes { bytes in
                    try stored.convert(count, from: bytes.baseAddress!, to: out.baseAddress!, as: .float32, "safetensors \(dtype) tensor")
                }
                initialized = count
            }
        }
    }

    /// Every tensor of the file at `url` (and the header's `__metadata__`), or an error naming the file
    /// and what is malformed.
    public static func read(_ url: URL) throws -> (tensors: [String: Entry], metadata: [String: String]) {
        let file = try Data(contentsOf: url, options: .alwaysMapped)
        func fail(_ what: String) -> TensorError { TensorError("\(url.path): not a valid safetensors file: \(what)") }
        guard file.count >= 8 else { throw fail("shorter than the 8-byte header length") }
        let headerLength = file.prefix(8).enumerated().reduce(UInt64(0)) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
        guard headerLength <= UInt64(file.count - 8) else { throw fail("header length \(headerLength) exceeds the file") }
        let dataStart = 8 + Int(headerLength)
        guard let header = try? JSONSerialization.jsonObject(with: file.subdata(in: 8 ..< dataStart)) as? [String: Any] else {
            throw fail("header is not a JSON object")
        }
        var tensors: [String: Entry] = [:], metadata: [String: String] = [:]
        for (name, value) in header {
            if name == "__metadata__" {
                metadata = value as? [String: String] ?? [:]
                continue
            }
            guard let info = value as? [String: Any], let dtype = info["dtype"] as? String,
                  let shape = info["shape"] as? [Int], let offsets = info["data_offsets"] as? [Int], offsets.count == 2,
                  offsets[0] >= 0, offsets[0] <= offsets[1], dataStart + offsets[1] <= file.count
            else { throw fail("tensor \(name) has a malformed entry or lies outside the file") }
            // A slice of the memory-mapped file, not a copy: a checkpoint's gigabytes are read once, into their tensors.
            tensors[name] = Entry(dtype: dtype, shape: shape, data: file[dataStart + offsets[0] ..< dataStart + offsets[1]])
        }
        return (tensors, metadata)
    }

    /// Writes `tensors` to `url` through a temporary file synced and renamed into place
    /// (`DurableFile`), so an interrupted write never leaves a truncated file under the final name.
    /// As the safetensors library does, the data is laid out by element size, largest first, then
    /// by name: every tensor then starts aligned to its element size (the header is padded to 8).
    public static func write(_ tensors: [String: Entry], metadata: [String: String] = [:], to url: URL) throws {
        var header: [String: Any] = metadata.isEmpty ? [:] : ["__metadata__": metadata]
        var offset = 0
        let names = tensors.keys.sorted { a, b in
            let (x, y) = (elementSize(tensors[a]!.dtype), elementSize(tensors[b]!.dtype))
            return x != y ? x > y : a < b
        }
        for name in names {
            let e = tensors[name]!
            header[name] = ["dtype": e.dtype, "shape": e.shape, "data_offsets": [offset, offset + e.data.count]]
            offset += e.data.count
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while (8 + json.count) % 8 != 0 { json.append(0x20) }  // pad the header with spaces to 8-byte alignment
        let length = withUnsafeBytes(of: UInt64(json.count).littleEndian) { Data($0) }
        try DurableFile.write([length, json] + names.map { tensors[$0]!.data }, to: url)
    }

    /// Bytes per element of a safetensors dtype name (1 for names it does not know).
    static func elementSize(_ dtype: String) -> Int {
        switch dtype {
        case "F64", "I64", "U64": 8
        case "F32", "I32", "U32": 4
        case "F16", "BF16", "I16", "U16": 2
        default: 1
        }
    }
}
