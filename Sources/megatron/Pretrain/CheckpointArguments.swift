import ArgumentParser
import Foundation

/// Checkpointing flags of Megatron-LM (see `Checkpoint` for what a checkpoint holds).
struct CheckpointArguments: ParsableArguments {
    @Option(name: .customLong("save"), help: "Directory to save checkpoints to.") var save: String?
    @Option(name: .customLong("save-interval"), help: "Save a checkpoint every this many iterations (and always at the end).")
    var saveInterval: Int?
    @Option(name: .customLong("load"), help: "Resume from the latest checkpoint in this directory (none there: train from the start).")
    var load: String?
    @Flag(name: .customLong("no-load-optim"), help: "With --load: keep the saved model and progress, start a fresh optimizer.")
    var noLoadOptim = false
    @Flag(name: .customLong("finetune"), help: "With --load: take only the saved model; iteration, samples and optimizer start anew.")
    var finetune = false
    @Option(name: .customLong("exit-interval"), help: "Stop after the first iteration divisible by this (saving first under --save).")
    var exitInterval: Int?

    func validate() throws {
        if let saveInterval, saveInterval < 1 { throw ValidationError("--save-interval \(saveInterval): expected at least 1") }
        if let exitInterval, exitInterval < 1 { throw ValidationError("--exit-interval \(exitInterval): expected at least 1") }
        if saveInterval != nil && save == nil { throw ValidationError("--save-interval needs --save") }
        if (noLoadOptim || finetune) && load == nil { throw ValidationError("--no-load-optim and --finetune need --load") }
        if let save, FileManager.default.fileExists(atPath: save), !isDirectory(save) {
            throw ValidationError("--save \(save): exists and is not a directory")
        }
    }

    private func isDirectory(_ path: String) -> Bool {
        var directory: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &directory) && directory.boolValue
    }
}
