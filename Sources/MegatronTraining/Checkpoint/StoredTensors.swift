import Foundation
import MegatronCore

/// The global tensors of one part of a saved checkpoint (the model's parameters, or the optimizer's
/// state), whatever the format stores them as: whole tensors in one file, or chunks spread over
/// ranks' files. Readers copy the runs of a tensor they need, so a rank of any layout takes exactly
/// its share.
protocol StoredTensors {
    /// What the messages name: the file or metadata file the tensors are listed in.
    var source: URL { get }
    /// Every global tensor's name.
    var names: [String] { get }
    /// The dtype and whole shape of tensor `name`, nil when there is no such tensor.
    func description(of name: String) -> (dtype: String, shape: [Int])?
    /// Copies the `targets` of tensor `name` (runs of the flattened whole tensor, in ascending order)
    /// into their destinations; throws when the stored tensor does not cover them all.
    func copy(_ name: String, into targets: [CopyTarget]) throws
}

/// A run of `count` elements at `whole` in a flattened whole tensor, and where it goes: `count`
/// elements of `dtype` at `values` (converted on the way when stored in another precision).
struct CopyTarget {
    let whole: Int, count: Int
    let values: UnsafeMutableRawPointer
    let dtype: DType
}

/// A run of a stored chunk: `count` elements at `whole` in the flattened whole tensor, at element
/// `stored` of the chunk's data.
struct StoredRun {
    let whole: Int, stored: Int, count: Int
}

extension StoredTensors {
    /// Copies where `runs` (of `data`, elements of `dtype`, in ascending order) meet `targets`
    /// (ascending), and returns how many elements that was: one merge of two sorted lists of disjoint
    /// runs. Errors (a dtype that cannot become the target's) name `what` (file and tensor).
    static func copy(_ runs: [StoredRun], of data: Data, dtype: DType, into targets: [CopyTarget], what: String) throws -> Int {
        var copied = 0, t = 0, r = 0
        try data.withUnsafeBytes { raw in
            let stored = raw.baseAddress!
            while t < targets.count && r < runs.count {
                let target = targets[t], run = runs[r]
                let lower = max(target.whole, run.whole), upper = min(target.whole + target.count, run.whole + run.count)
                if lower < upper {
                    try dtype.convert(upper - lower, from: stored + (run.stored + lower - run.whole) * dtype.size,
                                      to: target.values + (lower - target.whole) * target.dtype.size, as: target.dtype,
                                      what)
                    copied += upper - lower
                }
                if target.whole + target.count <= run.whole + run.count { t += 1 } else { r += 1 }
            }
            releaseResidentPages(raw)
        }
        return copied
    }

    /// Drops the whole pages of memory-mapped `bytes` once read (each stored chunk is read once): they
    /// are file pages the kernel could reclaim, but they count in the process's resident set, which
    /// would otherwise grow by every byte a loading rank copied (a later read faults them in again).
    private static func releaseResidentPages(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (Int(bitPattern: base) + page - 1) & ~(page - 1), end = (Int(bitPattern: base) + bytes.count) & ~(page - 1)
        guard end > start else { return }
        _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, MADV_DONTNEED)
    }

    /// The dtype of a stored tensor's safetensors name, or an error naming the tensor.
    func dtype(_ stored: String, of name: String) throws -> DType {
        guard let dtype = DType(safetensorsName: stored) else { throw CheckpointError("\(source.path): \(name) is \(stored), not a dtype this library reads") }
        return dtype
    }
}

/// A file holding whole tensors (the whole-model checkpoint format's `model.safetensors` and
/// `optimizer.safetensors`), memory-mapped.
struct WholeTensorFile: StoredTensors {
    let source: URL
    let tensors: [String: SafeTensors.Entry]

    init(_ file: URL) throws {
        guard FileManager.default.fileExists(atPath: file.path) else { throw CheckpointError("\(file.path): no such file") }
        source = file
        tensors = try SafeTensors.read(file).tensors
    }

    var names: [String] { Array(tensors.keys) }

    func description(of name: String) -> (dtype: String, shape: [Int])? { tensors[name].map { ($0.dtype, $0.shape) } }

    func copy(_ name: String, into targets: [CopyTarget]) throws {
        let entry = tensors[name]!, dtype = try dtype(entry.dtype, of: name)
        _ = try Self.copy([StoredRun(whole: 0, stored: 0, count: entry.data.count / dtype.size)], of: entry.data, dtype: dtype,
                          into: targets, what: "\(source.path): \(name)")
    }
}
