import Foundation
import MegatronCore
import MegatronModels

/// The sharded checkpoint format (`--ckpt-format torch_dist`, Megatron's distributed checkpoint,
/// stored as safetensors): every rank writes only what it owns, in parallel, and any layout reads
/// back exactly its share.
///
///     DIR/iter_0000010/shard_00003.safetensors   what world rank 3 owns: its tensor-parallel shard
///                                                of its stage's parameters (data-parallel rank 0
///                                                only; replicated tensors from tensor-parallel rank
///                                                0 only) and the optimizer state it owns (its
///                                                distributed-optimizer slice), each in the dtype
///                                                training keeps it in (fp32, or 16 bits under
///                                                16-bit storage and the precision-aware optimizer)
///     DIR/iter_0000010/metadata.json             every global tensor (the model's by its
///                                                Megatron-core name; the optimizer's as
///                                                "<name>.exp_avg" …) with its dtype, whole shape
///                                                and chunks: file, key, and where the chunk lies
///     DIR/iter_0000010/checkpoint.json           where training stood (as the whole format)
///
/// A chunk is elements `start ..< end` of the flattened shard that tensor-parallel rank `rank` of
/// `of` holds under `split` (Megatron's ShardedTensor with a flattened range): the distributed
/// optimizer's slices cut tensors anywhere. Each shard file also lists its own chunks in its header's
/// `__metadata__` ("chunks"), from which rank 0 writes `metadata.json` once every rank has written.
/// A reader maps the files and copies only the runs its layout needs.
public enum ShardedCheckpoint {
    public static let metadataName = "metadata.json"
    static let format = "swift-megatron sharded safetensors"

    public static func fileName(rank: Int) -> String { String(format: "shard_%05d.safetensors", rank) }

    /// Which part of the checkpoint a tensor belongs to.
    enum Part: String, Codable, Sendable { case model, optimizer }

    /// Where a chunk of a global tensor lies (see the type's documentation).
    public struct Placement: Codable, Equatable, Sendable {
        public var split: ParameterLayout.Split
        public var rank: Int, of: Int
        public var start: Int, end: Int

        /// The chunk's runs in the whole tensor of shape `shape`, in ascending order.
        func runs(in shape: [Int]) -> [StoredRun] {
            ParameterLayout.pieces(of: shape, split: split, rank: rank, of: of).compactMap { piece in
                let lower = max(piece.local, start), upper = min(piece.local + piece.count, end)
                return lower < upper ? StoredRun(whole: piece.whole + lower - piece.local, stored: lower - start, count: upper - lower) : nil
            }
        }
    }

    /// One chunk as its shard file's header lists it.
    struct ShardChunk: Codable, Sendable {
        var part: Part
        var tensor: String
        var shape: [Int]
        var key: String
        var placement: Placement
    }

    /// What one rank writes: its chunks, viewing their values.
    struct Shard: @unchecked Sendable {
        var chunks: [(chunk: ShardChunk, values: MegatronCore.Tensor)] = []

        /// Adds elements `range` of the `split` shard of tensor-parallel rank `rank` of `of` of the
        /// tensor `tensor` of whole shape `shape`, whose values are `values` (a view, not a copy,
        /// which keeps its memory alive), in their dtype.
        mutating func add(_ part: Part, _ tensor: String, shape: [Int], split: ParameterLayout.Split, rank: Int, of: Int,
                          range: Range<Int>, values: MegatronCore.Tensor, shardCount: Int) {
            let key = range == 0 ..< shardCount ? tensor : "\(tensor)@\(range.lowerBound)"
            chunks.append((ShardChunk(part: part, tensor: tensor, shape: shape, key: key,
                                      placement: Placement(split: split, rank: rank, of: of, start: range.lowerBound, end: range.upperBound)),
                           values))
        }

        /// Writes the shard durably as `directory/name`.
        func write(to file: URL) throws {
            let listed = String(decoding: try JSONEncoder().encode(chunks.map(\.chunk)), as: UTF8.self)
            var tensors: [String: SafeTensors.Entry] = [:]
            for (chunk, values) in chunks {
                let data = Data(bytesNoCopy: values.rawPointer, count: values.byteCount, deallocator: .none)
                tensors[chunk.key] = SafeTensors.Entry(dtype: values.dtype.safetensorsName, shape: [values.count], data: data)
            }
            try SafeTensors.write(tensors, metadata: ["chunks": listed], to: file)
        }
    }

    /// `metadata.json`: every global tensor of each part and its chunks.
    public struct Metadata: Codable {
        public struct Chunk: Codable {
            public var file: String
            public var key: String
            public var placement: Placement
        }
        public struct Tensor: Codable {
            public var dtype: String
            public var shape: [Int]
            public var chunks: [Chunk]
        }
        public var format: String
        public var model: [String: Tensor]
        public var optimizer: [String: Tensor]
    }

    /// Gathers the chunk lists of every shard file in `folder` into its `metadata.json` (written
    /// durably), checking that each tensor's chunks agree on its shape.
    static func writeMetadata(in folder: URL) throws {
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path)
            .filter { $0.hasPrefix("shard_") && $0.hasSuffix(".safetensors") }.sorted()
        var metadata = Metadata(format: format, model: [:], optimizer: [:])
        for file in files {
            let url = folder.appendingPathComponent(file)
            let (tensors, header) = try SafeTensors.read(url)
            guard let listed = header["chunks"],
                  let chunks = try? JSONDecoder().decode([ShardChunk].self, from: Data(listed.utf8)) else {
                throw CheckpointError("\(url.path): its header lists no chunks (not a shard of a sharded checkpoint)")
            }
            for chunk in chunks {
                guard let entry = tensors[chunk.key] else { throw CheckpointError("\(url.path) has no tensor \(chunk.key), which its header lists") }
                var tensor = (chunk.part == .model ? metadata.model : metadata.optimizer)[chunk.tensor]
                    ?? Metadata.Tensor(dtype: entry.dtype, shape: chunk.shape, chunks: [])
                guard tensor.shape == chunk.shape, tensor.dtype == entry.dtype else {
                    throw CheckpointError("\(url.path): \(chunk.tensor) is \(entry.dtype) \(chunk.shape), another shard's is \(tensor.dtype) \(tensor.shape)")
                }
                tensor.chunks.append(Metadata.Chunk(file: file, key: chunk.key, placement: chunk.placement))
                if chunk.part == .model { metadata.model[chunk.tensor] = tensor } else { metadata.optimizer[chunk.tensor] = tensor }
            }
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        try DurableFile.write([try encoder.encode(metadata)], to: folder.appendingPathComponent(metadataName))
    }

    /// Whether `folder` (an iteration's directory) holds a sharded checkpoint.
    static func isSharded(_ folder: URL) -> Bool {
        FileManager.default.fileExists(atPath: folder.appendingPathComponent(metadataName).path)
    }

    /// The model and optimizer parts of the sharded checkpoint in `folder`, its shard files mapped as
    /// they are first needed.
    static func read(_ folder: URL) throws -> (model: StoredTensors, optimizer: StoredTensors) {
        let file = folder.appendingPathComponent(metadataName)
        let metadata: Metadata
        do {
            metadata = try JSONDecoder().decode(Metadata.self, from: Data(contentsOf: file))
        } catch {
            throw CheckpointError("\(file.path): not a readable sharded-checkpoint description (\(error))")
        }
        let shards = ShardFiles(folder: folder)
        return (ShardedTensors(source: file, tensors: metadata.model, shards: shards),
                ShardedTensors(source: file, tensors: metadata.optimizer, shards: shards))
    }

    /// The memory-mapped shard files of a checkpoint, each opened once.
    final class ShardFiles {
        let folder: URL
        private var opened: [String: [String: SafeTensors.Entry]] = [:]

        init(folder: URL) { self.folder = folder }

        func entry(_ key: String, in file: String) throws -> SafeTensors.Entry {
            if opened[file] == nil {
                let url = folder.appendingPathComponent(file)
                guard FileManager.default.fileExists(atPath: url.path) else {
                    throw CheckpointError("\(url.path): no such file, though \(metadataName) lists it (a shard lost or not copied with the checkpoint)")
                }
                opened[file] = try SafeTensors.read(url).tensors
            }
            guard let entry = opened[file]![key] else {
                throw CheckpointError("\(folder.appendingPathComponent(file).path) has no tensor \(key), which \(metadataName) lists")
            }
            return entry
        }
    }

    /// One part of a sharded checkpoint as `StoredTensors`.
    struct ShardedTensors: StoredTensors {
        let source: URL
        let tensors: [String: Metadata.Tensor]
        let shards: ShardFiles

        var names: [String] { Array(tensors.keys) }

        func description(of name: String) -> (dtype: String, shape: [Int])? { tensors[name].map { ($0.dtype, $0.shape) } }

        func copy(_ name: String, into targets: [CopyTarget]) throws {
            let tensor = tensors[name]!, dtype = try dtype(tensor.dtype, of: name)
            var copied = 0
            for chunk in tensor.chunks {
                let entry = try shards.entry(chunk.key, in: chunk.file)
                guard entry.data.count == (chunk.placement.end - chunk.placement.start) * dtype.size else {
                    throw CheckpointError("\(shards.folder.appendingPathComponent(chunk.file).path): \(chunk.key) holds \(entry.data.count) bytes, "
                                          + "its chunk \(chunk.placement.start)..<\(chunk.placement.end) needs \(dtype.size) each")
                }
                copied += try Self.copy(chunk.placement.runs(in: tensor.shape), of: entry.data, dtype: dtype, into: targets,
                                       what: "\(shards.folder.appendingPathComponent(chunk.file).path): \(chunk.key)")
            }
            let needed = targets.reduce(0) { $0 + $1.count }
            guard copied == needed else {
                throw CheckpointError("\(source.path): the chunks of \(name) cover \(copied) of the \(needed) elements this rank needs")
            }
        }
    }
}
