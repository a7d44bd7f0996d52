import Foundation

/// NumPy's .npy format (version 1.0) for one-dimensional or [n, 2] little-endian integer arrays:
/// the magic "\u{93}NUMPY", version 1.0, a 2-byte header length, and a header dict
/// ("{'descr': '<i4', 'fortran_order': False, 'shape': (n, 2), }") padded with spaces to a multiple
/// of 64 bytes and ended by a newline, then the data. `numpy.load` reads what this writes, and
/// GPTDataset caches its indices in it (--data-cache-path), as Megatron does.
enum NumPyArrayFile {
    enum Element: String { case int32 = "<i4", uint32 = "<u4", int64 = "<i8" }

    /// Writes `values` (shape: [values.count / columns] or [rows, columns]) under a temporary name,
    /// then renames it into place, so a reader never sees a partial file.
    static func write(_ values: [Int], as element: Element, columns: Int = 1, to path: String) throws {
        let rows = values.count / columns
        let shape = columns == 1 ? "(\(rows),)" : "(\(rows), \(columns))"
        var header = "{'descr': '\(element.rawValue)', 'fortran_order': False, 'shape': \(shape), }"
        let unpadded = 10 + header.utf8.count + 1
        header += String(repeating: " ", count: (64 - unpadded % 64) % 64) + "\n"
        var data = Data([0x93] + Array("NUMPY".utf8) + [1, 0])
        withUnsafeBytes(of: UInt16(header.utf8.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(contentsOf: Array(header.utf8))
        for value in values {
            switch element {
            case .int32: withUnsafeBytes(of: Int32(value).littleEndian) { data.append(contentsOf: $0) }
            case .uint32: withUnsafeBytes(of: UInt32(value).littleEndian) { data.append(contentsOf: $0) }
            case .int64: withUnsafeBytes(of: Int64(value).littleEndian) { data.append(contentsOf: $0) }
            }
        }
        let temporary = "\(path).\(getpid()).\(UInt32.random(in: 0 ... .max)).partial"
        try data.write(to: URL(fileURLWithPath: temporary))
        guard rename(temporary, path) == 0 else {
            unlink(temporary)
            throw TokenizerError("\(path): could not move the written file into place (errno \(errno))")
        }
    }

    /// Reads an array this writes; throws naming the file when it is not one.
    static func read(_ path: String) throws -> [Int] {
        guard let data = FileManager.default.contents(atPath: path) else { throw TokenizerError("\(path): cannot be read") }
        let bytes = [UInt8](data)
        guard bytes.count >= 10, bytes[0] == 0x93, Array(bytes[1 ..< 6]) == Array("NUMPY".utf8), bytes[6] == 1 else {
            throw TokenizerError("\(path): not a version 1 .npy file")
        }
        let headerLength = Int(bytes[8]) | Int(bytes[9]) << 8
        guard bytes.count >= 10 + headerLength else { throw TokenizerError("\(path): truncated header") }
        let header = String(decoding: bytes[10 ..< 10 + headerLength], as: UTF8.self)
        guard let element = [Element.int32, .uint32, .int64].first(where: { header.contains("'descr': '\($0.rawValue)'") }),
              header.contains("'fortran_order': False"),
              let open = header.range(of: "'shape': ("), let close = header[open.upperBound...].firstIndex(of: ")")
        else { throw TokenizerError("\(path): unexpected header \(header.trimmingCharacters(in: .whitespacesAndNewlines))") }
        let dimensions = header[open.upperBound ..< close].split(separator: ",")
            .compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let size = element == .int64 ? 8 : 4, start = 10 + headerLength
        // Checked against the file's length before any product can overflow.
        var count = 1
        for d in dimensions {
            guard d >= 0, d <= (bytes.count - start) / size, case let (product, overflow) = count.multipliedReportingOverflow(by: d),
                  !overflow, product <= (bytes.count - start) / size
            else { throw TokenizerError("\(path): shape \(dimensions) does not fit the file's \(bytes.count - start) data bytes") }
            count = product
        }
        guard bytes.count == start + count * size else {
            throw TokenizerError("\(path): \(bytes.count - start) data bytes for \(count) elements of \(size) bytes")
        }
        return data.withUnsafeBytes { raw in
            (0 ..< count).map { i in
                let offset = start + i * size
                switch element {
                case .int32: return Int(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: Int32.self)))
                case .uint32: return Int(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
                case .int64: return Int(Int64(littleEndian: raw.loadUnaligned(fromByteOffset: offset, as: Int64.self)))
                }
            }
        }
    }
}
