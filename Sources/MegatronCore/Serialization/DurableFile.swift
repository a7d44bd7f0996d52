import Foundation

/// Writing files so that a crash leaves either the previous file or the whole new one, on disk.
public enum DurableFile {
    /// Writes `chunks` one after another to a temporary file beside `url` (streamed: a chunk may view
    /// a model's buffers rather than copy them), syncs it to disk and renames it to `url`.
    public static func write(_ chunks: [Data], to url: URL) throws {
        let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).partial")
        guard FileManager.default.createFile(atPath: temporary.path, contents: nil) else {
            throw TensorError("\(temporary.path): could not create the file")
        }
        let file = try FileHandle(forWritingTo: temporary)
        do {
            for chunk in chunks { try file.write(contentsOf: chunk) }
            try file.synchronize()
            try file.close()
        } catch {
            try? file.close()
            throw TensorError("\(temporary.path): writing failed (\(error))")
        }
        guard rename(temporary.path, url.path) == 0 else {
            throw TensorError("\(url.path): could not move the written file into place (errno \(errno))")
        }
    }

    /// Makes the entries of `directory` (files created or renamed in it) durable.
    public static func syncDirectory(_ directory: URL) throws {
        let descriptor = open(directory.path, O_RDONLY)
        guard descriptor >= 0 else { throw TensorError("\(directory.path): could not open the directory to sync it (errno \(errno))") }
        defer { close(descriptor) }
        guard fsync(descriptor) == 0 else { throw TensorError("\(directory.path): could not sync the directory (errno \(errno))") }
    }
}
