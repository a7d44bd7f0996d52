import Foundation
import MegatronCore

/// The tensors of a Hugging Face model directory, as `save_pretrained` writes them: one
/// `model.safetensors`, or shards named by `model.safetensors.index.json`'s `weight_map`. Every file
/// is memory-mapped, so a tensor's bytes are read from disk only when it is converted, one at a time:
/// a model larger than memory imports.
public struct HuggingFaceWeights {
    public let directory: URL
    private var entries: [String: (entry: SafeTensors.Entry, file: URL)] = [:]

    /// Opens the weights of `directory`, dropping `stripPrefix` from names that carry it.
    public init(directory: URL, stripPrefix: String? = nil) throws {
        self.directory = directory
        let single = directory.appendingPathComponent("model.safetensors")
        let index = directory.appendingPathComponent("model.safetensors.index.json")
        var files: [URL]
        if FileManager.default.fileExists(atPath: index.path) {
            guard let json = try? JSONSerialization.jsonObject(with: Data(contentsOf: index)) as? [String: Any],
                  let weightMap = json["weight_map"] as? [String: String] else {
                throw CheckpointError("\(index.path): not a JSON object with a \"weight_map\" of tensor names to files")
            }
            files = Set(weightMap.values).sorted().map { directory.appendingPathComponent($0) }
            if let missing = files.first(where: { !FileManager.default.fileExists(atPath: $0.path) }) {
                throw CheckpointError("\(index.path) names \(missing.lastPathComponent), which is not in \(directory.path)")
            }
        } else if FileManager.default.fileExists(atPath: single.path) {
            files = [single]
        } else {
            throw CheckpointError("\(directory.path): neither model.safetensors nor model.safetensors.index.json")
        }
        for file in files {
            for (name, entry) in try SafeTensors.read(file).tensors {
                let key = stripPrefix.flatMap { name.hasPrefix($0) ? String(name.dropFirst($0.count)) : nil } ?? name
                entries[key] = (entry, file)
            }
        }
    }

    /// Whether a tensor of this name is stored.
    public func contains(_ name: String) -> Bool { entries[name] != nil }

    /// The values of tensor `name` (fp32; F16 and BF16 widened), checked to have `shape`; the error
    /// names the file, the tensor and, with `purpose`, the parameter it was read for.
    public func floats(_ name: String, shape: [Int], for purpose: String) throws -> [Float] {
        guard let (entry, file) = entries[name] else {
            throw CheckpointError("\(directory.path) has no tensor \(name) (for \(purpose))")
        }
        guard entry.shape == shape else {
            throw CheckpointError("\(file.path): \(name) has shape \(entry.shape), expected \(shape) for \(purpose)")
        }
        let values = try entry.floats()
        guard values.count == shape.reduce(1, *) else {
            throw CheckpointError("\(file.path): \(name) holds \(values.count) values, its shape \(shape) says \(shape.reduce(1, *))")
        }
        return values
    }

    /// The shape of tensor `name`, if stored.
    public func shape(_ name: String) -> [Int]? { entries[name]?.entry.shape }
}

extension HuggingFaceWeights {
    /// A vocabulary matrix of `rows` rows copied into Megatron's padded one of `shape` [padded, h], the
    /// padding rows copies of the last real row, as Megatron's checkpoint converter pads.
    static func padVocabulary(_ values: [Float], rows: Int, into out: UnsafeMutablePointer<Float>, shape: [Int], name: String,
                              in directory: URL) throws {
        let padded = shape[0], h = shape[1]
        guard rows >= 1, rows <= padded else {
            throw CheckpointError("\(directory.path): \(name) has \(rows) rows, more than the model's padded vocabulary of \(padded)")
        }
        out.update(from: values, count: rows * h)
        for row in rows ..< padded { (out + row * h).update(from: out + (rows - 1) * h, count: h) }
    }
}
