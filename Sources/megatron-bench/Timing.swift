import Foundation

/// Wall-clock timing of repeated runs.
struct Timing {
    /// Seconds of each timed run, sorted.
    let seconds: [Double]

    var best: Double { seconds.first ?? .nan }
    var median: Double { seconds.isEmpty ? .nan : seconds[seconds.count / 2] }

    /// Runs `body` `warmup` times untimed, then `repeats` times timed.
    static func measure(repeats: Int, warmup: Int = 1, _ body: () throws -> Void) rethrows -> Timing {
        for _ in 0 ..< warmup { try body() }
        var runs: [Double] = []
        for _ in 0 ..< repeats {
            let start = now()
            try body()
            runs.append(now() - start)
        }
        return Timing(seconds: runs.sorted())
    }

    /// Runs training step `step(i)` (returning its loss) `warmup` times untimed, then `steps` times
    /// timed, each step's time and loss on standard error; `afterWarmup` runs between the two.
    static func trainingSteps(warmup: Int, steps: Int, afterWarmup: () -> Void = {},
                              _ step: (Int) throws -> Float) rethrows -> (timing: Timing, losses: [Float]) {
        var runs: [Double] = [], losses: [Float] = []
        for i in 0 ..< warmup + steps {
            if i == warmup { afterWarmup() }
            let start = now()
            losses.append(try step(i))
            let seconds = now() - start
            FileHandle.standardError.write(Data("  step \(i) \(i < warmup ? "warm" : "meas") \(fixed(seconds * 1e3)) ms loss \(losses.last!)\n".utf8))
            if i >= warmup { runs.append(seconds) }
        }
        return (Timing(seconds: runs.sorted()), losses)
    }

    static func now() -> Double {
        var t = timespec()
        clock_gettime(CLOCK_MONOTONIC, &t)
        return Double(t.tv_sec) + Double(t.tv_nsec) * 1e-9
    }
}

/// Peak resident set size of this process, in bytes (VmHWM of /proc/self/status; 0 where absent).
func peakResidentBytes() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
          let kibibytes = Int(line.dropFirst(6).filter(\.isNumber))
    else { return 0 }
    return kibibytes * 1024
}

/// The peak resident set of a benchmark's workload, leaving out what the benchmark runs only to
/// measure (the GEMM ceiling's operands, allocated and freed between the steps): `excluding` records
/// the peak before its body and afterwards resets the kernel's high-water mark to the current
/// resident set (`clear_refs` 5). Where the reset is refused the measuring stays counted, erring high.
struct ResidentPeak {
    private var before = 0

    mutating func excluding(_ body: () throws -> Void) rethrows {
        before = max(before, peakResidentBytes())
        try body()
        try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
    }

    /// Bytes: the most of the peaks outside `excluding`.
    var bytes: Int { max(before, peakResidentBytes()) }
}
