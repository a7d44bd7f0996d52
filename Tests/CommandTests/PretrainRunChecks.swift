import Foundation
import Testing

/// Checks of a `megatron pretrain-*` run that every model family's command tests make: other
/// layouts, recomputation and bf16 log what one rank logs, and a checkpoint resumes the run.
enum PretrainRunChecks {
    static func values(_ field: String, in log: String) -> [Double] { PretrainModelParallelTests.values(field, in: log) }

    /// Each of `fields` ("lm loss", "grad norm") logged `iterations` times in both logs, equal
    /// (`tolerance` nil) or within `tolerance` relative (plus the same absolute).
    static func expectSame(_ fields: [String], _ a: String, _ b: String, iterations: Int, tolerance: Double?, _ what: String) {
        for field in fields {
            let x = values(field, in: a), y = values(field, in: b)
            let close = tolerance.map { t in zip(x, y).allSatisfy { abs($0 - $1) <= t * abs($0) + t } } ?? (x == y)
            #expect(x.count == iterations && y.count == iterations && close, "\(what) \(field): \(x) vs \(y)")
        }
    }

    /// Recomputation (full, uniform and block, and selective) leaves `run`'s log exactly as it was.
    static func expectRecomputationLeavesTheRunUnchanged(_ run: [String], fields: [String], iterations: Int) throws {
        let plain = try PretrainFlagTests.megatron(run)
        for flags in [["--recompute-granularity", "full", "--recompute-method", "uniform", "--recompute-num-layers", "2"],
                      ["--recompute-granularity", "full", "--recompute-method", "block", "--recompute-num-layers", "1"],
                      ["--recompute-activations", "--recompute-modules", "core_attn", "layernorm", "mlp"]] {
            let recomputed = try PretrainFlagTests.megatron(run + flags)
            expectSame(fields, plain.output, recomputed.output, iterations: iterations, tolerance: nil, "\(flags)")
        }
    }

    /// bf16 logs losses close to fp32's but not equal, and on two tensor-parallel ranks what it logs on one.
    static func expectBF16TrainsAsOneRank(_ run: [String], losses: [String], iterations: Int) throws {
        let fp32 = try PretrainFlagTests.megatron(run)
        let bf16 = try PretrainFlagTests.megatron(run + ["--bf16"])
        let bf16TP = try PretrainFlagTests.megatron(run + ["--bf16", "--in-process-ranks", "2", "--tensor-model-parallel-size", "2"])
        #expect(bf16.status == 0 && bf16TP.status == 0, "\(bf16.output)\n\(bf16TP.output)")
        for field in losses {
            let a = values(field, in: bf16.output), b = values(field, in: bf16TP.output), full = values(field, in: fp32.output)
            #expect(a.count == iterations && b.count == iterations && zip(a, b).allSatisfy { abs($0 - $1) <= 2e-2 * abs($0) },
                    "\(field): \(a) vs \(b)")
            #expect(a != full && zip(a, full).allSatisfy { abs($0 - $1) <= 5e-2 * abs($1) }, "bf16 \(field) \(a) vs fp32 \(full)")
        }
    }

    /// `run` (6 iterations) saved at iteration 3 and resumed continues as the run that never stopped.
    /// The line after the first after a start averages both iterations (Megatron's): compared are
    /// the other lines' lm loss, and every grad norm.
    static func expectCheckpointResumes(_ run: [String]) throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("run-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let straight = try PretrainFlagTests.megatron(run)
        let first = try PretrainFlagTests.megatron(run + ["--save", directory.path, "--exit-interval", "3"])
        let resumed = try PretrainFlagTests.megatron(run + ["--load", directory.path])
        #expect(first.status == 0 && resumed.status == 0, "\(first.output)\n\(resumed.output)")
        let a = values("lm loss", in: straight.output), b = values("lm loss", in: resumed.output)
        #expect(a.count == 6 && b.count == 3 && a[3] == b[0] && a[5] == b[2], "\(straight.output)\n\(resumed.output)")
        #expect(values("grad norm", in: straight.output).suffix(3) == values("grad norm", in: resumed.output)[...])
    }
}
