import Foundation
import MegatronCore
import MegatronModels

/// A training checkpoint in Megatron's directory layout, stored as safetensors, in one of two formats
/// (`CheckpointFormat`). The whole-model format (--ckpt-format torch):
///
///     DIR/latest_checkpointed_iteration.txt   the newest iteration saved ("10")
///     DIR/iter_0000010/model.safetensors      every parameter by its Megatron-core name, fp32
///     DIR/iter_0000010/optimizer.safetensors  the optimizer state of each parameter, fp32:
///                                             "<name>.exp_avg", "<name>.exp_avg_sq" (Adam) or
///                                             "<name>.momentum_buffer" (SGD), and under
///                                             mixed precision "<name>.fp32_param" (main parameters)
///     DIR/iter_0000010/checkpoint.json        where training stood and the architecture (`Progress`)
///
/// The sharded format (--ckpt-format torch_dist, `ShardedCheckpoint`) holds the same global tensors
/// as chunks in each rank's file, listed by a `metadata.json`, each in the precision training keeps
/// it in (16-bit parameters and moments, and the precision-aware optimizer's main parameters as
/// "<name>.fp32_param_remainder", the low 16 bits that complete the bf16 parameters). Readers tell
/// the formats apart by that file, either loads on any data-, tensor- and pipeline-parallel layout,
/// and loading converts each tensor between fp32 and 16 bits to the precision the run keeps it in.
///
/// A checkpoint imported from elsewhere (Hugging Face GPT-2) has no optimizer file: training from it
/// starts a fresh optimizer.
///
/// Saving is atomic: an iteration's directory is written under a temporary name, synced to disk and
/// renamed into place, and only then does the tracker file (itself written, synced and renamed) name
/// it, so a save interrupted at any point leaves the previous checkpoint the latest and intact. (An
/// earlier save of the same iteration is moved aside to `.iter_NNNNNNN.old` for the instant of the
/// swap, and read from there if the swap was cut short.)
public enum Checkpoint {
    /// Where training stood when the checkpoint was saved: with the model and optimizer state, all a
    /// resumed run needs to continue exactly (dropout masks and the data order follow from the seed,
    /// the iteration and the consumed samples).
    public struct Progress<Architecture: ModelArchitecture>: Codable, Equatable, Sendable {
        public var iteration: Int
        public var consumedTrainSamples: Int
        public var consumedValidSamples: Int
        /// The optimizer ("adam" or "sgd"; nil when the checkpoint holds no optimizer state) and its
        /// update count (Adam's bias correction).
        public var optimizer: String?
        public var optimizerStep: Int
        /// The learning-rate and weight-decay schedule with the samples it has advanced by (fewer than
        /// consumed when updates were skipped); nil with no optimizer state.
        public var scheduler: OptimizerParamScheduler?
        /// The network the parameters belong to, under Megatron's argument names (GPT's
        /// `TransformerConfig`, BERT's `BertConfig`).
        public var model: Architecture
        /// The dynamic loss scaler's state (--fp16), nil without one.
        public var gradScaler: GradScaler?

        public init(iteration: Int, consumedTrainSamples: Int, consumedValidSamples: Int, optimizer: String?, optimizerStep: Int,
                    scheduler: OptimizerParamScheduler?, model: Architecture, gradScaler: GradScaler? = nil) {
            self.iteration = iteration
            self.consumedTrainSamples = consumedTrainSamples
            self.consumedValidSamples = consumedValidSamples
            self.optimizer = optimizer
            self.optimizerStep = optimizerStep
            self.scheduler = scheduler
            self.model = model
            self.gradScaler = gradScaler
        }

        enum CodingKeys: String, CodingKey {
            case iteration, optimizer, model, gradScaler = "grad_scaler"
            case consumedTrainSamples = "consumed_train_samples", consumedValidSamples = "consumed_valid_samples"
            case optimizerStep = "optimizer_step", scheduler = "opt_param_scheduler"
        }
    }

    static let trackerName = "latest_checkpointed_iteration.txt"

    /// DIR/iter_0000010, Megatron's name for an iteration's directory.
    public static func iterationDirectory(_ directory: URL, iteration: Int) -> URL {
        directory.appendingPathComponent(String(format: "iter_%07d", iteration))
    }

    /// Where iteration `iteration` is stored: its directory, or the earlier save of it that a replacing
    /// save moved aside and did not get to swap back (see the type's documentation).
    static func storedDirectory(_ directory: URL, iteration: Int) -> URL {
        let final = iterationDirectory(directory, iteration: iteration)
        let aside = directory.appendingPathComponent(".\(final.lastPathComponent).old")
        let files = FileManager.default
        return !files.fileExists(atPath: final.path) && files.fileExists(atPath: aside.path) ? aside : final
    }

    /// The iteration the tracker file of `directory` names, nil when there is none (a run that saved
    /// nothing yet), or an error naming the file when it is unreadable.
    public static func latestIteration(in directory: URL) throws -> Int? {
        let tracker = directory.appendingPathComponent(trackerName)
        guard FileManager.default.fileExists(atPath: tracker.path) else { return nil }
        let text = try String(contentsOf: tracker, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        guard let iteration = Int(text), iteration >= 0 else {
            throw CheckpointError("\(tracker.path): expected an iteration number, found \"\(text)\"")
        }
        return iteration
    }

    /// Writes `parameters` (laid out by `progress.model`) and `optimizerState` (the optimizer's tensors
    /// laid out like the flat parameter buffer, by state name; none for a checkpoint without optimizer)
    /// in the whole-model format as the checkpoint of `progress.iteration`, and makes it the latest.
    public static func save<Architecture>(to directory: URL, progress: Progress<Architecture>, parameters: UnsafeMutablePointer<Float>,
                                          optimizerState: [(name: String, values: UnsafeMutablePointer<Float>)]) throws {
        let layout = progress.model.wholeLayout
        let partial = try createPartialDirectory(in: directory, iteration: progress.iteration)
        try SafeTensors.write(entries(of: parameters, layout, suffix: ""), to: partial.appendingPathComponent("model.safetensors"))
        if !optimizerState.isEmpty {
            var state: [String: SafeTensors.Entry] = [:]
            for (name, values) in optimizerState { state.merge(entries(of: values, layout, suffix: "." + name)) { a, _ in a } }
            try SafeTensors.write(state, to: partial.appendingPathComponent("optimizer.safetensors"))
        }
        try publish(partial, in: directory, progress: progress)
    }

    /// A fresh, empty `DIR/.iter_NNNNNNN.partial` for the files of iteration `iteration`'s save
    /// (what an interrupted save left there is removed).
    static func createPartialDirectory(in directory: URL, iteration: Int) throws -> URL {
        let files = FileManager.default
        try files.createDirectory(at: directory, withIntermediateDirectories: true)
        let partial = partialDirectory(in: directory, iteration: iteration)
        try? files.removeItem(at: partial)
        try files.createDirectory(at: partial, withIntermediateDirectories: false)
        return partial
    }

    static func partialDirectory(in directory: URL, iteration: Int) -> URL {
        directory.appendingPathComponent(".\(iterationDirectory(directory, iteration: iteration).lastPathComponent).partial")
    }

    /// Completes a save whose files are in `partial`: writes `checkpoint.json`, syncs, renames the
    /// directory into place and then names it in the tracker file (see the type's documentation).
    static func publish<Architecture>(_ partial: URL, in directory: URL, progress: Progress<Architecture>) throws {
        let files = FileManager.default
        let final = iterationDirectory(directory, iteration: progress.iteration)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try DurableFile.write([try encoder.encode(progress)], to: partial.appendingPathComponent("checkpoint.json"))
        try DurableFile.syncDirectory(partial)

        // Replace an older save of the same iteration (a resumed run saving again) only once the new one is whole.
        if files.fileExists(atPath: final.path) {
            let aside = directory.appendingPathComponent(".\(final.lastPathComponent).old")
            try? files.removeItem(at: aside)
            try files.moveItem(at: final, to: aside)
            try files.moveItem(at: partial, to: final)
            try DurableFile.syncDirectory(directory)
            try files.removeItem(at: aside)
        } else {
            try files.moveItem(at: partial, to: final)
        }
        try DurableFile.syncDirectory(directory)
        try DurableFile.write([Data("\(progress.iteration)\n".utf8)], to: directory.appendingPathComponent(trackerName))
        try DurableFile.syncDirectory(directory)
    }

    /// What `checkpoint.json` of iteration `iteration` records, of a model of `architecture` (GPT's by default).
    public static func progress<Architecture>(in directory: URL, iteration: Int, architecture: Architecture.Type = TransformerConfig.self)
        throws -> Progress<Architecture> {
        let file = storedDirectory(directory, iteration: iteration).appendingPathComponent("checkpoint.json")
        do {
            return try JSONDecoder().decode(Progress<Architecture>.self, from: Data(contentsOf: file))
        } catch {
            throw CheckpointError("\(file.path): not a readable checkpoint description of a \(Architecture.self) model (\(error))")
        }
    }

    /// Copies the parameters of iteration `iteration` (of either format) into `parameters`, laid out
    /// by `layout` (a rank's part of the model whose whole layout is `wholeLayout`, by default
    /// `layout` itself), converting them to its dtype.
    public static func readParameters(from directory: URL, iteration: Int, layout: ParameterLayout, wholeLayout: ParameterLayout? = nil,
                                      into parameters: MegatronCore.Tensor) throws {
        try copy(try stored(in: storedDirectory(directory, iteration: iteration)).model, suffix: "",
                 into: [(0 ..< layout.totalCount, parameters)], layout, whole: wholeLayout ?? layout)
    }

    /// The optimizer states ("exp_avg", "fp32_param", …) the checkpoint of `iteration` holds: none
    /// when it has no optimizer part (an imported model's).
    static func optimizerStates(in directory: URL, iteration: Int) throws -> Set<String> {
        let folder = storedDirectory(directory, iteration: iteration)
        guard ShardedCheckpoint.isSharded(folder)
              || FileManager.default.fileExists(atPath: folder.appendingPathComponent("optimizer.safetensors").path) else { return [] }
        return Set(try stored(in: folder).optimizer().names.compactMap { $0.split(separator: ".").last.map(String.init) })
    }

    /// The model and optimizer tensors of the checkpoint in `folder`, in whichever format it is
    /// (the optimizer's nil when a whole-model checkpoint has no optimizer file).
    private static func stored(in folder: URL) throws -> (model: StoredTensors, optimizer: () throws -> StoredTensors) {
        if ShardedCheckpoint.isSharded(folder) {
            let (model, optimizer) = try ShardedCheckpoint.read(folder)
            return (model, { optimizer })
        }
        return (try WholeTensorFile(folder.appendingPathComponent("model.safetensors")),
                { try WholeTensorFile(folder.appendingPathComponent("optimizer.safetensors")) })
    }

    /// Reads the checkpoint of `iteration`: copies its parameters into the model and, given this run's
    /// optimizer, its state (if it has any) into `optimizer.state`: for each state name, spans of the
    /// flat parameter layout and where each goes (a rank's shard under the distributed optimizer).
    /// A state named in `optional` may be missing (the main parameters, which a checkpoint of an fp32
    /// run does not have). Returns its progress and the states it restored. Errors name the file and
    /// what does not fit this run.
    static func load<Model: PretrainingModel>(from directory: URL, iteration: Int, model: Model,
                                              optimizer: (kind: String, state: [(name: String, spans: [Span])], optional: Set<String>)?) throws
        -> (progress: Progress<Model.Architecture>, restoredStates: Set<String>) {
        let folder = storedDirectory(directory, iteration: iteration)
        let progress = try progress(in: directory, iteration: iteration, architecture: Model.Architecture.self)
        let differences = model.config.architectureDifferences(from: progress.model)
        guard differences.isEmpty else {
            throw CheckpointError("\(folder.path): the checkpoint's model differs from this run's "
                              + "(this run vs the checkpoint): \(differences.joined(separator: ", "))")
        }
        if let optimizer, let saved = progress.optimizer, optimizer.kind != saved {
            throw CheckpointError("\(folder.path): saved by --optimizer \(saved), this run's is \(optimizer.kind) "
                              + "(--no-load-optim starts a fresh optimizer from the saved model)")
        }
        let whole = model.config.wholeLayout
        let stored = try stored(in: folder)
        try copy(stored.model, suffix: "", into: [(0 ..< model.layout.totalCount, model.parameters)], model.layout, whole: whole)
        guard let optimizer, progress.optimizer != nil else { return (progress, []) }
        let state = try stored.optimizer()
        var restored: Set<String> = []
        for (name, spans) in optimizer.state {
            let suffix = "." + name
            if optimizer.optional.contains(name), !state.names.contains(where: { $0.hasSuffix(suffix) }) { continue }
            try copy(state, suffix: suffix, into: spans, model.layout, whole: whole)
            restored.insert(name)
        }
        return (progress, restored)
    }

    /// One entry per parameter, viewing (not copying) `buffer` at the parameter's offset.
    private static func entries(of buffer: UnsafeMutablePointer<Float>, _ layout: ParameterLayout, suffix: String) -> [String: SafeTensors.Entry] {
        var entries: [String: SafeTensors.Entry] = [:]
        for entry in layout.entries {
            let bytes = Data(bytesNoCopy: buffer + entry.offset, count: entry.count * MemoryLayout<Float>.stride, deallocator: .none)
            entries[entry.name + suffix] = SafeTensors.Entry(dtype: "F32", shape: entry.shape, data: bytes)
        }
        return entries
    }

    /// A range of the flat parameter layout and where its values go (a view of as many elements, in
    /// the dtype training keeps them in).
    typealias Span = (range: Range<Int>, values: MegatronCore.Tensor)

    /// Copies what `spans` cover of every parameter's tensor `<name><suffix>` of `stored` into
    /// `layout` (this rank's part), checking that they are exactly the parameters of the model
    /// `whole` lays out, with its shapes.
    private static func copy(_ stored: StoredTensors, suffix: String, into spans: [Span], _ layout: ParameterLayout,
                             whole: ParameterLayout) throws {
        let file = stored.source
        let expected = Set(whole.entries.map { $0.name + suffix })
        if let stray = stored.names.filter({ $0.hasSuffix(suffix) && !expected.contains($0) }).sorted().first {
            throw CheckpointError("\(file.path) holds \(stray), which this model does not have: was it saved with other "
                              + "--num-layers, --untie-embeddings-and-output-weights, --position-embedding-type or bias flags?")
        }
        for entry in layout.entries {
            let name = entry.name + suffix
            guard let (dtype, shape) = stored.description(of: name) else {
                throw CheckpointError("\(file.path) has no tensor \(name), which this model needs")
            }
            guard shape == entry.wholeShape else {
                throw CheckpointError("\(file.path): \(name) is \(dtype) \(shape), this model's is \(entry.wholeShape) "
                                  + "(a checkpoint of another --hidden-size, --ffn-hidden-size, --num-attention-heads or vocabulary?)")
            }
            // A tensor-parallel rank takes its shard's pieces of the whole tensor, and of those what `spans` cover.
            var targets: [CopyTarget] = []
            for piece in entry.pieces {
                let pieceRange = entry.offset + piece.local ..< entry.offset + piece.local + piece.count
                for (range, values) in spans where range.overlaps(pieceRange) {
                    let part = range.clamped(to: pieceRange)
                    targets.append(CopyTarget(whole: piece.whole + part.lowerBound - pieceRange.lowerBound, count: part.count,
                                              values: values.rawPointer + (part.lowerBound - range.lowerBound) * values.dtype.size,
                                              dtype: values.dtype))
                }
            }
            try stored.copy(name, into: targets)
        }
    }
}
