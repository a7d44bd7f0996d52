import Foundation
import MegatronCore
import MegatronModels
import MegatronParallel

/// Saving in the sharded format (`ShardedCheckpoint`), at once or in the background (--async-save).
extension Trainer {
    /// Saves the checkpoint of `iteration` to `directory` in the sharded format: world rank 0 creates
    /// the iteration's partial directory, every rank writes its shard into it in parallel, then rank
    /// 0 lists them in `metadata.json` and publishes the directory. With --async-save a background
    /// thread writes each rank's shard while training goes on, reading the parameters and optimizer
    /// state in place (no copy: the next optimizer step, the first thing to change them, waits for
    /// it); `finishPendingSave` publishes it once every rank's writer is done.
    func saveShardedCheckpoint(to directory: URL) throws {
        try finishPendingSave(blocking: true)
        let world = model.groups.world
        log(" saving checkpoint at iteration \(String(format: "%7d", iteration)) to \(directory.path) in torch_dist format")
        let pending = PendingSave(directory: directory, iteration: iteration,
                                  partial: Checkpoint.partialDirectory(in: directory, iteration: iteration), progress: progress)
        var failure: Error?
        if world.rank == 0 {
            do { _ = try Checkpoint.createPartialDirectory(in: directory, iteration: iteration) } catch { failure = error }
        }
        try agree(failure, "creating \(pending.partial.path)")
        let file = pending.partial.appendingPathComponent(ShardedCheckpoint.fileName(rank: world.rank))
        let shard: ShardedCheckpoint.Shard
        do { shard = try ownedShard() } catch { failure = error; shard = .init() }
        try agree(failure, "viewing this rank's shard")
        if settings.asyncSave {
            // The shard's views keep the buffers they read alive until the writer is done.
            pending.startWriting(shard, to: file)
            pendingSave = pending
            log("  scheduled an asynchronous save of iteration \(String(format: "%7d", iteration)): training goes on while it is written")
            return
        }
        do { try shard.write(to: file) } catch { failure = error }
        try agree(failure, "writing \(file.path)")
        try publish(pending)
    }

    /// Publishes the asynchronous save in progress once every rank's writer is done (waiting for them
    /// when `blocking`); every rank calls it at the same points (after each iteration, before a save,
    /// at the end of training), as it agrees over all of them.
    func finishPendingSave(blocking: Bool) throws {
        guard let pending = pendingSave else { return }
        let world = model.groups.world
        let finished = blocking || pending.writer.map { $0.thread.hasFinished($0.ticket) } ?? true
        guard try world.allReduce(Int32(finished ? 1 : 0), op: .sum) == world.size else { return }
        pendingSave = nil
        var failure: Error?
        if let (thread, ticket) = pending.writer {
            do { try thread.wait(for: ticket) } catch { failure = error }
        }
        try agree(failure, "writing the shards of iteration \(pending.iteration) to \(pending.partial.path)")
        try publish(pending)
    }

    /// Lists every rank's written shard in `metadata.json` and moves the iteration into place (rank 0).
    private func publish(_ pending: PendingSave<Model.Architecture>) throws {
        var failure: Error?
        if model.groups.world.rank == 0 {
            do {
                try ShardedCheckpoint.writeMetadata(in: pending.partial)
                try Checkpoint.publish(pending.partial, in: pending.directory, progress: pending.progress)
            } catch { failure = error }
        }
        try agree(failure, "publishing the checkpoint of iteration \(pending.iteration) in \(pending.directory.path)")
        log("  successfully saved checkpoint from iteration \(String(format: "%7d", pending.iteration)) to \(pending.directory.path) "
            + "(\(String(format: "%.1f", Date().timeIntervalSince(pending.start))) s)")
    }

    /// What this rank owns of the checkpoint, viewing its buffers: on rank 0 of its data-parallel
    /// group (with its context-parallel peers, who hold the same parameters) its
    /// tensor-parallel shard of each of its stage's parameters (the replicated ones on tensor-parallel
    /// rank 0 only, the last stage's copy of a tied word embedding not at all), and the optimizer
    /// state it updates (its slice under the distributed optimizer; otherwise data-parallel rank 0's
    /// whole state), by the same rules; each in the dtype training keeps it in.
    func ownedShard() throws -> ShardedCheckpoint.Shard {
        let layout = model.layout, tensorParallel = model.tensorParallel
        let dataParallelRank = dataParallel.dataParallelWithContext.rank
        let owned = layout.entries.filter { !layout.isSharedEmbeddingCopy($0) && ($0.isSharded || tensorParallel.rank == 0) }
        var shard = ShardedCheckpoint.Shard()
        /// Adds what `spans` (ranges of the flat buffer and where their values are) cover of `owned`.
        func addChunks(_ part: ShardedCheckpoint.Part, suffix: String, _ spans: [(range: Range<Int>, values: Tensor)]) throws {
            for entry in owned {
                let entryRange = entry.offset ..< entry.offset + entry.count
                for (range, values) in spans where range.overlaps(entryRange) {
                    let run = range.clamped(to: entryRange)
                    shard.add(part, entry.name + suffix, shape: entry.wholeShape, split: entry.split, rank: tensorParallel.rank,
                              of: tensorParallel.size, range: run.lowerBound - entry.offset ..< run.upperBound - entry.offset,
                              values: try values.view(offset: run.lowerBound - range.lowerBound, shape: [run.count]), shardCount: entry.count)
                }
            }
        }
        if dataParallelRank == 0 { try addChunks(.model, suffix: "", [(0 ..< layout.totalCount, model.parameters)]) }
        if dataParallel.settings.useDistributedOptimizer || dataParallelRank == 0 {
            for (name, values) in optimizer.stateTensors { try addChunks(.optimizer, suffix: "." + name, optimizer.ownedSpans(of: values)) }
        }
        return shard
    }
}

/// A sharded save under way: where it goes, what it records, and (saved asynchronously) the thread
/// writing this rank's shard.
final class PendingSave<Architecture: ModelArchitecture> {
    let directory: URL, iteration: Int, partial: URL
    let progress: Checkpoint.Progress<Architecture>
    let start = Date()
    /// The writing thread and the ticket of its write.
    private(set) var writer: (thread: BackgroundThread, ticket: Int)?

    init(directory: URL, iteration: Int, partial: URL, progress: Checkpoint.Progress<Architecture>) {
        self.directory = directory
        self.iteration = iteration
        self.partial = partial
        self.progress = progress
    }

    /// Writes `shard` to `file` on a thread of its own.
    func startWriting(_ shard: ShardedCheckpoint.Shard, to file: URL) {
        let thread = BackgroundThread(name: "checkpoint-writer")
        writer = (thread, thread.submit { try shard.write(to: file) })
    }

    deinit { writer?.thread.stop() }
}
