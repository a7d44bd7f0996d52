import ArgumentParser
import Foundation
import MegatronCore

/// Options that choose the compute device.
public struct DeviceOptions: ParsableArguments, Sendable {
    public init() {}

    @Option(help: ArgumentHelp(
        "Threads for kernels and OpenBLAS (default: $\(CPUDevice.threadsEnvironmentVariable), else every core).",
        valueName: "n"))
    public var threads: Int?

    public func validate() throws {
        if let threads, threads < 1 { throw ValidationError("--threads \(threads): expected at least 1") }
    }

    /// The device for one rank among `ranksSharingCores` on this machine: --threads threads, else
    /// the default count divided among the ranks (at least one each).
    public func makeDevice(ranksSharingCores: Int = 1, timer: KernelTimer? = nil) throws -> CPUDevice {
        if let threads { return CPUDevice(threads: threads, timer: timer) }
        let count = try CPUDevice.defaultThreadCount(environment: ProcessInfo.processInfo.environment)
        return CPUDevice(threads: max(1, count / ranksSharingCores), timer: timer)
    }
}
